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


class InferenceSettings(BaseModel):
    """How images become instances; `donet predict` writes it beside its predictions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score_threshold: float = Field(0.5, ge=0, le=1)  # detections scoring less are dropped
    mask_threshold: float = Field(0.5, gt=0, lt=1)  # RoI mask probability a cell's pixel needs
    # A nucleus's: at 0.5 nuclei came out too large (nucleus mAP 71.8 at 0.5, 77.5 at 0.7, flat
    # to 0.8, on the train45 split; benchmarks/inference_levers.py).
    nucleus_mask_threshold: float = Field(0.7, gt=0, lt=1)
    tile: int = Field(1024, ge=64)  # larger images are segmented tile by tile, in the image's pixels
    overlap: int = Field(320, ge=0)  # between tiles: more than the widest cell
    # Typical cell diameter in the images (pixels), when it differs from the training
    # images': they are rescaled so cells match (Cellpose's convention). None: as in training.
    # "auto": estimated from a first pass, one for a set of images (see `Segmenter.settled_on`).
    diameter: Annotated[float, Field(gt=0, allow_inf_nan=False)] | Literal["auto"] | None = None
    # Whole slides: microns per level-0 pixel where the file does not say, and whether tiles
    # a thumbnail shows as empty glass are skipped.
    mpp: float | None = Field(None, ge=0.001)
    skip_glass: bool = True
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    # Images or tiles per step: on the CPU they run two at a time, each alone, so 2 keeps both
    # streams busy; on a GPU they are one forward pass, GPU_BATCH_SIZE unless one is given.
    batch_size: int = Field(2, ge=1)
    # Arithmetic of the forward pass on CUDA (autocast); the CPU always runs float32.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    workers: int = Field(1, ge=0)  # threads reading the next images while the model runs (0: none)
    # Files with focal planes, time points or channels (OME-TIFF, ImageJ stacks): the middle
    # plane or an extended-depth-of-field fusion of all; RGB where present, else this channel.
    focus: Focus = Planes.focus
    channel: int | None = Field(Planes.channel, ge=0)

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
