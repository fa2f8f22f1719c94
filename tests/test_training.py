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
from donet.data.instances import CellClass
from donet.distributed import Processes
from donet.errors import DonetError
from donet.io import open_dataset, write_dataset
from donet.modeling import image_tensor
from donet.modeling.weights import read_checkpoint
from donet.training import (ClusterAugmentation, DataSpec, LowResolution, RunPaths, TrainConfig, TrainingDiverged,
                            train)
from donet.training import trainer as trainer_module
from donet.training.augment import low_resolution, photometric_jitter
from donet.training.schedule import warmup_multistep

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


def test_low_resolution_blurs_fine_detail_away_and_keeps_coarse_shapes_in_place():
    fine = torch.zeros(3, 64, 64)
    fine[:, ::2, ::2] = fine[:, 1::2, 1::2] = 1.0  # a one-pixel checkerboard
    coarse = torch.zeros(3, 64, 64)
    coarse[:, 16:48, 16:48] = 1.0
    for seed in range(5):
        blurred = low_resolution(fine, np.random.default_rng(seed), (0.33, 0.45))
        assert blurred.shape == fine.shape and float((blurred - 0.5).abs().max()) < 0.05
        kept = low_resolution(coarse, np.random.default_rng(seed), (0.33, 0.45))
        assert float((kept - coarse).abs().max()) > 0.2  # edges soften...
        inside, square = kept[0] > 0.5, coarse[0] > 0.5
        assert float((inside & square).sum() / (inside | square).sum()) > 0.98  # ...in place
    assert torch.allclose(low_resolution(fine, np.random.default_rng(0), (1.0, 1.0)), fine)
    with pytest.raises(ValueError, match="factors"):
        LowResolution(factors=(0.5, 0.3))


def test_low_resolution_blurs_the_images_of_a_batch(synthetic):
    dataset = open_dataset(synthetic)
    plain = config_for(synthetic, horizontal_flip=False, brightness=0.0, contrast=0.0)
    images, _ = trainer_module.training_batch(plain, dataset, None, 0, Processes())
    blurred = plain.model_copy(update={"low_resolution": LowResolution(probability=1.0, factors=(0.4, 0.4))})
    changed, _ = trainer_module.training_batch(blurred, dataset, None, 0, Processes())
    for image, image_changed in zip(images, changed):
        assert image_changed.shape == image.shape
        # Blurred: the differences between neighbouring pixels shrink.
        assert image_changed.diff(dim=-1).abs().mean() < 0.7 * image.diff(dim=-1).abs().mean()


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


def killed_at(iteration: int):
    """An `on_step` that kills the run when it logs `iteration`."""

    def crash(done, _record):
        if done == iteration:
            raise Killed

    return crash


def logged_iterations(run: Path, kind: str = "train") -> list[int]:
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [r["iteration"] for r in records if r["kind"] == kind]


def watch_forward(monkeypatch, change=None) -> list[tuple[list, list]]:
    """The (images, targets) of every forward of the models `train` builds from here on;
    `change(call, losses)`, given, replaces the losses of the call-th forward."""
    build, calls = trainer_module.build_model, []

    def watched_build(*args, **kwargs):
        model = build(*args, **kwargs)
        forward = model.forward

        def watched(images, targets=None):
            calls.append((images, targets))
            losses = forward(images, targets)
            return change(len(calls), losses) if change else losses

        model.forward = watched
        return model

    monkeypatch.setattr(trainer_module, "build_model", watched_build)
    return calls


@pytest.fixture
def one_thread():
    """Bitwise-repeatable kernels for a comparison, for this test only."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_run_killed_between_checkpoints_resumes_to_the_same_result(synthetic, tmp_path, one_thread):
    whole = train(config_for(synthetic), tmp_path / "whole")
    assert (whole["started"], whole["iteration"]) == (0, 12)
    with pytest.raises(Killed):  # mid-way between the checkpoints at 4 and 8
        train(config_for(synthetic), tmp_path / "killed", on_step=killed_at(6))
    paths = RunPaths(tmp_path / "killed")
    assert paths.last_checkpoint().name == "iter_0000004" and not paths.final.exists()
    resumed = train(None, tmp_path / "killed", resume=True)
    assert (resumed["started"], resumed["iteration"]) == (4, 12)
    # The killed run logged 2, 4 and 6; the resumed one took steps 5 to 12, not 1 to 12.
    assert logged_iterations(paths.root) == [2, 4, 6, 6, 8, 10, 12]
    a, _ = read_checkpoint(tmp_path / "whole" / "model.safetensors")
    b, _ = read_checkpoint(paths.final)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    lr = [json.loads(line)["lr"] for line in paths.metrics.read_text().splitlines()]
    lr_whole = [json.loads(line)["lr"] for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert lr[-1] == pytest.approx(lr_whole[-1]) == pytest.approx(0.01 * 0.1 ** 2)
    assert sorted(p.name for p in paths.checkpoints.glob("iter_*")) == ["iter_0000008", "iter_0000012"]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(synthetic, tmp_path, monkeypatch):
    def poisoned(call, losses):
        return {**losses, "loss_mask": losses["loss_mask"] * float("nan")} if call == 7 else losses

    watch_forward(monkeypatch, poisoned)
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


def same_weights(a: Path, b: Path) -> bool:
    (first, _), (second, _) = read_checkpoint(a), read_checkpoint(b)
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_validation_keeps_the_best_checkpoint_and_logs_every_protocol(synthetic, tmp_path, monkeypatch):
    # A few steps from scratch score 0 at every validation: distinct scores show which is kept.
    scores = iter([0.2, 0.5, 0.3])
    monkeypatch.setattr(trainer_module, "segm_ap", lambda results: next(scores))
    config = config_for(synthetic, iterations=6, eval_period=2, checkpoint_period=2)
    summary = train(config, tmp_path / "run", val_data=list(open_dataset(synthetic))[:2])
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if r["kind"] == "validation"]
    assert [r["iteration"] for r in validations] == [2, 4, 6]
    best = max(validations, key=lambda r: r["segm_ap"])
    assert summary["best"] == {"segm_ap": best["segm_ap"], "iteration": best["iteration"]}
    paths = RunPaths(tmp_path / "run")
    assert same_weights(paths.best, paths.checkpoints / f"iter_{best['iteration']:07d}" / "model.safetensors")
    assert not same_weights(paths.best, paths.final)
    assert {"coco", "paper", "standard", "isbi"} <= validations[0]["results"]["cytoplasm"].keys()


def test_cli_resume_continues_from_the_last_checkpoint(synthetic, tmp_path):
    from typer.testing import CliRunner

    from donet.cli import app

    run = tmp_path / "run"
    with pytest.raises(Killed):
        train(config_for(synthetic, iterations=2, checkpoint_period=1, log_period=1), run, on_step=killed_at(2))
    result = CliRunner().invoke(app, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    assert "to iteration 2 (resumed at iteration 1)" in " ".join(result.output.split())
    assert logged_iterations(run) == [1, 2, 2] and RunPaths(run).final.is_file()


def test_cluster_augmentor_replaces_the_training_images_when_enabled(synthetic, tmp_path, monkeypatch):
    dataset = open_dataset(synthetic)
    originals = [image_tensor(sample.image) for sample in dataset]
    plain = config_for(synthetic, iterations=2, horizontal_flip=False, brightness=0.0, contrast=0.0)
    # The comparison below holds: without the augmentor a batch is made of training images.
    images, _ = trainer_module.training_batch(plain, dataset, None, 0, Processes())
    assert all(any(torch.equal(image, o) for o in originals) for image in images)
    calls = watch_forward(monkeypatch)
    train(plain.model_copy(update={"cluster_augmentation": ClusterAugmentation(probability=1.0, cells=(4, 4))}),
          tmp_path / "run")
    assert len(calls) == 2
    for images, targets in calls:
        for image, target in zip(images, targets):
            assert not any(torch.equal(image, o) for o in originals)
            assert (target["labels"] == CellClass.CYTOPLASM).sum() == 4  # the training images have 2 or 3 cells


def test_attention_comes_from_the_sampled_cells_without_ground_truth_attention(synthetic, tmp_path, monkeypatch):
    from donet.modeling import donet as donet_module

    attention_map, attended = donet_module.attention_map, []

    def watched(mask_rois, *args):
        attended.append([boxes.detach() for boxes, _ in mask_rois])
        return attention_map(mask_rois, *args)

    monkeypatch.setattr(donet_module, "attention_map", watched)
    calls = watch_forward(monkeypatch)
    for from_truth in (True, False):
        model = {**SMALL_MODEL, "attention_from_ground_truth": from_truth}
        config = config_for(synthetic, iterations=1, train_scales=(1.0,), model=model)
        assert train(config, tmp_path / f"{from_truth}")["iteration"] == 1
        (_, targets), boxes = calls[-1], attended[-1]
        truth = [target["boxes"][target["labels"] == CellClass.CYTOPLASM] for target in targets]
        # 128-pixel images at the model's size: boxes keep their coordinates.
        same = [b.shape == t.shape and torch.allclose(b, t) for b, t in zip(boxes, truth)]
        assert all(same) if from_truth else not any(same)  # else the positive proposals, more than the cells


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
    def options(**jitter):
        return TrainConfig.of(train=DataSpec(path=str(synthetic)), iterations=10, **jitter)

    default = options()
    assert (default.brightness, default.contrast) == (0.1, 0.2)
    assert (options(brightness=0.0, contrast=0.3).brightness, options(contrast=0.3).contrast) == (0.0, 0.3)
    with pytest.raises(DonetError, match="bad training option"):
        options(contrast=1.5)


@pytest.mark.parametrize("size, first_step, smallest_side", [("light", 1500, 448), ("paper", 50000, 640)])
def test_python_and_cli_configs_take_the_same_schedule_of_the_size(synthetic, size, first_step, smallest_side):
    from donet.modeling import SIZES

    spec = DataSpec(path=str(synthetic))
    iterations = {"light": 2000, "paper": 60000}[size]
    python = TrainConfig(size=size, train=spec)
    # The command line's unset options arrive as None: the schedule's and the defaults.
    assert python == TrainConfig.of(size=size, train=spec, iterations=None, base_lr=None, batch_size=None,
                                    eval_period=None, brightness=None, cluster_augmentation=None)
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


@pytest.mark.parametrize("cuda, mps, inference, training", [(True, True, "cuda", "cuda"), (False, True, "mps", "cpu"),
                                                            (False, False, "cpu", "cpu")])
def test_auto_device_trains_on_mps_only_when_asked(monkeypatch, cuda, mps, inference, training):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    processes = Processes()
    assert processes.device("auto").type == inference and processes.device("auto", training=True).type == training
    if mps:
        assert processes.device("mps", training=True).type == "mps"  # asked for: taken
