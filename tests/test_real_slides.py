"""Real whole-slide files from scanners and other libraries ($DONET_DATA/slides, read in
place), and focal stacks and channels of OME-TIFFs."""

import json

import numpy as np
import pytest
import tifffile
from commands import donet

from donet.errors import DonetError
from donet.io.images import read_image
from donet.io.planes import Planes, fuse
from donet.io.slides import is_slide, open_slide, plausible_mpp


@pytest.mark.parametrize("name, size, mpp", [
    ("CMU-1-Small-Region.svs", (2967, 2220), 0.499),  # Aperio
    ("test3-DAPI-2-(387).ndpi", (4864, 3968), 0.2282),  # Hamamatsu, through OpenSlide
    ("boxes_0.dcm", (16, 16), 0.499),  # DICOM WSI, through OpenSlide
    ("boxes.tiff", (250, 300), None),  # a generic pyramid: OpenSlide's 72-dpi mpp is no pixel size
    ("rand_uint16.ome.tiff", (512, 128), 0.29),  # 16-bit OME pyramid, pixel size from its OME-XML
])
def test_real_slides_open_with_their_size_and_pixel_size(real_slides, name, size, mpp):
    path = real_slides / name
    assert is_slide(path)
    with open_slide(path) as slide:
        assert slide.levels[0].shape[:2] == size
        assert slide.mpp == (pytest.approx(mpp, abs=1e-3) if mpp else None)
        region = slide.levels[-1][:8, :8]
        assert region.shape[:2] == (8, 8) and region.dtype in (np.uint8, np.uint16)
        # Level 0's pixels are what another library reads there (not zeros, BGR or another level).
        height, width = slide.levels[0].shape[:2]
        y, x = height // 2, width // 2
        side = min(64, height - y, width - x)
        ours = np.asarray(slide.levels[0][y:y + side, x:x + side])
        theirs = read_elsewhere(path, y, x, side)
        assert ours.shape == theirs.shape and np.abs(ours.astype(int) - theirs.astype(int)).max() <= 2
    if name == "boxes.tiff":
        with open_slide(path, reader="openslide") as slide:
            assert slide.mpp is None  # OpenSlide says ~352.8 um: 72 dpi


def read_elsewhere(path, y, x, side):
    """Level 0's pixels at (y, x) as OpenSlide reads them (tifffile for an OME-TIFF)."""
    if path.name.endswith(".ome.tiff"):
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            level = series.levels[0].asarray()
            for axis in "CS":  # channels or samples last, as an image's
                if axis in series.axes:
                    level = np.moveaxis(level, series.axes.index(axis), -1)
        return level[y:y + side, x:x + side]
    openslide = pytest.importorskip("openslide")
    with openslide.OpenSlide(str(path)) as other:
        return np.asarray(other.read_region((x, y), 0, (side, side)).convert("RGB"))


def test_print_and_screen_resolutions_are_no_pixel_size():
    assert plausible_mpp(25400 / 72) is None and plausible_mpp(25400 / 300) is None
    assert plausible_mpp(0.25) == 0.25 and plausible_mpp(0.499) == 0.499
    assert plausible_mpp(1e-4) is None


def test_a_corrupt_tile_is_one_error_naming_slide_level_and_region(real_slides):
    with open_slide(real_slides / "unreadable.svs") as slide, pytest.raises(DonetError) as caught:
        slide.levels[0][0:16, 0:16]
    message = str(caught.value)
    assert "unreadable.svs" in message and "level 0, region x=0 y=0 16x16" in message and "\n" not in message


def test_every_real_file_is_segmented_or_refused_in_one_line(real_slides, tmp_path):
    """One run over the small files: the good ones are segmented, each bad one is one
    `error:` line, the exit status is 1, and nothing is written for the bad ones."""
    pytest.importorskip("torch")
    good = ["small.svs", "boxes.tiff", "boxes_0.dcm", "rand_uint16.ome.tiff", "test3-DAPI-2-(387).ndpi"]
    bad = ["broken.svs", "unopenable.tiff", "unreadable.svs"]
    out = tmp_path / "out"
    result = donet("predict", *(real_slides / n for n in good + bad), "--out", out)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("error:")]
    assert sorted(e.split(":")[1].strip().rsplit("/", 1)[-1] for e in errors) == sorted(bad)
    written = {p.name for p in out.iterdir()}
    stems = {"small", "boxes", "boxes_0", "rand_uint16", "test3-DAPI-2-(387)"}
    assert written == {f"{s}.{kind}" for s in stems for kind in ("geojson", "parquet")} | {"settings.json",
                                                                                           "slides.json"}
    # A fluorescence slide (dark background) looks like empty glass: every tile is skipped
    # and the user is told so; the bright-field scan keeps tissue tiles and no warning.
    reports = json.loads((out / "slides.json").read_text())
    dark, bright = reports["test3-DAPI-2-(387)"], reports["small"]
    assert dark["tiles"] > 0 and dark["tiles_run"] == 0 and dark["glass_skipped"] == 1.0
    assert 0 < bright["tiles_run"] <= bright["tiles"] and bright["warning"] is None
    said = " ".join((result.stdout + result.stderr).split())  # the terminal wraps long lines
    skipped = f"test3-DAPI-2-(387): glass detection skipped {dark['tiles']} of {dark['tiles']} tiles"
    assert skipped in said and "--no-skip-glass" in said
    alone = donet("predict", real_slides / "unreadable.svs", "--out", tmp_path / "alone")
    assert alone.returncode == 1 and not (tmp_path / "alone").exists()
    assert alone.stderr.count("error:") == 1 and "Traceback" not in alone.stderr


def test_a_focal_stack_gives_its_middle_plane_first_time_point_and_chosen_channel(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 65535, (2, 7, 3, 40, 50), dtype=np.uint16)  # T, Z, C, Y, X
    tifffile.imwrite(tmp_path / "stack.ome.tif", stack, metadata={"axes": "TZCYX"})
    assert np.array_equal(read_image(tmp_path / "stack.ome.tif"), stack[0, 3, 0])
    assert np.array_equal(read_image(tmp_path / "stack.ome.tif", Planes(channel=2)), stack[0, 3, 2])
    with pytest.raises(DonetError, match="channel 3 does not exist"):
        read_image(tmp_path / "stack.ome.tif", Planes(channel=3))
    colour = rng.integers(0, 255, (5, 40, 50, 3), dtype=np.uint8)  # Z, Y, X, RGB samples
    tifffile.imwrite(tmp_path / "rgb.ome.tif", colour, photometric="rgb", metadata={"axes": "ZYXS"})
    assert np.array_equal(read_image(tmp_path / "rgb.ome.tif"), colour[2])
    assert np.array_equal(read_image(tmp_path / "rgb.ome.tif", Planes(channel=1)), colour[2, ..., 1])


def test_extended_depth_of_field_takes_each_region_from_its_sharp_plane():
    from scipy import ndimage

    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 255, (64, 96)).astype(np.float32)
    blurred = ndimage.gaussian_filter(sharp, 3)
    # Plane 0 is in focus on the left, plane 1 on the right.
    stack = np.stack([np.where(np.arange(96) < 48, sharp, blurred), np.where(np.arange(96) < 48, blurred, sharp)])
    fused = fuse(stack.astype(np.uint8))
    inner = np.s_[8:-8]
    assert np.array_equal(fused[inner, 8:40], sharp.astype(np.uint8)[inner, 8:40])
    assert np.array_equal(fused[inner, 56:88], sharp.astype(np.uint8)[inner, 56:88])
    assert np.abs(fused.astype(float) - sharp).mean() < np.abs(stack[0] - sharp).mean() / 3
