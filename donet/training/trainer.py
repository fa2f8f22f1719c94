"""The training loop: resumable checkpoints, NaN guard, validation, DDP and mixed precision.

In torchvision's references/detection manner: `build_run` makes the model, optimiser and
schedule (resumed from a checkpoint), `training_batch` and `train_step` take one step, and
`train` loops over them, calling the logging, validation and checkpoint hooks when due.

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..atomic import atomic_path, ensure_new_dir, write_text_atomic
from ..data import ClusterAugmentor, Dataset
from ..data.instances import AnnotatedImage
from ..data.stats import median_diameter
from ..distributed import Processes
from ..errors import DonetError
from ..evaluation import evaluate_model, json_safe
from ..io import open_dataset
from ..modeling import DoNet, build_model, image_tensor, preset_config, training_target
from ..modeling.presets import LADDER
from ..modeling.weights import (
    DEFAULT_MODEL,
    SCALE,
    load_model,
    load_weights,
    save_weights,
)
from .augment import (apply_flips, draw_flips, draw_window, low_resolution, photometric_jitter, unflipped_window,
                      window_sample, without_slivers)
from .config import ClusterAugmentation, DataSpec, TrainConfig
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


@dataclass
class Run:
    """What a training run holds between steps: `build_run` makes it, `train_step` advances it."""

    config: TrainConfig
    paths: RunPaths
    processes: Processes
    model: DoNet
    network: torch.nn.Module  # the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    iteration: int = 0  # steps taken
    best: dict = field(default_factory=lambda: {"segm_ap": -1.0, "iteration": None})
    checkpointed: int = 0  # the iteration of the last checkpoint: what a diverged run keeps
    crop: int | None = None  # fine-tuning's square crops (see `crop_side`)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def due(self, period: int) -> bool:
        """Whether a hook of this period runs after the step just taken (every hook runs after the last)."""
        return self.iteration % period == 0 or self.iteration == self.config.iterations


def build_run(config: TrainConfig, paths: RunPaths, processes: Processes, train_set: Sequence[AnnotatedImage],
              device: torch.device, resume: bool = False, initial: DoNet | None = None) -> Run:
    """Model, optimiser and schedule as `config` says, on `device`; with `resume`, at the
    state of the run folder's last checkpoint, if it has one. `initial`: a fine-tuning run's
    starting model, where already loaded (see `initial_model`)."""
    torch.manual_seed(config.seed)
    if config.init is not None:
        model = (initial or initial_model(config)).to(device)
    else:
        # Inference rescales images relative to the training images' size (see ModelConfig).
        # --diameter rescales other images to the cells' size here.
        model_options = {"train_image_size": min(train_set[0].size),
                         "cell_diameter": median_diameter(train_set[i] for i in range(len(train_set))), **config.model}
        model = build_model(config.preset, config.size, **model_options).to(device)
    crop = crop_side(model, train_set) if config.init is not None else None
    if crop is not None:  # crops resized by the model's scale, as inference will resize images
        ratio = model.config.min_size / model.config.train_image_size
        model.transform.min_size = tuple(round(scale * crop * ratio) for scale in config.train_scales or (1.0,))
        model.transform.max_size = round(max(config.train_scales or (1.0,)) * crop * ratio) + 1
    elif config.train_scales:
        model.transform.min_size = tuple(round(scale * model.config.min_size) for scale in config.train_scales)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(parameters, lr=config.base_lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(parameters, lr=config.base_lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    scheduler = warmup_multistep(optimizer, config.warmup_iterations, config.warmup_factor, config.lr_steps,
                                 config.lr_gamma)
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.type == "cuda")
    run = Run(config, paths, processes, model, model, optimizer, scheduler, scaler, crop=crop)
    checkpoint = paths.last_checkpoint() if resume else None
    if checkpoint is not None:
        load_checkpoint(checkpoint, run)
    if processes.world > 1:
        run.network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    train_mode(run)
    return run


# The parts of a model a fine-tuning run takes from its file and cannot change.
SIZE_FIELDS = ("backbone", "fpn_channels", "mask_head_channels", "box_head_dim", "anchor_sizes")


def initial_model(config: TrainConfig) -> DoNet:
    """The model a fine-tuning run starts from, with its architecture and pixel scale; a
    `preset`, `size` or model field that contradicts them is an error."""
    fixed = sorted(set(config.model) & {*LADDER["donet"], *SIZE_FIELDS, *SCALE})
    if fixed:
        raise DonetError(None, f"a fine-tuned model keeps its {', '.join(fixed)}: leave them out")
    path = None if config.init == "default" else config.init
    model = load_model(path, **config.model)
    wanted = {**(LADDER[config.preset] if config.preset else {}),
              **({f: preset_config(size=config.size).model_dump()[f] for f in SIZE_FIELDS} if config.size else {})}
    differ = sorted(f for f, value in wanted.items() if value != model.config.model_dump()[f])
    if differ:
        named = " ".join(x for x in (config.preset, config.size) if x)
        raise DonetError(path or DEFAULT_MODEL, f"the model to fine-tune is not {named} ({', '.join(differ)} "
                                                "differ); leave out --preset and --size to keep its own")
    return model


def crop_side(model: DoNet, train_set: Sequence[AnnotatedImage]) -> int:
    """Fine-tuning trains on square crops of the model's training image size (or of the
    smallest image, if smaller), at the model's own pixel scale: each step costs what a
    training step did, and cells keep the size inference will give them, whatever the size
    of the new images."""
    smallest = min(min(train_set[i].size) for i in range(len(train_set)))
    return min(model.config.train_image_size, smallest)


def model_card(run: Run, train_set: Sequence[AnnotatedImage], seconds: float) -> dict:
    """What a fine-tuned model was made from. The model keeps its own cell diameter (its
    scale); the new images' is recorded beside it."""
    samples = [train_set[i] for i in range(len(train_set))]
    return {"init": run.config.init, "tuned_on": [s.name for s in samples], "iterations": run.iteration,
            "seconds": round(seconds, 1), "model_cell_diameter_px": run.model.config.cell_diameter,
            "tuned_on_cell_diameter_px": median_diameter(samples)}


def train_mode(run: Run) -> None:
    """Training mode, BatchNorm layers excepted where the config freezes their statistics."""
    run.model.train()
    if run.config.freeze_batchnorm:
        for module in run.model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def cluster_augmentor(options: ClusterAugmentation | None,
                      train_set: Sequence[AnnotatedImage]) -> ClusterAugmentor | None:
    if options is None:
        return None
    return ClusterAugmentor((train_set[i] for i in range(len(train_set))), cells=options.cells,
                            overlap=options.overlap, translucency=options.translucency)


def training_batch(config: TrainConfig, train_set: Sequence[AnnotatedImage], augmentor: ClusterAugmentor | None,
                   iteration: int, processes: Processes,
                   crop: int | None = None) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """This process' images and targets for step `iteration`, augmented (and, with `crop`,
    cut to random crop x crop windows). Their randomness is seeded by their place in the
    run, so a resumed run draws the same batches."""
    images, targets = [], []
    indices = sample_indices(config.seed, iteration, config.batch_size, processes.rank, processes.world,
                             len(train_set))
    for slot, index in enumerate(indices):
        rng = np.random.default_rng([config.seed, iteration, processes.rank, slot])
        sample = train_set[index]
        if augmentor is not None:
            sample = augmentor.maybe_replace(sample, rng, config.cluster_augmentation.probability)
        flips = draw_flips(rng, config.horizontal_flip, config.vertical_flip, config.transpose)
        if crop is not None:
            # A window of the mirrored image, cut from the sample before its cells are
            # decomposed and mirrored, which then cost the window's pixels, not the image's.
            mirrored_size = sample.size[::-1] if flips[2] else sample.size
            corner = unflipped_window(*draw_window(rng, mirrored_size, crop), crop, sample.size, flips)
            sample = window_sample(sample, *corner, crop)
        image, target = apply_flips(image_tensor(sample.image), training_target(sample), flips)
        if crop is not None:
            target = without_slivers(target)
        if config.low_resolution is not None and rng.random() < config.low_resolution.probability:
            image = low_resolution(image, rng, config.low_resolution.factors)
        if config.brightness or config.contrast:
            image = photometric_jitter(image, rng, config.brightness, config.contrast)
        images.append(image)
        targets.append(target)
    return images, targets


def train_step(run: Run, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """One optimiser step; returns the loss and its terms, averaged over the processes. A
    loss that is not finite stops the run before it reaches the weights."""
    device = run.device
    images = [image.to(device) for image in images]
    targets = [{k: v.to(device) for k, v in target.items()} for target in targets]
    with torch.autocast(device.type, enabled=run.scaler.is_enabled()):
        losses = run.network(images, targets)
    loss = sum(losses.values())
    # One all-reduce for every term; their sum is the loss.
    terms = run.processes.mean(torch.stack([value.detach().float() for value in losses.values()]))
    reduced = terms.sum().item()
    if not np.isfinite(reduced):
        raise TrainingDiverged(run.paths.root, f"loss became {reduced} at iteration {run.iteration}; "
                                               f"the last good checkpoint (iteration {run.checkpointed}) is kept")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.config.clip_grad_norm > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.clip_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.iteration += 1
    return {"loss": reduced, **dict(zip(losses, terms.tolist()))}


def save_checkpoint(run: Run) -> None:
    paths, name = run.paths, f"iter_{run.iteration:07d}"
    folder = paths.checkpoints / name
    tmp = paths.checkpoints / f".{name}.part"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(run.model, tmp / "model.safetensors")
    state = {"iteration": run.iteration, "optimizer": run.optimizer.state_dict(),
             "scheduler": run.scheduler.state_dict(), "torch_rng": torch.get_rng_state(), "best": run.best}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    write_text_atomic(paths.last, name)  # the switch: until here the previous checkpoint stays "last"
    for old in sorted(p for p in paths.checkpoints.glob("iter_*") if p.is_dir())[:-run.config.keep_checkpoints]:
        shutil.rmtree(old)


def load_checkpoint(folder: Path, run: Run) -> None:
    load_weights(run.model, folder / "model.safetensors")
    try:
        # weights_only: tensors and plain containers only, no pickled code runs.
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise DonetError(folder / "state.pt", f"unreadable training state ({exc.__class__.__name__})") from None
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    run.iteration = run.checkpointed = int(state["iteration"])
    run.best = dict(state["best"])


def segm_ap(results: dict) -> float:
    """Validation score that picks the best checkpoint: segm AP averaged over both classes."""
    return results["classes"]["average"]["coco"]["ap"]


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


# -- the hooks the loop calls after a step, each when its period is due --------------------

def log_step(run: Run, log: MetricsLog, console: Console, terms: dict[str, float], started: float) -> dict:
    record = {"kind": "train", "iteration": run.iteration, "lr": run.lr, **terms,
              "seconds": round(time.perf_counter() - started, 2)}
    log.write(record)
    if not console.is_terminal and run.processes.main:
        console.print(f"iter {run.iteration}/{run.config.iterations} loss {terms['loss']:.3f} lr {run.lr:.2e}")
    return record


def validate(run: Run, dataset: Sequence[AnnotatedImage], log: MetricsLog, console: Console) -> None:
    """Score the model on `dataset`, log the scores and keep the weights that score best."""
    try:
        results = evaluate_model(run.model, dataset, device=run.device.type)
    finally:
        train_mode(run)
    score = segm_ap(results)
    classes = results["classes"]
    log.write({"kind": "validation", "iteration": run.iteration, "segm_ap": score, "results": classes})
    console.print(f"validation at iteration {run.iteration}: segm AP {100 * score:.2f} (cytoplasm "
                  f"{100 * classes['cytoplasm']['coco']['ap']:.2f}, nucleus "
                  f"{100 * classes['nucleus']['coco']['ap']:.2f})")
    if score > run.best["segm_ap"]:
        run.best = {"segm_ap": score, "iteration": run.iteration}
        save_weights(run.model, run.paths.best)


def checkpoint(run: Run) -> None:
    if run.processes.main:
        save_checkpoint(run)
    run.checkpointed = run.iteration
    run.processes.barrier()


# -- the run ------------------------------------------------------------------------------

def open_run(paths: RunPaths, processes: Processes, config: TrainConfig | None, resume: bool,
             train_data: Sequence[AnnotatedImage] | None,
             val_data: Sequence[AnnotatedImage] | None) -> tuple[TrainConfig, Cache, Sequence[AnnotatedImage] | None]:
    """The run's config (a resumed run's own) and data; a new run's folder with its config.
    The data is opened before the folder is made: a bad path leaves nothing behind."""
    if resume:
        if not paths.config.is_file():
            raise DonetError(paths.root, "nothing to resume: no config.json in this folder")
        config = TrainConfig.load(paths.config)
    elif processes.main:
        ensure_new_dir(paths.root)
    train_set = Cache(train_data if train_data is not None else open_data(config.train))
    if len(train_set) == 0:
        raise DonetError(config.train.path, "the training set is empty")
    val_set = val_data if val_data is not None else (open_data(config.val) if config.val else None)
    if not resume and processes.main:
        paths.root.mkdir(parents=True, exist_ok=True)
        config.save(paths.config)
    processes.barrier()
    return config, train_set, val_set


def train(config: TrainConfig | None, out: str | Path, resume: bool = False,
          train_data: Sequence[AnnotatedImage] | None = None, val_data: Sequence[AnnotatedImage] | None = None,
          console: Console | None = None, on_step: Callable[[int, dict], None] | None = None,
          device: str = "auto") -> dict:
    """Train as `config` says into the run folder `out`, on `device` (see `Processes.device`).

    `resume` continues the run in `out` from its last checkpoint (the saved config wins).
    `train_data` / `val_data` replace the config's datasets (cross-validation folds).
    `on_step` is called with each logged record. Returns the run folder, the iteration the
    run `started` at (a resumed run's last checkpoint), the `iteration` it reached and the
    `best` validation (segm AP and iteration).
    """
    console = console or Console(stderr=True)
    paths, processes = RunPaths(Path(out)), Processes.from_environment(device)
    training_device = processes.device(device, training=True)  # refused before the run folder is made
    # A model to fine-tune that contradicts the config is found before the run folder is made.
    initial = initial_model(config) if config is not None and config.init is not None and not resume else None
    config, train_set, val_set = open_run(paths, processes, config, resume, train_data, val_data)
    augmentor = cluster_augmentor(config.cluster_augmentation, train_set)
    run = build_run(config, paths, processes, train_set, training_device, resume, initial)
    log, start, started = MetricsLog(paths.metrics, processes.main), run.iteration, time.perf_counter()
    progress = Progress(TextColumn("[bold]train[/bold] {task.completed}/{task.total}"), BarColumn(),
                        TextColumn("loss {task.fields[loss]:.3f}  lr {task.fields[lr]:.2e}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not processes.main)
    with progress:
        task = progress.add_task("train", total=config.iterations, completed=start, loss=float("nan"), lr=run.lr)
        while run.iteration < config.iterations:
            terms = train_step(run, *training_batch(config, train_set, augmentor, run.iteration, processes, run.crop))
            progress.update(task, completed=run.iteration, loss=terms["loss"], lr=run.lr)
            if run.due(config.log_period):
                record = log_step(run, log, console, terms, started)
                if on_step:
                    on_step(run.iteration, record)
            if val_set is not None and run.due(config.eval_period):
                if processes.main:
                    validate(run, val_set, log, console)
                processes.barrier()
            if run.due(config.checkpoint_period):
                checkpoint(run)
    if processes.main:
        save_weights(run.model, paths.final)
        if config.init is not None:
            write_text_atomic(paths.root / "model_card.json",
                              json.dumps(model_card(run, train_set, time.perf_counter() - started), indent=2))
        if val_set is None:
            # Without validation the final weights are the best we know of.
            with atomic_path(paths.best) as tmp:
                shutil.copyfile(paths.final, tmp)
    return {"run": str(paths.root), "started": start, "iteration": run.iteration, "best": run.best}
