"""Every inference setting, declared, defaulted and validated here once (torch-free, so the
command line reads its defaults without loading a model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..data.instances import CellClass
from ..errors import DonetError
from ..io.planes import Focus, Planes


# A GPU runs a batch as one forward pass, which a pair of images leaves mostly idle. 8 is a
# guess, unmeasured (no GPU yet): it should keep one busy while 8 tiles of 1024 px fit a small
# GPU's memory; a `diameter` that enlarges the images enlarges the tiles with it.
GPU_BATCH_SIZE = 8
# On the CPU a batch's images run two at a time, each alone, so 2 keeps both streams busy.
CPU_BATCH_SIZE = 2


class InferenceSettings(BaseModel):
    """How images become instances; `donet predict` writes it beside its predictions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score_threshold: float = Field(0.5, ge=0, le=1, description="Keep detections scoring at least this.")
    mask_threshold: float = Field(0.5, gt=0, lt=1, description="RoI mask probability a cell's pixel needs.")
    # A nucleus's: at 0.5 nuclei came out too large (nucleus mAP 71.8 at 0.5, 77.5 at 0.7, flat
    # to 0.8, on the train45 split; benchmarks/inference_levers.py).
    nucleus_mask_threshold: float = Field(0.7, gt=0, lt=1, description="RoI mask probability a nucleus's pixel needs.")
    tile: int = Field(1024, ge=64, description="Images larger than this (pixels) are segmented in tiles of this size.")
    overlap: int = Field(320, ge=0, description="Tile overlap: more than the widest cell.")
    # Cellpose's convention; "auto" makes one estimate for a set of images (see `Segmenter.settled_on`).
    diameter: Annotated[float, Field(gt=0, allow_inf_nan=False)] | Literal["auto"] | None = Field(None, description=(
        "Typical cell diameter in your images, pixels: images are rescaled so cells match the model's training "
        "size (as in Cellpose); 'auto' estimates it from a first pass over a sample of the images spread over "
        "them and uses it for all (a slide: over its tissue tiles). Default: as the training images."))
    mpp: float | None = Field(None, ge=0.001, description=(
        "Microns per pixel where the file does not record it: whole slides pick their level by it, and "
        "measurements add lengths and areas in microns."))
    skip_glass: bool = Field(True, description="Whole slides: run only the tiles a thumbnail shows cells in.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description=(
        "cpu, cuda, mps or auto (CUDA, else MPS, else the CPU; training takes MPS only when asked)."))
    batch_size: int = Field(CPU_BATCH_SIZE, ge=1, description=(
        f"Images or tiles per step: one forward pass on a GPU (default {GPU_BATCH_SIZE}), two at a time on the "
        f"CPU (default {CPU_BATCH_SIZE})."))
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description=(
        "fp32, bf16 or fp16 (autocast, CUDA only; the CPU always runs float32)."))
    workers: int = Field(1, ge=0, description="Threads reading the next images while the model runs (0: none).")
    focus: Focus = Field(Planes.focus, description=(
        "Focal stacks (OME-TIFF, ImageJ): the middle plane, or edf to fuse every plane into one "
        "extended-depth-of-field image."))
    channel: int | None = Field(Planes.channel, ge=0, description=(
        "The channel to segment (from 0); default: RGB where the file has it, else the first."))

    @model_validator(mode="after")
    def _check(self) -> InferenceSettings:
        if self.overlap >= self.tile:
            raise ValueError("the tile overlap must be smaller than the tile")
        return self

    def on_device(self, device_type: str) -> InferenceSettings:
        """These settings on a device ("cpu", "cuda", "mps"): a GPU steps through
        GPU_BATCH_SIZE images or tiles at once where no batch size was given. The copy holds
        that batch size as given (settings.json records what ran)."""
        if device_type == "cpu" or "batch_size" in self.model_fields_set:
            return self
        return self.model_copy(update={"batch_size": GPU_BATCH_SIZE})

    @property
    def mask_thresholds(self) -> dict[CellClass, float]:
        return {CellClass.CYTOPLASM: self.mask_threshold, CellClass.NUCLEUS: self.nucleus_mask_threshold}

    @property
    def planes(self) -> Planes:
        return Planes(self.focus, self.channel)

    @classmethod
    def of(cls, **options) -> InferenceSettings:
        """Settings from options, None meaning the default; a bad value is a one-line error."""
        try:
            return cls(**{k: v for k, v in options.items() if v is not None})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(map(str, error["loc"]))
            raise DonetError(None, f"bad setting{' ' + where if where else ''}: {error['msg']}") from None


@dataclass(frozen=True)
class Exports:
    """What `donet predict` writes for each image, beside settings.json."""

    coco: bool = True
    geojson: bool = False
    imagej: bool = False
    labels: bool = False
    overlay: bool = False
    heatmaps: bool = False  # Fig. 6 heatmaps and, for MRP models, the Fig. 3 attention map
    # Per-cell measurements (area, N/C ratio, overlap...): measurements.csv, a summary per
    # image, and the values in the GeoJSON.
    measure: bool = False
