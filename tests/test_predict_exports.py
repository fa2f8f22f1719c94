"""`donet predict` end to end: every export written, bad images and checkpoints reported."""

import csv
import json

import numpy as np
import pytest
import roifile
import tifffile
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from scipy import ndimage

import donet
import donet.inference
from donet.data import CellClass, SynthConfig, generate
from commands import donet as donet_cli
from pictures import check_overlay, decode_colours


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    donet.save_weights(donet.build_model("donet", min_size=128, max_size=256), path)
    return path


def check_pictures(out, name, image, masks, is_cell):
    """The overlay outlines exactly the predicted instances; the recombined heatmap reaches the
    mask threshold exactly on the predicted cells; the attention map rises only near them."""
    check_overlay(np.asarray(Image.open(out / f"{name}_overlay.png").convert("RGB")), image, masks, is_cell)
    height, width = masks[0].shape
    panel = np.asarray(Image.open(out / f"{name}_heatmaps.png").convert("RGB"))
    assert panel.shape == (height + 18, 3 * width, 3)
    recombined = decode_colours(panel[18:, 2 * width:])
    union = np.any([m for m, c in zip(masks, is_cell) if c], axis=0)
    # The map reaches the mask threshold on the cells and nowhere else, within the pixel by
    # which the heatmap's paste may differ from the instances' (see test_probability_maps).
    # (An untrained model's cells may cover the whole image: then there is no outside.)
    assert recombined[ndimage.binary_erosion(union, np.ones((3, 3)))].min() >= 0.49
    assert (recombined[~ndimage.binary_dilation(union, np.ones((3, 3)))] < 0.51).all()
    attention = decode_colours(np.asarray(Image.open(out / f"{name}_attention.png").convert("RGB")), 0.5, 1.0)
    assert attention.shape == (height, width) and attention.max() > 0.6 and union.flat[attention.argmax()]
    assert (attention[~ndimage.binary_dilation(union, iterations=8)] == 0.5).all()


def test_predict_writes_every_export_and_reports_bad_images(checkpoint, tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    gray = generate(1, SynthConfig(size=(128, 160)), seed=0).image
    Image.fromarray(gray).save(images / "a.png")
    tifffile.imwrite(images / "b16.tif", gray.astype(np.uint16) * 200)
    Image.fromarray(np.stack([gray] * 3, -1)).save(images / "c.jpg")
    (images / "broken.png").write_bytes(b"not an image")
    result = donet_cli("predict", images, "--model", checkpoint, "--out", tmp_path / "out", "--score-threshold", 0.0,
                       "--device", "cpu", "--geojson", "--imagej", "--labels", "--overlay", "--heatmaps", "--measure")
    assert result.returncode == 1  # one image failed...
    assert "broken.png" in result.stderr and "not a readable image" in result.stderr
    out = tmp_path / "out"  # ...the others are written
    coco = COCO(str(out / "predictions.json"))
    # The settings, declared once, are recorded beside the predictions.
    assert json.loads((out / "settings.json").read_text()) == {**donet.inference.InferenceSettings().model_dump(),
                                                                "score_threshold": 0.0, "device": "cpu"}
    # The real input files, relative to the output folder.
    assert {img["file_name"] for img in coco.dataset["images"]} == {"../in/a.png", "../in/b16.tif", "../in/c.jpg"}
    for name in ("a", "b16", "c"):
        for suffix in (".geojson", "_rois.zip", "_cytoplasm_layers.tif", "_overlay.png", "_heatmaps.png",
                       "_attention.png"):
            assert (out / f"{name}{suffix}").is_file(), f"{name}{suffix}"
    # Every export of every image holds the cells of predictions.json, and the pictures show them.
    shown = {"a": gray, "b16": gray.astype(np.uint16) * 200,
             "c": np.asarray(Image.open(images / "c.jpg").convert("RGB"))}
    for name, file_name in (("a", "a.png"), ("b16", "b16.tif"), ("c", "c.jpg")):
        image_id = next(i["id"] for i in coco.dataset["images"] if i["file_name"].endswith(file_name))
        annotations = coco.loadAnns(coco.getAnnIds([image_id]))  # in the image's instance order
        masks = [mask_utils.decode(coco.annToRLE(a)).astype(bool) for a in annotations]
        is_cell = [a["category_id"] == int(CellClass.CYTOPLASM) for a in annotations]
        cells = [m for m, c in zip(masks, is_cell) if c]
        assert len(cells) > 1
        stack = tifffile.imread(out / f"{name}_cytoplasm_layers.tif").reshape(-1, 128, 160)
        from_stack = [(stack == label).any(axis=0) for label in np.unique(stack) if label]
        assert sorted(m.tobytes() for m in from_stack) == sorted(m.tobytes() for m in cells)
        features = json.loads((out / f"{name}.geojson").read_text())["features"]
        assert sum(f["properties"]["objectType"] == "cell" for f in features) == len(cells)
        assert sum(r.name.startswith("cell-") and "-" not in r.name[5:]
                   for r in roifile.roiread(out / f"{name}_rois.zip")) == len(cells)
        check_pictures(out, name, shown[name], masks, is_cell)
    image_id = next(i["id"] for i in coco.dataset["images"] if i["file_name"].endswith("a.png"))
    cells = [mask_utils.decode(coco.annToRLE(a)).astype(bool) for a in coco.loadAnns(coco.getAnnIds([image_id]))
             if a["category_id"] == int(CellClass.CYTOPLASM)]
    features = json.loads((out / "a.geojson").read_text())["features"]
    # Measurements: a row per cell (its whole mask's area) and per nucleus of no cell, also in the GeoJSON.
    rows = [r for r in csv.DictReader(open(out / "measurements.csv")) if r["image"] == "a"]
    nuclei = [a for a in coco.loadAnns(coco.getAnnIds([image_id])) if a["category_id"] == int(CellClass.NUCLEUS)]
    assert [r["class"] for r in rows].count("cell") == len(cells)
    assert [r["class"] for r in rows].count("nucleus") == sum(a.get("parent_id") is None for a in nuclei)
    assert sorted(float(r["area"]) for r in rows if r["class"] == "cell") == sorted(float(m.sum()) for m in cells)
    # A cell's row, by its id (image a comes first, so its annotation ids are its instance ids),
    # counts the nuclei predictions.json links to it, and their area.
    annotations = {a["id"]: a for a in coco.loadAnns(coco.getAnnIds([image_id]))}
    linked = [n for n in nuclei if n.get("parent_id") is not None]
    assert linked
    for row in (r for r in rows if r["class"] == "cell"):
        cell = annotations[int(row["id"])]
        assert cell["category_id"] == int(CellClass.CYTOPLASM) and float(row["area"]) == cell["area"]
        own = [n for n in linked if n["parent_id"] == cell["id"]]
        assert int(row["nuclei"]) == len(own)
        assert float(row["nucleus_area"]) == pytest.approx(sum(n["area"] for n in own))
        if own:
            assert float(row["nc_ratio"]) == pytest.approx(sum(n["area"] for n in own) / cell["area"])
    measured = [f["properties"]["measurements"] for f in features if f["properties"]["objectType"] == "cell"]
    assert all({"area", "nc_ratio", "overlapped_fraction", "solidity"} <= m.keys() for m in measured)
    assert sorted(m["area"] for m in measured) == sorted(float(r["area"]) for r in rows if r["class"] == "cell")
    summaries = list(csv.DictReader(open(out / "measurements_summary.csv")))
    assert [s["image"] for s in summaries] == ["a", "b16", "c"] and summaries[0]["cells"] == str(len(cells))
    again = donet_cli("predict", images / "a.png", "--model", checkpoint, "--out", out)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_predict_leaves_nothing_when_no_image_could_be_segmented(checkpoint, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "empty.tif").write_bytes(b"")
    result = donet_cli("predict", tmp_path / "broken.png", tmp_path / "empty.tif", "--model", checkpoint,
                       "--out", tmp_path / "out")
    assert result.returncode == 1 and "none of the 2 images" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png", "empty.tif"]


@pytest.mark.parametrize("options, problem", [(["--tile", 256, "--overlap", 300], "overlap must be smaller"),
                                              (["--score-threshold", 1.5], "score_threshold"),
                                              (["--diameter", -3], "diameter"),
                                              (["--device", "tpu"], "device")])
def test_predict_refuses_bad_settings_in_one_line_before_writing(checkpoint, tmp_path, options, problem):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "a.png")
    result = donet_cli("predict", tmp_path / "a.png", "--model", checkpoint, "--out", tmp_path / "o", *options)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error:") and problem in lines[0]
    assert not (tmp_path / "o").exists()


def test_predict_refuses_a_corrupt_or_foreign_checkpoint(checkpoint, tmp_path):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "bad.safetensors").write_bytes(checkpoint.read_bytes()[:1000])
    result = donet_cli("predict", tmp_path / "a.png", "--model", tmp_path / "bad.safetensors", "--out", tmp_path / "o")
    assert result.returncode == 1 and "not a readable" in result.stderr and not (tmp_path / "o").exists()
