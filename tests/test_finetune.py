"""Fine-tuning from a trained model (`donet train --init`): its schedule, what it keeps of
the model, and the crops it trains on."""

import json

import numpy as np
import pytest
import torch
from commands import donet, one_line_error

from donet.atomic import atomic_dir
from donet.data import SynthConfig, generate
from donet.data.stats import median_diameter
from donet.errors import DonetError
from donet.io import write_dataset
from donet.modeling.weights import load_model
from donet.training import TrainConfig, train
from donet.training.augment import random_crop
from donet.training.schedule import SCHEDULES


def test_init_takes_the_fine_tune_schedule_and_options_still_override():
    data = {"path": "data"}
    tuned = TrainConfig.of(init="default", train=data)
    schedule = SCHEDULES["finetune"]
    assert (tuned.optimizer, tuned.base_lr, tuned.iterations, tuned.freeze_batchnorm) == (
        schedule["optimizer"], schedule["base_lr"], schedule["iterations"], True)
    assert tuned.lr_steps == tuple(int(schedule["iterations"] * f) for f in schedule["decay_at"])
    assert (tuned.preset, tuned.size) == (None, None)  # the model's own
    scratch = TrainConfig.of(train=data)
    assert (scratch.preset, scratch.size, scratch.base_lr, scratch.freeze_batchnorm) == ("donet", "light", 0.001, False)
    overridden = TrainConfig.of(init="default", train=data, iterations=40, base_lr=3e-4)
    assert (overridden.iterations, overridden.base_lr, overridden.lr_steps) == (40, 3e-4, (30, 36))


def test_crops_keep_what_lies_inside_with_boxes_shrunk_to_it():
    masks = torch.zeros((3, 100, 120), dtype=torch.uint8)
    masks[0, 10:40, 10:60] = 1  # cut by any crop that starts past row 10 or column 10
    masks[1, 70:74, 100:104] = 2  # 16 pixels: kept whole, dropped when cut at all
    masks[2, 50:90, 20:50] = 1
    target = {"boxes": torch.tensor([[10, 10, 60, 40], [100, 70, 104, 74], [20, 50, 50, 90]], dtype=torch.float32),
              "labels": torch.tensor([1, 2, 1]), "masks": masks}
    image = torch.arange(100 * 120, dtype=torch.float32).reshape(1, 100, 120).expand(3, -1, -1)
    small_kept = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        cropped, kept = random_crop(image, target, 64, rng)
        y, x = divmod(int(cropped[0, 0, 0]), 120)  # where the window was taken
        assert cropped.shape == (3, 64, 64)
        window = masks[:, y:y + 64, x:x + 64]
        inside = [k for k in range(3) if (window[k] > 0).sum() >= 16]
        assert kept["labels"].tolist() == target["labels"][inside].tolist()
        assert torch.equal(kept["masks"], window[inside])
        small_kept.append(1 in inside)
        for box, mask in zip(kept["boxes"], kept["masks"]):
            rows, cols = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
    assert any(small_kept) and not all(small_kept)  # both sides of the threshold were drawn


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    samples = [generate(i, SynthConfig(size=(300, 340), cells=(3, 5)), seed=4) for i in range(2)]
    with atomic_dir(root / "data") as folder:
        write_dataset(folder, samples)
    config = TrainConfig.of(init="default", train={"path": str(root / "data")}, iterations=2, checkpoint_period=2,
                            base_lr=1e-3)
    summary = train(config, root / "run")
    return root, samples, summary


def test_fine_tuning_changes_the_weights_not_the_architecture_scale_or_batchnorm_statistics(tuned):
    root, samples, summary = tuned
    assert summary["iteration"] == 2
    shipped, model = load_model(), load_model(root / "run" / "model.safetensors")
    assert model.config == shipped.config  # architecture and pixel scale (cell diameter 135 px) kept
    before, after = shipped.state_dict(), model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith(".weight"))
    statistics = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.allclose(before[k], after[k]) for k in statistics)
    card = json.loads((root / "run" / "model_card.json").read_text())
    assert card["init"] == "default" and card["tuned_on"] == [s.name for s in samples]
    assert card["model_cell_diameter_px"] == shipped.config.cell_diameter
    assert card["tuned_on_cell_diameter_px"] == pytest.approx(median_diameter(samples))


def test_a_preset_that_contradicts_the_model_is_one_error_and_leaves_nothing(tuned):
    root = tuned[0]
    config = TrainConfig.of(init="default", preset="maskrcnn", train={"path": str(root / "data")}, iterations=1)
    with pytest.raises(DonetError, match="not maskrcnn .*drm.*differ"):
        train(config, root / "contradicted")
    assert not (root / "contradicted").exists()
    with pytest.raises(DonetError, match="keeps its fpn_channels"):
        train(TrainConfig.of(init="default", model={"fpn_channels": 128}, train={"path": str(root / "data")}),
              root / "widened")


def test_the_command_tunes_a_coco_folder_from_any_model_file_and_refuses_another_size(tuned):
    """`donet train --train DIR --init PATH` on a COCO folder, from the model an earlier
    fine-tune wrote; `--size paper` on the light model is one line and no run folder."""
    root = tuned[0]
    started_from = root / "run" / "model.safetensors"
    again = donet("train", "--train", root / "data", "--init", started_from, "--out", root / "again",
                  "--iterations", 1, "--batch-size", 1, "--device", "cpu")
    assert again.returncode == 0, again.stderr
    card = json.loads((root / "again" / "model_card.json").read_text())
    assert card["init"] == str(started_from)
    assert load_model(root / "again" / "model.safetensors").config == load_model(started_from).config
    refused = donet("train", "--train", root / "data", "--init", "default", "--size", "paper", "--out", root / "paper")
    one_line_error(refused, "not paper")
    assert not (root / "paper").exists()


def test_training_refuses_a_device_it_cannot_use_before_making_the_run(tuned):
    root = tuned[0]
    absent = "cuda" if not torch.cuda.is_available() else "mps" if not torch.backends.mps.is_available() else None
    for device, problem in [("tpu", "not one of auto, cpu, cuda, mps"), *([(absent, "no ")] if absent else [])]:
        refused = donet("train", "--train", root / "data", "--init", "default", "--device", device,
                        "--out", root / device)
        one_line_error(refused, f"device '{device}'", problem)
        assert not (root / device).exists()
