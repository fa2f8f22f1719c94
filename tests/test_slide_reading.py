"""Whole slides read lazily (tifffile and OpenSlide), their empty glass found, their tables written."""

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from pycocotools import mask as mask_utils

from donet.data import SynthConfig, generate
from donet.data.synthetic_slide import GLASS, SyntheticSlide, write_pyramid
from donet.data.tissue import TissueMap, tissue_mask
from donet.io.parquet import open_table, read_table, table_row
from donet.io.slides import is_slide, open_slide


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    cluster = generate(0, SynthConfig(size=(512, 512), color=True), seed=0).image
    slide = SyntheticSlide(3000, 4000, [((1100, 2600), cluster)])
    path = tmp_path_factory.mktemp("slides") / "two.ome.tif"
    write_pyramid(path, slide, mpp=0.25)
    return path, slide


def test_pyramid_levels_scale_and_regions(pyramid):
    path, synthetic = pyramid
    assert is_slide(path)
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx(0.25)
        assert [level.shape for level in slide.levels] == [(3000, 4000, 3), (1500, 2000, 3), (750, 1000, 3)]
        assert [level.downsample for level in slide.levels] == [1, 2, 4]
        # The coarsest level no coarser than asked: no level is upsampled.
        assert [slide.level_for(d) for d in (0.5, 1, 1.9, 2, 3.5, 4, 100)] == [0, 0, 0, 1, 1, 2, 2]
        region = slide.levels[0][1000:1700, 2500:3200]
        expected = synthetic.render(1000, 2500, 700, 700)
        assert region.shape == (700, 700, 3)
        assert np.abs(region.astype(int) - expected).mean() < 3  # JPEG
        coarse = slide.levels[1][500:850, 1250:1600]
        assert np.abs(coarse.astype(int) - synthetic.render(1000, 2500, 700, 700, step=2)).mean() < 3
    with open_slide(path, mpp=0.5) as slide:
        assert slide.mpp == 0.5  # --mpp overrides the file


def test_small_images_are_not_slides(tmp_path):
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((64, 64), np.uint8))
    assert not is_slide(tmp_path / "small.tif")
    assert is_slide(tmp_path / "scan.ndpi")  # a vendor format, whatever its size


def test_openslide_reads_what_tifffile_reads(tmp_path):
    image = np.full((1200, 1700, 3), 230, np.uint8)
    image[100:300, 200:500] = (90, 60, 120)
    path = tmp_path / "generic.tif"
    with tifffile.TiffWriter(path) as tif:
        for step in (1, 2, 4):
            tif.write(image[::step, ::step], tile=(256, 256), compression="jpeg", photometric="rgb",
                      resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER", subfiletype=int(step > 1))
    with open_slide(path, reader="openslide") as through_openslide, open_slide(path) as through_tifffile:
        assert through_openslide.mpp == through_tifffile.mpp == pytest.approx(0.5)
        assert [lv.shape for lv in through_openslide.levels] == [lv.shape for lv in through_tifffile.levels]
        for index in (0, 1):
            a = through_openslide.levels[index][40:240, 90:530]
            b = through_tifffile.levels[index][40:240, 90:530]
            assert a.shape == b.shape == (200, 440, 3)
            assert np.abs(a.astype(int) - b).max() <= 2  # two JPEG decoders


def test_glass_is_found_and_faint_cells_are_kept(pyramid):
    path, synthetic = pyramid
    with open_slide(path) as slide:
        thumbnail, downsample = slide.thumbnail(max_side=512)
    assert downsample == 8 and thumbnail.shape[:2] == (375, 500)
    mask = tissue_mask(thumbnail)
    # Everything marked lies in the cluster (widened by the smoothing), and most of the
    # cluster's cells, faint cytoplasm included, are marked.
    ys, xs = np.nonzero(mask)
    assert ys.min() * 8 >= 1100 - 16 and ys.max() * 8 < 1100 + 512 + 16
    assert xs.min() * 8 >= 2600 - 16 and xs.max() * 8 < 2600 + 512 + 16
    cells = generate(0, SynthConfig(size=(512, 512), color=True), seed=0).masks().any(axis=0)[::8, ::8]
    assert mask[1100 // 8:1100 // 8 + 64, 2600 // 8:2600 // 8 + 64][cells].mean() > 0.8
    tissue = TissueMap(thumbnail, downsample)
    assert tissue.runs(1000, 2500, 400, 400) and not tissue.runs(0, 0, 1000, 1000)
    assert tissue.runs(500, 1250, 200, 200, level_downsample=2)  # a region of level 1
    assert tissue.skipped_fraction == pytest.approx(1 / 3)


def test_pure_glass_has_no_tissue():
    glass = SyntheticSlide(800, 800).render(0, 0, 800, 800, step=4)
    assert not tissue_mask(glass).any()
    assert not tissue_mask(np.full((50, 50, 3), GLASS, np.uint8)).any()


def test_table_rows_decode_to_their_masks(tmp_path):
    rng = np.random.default_rng(0)
    masks = [rng.random((h, w)) < 0.6 for h, w in ((5, 9), (30, 12), (1, 1))]
    with open_table(tmp_path / "cells.parquet") as table:
        for number, mask in enumerate(masks, start=1):
            table.add(table_row(number, "cytoplasm" if number < 3 else "nucleus", None if number < 3 else 1,
                                0.5 + number / 10, 100 * number, 7, mask))
    rows = pq.read_table(tmp_path / "cells.parquet").to_pylist()
    assert [(r["id"], r["class"], r["parent"], r["x"], r["y"]) for r in rows] == \
        [(1, "cytoplasm", None, 100, 7), (2, "cytoplasm", None, 200, 7), (3, "nucleus", 1, 300, 7)]
    for row, mask in zip(rows, masks):
        decoded = mask_utils.decode({"size": [row["height"], row["width"]], "counts": row["rle"].encode()})
        assert np.array_equal(decoded.astype(bool), mask) and row["area"] == mask.sum()
    # donet's reader gives the same masks, decoded
    decoded = read_table(tmp_path / "cells.parquet")
    assert len(decoded) == len(masks) and all(np.array_equal(row["mask"], mask) for row, mask in zip(decoded, masks))


def test_an_unreadable_slide_is_one_clear_error(tmp_path):
    from donet.errors import DonetError

    (tmp_path / "broken.svs").write_bytes(b"not a tiff")
    with pytest.raises(DonetError, match="not a readable TIFF slide"):
        open_slide(tmp_path / "broken.svs")
    shutil.copy(tmp_path / "broken.svs", tmp_path / "broken.ndpi")
    with pytest.raises(DonetError, match="OpenSlide cannot read it"):
        open_slide(tmp_path / "broken.ndpi")
