import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from donet.atomic import atomic_dir
from donet.data import SynthConfig, generate
from donet.io import write_dataset
from donet.errors import DonetError
from donet.training import DataSpec, RunPaths, TrainConfig, TrainingDiverged, train
from donet.training import trainer as trainer_module
from donet.training.augment import photometric_jitter
from donet.training.schedule import warmup_multistep
from donet.modeling.weights import read_checkpoint

SMALL_MODEL = {"min_size": 128, "max_size": 128}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    config = SynthConfig(size=(128, 128), cells=(2, 3), cell_radius=(0.15, 0.22), mimics=(0, 2))
    with atomic_dir(root / "synth") as folder:
        write_dataset(folder, (generate(i, config, seed=3) for i in range(6)))
    return root / "synth"


def config_for(data: Path, **changes) -> TrainConfig:
    settings = dict(preset="donet", size="light", model=SMALL_MODEL, train=DataSpec(path=str(data)),
                    iterations=12, base_lr=0.01, warmup_iterations=4, lr_steps=(8, 10), train_scales=(0.875, 1.0),
                    checkpoint_period=4, log_period=2, eval_period=100, clip_grad_norm=10.0)
    return TrainConfig(**{**settings, **changes})


def test_photometric_jitter_stays_in_range_and_within_its_bounds():
    image = torch.rand(3, 64, 64) * 0.5 + 0.25
    means, spreads = [], []
    for seed in range(200):
        jittered = photometric_jitter(image, np.random.default_rng(seed), brightness=0.1, contrast=0.2)
        assert 0 <= jittered.min() and jittered.max() <= 1
        means.append(float(jittered.mean() - image.mean()))
        spreads.append(float(jittered.std() / image.std()))
    assert max(map(abs, means)) <= 0.1 + 1e-6 and max(means) > 0.05 and min(means) < -0.05
    assert 0.8 - 1e-6 <= min(spreads) < 0.9 and 1.1 < max(spreads) <= 1.2 + 1e-6
    unchanged = photometric_jitter(image, np.random.default_rng(0), brightness=0.0, contrast=0.0)
    assert torch.allclose(unchanged, image)


def test_warmup_then_steps():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = warmup_multistep(optimizer, warmup_iterations=10, warmup_factor=0.1, steps=(20, 30), gamma=0.1)
    factors = []
    for _ in range(35):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert factors[0] == pytest.approx(0.1) and factors[5] == pytest.approx(0.55) and factors[10] == 1.0
    assert factors[19] == 1.0 and factors[20] == pytest.approx(0.1) and factors[34] == pytest.approx(0.01)


class Killed(Exception):
    pass


def test_a_run_killed_between_checkpoints_resumes_to_the_same_result(synthetic, tmp_path):
    torch.set_num_threads(1)  # bitwise-repeatable kernels for the comparison
    whole = train(config_for(synthetic), tmp_path / "whole")
    assert whole["completed"] and whole["iterations"] == 12

    def crash(iteration, _record):
        if iteration == 6:
            raise Killed  # mid-way between the checkpoints at 4 and 8

    with pytest.raises(Killed):
        train(config_for(synthetic), tmp_path / "killed", on_step=crash)
    paths = RunPaths(tmp_path / "killed")
    assert paths.last_checkpoint().name == "iter_0000004" and not paths.final.exists()
    resumed = train(None, tmp_path / "killed", resume=True)
    assert resumed["completed"] and resumed["iterations"] == 12
    a, _ = read_checkpoint(tmp_path / "whole" / "model.safetensors")
    b, _ = read_checkpoint(paths.final)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    lr = [json.loads(line)["lr"] for line in paths.metrics.read_text().splitlines()]
    lr_whole = [json.loads(line)["lr"] for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert lr[-1] == pytest.approx(lr_whole[-1]) == pytest.approx(0.01 * 0.1 ** 2)
    assert sorted(p.name for p in paths.checkpoints.glob("iter_*")) == ["iter_0000008", "iter_0000012"]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(synthetic, tmp_path, monkeypatch):
    build = trainer_module.build_model

    def poisoned(*args, **kwargs):
        model = build(*args, **kwargs)
        forward, calls = model.forward, []

        def forward_with_nan(images, targets=None):
            losses = forward(images, targets)
            calls.append(1)
            if len(calls) == 7:
                losses["loss_mask"] = losses["loss_mask"] * float("nan")
            return losses

        model.forward = forward_with_nan
        return model

    monkeypatch.setattr(trainer_module, "build_model", poisoned)
    with pytest.raises(TrainingDiverged, match="loss became nan at iteration 6") as caught:
        train(config_for(synthetic), tmp_path / "run")
    assert "iteration 4" in str(caught.value)
    assert RunPaths(tmp_path / "run").last_checkpoint().name == "iter_0000004"


def test_existing_run_folder_is_never_overwritten(synthetic, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(DonetError, match="already exists"):
        train(config_for(synthetic), tmp_path / "run")
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"


def test_validation_keeps_the_best_checkpoint_and_logs_every_protocol(synthetic, tmp_path):
    config = config_for(synthetic, iterations=4, eval_period=2, val=DataSpec(path=str(synthetic)))
    summary = train(config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if r["kind"] == "validation"]
    assert [r["iteration"] for r in validations] == [2, 4]
    assert summary["best"]["iteration"] in (2, 4) and (tmp_path / "run" / "best.safetensors").is_file()
    assert {"coco", "paper", "standard", "isbi"} <= validations[0]["results"]["cytoplasm"].keys()


@pytest.mark.slow
def test_two_process_gloo_run_writes_one_checkpoint(synthetic, tmp_path):
    config = config_for(synthetic, iterations=3, checkpoint_period=3, batch_size=1)
    config.save(tmp_path / "config.json")
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "donet", "train", "--config",
                             str(tmp_path / "config.json"), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    paths = RunPaths(tmp_path / "run")
    assert [p.name for p in paths.checkpoints.glob("iter_*")] == ["iter_0000003"]
    assert paths.final.is_file()
    shutil.rmtree(tmp_path / "run")


def test_jitter_options_reach_the_config_and_bad_values_are_refused(synthetic):
    from donet.cli import _train_config

    def options(**jitter):
        return _train_config("donet", "light", synthetic, None, None, None, None, None, 10, 0, None, None, 0.0,
                             None, **jitter)

    default = options()
    assert (default.brightness, default.contrast) == (0.1, 0.2)
    assert (options(brightness=0.0, contrast=0.3).brightness, options(contrast=0.3).contrast) == (0.0, 0.3)
    with pytest.raises(DonetError, match="bad training option"):
        options(contrast=1.5)


@pytest.mark.parametrize("size, first_step, smallest_side", [("light", 1500, 448), ("paper", 50000, 640)])
def test_python_and_cli_configs_take_the_same_schedule_of_the_size(synthetic, size, first_step, smallest_side):
    from donet.cli import _train_config
    from donet.modeling import SIZES

    spec = DataSpec(path=str(synthetic))
    iterations = {"light": 2000, "paper": 60000}[size]
    python = TrainConfig(size=size, train=spec)
    assert python == _train_config("donet", size, synthetic, None, None, None, None, None, None, 0, None, None, 0.0,
                                   None)
    assert python.iterations == iterations and python.lr_steps[0] == first_step
    min_size = SIZES[size].get("min_size", 800)
    assert round(min(python.train_scales) * min_size) == smallest_side
    # A shorter run keeps the schedule's shape.
    assert TrainConfig(size=size, train=spec, iterations=iterations // 10).lr_steps[0] == first_step // 10


@pytest.mark.parametrize("change, problem", [({"iterations": 0}, "iterations"), ({"iterations": "many"}, "iterations"),
                                             ({"size": "huge"}, "unknown size"), ({"train_sizes": [512]}, "train_sizes")])
def test_a_bad_config_file_names_the_field_in_one_line(tmp_path, change, problem):
    (tmp_path / "config.json").write_text(json.dumps({"train": {"path": "data"}, **change}))
    with pytest.raises(DonetError, match=problem) as error:
        TrainConfig.load(tmp_path / "config.json")
    assert "\n" not in str(error.value)
