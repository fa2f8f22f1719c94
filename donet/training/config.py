"""The training run's typed configuration, saved as `config.json` beside the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import DonetError
from ..io.datasets import DataFormat
from ..modeling.presets import LADDER, SIZES
from .schedule import SCHEDULES


class DataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    format: DataFormat | None = None
    images: str | None = None  # image folder or companion .mat, when not beside the annotations


class ClusterAugmentation(BaseModel):
    """On-the-fly cluster augmentor (paper §3.4): with `probability`, a training image is
    replaced by a new cluster composed from the training set's cells."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probability: float = Field(0.5, ge=0, le=1)
    cells: tuple[int, int] = (2, 10)
    overlap: tuple[float, float] = (0.1, 0.3)
    translucency: tuple[float, float] = (0.8, 1.25)


class LowResolution(BaseModel):
    """With `probability`, a training image is shrunk by a factor drawn log-uniformly from
    `factors` and enlarged back to its size: the blur of images whose small cells
    `--diameter` enlarges to the model's scale (cells of 50 px in a 0.5x image are enlarged
    2.7x), which a model trained on sharp images alone has never seen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probability: float = Field(0.5, ge=0, le=1)
    factors: tuple[float, float] = (0.33, 1.0)

    @model_validator(mode="after")
    def _check(self) -> LowResolution:
        low, high = self.factors
        if not 0 < low <= high <= 1:
            raise ValueError("low_resolution factors must satisfy 0 < low <= high <= 1")
        return self


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Fine-tuning: start from a donet model file ("default": the one that ships with donet).
    # Its architecture, size and pixel scale are the run's; unset schedule fields come from
    # the "finetune" schedule. None: train `preset` at `size` from scratch.
    init: str | None = None
    preset: str | None = None  # maskrcnn, drm, drm_crm, donet (default donet; with init, the model's)
    size: str | None = None  # light (CPU) or paper (GPU): model and schedule (default light; with init, the model's)
    model: dict = Field(default_factory=dict)  # ModelConfig fields overriding the preset's
    train: DataSpec
    val: DataSpec | None = None
    seed: int = 0

    # Every field marked "(schedule)" defaults to the size's entry in `SCHEDULES`.
    optimizer: Literal["sgd", "adamw"]  # (schedule) SGD with momentum is the paper's
    iterations: int = Field(ge=1)  # (schedule)
    batch_size: int = Field(2, ge=1)  # images per step and process
    base_lr: float = Field(gt=0)  # (schedule)
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD only
    weight_decay: float = Field(1e-4, ge=0)
    warmup_iterations: int = Field(ge=0)  # (schedule)
    warmup_factor: float = Field(0.001, gt=0, le=1)
    lr_steps: tuple[int, ...]  # (schedule) iterations where the rate is multiplied by lr_gamma
    lr_gamma: float = Field(0.1, gt=0, le=1)
    # (schedule) Gradient-norm clipping: a from-scratch network meets large early gradients (0: off).
    clip_grad_norm: float = Field(ge=0)

    # Augmentation: flips (cytology has no preferred orientation), scale jitter (shorter
    # side drawn from `train_scales` times the model's min_size; (schedule)), cluster augmentor.
    horizontal_flip: bool = True
    vertical_flip: bool = False
    transpose: bool = False  # with both flips: all eight rotations and mirrorings of the square
    train_scales: tuple[float, ...]
    # Brightness and contrast jitter (not in the paper: 0 and 0 reproduce it). Staining and
    # illumination differ between slides: ISBI test90's background is darker and flatter than
    # train45's, and models trained without jitter found cells in its empty background.
    brightness: float = Field(0.1, ge=0, le=1)
    contrast: float = Field(0.2, ge=0, lt=1)
    cluster_augmentation: ClusterAugmentation | None = None
    low_resolution: LowResolution | None = None

    freeze_batchnorm: bool  # (schedule) BatchNorm layers keep their running statistics
    log_period: int = Field(ge=1)  # (schedule)
    checkpoint_period: int = Field(ge=1)  # (schedule)
    eval_period: int = Field(ge=1)  # (schedule)
    keep_checkpoints: int = Field(2, ge=1)
    amp: bool = True  # mixed precision, CUDA only

    @model_validator(mode="before")
    @classmethod
    def _fill_from_schedule(cls, data):
        """Unset schedule fields from the size's `SCHEDULES` entry."""
        if not isinstance(data, dict):
            return data
        if data.get("init") is None:
            data = {**data, "preset": data.get("preset") or "donet", "size": data.get("size") or "light"}
            if data["size"] not in SIZES:
                raise ValueError(f"unknown size '{data['size']}' (choose from {', '.join(SIZES)})")
        schedule = SCHEDULES["finetune" if data.get("init") is not None else data["size"]]
        defaults = {"optimizer": schedule["optimizer"], "iterations": schedule["iterations"],
                    "base_lr": schedule["base_lr"], "train_scales": schedule["scales"],
                    "clip_grad_norm": schedule["clip_grad_norm"], "checkpoint_period": schedule["checkpoint_period"],
                    "log_period": schedule["log_period"], "freeze_batchnorm": schedule["freeze_batchnorm"]}
        iterations = data.get("iterations", schedule["iterations"])
        if isinstance(iterations, int) and iterations > 0:  # else the field's own check reports it
            defaults |= {"warmup_iterations": int(iterations * schedule["warmup"]),
                         "lr_steps": tuple(int(iterations * f) for f in schedule["decay_at"]),
                         "eval_period": max(1, int(iterations * schedule["eval_every"]))}
        return {**defaults, **data}

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.preset is not None and self.preset not in LADDER:
            raise ValueError(f"unknown preset '{self.preset}' (choose from {', '.join(LADDER)})")
        if self.size is not None and self.size not in SIZES:
            raise ValueError(f"unknown size '{self.size}' (choose from {', '.join(SIZES)})")
        if list(self.lr_steps) != sorted(self.lr_steps):
            raise ValueError("lr_steps must increase")
        return self

    def save(self, path: Path) -> None:
        from ..atomic import write_text_atomic

        write_text_atomic(path, self.model_dump_json(indent=2))

    @classmethod
    def of(cls, **options) -> TrainConfig:
        """A config from options, None meaning unset (the default or the size's schedule);
        a bad value is a one-line error."""
        try:
            return cls(**{k: v for k, v in options.items() if v is not None})
        except ValidationError as exc:
            raise DonetError(None, f"bad training option {_first_problem(exc)}") from None

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise DonetError(path, "no such config file") from None
        except ValidationError as exc:
            raise DonetError(path, f"invalid training config: {_first_problem(exc)}") from None
        except (json.JSONDecodeError, TypeError) as exc:
            raise DonetError(path, f"invalid training config: {str(exc).splitlines()[0]}") from None


def _first_problem(exc: ValidationError) -> str:
    """The first problem in one line, named by its field."""
    error = exc.errors()[0]
    where = ".".join(map(str, error["loc"]))
    return f"{where + ': ' if where else ''}{error['msg']}"
