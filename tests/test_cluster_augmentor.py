import numpy as np

from donet.data import AnnotatedImage, ClusterAugmentor, SynthConfig, generate
from donet.data.cluster_augmentor import cut_cells
from donet.data.compositing import CellSprite, composite, to_pixels


def test_cut_cells_recovers_each_cells_own_transmittance_under_an_overlap():
    size = (60, 90)
    left, right = np.zeros((2, *size), bool)
    left[10:50, 10:55] = True
    right[10:50, 35:80] = True
    background = np.full((*size, 1), 0.9, np.float32)
    sprites = [CellSprite(cell, np.where(cell, t, 1.0)[..., None].astype(np.float32))
               for cell, t in ((left, 0.8), (right, 0.6))]
    image, instances = composite(background, sprites, [(0, 0), (0, 0)])
    sample = AnnotatedImage("two", to_pixels(image, gray=True), instances)
    cut, level, _ = cut_cells(sample)
    assert abs(level[0] - 0.9) < 0.01
    overlap = (left & right)[10:50, 10:55]
    assert abs(np.median(cut[0].transmittance[overlap]) - 0.8) < 0.02
    assert abs(np.median(cut[1].transmittance[(left & right)[10:50, 35:80]]) - 0.6) < 0.02


def test_clusters_have_exact_masks_controlled_overlap_and_linked_nuclei():
    sources = [generate(i, SynthConfig(size=(256, 256), cells=(2, 4)), seed=1) for i in range(4)]
    augmentor = ClusterAugmentor(sources, cells=(5, 5), overlap=(0.2, 0.3), clusters=(1, 1), translucency=(1, 1))
    rng = np.random.default_rng(0)
    shares = []
    for _ in range(4):
        sample = augmentor(rng)
        assert sample.image.shape == (256, 256) and sample.image.dtype == np.uint8
        cells = sample.masks()[:5]
        assert len(sample.cells) == 5 and all(n.parent in {c.id for c in sample.cells} for n in sample.nuclei)
        for nucleus in sample.nuclei:
            assert not (nucleus.mask & ~cells[nucleus.parent - 1]).any()
        for k in range(1, 5):
            shares.append((cells[k] & cells[:k].any(axis=0)).sum() / cells[k].sum())
        # Translucent compositing: pixels under two cells are darker than under one.
        count = cells.sum(axis=0)
        nuclei = sample.masks()[5:].any(axis=0)
        assert sample.image[(count == 2) & ~nuclei].mean() < sample.image[(count == 1) & ~nuclei].mean()
    assert np.mean((np.array(shares) > 0.18) & (np.array(shares) < 0.32)) > 0.8


def test_on_the_fly_replacement_keeps_the_training_image_size():
    sources = [generate(0, SynthConfig(size=(200, 200)), seed=2)]
    augmentor = ClusterAugmentor(sources, cells=(2, 3))
    rng = np.random.default_rng(0)
    original = generate(1, SynthConfig(size=(180, 240)), seed=2)
    assert augmentor.maybe_replace(original, rng, probability=0.0) is original
    replaced = augmentor.maybe_replace(original, rng, probability=1.0)
    assert replaced is not original and replaced.size == (180, 240) and augmentor.size == (200, 200)
    # A new clump of the augmentor's cells at the training image's size, named after what it replaces.
    assert replaced.image.shape[:2] == (180, 240) and replaced.name == f"{original.name}_cluster"
    assert 2 <= len(replaced.cells) <= 3 and {c.mask.shape for c in replaced.cells} == {(180, 240)}
