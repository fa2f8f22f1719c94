"""`donet predict` end to end: every export written, bad images and checkpoints reported."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import roifile
import tifffile
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

import donet
import donet.inference
from donet.data import CellClass, SynthConfig, generate


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
                       "--geojson", "--imagej", "--labels", "--overlay", "--heatmaps", "--measure")
    assert result.returncode == 1  # one image failed...
    assert "broken.png" in result.stderr and "not a readable image" in result.stderr
    out = tmp_path / "out"  # ...the others are written
    coco = COCO(str(out / "predictions.json"))
    # The settings, declared once, are recorded beside the predictions.
    assert json.loads((out / "settings.json").read_text()) == {**donet.inference.InferenceSettings().model_dump(),
                                                                "score_threshold": 0.0}
    # The real input files, relative to the output folder.
    assert {img["file_name"] for img in coco.dataset["images"]} == {"../in/a.png", "../in/b16.tif", "../in/c.jpg"}
    for name in ("a", "b16", "c"):
        for suffix in (".geojson", "_rois.zip", "_cytoplasm_layers.tif", "_overlay.png", "_heatmaps.png",
                       "_attention.png"):
            assert (out / f"{name}{suffix}").is_file(), f"{name}{suffix}"
    # Every export holds the same cells as predictions.json.
    image_id = next(i["id"] for i in coco.dataset["images"] if i["file_name"].endswith("a.png"))
    cells = [mask_utils.decode(coco.annToRLE(a)).astype(bool) for a in coco.loadAnns(coco.getAnnIds([image_id]))
             if a["category_id"] == int(CellClass.CYTOPLASM)]
    assert len(cells) > 1
    stack = tifffile.imread(out / "a_cytoplasm_layers.tif").reshape(-1, 128, 160)
    from_stack = [(stack == label).any(axis=0) for label in np.unique(stack) if label]
    assert sorted(m.tobytes() for m in from_stack) == sorted(m.tobytes() for m in cells)
    features = json.loads((out / "a.geojson").read_text())["features"]
    assert sum(f["properties"]["objectType"] == "cell" for f in features) == len(cells)
    assert sum(r.name.startswith("cell-") and "-" not in r.name[5:] for r in roifile.roiread(out / "a_rois.zip")) \
        == len(cells)
    # Measurements: a row per cell (its whole mask's area) and per nucleus of no cell, also in the GeoJSON.
    rows = [r for r in csv.DictReader(open(out / "measurements.csv")) if r["image"] == "a"]
    nuclei = [a for a in coco.loadAnns(coco.getAnnIds([image_id])) if a["category_id"] == int(CellClass.NUCLEUS)]
    assert [r["class"] for r in rows].count("cell") == len(cells)
    assert [r["class"] for r in rows].count("nucleus") == sum(a.get("parent_id") is None for a in nuclei)
    assert sorted(float(r["area"]) for r in rows if r["class"] == "cell") == sorted(float(m.sum()) for m in cells)
    for row in rows:
        if row["class"] == "cell" and row["nuclei"] != "0":
            assert float(row["nc_ratio"]) == pytest.approx(float(row["nucleus_area"]) / float(row["area"]))
    measured = [f["properties"]["measurements"] for f in features if f["properties"]["objectType"] == "cell"]
    assert all({"area", "nc_ratio", "overlapped_fraction", "solidity"} <= m.keys() for m in measured)
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
