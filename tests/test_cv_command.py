"""`donet cv` end to end at the smallest budget: a finished fold is kept on --resume, the other
is trained and scored on its own held-out images, and the table shows the folds' mean and
spread."""

import json
import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from donet import cross_validation
from donet.cli import app
from donet.cross_validation import folds_of
from donet.evaluation import evaluate, json_safe
from donet.io import open_dataset


def test_cv_keeps_a_finished_fold_trains_the_other_and_reports_mean_and_spread(tmp_path, monkeypatch):
    seen = {}
    train, evaluate_model = cross_validation.train, cross_validation.evaluate_model

    def training(config, out, resume, train_data, device):
        seen["trained"] = [train_data[i].name for i in range(len(train_data))]
        seen["devices"] = [device]
        return train(config, out, resume=resume, train_data=train_data, device=device)

    def evaluating(model, truth, device):
        seen["scored"] = [truth[i].name for i in range(len(truth))]
        seen["devices"].append(device)
        return evaluate_model(model, truth, device)

    monkeypatch.setattr(cross_validation, "train", training)
    monkeypatch.setattr(cross_validation, "evaluate_model", evaluating)
    runner = CliRunner()
    made = runner.invoke(app, ["synth", str(tmp_path / "data"), "--n", "4", "--size", "96", "96", "--cells", "2", "3"])
    assert made.exit_code == 0, made.output
    data = open_dataset(tmp_path / "data")
    held_out = folds_of(len(data), 2, 0)
    # Fold 0 is finished (its ground truth found perfectly): --resume keeps it as it is.
    perfect = evaluate([data[i] for i in held_out[0]], {data[i].name: data[i].instances for i in held_out[0]})
    (tmp_path / "cv" / "fold_0").mkdir(parents=True)
    (tmp_path / "cv" / "fold_0" / "evaluation.json").write_text(json.dumps(json_safe(perfect)))
    done = runner.invoke(app, ["cv", str(tmp_path / "data"), "--out", str(tmp_path / "cv"), "--folds", "2",
                               "--iterations", "1", "--preset", "maskrcnn", "--resume", "--device", "cpu"],
                         catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert not (tmp_path / "cv" / "fold_0" / "model.safetensors").exists()  # not trained again
    assert (tmp_path / "cv" / "fold_1" / "model.safetensors").is_file()
    fold_1 = json.loads((tmp_path / "cv" / "fold_1" / "evaluation.json").read_text())
    # Trained on fold 0's images, scored on its own held-out images only.
    assert seen == {"trained": [data.names[i] for i in held_out[0]], "scored": [data.names[i] for i in held_out[1]],
                    "devices": ["cpu", "cpu"]}  # --device reaches training and scoring
    assert fold_1["images"] == len(held_out[1])
    assert fold_1["images_without_predictions"] == 0
    summary = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert summary["folds"] == 2 and summary["per_fold"] == [json_safe(perfect), fold_1]
    ap = [perfect["classes"]["cytoplasm"]["coco"]["ap"], fold_1["classes"]["cytoplasm"]["coco"]["ap"]]
    assert ap[0] == 1.0 and ap[1] < 0.5  # a one-iteration model finds no cell
    assert summary["summary"]["cytoplasm"]["coco"]["ap"] == {"mean": np.mean(ap), "std": np.std(ap)}
    # The table: every metric as mean ± spread over the folds, in percent.
    row = re.search(r"mAP\s*│\s*([\d.]+) ± ([\d.]+)", done.output)
    assert row and (float(row.group(1)), float(row.group(2))) == (round(100 * np.mean(ap), 2),
                                                                  round(100 * np.std(ap), 2))
    fn_o = [fold["classes"]["cytoplasm"]["isbi"]["fn_o"] for fold in (perfect, fold_1)]
    assert not any(math.isnan(v) for v in fn_o)
    assert re.search(rf"ISBI FN_o\s*│\s*{np.mean(fn_o):.2f} ± {np.std(fn_o):.2f}", done.output)


def test_the_summary_is_the_mean_and_spread_of_the_folds_a_fold_without_a_value_left_out():
    folds = [{"classes": {"cytoplasm": {"ap": value, "ar": 0.5}}} for value in (0.2, 0.6, math.nan, 1.0)]
    summary = cross_validation.summarize(folds)
    population_std = math.sqrt(0.32 / 3)
    assert summary["cytoplasm"]["ap"] == {"mean": pytest.approx(0.6), "std": pytest.approx(population_std)}
    assert summary["cytoplasm"]["ar"] == {"mean": 0.5, "std": 0.0}
    none = cross_validation.summarize([{"classes": {"nucleus": {"ap": math.nan}}}] * 2)["nucleus"]["ap"]
    assert math.isnan(none["mean"]) and math.isnan(none["std"])
