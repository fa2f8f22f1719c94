"""Fine-tuning from a trained model (`donet train --init`): its schedule, what it keeps of
the model, and the crops it trains on."""

import itertools
import json

import numpy as np
import pytest
import torch
from commands import donet, one_line_error
from torchvision.ops import masks_to_boxes

from donet.atomic import atomic_dir
from donet.data import SynthConfig, generate
from donet.data.stats import median_diameter
from donet.errors import DonetError
from donet.io import write_dataset
from donet.modeling import image_tensor
from donet.modeling.roi_heads import INTERSECTION
from donet.modeling.targets import training_target
from donet.modeling.weights import load_model
from donet.training import TrainConfig, train
from donet.training.augment import apply_flips, draw_window, unflipped_window, window_sample, without_slivers
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


def test_a_window_cut_before_decomposing_and_mirroring_is_the_mirrored_whole_image_cut_after():
    """Fine-tuning cuts its window from the annotated image first: the image, each pixel's
    decomposition code, the boxes (shrunk to what lies inside) and the instances kept (16
    pixels or more) are those of the whole image's target, mirrored, then cut."""
    sample = generate(0, SynthConfig(size=(150, 170), cells=(6, 8)), seed=3)
    side, slivers = 64, []
    for seed, flips in itertools.product(range(6), itertools.product((False, True), repeat=3)):
        image, target = apply_flips(image_tensor(sample.image), training_target(sample), flips)
        y, x = draw_window(np.random.default_rng(seed), image.shape[-2:], side)
        masks = target["masks"][:, y:y + side, x:x + side]
        pixels = (masks > 0).flatten(1).sum(dim=1)
        keep = pixels >= 16
        slivers.append(bool(((pixels > 0) & ~keep).any()))
        window = window_sample(sample, *unflipped_window(y, x, side, sample.size, flips), side)
        cut_image, cut = apply_flips(image_tensor(window.image), training_target(window), flips)
        cut = without_slivers(cut)
        assert torch.equal(cut_image, image[:, y:y + side, x:x + side])
        assert torch.equal(cut["masks"], masks[keep]) and torch.equal(cut["labels"], target["labels"][keep])
        assert torch.equal(cut["boxes"], masks_to_boxes(masks[keep] > 0) + torch.tensor([0, 0, 1, 1]))
    assert any(slivers)  # instances the edge cut to a few pixels were drawn, and dropped
    assert (training_target(sample)["masks"] == INTERSECTION).any()  # the cells overlap


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
