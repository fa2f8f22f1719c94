"""The training loop: resumable checkpoints, NaN guard, validation, DDP and mixed precision.

A run folder holds `config.json`, `metrics.jsonl` (one JSON line per logged step or
validation), `checkpoints/iter_NNNNNNN/` (model.safetensors + state.pt) with a `last`
pointer, `best.safetensors` (best validation segm AP) and, at the end, `model.safetensors`.
Every file is written under a temporary name and renamed, so a run killed at any moment
resumes from its last complete checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..atomic import atomic_path, ensure_new_dir, write_text_atomic
from ..data import ClusterAugmentor, Dataset
from ..io import open_dataset
from ..data.instances import AnnotatedImage
from ..data.stats import median_diameter
from ..distributed import Processes
from ..errors import DonetError
from ..evaluation import evaluate, json_safe
from ..inference import Segmenter
from ..modeling import DoNet, build_model, image_tensor, training_target
from ..modeling.weights import load_weights, save_weights
from .augment import photometric_jitter, random_flips
from .config import DataSpec, TrainConfig
from .schedule import warmup_multistep


class TrainingDiverged(DonetError):
    pass


@dataclass
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last"

    @property
    def best(self) -> Path:
        return self.root / "best.safetensors"

    @property
    def final(self) -> Path:
        return self.root / "model.safetensors"

    def last_checkpoint(self) -> Path | None:
        if not self.last.is_file():
            return None
        folder = self.checkpoints / self.last.read_text().strip()
        return folder if folder.is_dir() else None


def open_data(spec: DataSpec) -> Dataset:
    return open_dataset(spec.path, spec.format, spec.images)


class Cache:
    """Decoded samples kept in memory: cytology training sets are small, and reading
    per-cell masks again every epoch would cost more than the step."""

    def __init__(self, dataset: Sequence[AnnotatedImage]):
        self.dataset = dataset
        self.samples: dict[int, AnnotatedImage] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> AnnotatedImage:
        if index not in self.samples:
            self.samples[index] = self.dataset[index]
        return self.samples[index]


def sample_indices(seed: int, iteration: int, batch: int, rank: int, world: int, size: int) -> list[int]:
    """The images of one process' batch: epochs are seeded permutations, walked in order, so
    the sequence depends only on (seed, iteration) and survives a restart."""
    indices = []
    for slot in range(batch):
        position = (iteration * world + rank) * batch + slot
        epoch, offset = divmod(position, size)
        indices.append(int(np.random.default_rng([seed, epoch]).permutation(size)[offset]))
    return indices


def save_checkpoint(paths: RunPaths, model: DoNet, optimizer, scheduler, iteration: int, best: dict, keep: int):
    name = f"iter_{iteration:07d}"
    folder = paths.checkpoints / name
    tmp = paths.checkpoints / f".{name}.part"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(model, tmp / "model.safetensors")
    state = {"iteration": iteration, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "torch_rng": torch.get_rng_state(), "best": best}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    write_text_atomic(paths.last, name)  # the switch: until here the previous checkpoint stays "last"
    for old in sorted(p for p in paths.checkpoints.glob("iter_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old)


def load_checkpoint(folder: Path, model: DoNet, optimizer, scheduler) -> tuple[int, dict]:
    load_weights(model, folder / "model.safetensors")
    try:
        # weights_only: tensors and plain containers only, no pickled code runs.
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise DonetError(folder / "state.pt", f"unreadable training state ({exc.__class__.__name__})") from None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["iteration"]), dict(state["best"])


def segm_ap(results: dict) -> float:
    """Validation score that picks the best checkpoint: segm AP averaged over both classes."""
    return results["classes"]["average"]["coco"]["ap"]


def validate(model: DoNet, dataset: Sequence[AnnotatedImage]) -> dict:
    try:
        segmenter = Segmenter.keeping_every_detection(model, device=next(model.parameters()).device.type)
        predictions = segmenter.instances_by_name(dataset)
    finally:
        model.train()
    return evaluate(dataset, predictions)


class MetricsLog:
    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled
        self.tensorboard = None
        if enabled:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(path.parent / "tensorboard"))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(json_safe(record)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "iteration":
                    self.tensorboard.add_scalar(f"{record.get('kind', 'train')}/{key}", value, record["iteration"])


def train(config: TrainConfig, out: str | Path, resume: bool = False,
          train_data: Sequence[AnnotatedImage] | None = None, val_data: Sequence[AnnotatedImage] | None = None,
          console: Console | None = None,
          on_step: Callable[[int, dict], None] | None = None) -> dict:
    """Train as `config` says into the run folder `out` and return a summary.

    `resume` continues the run in `out` from its last checkpoint (the saved config wins).
    `train_data` / `val_data` replace the config's datasets (cross-validation folds).
    `on_step` is called with each logged record.
    """
    console = console or Console(stderr=True)
    paths = RunPaths(Path(out))
    ddp = Processes.from_environment()
    if resume:
        if not paths.config.is_file():
            raise DonetError(paths.root, "nothing to resume: no config.json in this folder")
        config = TrainConfig.load(paths.config)
    elif ddp.main:
        ensure_new_dir(paths.root)
    # The data is opened before the run folder is made: a bad path leaves nothing behind.
    train_set = Cache(train_data if train_data is not None else open_data(config.train))
    if len(train_set) == 0:
        raise DonetError(config.train.path, "the training set is empty")
    val_set = val_data if val_data is not None else (open_data(config.val) if config.val else None)
    if not resume and ddp.main:
        paths.root.mkdir(parents=True, exist_ok=True)
        config.save(paths.config)
    ddp.barrier()
    augmentor = None
    if config.cluster_augmentation is not None:
        aug = config.cluster_augmentation
        augmentor = ClusterAugmentor((train_set[i] for i in range(len(train_set))), cells=aug.cells,
                                     overlap=aug.overlap, translucency=aug.translucency)

    torch.manual_seed(config.seed)
    device = torch.device(f"cuda:{ddp.local_rank}" if torch.cuda.is_available() else "cpu")
    # Inference rescales images relative to the training images' size (see ModelConfig).
    # --diameter rescales other images to the cells' size here.
    model_options = {"train_image_size": min(train_set[0].size),
                     "cell_diameter": median_diameter(train_set[i] for i in range(len(train_set))), **config.model}
    model = build_model(config.preset, config.size, **model_options).to(device)
    if config.train_scales:
        model.transform.min_size = tuple(round(scale * model.config.min_size) for scale in config.train_scales)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(parameters, lr=config.base_lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(parameters, lr=config.base_lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    scheduler = warmup_multistep(optimizer, config.warmup_iterations, config.warmup_factor, config.lr_steps,
                                 config.lr_gamma)
    start, best = 0, {"segm_ap": -1.0, "iteration": None}
    if resume:
        checkpoint = paths.last_checkpoint()
        if checkpoint is not None:
            start, best = load_checkpoint(checkpoint, model, optimizer, scheduler)
    network = model
    if ddp.world > 1:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    log = MetricsLog(paths.metrics, ddp.main)
    model.train()

    progress = Progress(TextColumn("[bold]train[/bold] {task.completed}/{task.total}"), BarColumn(),
                        TextColumn("loss {task.fields[loss]:.3f}  lr {task.fields[lr]:.2e}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not ddp.main)
    last_good = start
    with progress:
        task = progress.add_task("train", total=config.iterations, completed=start, loss=float("nan"),
                                 lr=optimizer.param_groups[0]["lr"])
        started = time.perf_counter()
        for iteration in range(start, config.iterations):
            indices = sample_indices(config.seed, iteration, config.batch_size, ddp.rank, ddp.world, len(train_set))
            images, targets = [], []
            for slot, index in enumerate(indices):
                rng = np.random.default_rng([config.seed, iteration, ddp.rank, slot])
                sample = train_set[index]
                if augmentor is not None:
                    sample = augmentor.maybe_replace(sample, rng, config.cluster_augmentation.probability)
                image, target = random_flips(image_tensor(sample.image), training_target(sample), rng,
                                             config.horizontal_flip, config.vertical_flip)
                if config.brightness or config.contrast:
                    image = photometric_jitter(image, rng, config.brightness, config.contrast)
                images.append(image.to(device))
                targets.append({k: v.to(device) for k, v in target.items()})
            with torch.autocast(device.type, enabled=use_amp):
                losses = network(images, targets)
            loss = sum(losses.values())
            reduced = ddp.mean(loss.detach())
            if not torch.isfinite(reduced):
                raise TrainingDiverged(paths.root, f"loss became {reduced.item()} at iteration {iteration}; "
                                                   f"the last good checkpoint (iteration {last_good}) is kept")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.clip_grad_norm > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(parameters, config.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            done = iteration + 1
            lr = optimizer.param_groups[0]["lr"]
            progress.update(task, completed=done, loss=reduced.item(), lr=lr)
            if done % config.log_period == 0 or done == config.iterations:
                record = {"kind": "train", "iteration": done, "lr": lr, "loss": reduced.item(),
                          **{k: ddp.mean(v.detach()).item() for k, v in losses.items()},
                          "seconds": round(time.perf_counter() - started, 2)}
                log.write(record)
                if not console.is_terminal and ddp.main:
                    console.print(f"iter {done}/{config.iterations} loss {reduced.item():.3f} lr {lr:.2e}")
                if on_step:
                    on_step(done, record)
            if val_set is not None and (done % config.eval_period == 0 or done == config.iterations):
                if ddp.main:
                    results = validate(model, val_set)
                    score = segm_ap(results)
                    log.write({"kind": "validation", "iteration": done, "segm_ap": score,
                               "results": results["classes"]})
                    console.print(f"validation at iteration {done}: segm AP {100 * score:.2f} (cytoplasm "
                                  f"{100 * results['classes']['cytoplasm']['coco']['ap']:.2f}, nucleus "
                                  f"{100 * results['classes']['nucleus']['coco']['ap']:.2f})")
                    if score > best["segm_ap"]:
                        best = {"segm_ap": score, "iteration": done}
                        save_weights(model, paths.best)
                ddp.barrier()
            if done % config.checkpoint_period == 0 or done == config.iterations:
                if ddp.main:
                    save_checkpoint(paths, model, optimizer, scheduler, done, best, config.keep_checkpoints)
                last_good = done
                ddp.barrier()
    if ddp.main:
        save_weights(model, paths.final)
        if val_set is None:
            # Without validation the final weights are the best we know of.
            with atomic_path(paths.best) as tmp:
                shutil.copyfile(paths.final, tmp)
    # Returning means the run reached its last iteration (a crash or kill raises or never returns).
    return {"iterations": config.iterations, "completed": True, "best": best, "run": str(paths.root)}
