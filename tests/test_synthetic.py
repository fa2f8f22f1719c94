import numpy as np
import pytest
from scipy import ndimage

from donet.data import SynthConfig, decompose, generate
from donet.data.decomposition import coverage


def test_same_seed_same_image_other_seed_other_image():
    config = SynthConfig(size=(128, 160))
    a, b, c = generate(4, config, seed=1), generate(4, config, seed=1), generate(4, config, seed=2)
    assert np.array_equal(a.image, b.image) and [i.rle for i in a.instances] == [i.rle for i in b.instances]
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("color", [False, True])
def test_shapes_counts_and_nuclei_inside_their_cells(color):
    config = SynthConfig(size=(200, 300), cells=(3, 6), color=color)
    for index in range(5):
        sample = generate(index, config, seed=0)
        assert sample.image.shape == ((200, 300, 3) if color else (200, 300)) and sample.image.dtype == np.uint8
        assert 3 <= len(sample.cells) <= 6 and len(sample.nuclei) == len(sample.cells)
        cells = {c.id: c.mask for c in sample.cells}
        for nucleus in sample.nuclei:
            assert not (nucleus.mask & ~cells[nucleus.parent]).any()


def test_overlap_band_is_respected():
    config = SynthConfig(cells=(6, 6), clusters=(1, 1), overlap=(0.2, 0.3))
    shares = []
    for index in range(6):
        cells = generate(index, config, seed=0).masks()[:6]
        for k in range(1, 6):
            earlier = cells[:k].any(axis=0)
            shares.append((cells[k] & earlier).sum() / cells[k].sum())
    shares = np.array(shares)
    assert np.mean((shares >= 0.2 - 0.02) & (shares <= 0.3 + 0.02)) > 0.85
    isolated = SynthConfig(cells=(4, 4), clusters=(4, 4), overlap=(0.0, 0.0), cell_radius=(0.05, 0.07))
    assert not decompose(generate(0, isolated, seed=0).masks()[:4])[0].any()


def test_overlaps_are_darker_and_mimics_lie_outside_cells():
    config = SynthConfig(cells=(6, 8), overlap=(0.2, 0.4), mimics=(8, 8), noise=0.0, blur=0.0)
    for index in range(3):
        sample = generate(index, config, seed=5)
        cells = sample.masks()[: len(sample.cells)]
        nuclei = sample.masks()[len(sample.cells):].any(axis=0)
        count = coverage(cells)
        inner = ~ndimage.binary_dilation(~(count >= 1), iterations=3) & ~ndimage.binary_dilation(nuclei, iterations=3)
        single, double = sample.image[inner & (count == 1)], sample.image[inner & (count == 2)]
        assert double.mean() < single.mean() - 5
        # Dark round objects outside every cell are present but never annotated.
        background = sample.image[count == 0]
        dark_outside = ndimage.label((sample.image < np.median(background) * 0.6) & (count == 0))[1]
        assert dark_outside >= 4


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        SynthConfig(overlap=(0.5, 0.2))
    with pytest.raises(ValueError, match="cells"):
        SynthConfig(cells=(0, 3))
