"""`donet demo` end to end at a toy budget: every stage runs and the report's pictures exist."""

import csv
import json
import re
import subprocess
import sys


def test_demo_writes_a_report_whose_pictures_exist(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "donet", "demo", "--out", str(out), "--iterations", "10",
                          "--images", "2"], capture_output=True, text=True)
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
    pictures = re.findall(r'src="([^"]+)"', report)
    assert len(pictures) >= 4 and all((out / p).is_file() for p in pictures if not p.startswith("data:"))
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
