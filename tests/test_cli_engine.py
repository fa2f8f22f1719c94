"""`donet evaluate` and `donet cv` end to end on tiny synthetic data."""

import json

import numpy as np
import pytest
from commands import donet

from donet.atomic import atomic_dir
from donet.data import SynthConfig, generate
from donet.io import write_dataset
from donet.io.coco import write_predictions


def test_evaluate_ground_truth_against_itself_is_perfect(tmp_path):
    samples = [generate(i, SynthConfig(size=(128, 160), cells=(2, 4)), seed=0) for i in range(3)]
    with atomic_dir(tmp_path / "gt") as folder:
        write_dataset(folder, samples)
    write_predictions(tmp_path / "pred.json", {s.name: s.instances for s in samples}, {s.name: s.size for s in samples})
    result = donet("evaluate", tmp_path / "pred.json", "--gt", tmp_path / "gt", "--out", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    assert "AJI (Kumar)" in result.stdout and "ISBI FN_o" in result.stdout
    figures = json.loads((tmp_path / "r.json").read_text())
    for class_name in ("cytoplasm", "nucleus"):
        assert figures["classes"][class_name]["coco"]["ap"] == 1.0
        assert figures["classes"][class_name]["paper"] == {"f1": 1.0, "aji": 1.0, "dice": 1.0}
    (tmp_path / "other.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "nope.png", "height": 128,
                                                                 "width": 160}], "annotations": []}))
    bad = donet("evaluate", tmp_path / "other.json", "--gt", tmp_path / "gt")
    assert bad.returncode == 1 and "not in the ground truth" in bad.stderr and "Traceback" not in bad.stderr


def test_cross_validation_reports_mean_and_spread(tmp_path):
    assert donet("synth", tmp_path / "data", "--n", 4, "--size", 128, 128, "--cells", 2, 3).returncode == 0
    config = {"preset": "maskrcnn", "size": "light", "model": {"min_size": 128, "max_size": 128},
              "train": {"path": str(tmp_path / "data")}, "iterations": 2, "base_lr": 0.01, "warmup_iterations": 1,
              "lr_steps": [], "train_scales": [1.0], "checkpoint_period": 2}
    from donet.cross_validation import cross_validate, folds_of
    from donet.io import open_dataset
    from donet.training import TrainConfig

    assert sorted(sum(folds_of(7, 3, 0), [])) == list(range(7)) and [len(f) for f in folds_of(7, 3, 0)] == [3, 2, 2]
    assert folds_of(7, 3, 0) == folds_of(7, 3, 0) != folds_of(7, 3, 1)  # seeded: reproducible, and the seed counts
    summary = cross_validate(TrainConfig(**config), open_dataset(tmp_path / "data"), 2, tmp_path / "cv")
    assert len(summary["per_fold"]) == 2
    per_fold = [fold["classes"]["cytoplasm"]["coco"]["ap"] for fold in summary["per_fold"]]
    cell = summary["summary"]["cytoplasm"]["coco"]["ap"]
    assert cell == {"mean": pytest.approx(np.mean(per_fold)), "std": pytest.approx(np.std(per_fold))}
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["folds"] == 2
