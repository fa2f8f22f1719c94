"""`donet predict` and its exports on a synthetic image with overlapping cells."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import roifile
import tifffile
import torch
from PIL import Image, ImageDraw
from scipy import ndimage
from pycocotools.coco import COCO

import donet
from donet.atomic import atomic_path
from donet.data import CellClass, SynthConfig, generate
from donet.export.imagej import write_roi_zip
from donet.export.label_stack import label_stack, write_label_stack
from donet.export.polygons import mask_polygons
from donet.export.qupath import to_geojson


@pytest.fixture(scope="module")
def truth():
    """Ground truth with overlapping cells stands in for a prediction: exports must keep it."""
    sample = generate(0, SynthConfig(size=(256, 320), cells=(5, 5), clusters=(1, 1), overlap=(0.2, 0.3),
                                     cell_radius=(0.15, 0.2)), seed=2)
    for k, inst in enumerate(sample.instances):
        inst.score = 0.5 + 0.05 * k
    return sample


def overlapping_pairs(masks):
    return sum((a & b).any() for i, a in enumerate(masks) for b in masks[i + 1:])


def test_polygons_trace_the_mask():
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:20] = True
    (polygon,) = mask_polygons(mask)
    assert polygon[:, 0].min() == pytest.approx(10, abs=0.51) and polygon[:, 0].max() == pytest.approx(20, abs=0.51)
    assert polygon[:, 1].min() == pytest.approx(5, abs=0.51) and polygon[:, 1].max() == pytest.approx(15, abs=0.51)


def test_geojson_cells_carry_their_nucleus_and_overlaps_survive(truth):
    collection = json.loads(json.dumps(to_geojson(truth)))  # valid JSON round trip
    assert collection["type"] == "FeatureCollection"
    cells = [f for f in collection["features"] if f["properties"]["objectType"] == "cell"]
    assert len(cells) == 5 and all(f["nucleusGeometry"]["type"] in ("Polygon", "MultiPolygon") for f in cells)
    for feature in collection["features"]:
        ring = feature["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) >= 4
    rasters = []
    for feature in cells:
        canvas = Image.new("1", (320, 256))
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in feature["geometry"]["coordinates"][0]], fill=1)
        rasters.append(np.asarray(canvas))
    assert overlapping_pairs(rasters) == overlapping_pairs([c.mask for c in truth.cells]) > 0


def test_roi_zip_reads_back_with_roifile(truth, tmp_path):
    count = write_roi_zip(tmp_path / "r.zip", truth)
    rois = roifile.roiread(tmp_path / "r.zip")
    assert len(rois) == count >= 10
    names = [r.name for r in rois]
    assert sum(n.startswith("cell-") for n in names) == 5 and all("-of-cell-" in n for n in names if "nucleus" in n)
    with zipfile.ZipFile(tmp_path / "r.zip") as archive:
        assert archive.testzip() is None
    # Each outline, filled, is its instance's mask to within 2 pixels (outlines are simplified).
    by_id = {inst.id: inst for inst in truth.instances}
    for roi in rois:
        canvas = Image.new("1", (320, 256))
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in roi.coordinates()], fill=1)
        filled, mask = np.asarray(canvas), by_id[int(roi.name.split("-")[1])].mask
        assert not (ndimage.binary_erosion(mask, iterations=2) & ~filled).any(), roi.name
        assert not (filled & ~ndimage.binary_dilation(mask, iterations=2)).any(), roi.name


def test_temporary_names_keep_the_suffix_writers_choose_formats_by(tmp_path):
    """roifile 2026.11 refuses to write several ROIs unless the name ends in .zip."""
    with atomic_path(tmp_path / "img_rois.zip") as tmp:
        assert tmp.name.endswith(".zip") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "img_rois.zip").read_bytes() == b"x" and len(list(tmp_path.iterdir())) == 1


def test_label_stack_keeps_every_cell_whole(truth, tmp_path):
    stack = label_stack(truth, CellClass.CYTOPLASM)
    assert len(stack) >= 2  # overlapping cells need a second plane
    for cell in truth.cells:
        assert np.array_equal((stack == cell.id).any(axis=0), cell.mask)
    write_label_stack(tmp_path / "l.tif", truth, CellClass.CYTOPLASM)
    assert np.array_equal(tifffile.imread(tmp_path / "l.tif"), stack)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    donet.save_weights(donet.build_model("donet", min_size=128, max_size=256), path)
    return path


def donet_cli(*args):
    return subprocess.run([sys.executable, "-m", "donet", *map(str, args)], capture_output=True, text=True)


def test_predict_writes_every_export_and_reports_bad_images(checkpoint, tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    gray = generate(1, SynthConfig(size=(128, 160)), seed=0).image
    Image.fromarray(gray).save(images / "a.png")
    tifffile.imwrite(images / "b16.tif", gray.astype(np.uint16) * 200)
    Image.fromarray(np.stack([gray] * 3, -1)).save(images / "c.jpg")
    (images / "broken.png").write_bytes(b"not an image")
    result = donet_cli("predict", images, "--model", checkpoint, "--out", tmp_path / "out", "--score-threshold", 0.0,
                       "--geojson", "--imagej", "--labels", "--overlay", "--heatmaps")
    assert result.returncode == 1  # one image failed...
    assert "broken.png" in result.stderr and "not a readable image" in result.stderr
    out = tmp_path / "out"  # ...the others are written
    coco = COCO(str(out / "predictions.json"))
    # The real input files, relative to the output folder.
    assert {img["file_name"] for img in coco.dataset["images"]} == {"../in/a.png", "../in/b16.tif", "../in/c.jpg"}
    for name in ("a", "b16", "c"):
        for suffix in (".geojson", "_rois.zip", "_cytoplasm_layers.tif", "_overlay.png", "_heatmaps.png",
                       "_attention.png"):
            assert (out / f"{name}{suffix}").is_file(), f"{name}{suffix}"
    again = donet_cli("predict", images / "a.png", "--model", checkpoint, "--out", out)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_predict_leaves_nothing_when_no_image_could_be_segmented(checkpoint, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "empty.tif").write_bytes(b"")
    result = donet_cli("predict", tmp_path / "broken.png", tmp_path / "empty.tif", "--model", checkpoint,
                       "--out", tmp_path / "out")
    assert result.returncode == 1 and "none of the 2 images" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png", "empty.tif"]


def test_predict_refuses_a_corrupt_or_foreign_checkpoint(checkpoint, tmp_path):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "bad.safetensors").write_bytes(checkpoint.read_bytes()[:1000])
    result = donet_cli("predict", tmp_path / "a.png", "--model", tmp_path / "bad.safetensors", "--out", tmp_path / "o")
    assert result.returncode == 1 and "not a readable" in result.stderr and not (tmp_path / "o").exists()
