"""`donet demo` end to end at a toy budget: every stage runs, and the report shows each held-out
image's truth, predictions, heatmaps and attention map."""

import csv
import html
import json
import re
import subprocess
import sys

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

from donet.data import CellClass
from donet.io import open_dataset
from pictures import check_overlay, decode_colours


def picture(path):
    return np.asarray(Image.open(path).convert("RGB"))


def check_report_pictures(out, report, predictions):
    """Each held-out image shown (four) has its own truth and predictions outlined, and heatmaps
    and an attention map of its size; the heatmap reaches the mask threshold on its predicted cells."""
    truth = {sample.name: sample for sample in open_dataset(out / "data" / "val")}
    figures = re.findall(r"<h3>([^<]+)</h3><div class=\"row\">(.*?)</div>", report)
    assert [name for name, _ in figures] == list(truth)[:4]
    ids = {image["file_name"].rsplit("/", 1)[-1].removesuffix(".png"): image["id"] for image in predictions["images"]}
    for name, row in figures:
        sources = {html.unescape(label): src for src, label in re.findall(r'<img src="([^"]+)" alt="([^"]+)"', row)}
        assert list(sources.values()) == [f"predictions/{name}_{kind}.png"
                                          for kind in ("truth", "overlay", "heatmaps", "attention")]
        sample = truth[name]
        check_overlay(picture(out / sources["ground truth"]), sample.image, list(sample.masks()),
                      [i.category is CellClass.CYTOPLASM for i in sample.instances])
        found = [a for a in predictions["annotations"] if a["image_id"] == ids[name]]
        masks = [mask_utils.decode(a["segmentation"]).astype(bool) for a in found]
        is_cell = [a["category_id"] == int(CellClass.CYTOPLASM) for a in found]
        check_overlay(picture(out / sources["prediction (score >= 0.5)"]), sample.image, masks, is_cell)
        height, width = sample.size
        panel = picture(out / sources["intersection / complement / recombined (Fig. 6)"])
        assert panel.shape == (height + 18, 3 * width, 3)
        recombined = decode_colours(panel[18:, 2 * width:])
        cells = np.any([m for m, c in zip(masks, is_cell) if c] or [np.zeros(sample.size, bool)], axis=0)
        assert (recombined[ndimage.binary_erosion(cells, np.ones((3, 3)))] >= 0.49).all()
        assert (recombined[~ndimage.binary_dilation(cells, np.ones((3, 3)))] < 0.51).all()
        attention = decode_colours(picture(out / sources["MRP attention map (Fig. 3)"]), 0.5, 1.0)
        assert attention.shape == sample.size


def test_demo_writes_a_report_that_shows_every_stage(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "donet", "demo", "--out", str(out), "--iterations", "10",
                          "--images", "2", "--device", "cpu"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    # The demo's figures are those `donet evaluate` computes from its model and data.
    rerun = subprocess.run([sys.executable, "-m", "donet", "evaluate", "--model", str(out / "run" / "model.safetensors"),
                            "--gt", str(out / "data" / "val"), "--paper-threshold", "0.5", "--device", "cpu",
                            "--out", str(tmp_path / "again.json")], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads((out / "evaluation.json").read_text())
    predictions = json.loads((out / "predictions" / "predictions.json").read_text())
    assert len(predictions["images"]) == len(list((out / "data" / "val" / "images").glob("*.png")))
    report = (out / "report.html").read_text()
    check_report_pictures(out, report, predictions)
    assert "<svg" in report and (out / "evaluation.json").is_file() and (out / "run" / "model.safetensors").is_file()
    # The N/C histogram counts the cells with a nucleus that measurements.csv lists.
    rows = list(csv.DictReader(open(out / "predictions" / "measurements.csv")))
    with_nucleus = sum(row["class"] == "cell" and row["nuclei"] != "0" for row in rows)
    shown = re.search(r"N/C ratio of predicted cells with a nucleus: (\d+) cells", report)
    assert (int(shown.group(1)) if shown else 0) == with_nucleus
    assert "flat truth, overlapped" in report

    again = subprocess.run([sys.executable, "-m", "donet", "demo", "--out", str(out), "--iterations", "3"],
                           capture_output=True, text=True)
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
