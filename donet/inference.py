"""Running a model on images and turning its detections into the data layer's instances.

One path: every image goes through `tiling.segment_tiled` (an image within one tile is one
tile), under one `InferenceSettings` that declares and validates every setting once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torchvision.models.detection.roi_heads import paste_masks_in_image

from .data.instances import AnnotatedImage, CellClass, Instance
from .errors import DonetError
from .modeling import DoNet, image_tensor
from .tiling import Detect, instances, segment_tiled


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
    diameter: float | None = Field(None, gt=0)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    batch_size: int = Field(1, ge=1)  # tiles per forward pass: more keeps a GPU busy

    @model_validator(mode="after")
    def _check(self) -> InferenceSettings:
        if self.overlap >= self.tile:
            raise ValueError("the tile overlap must be smaller than the tile")
        return self

    @property
    def mask_thresholds(self) -> dict[CellClass, float]:
        return {CellClass.CYTOPLASM: self.mask_threshold, CellClass.NUCLEUS: self.nucleus_mask_threshold}

    @classmethod
    def of(cls, **options) -> InferenceSettings:
        """Settings from options, None meaning the default; a bad value is a one-line error."""
        try:
            return cls(**{k: v for k, v in options.items() if v is not None})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(map(str, error["loc"]))
            raise DonetError(None, f"bad setting{' ' + where if where else ''}: {error['msg']}") from None

PASTE_CHUNK = 32  # masks pasted at once: bounds memory on crowded or large images


def paste_probs(probs: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]):
    """Yield (N_chunk, H, W) image-space probabilities of RoI masks, a chunk at a time."""
    for start in range(0, len(probs), PASTE_CHUNK):
        chunk = slice(start, start + PASTE_CHUNK)
        yield paste_masks_in_image(probs[chunk, None], boxes[chunk], size, padding=1)[:, 0]


def probability_maps(detection: dict[str, torch.Tensor], size: tuple[int, int],
                     score_threshold: float) -> dict[str, np.ndarray]:
    """Image-space maxima over detected cells of the intersection, complement and recombined
    probabilities (the paper's Fig. 6 heatmaps)."""
    keep = (detection["scores"] >= score_threshold) & (detection["labels"] == int(CellClass.CYTOPLASM))
    maps = {}
    for key, name in (("intersection_probs", "intersection"), ("complement_probs", "complement"),
                      ("mask_probs", "recombined")):
        if key not in detection:
            continue
        total = np.zeros(size, dtype=np.float32)
        for pasted in paste_probs(detection[key][keep], detection["boxes"][keep], size):
            total = np.maximum(total, pasted.max(dim=0).values.cpu().numpy())
        maps[name] = total
    return maps


def diameter_scale(model: DoNet, diameter: float | None) -> float:
    """The factor that brings cells of `diameter` pixels to the size the model was trained
    at (1 for None)."""
    if diameter is None:
        return 1.0
    if model.config.cell_diameter is None:
        raise DonetError(None, "this model records no training cell diameter (trained before donet recorded it); "
                               "retrain it, or leave --diameter out")
    return model.config.cell_diameter / diameter


@contextmanager
def input_size(model: DoNet, size: tuple[int, int], scale: float = 1.0):
    """Resize an image of `size` by the model's training scale (not to a fixed side), times
    `scale` (see `diameter_scale`)."""
    scale = scale * model.config.min_size / model.config.train_image_size
    saved = model.transform.min_size, model.transform.max_size
    model.transform.min_size = (max(1, round(min(size) * scale)),)
    model.transform.max_size = max(1, round(max(size) * scale))
    try:
        yield
    finally:
        model.transform.min_size, model.transform.max_size = saved


@torch.no_grad()
def predict(model: DoNet, images: list[np.ndarray], scale: float = 1.0) -> list[dict[str, torch.Tensor]]:
    """Raw detections (see `DoNet`) for numpy images of any size, gray or colour, each at
    the scale the model was trained at times `scale`, in the images' own coordinates.
    Images of one size (tiles) go through the network together."""
    model.eval()
    device = next(model.parameters()).device
    if len({image.shape[:2] for image in images}) > 1:
        return [detection for image in images for detection in predict(model, [image], scale)]
    with input_size(model, images[0].shape[:2], scale):
        return model([image_tensor(image).to(device) for image in images])


def detector(model: DoNet, scale: float = 1.0) -> Detect:
    """What `tiling.segment_tiled` runs on each batch of tiles: `model` at `scale` (see `predict`)."""
    return lambda crops, corners: predict(model, crops, scale)


def segment_image(model: DoNet, image: np.ndarray, settings: InferenceSettings,
                  progress: Callable[[int, int], None] | None = None) -> tuple[list[Instance], dict | None]:
    """Instances of one image (array or memory map) under `settings`; also the model's raw
    detection when the image was a single tile (for the Fig. 6 heatmaps)."""
    model_detect = detector(model, diameter_scale(model, settings.diameter))
    tiles = 0
    first: dict | None = None

    def detect(crops: list[np.ndarray], corners: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        nonlocal tiles, first
        detections = model_detect(crops, corners)
        tiles += len(crops)
        first = detections[0] if tiles == 1 else None  # kept only while the image is one tile
        return detections

    found = segment_tiled(detect, image, settings.tile, settings.overlap, settings.score_threshold,
                          settings.mask_thresholds, settings.batch_size, progress=progress)
    return instances(found, image.shape[:2]), first


def predict_dataset(model: DoNet, dataset: Sequence[AnnotatedImage], settings: InferenceSettings,
                    progress: Callable[[], None] | None = None) -> dict[str, list[Instance]]:
    """Scored instances per image name for every image of `dataset`."""
    predictions = {}
    for sample in dataset:
        predictions[sample.name] = segment_image(model, sample.image, settings)[0]
        if progress:
            progress()
    return predictions


def segment(model: DoNet, image: np.ndarray, name: str = "image", **settings) -> AnnotatedImage:
    """Segment one numpy image: overlapping cells stay separate instances. `settings` are
    `InferenceSettings` fields, e.g. `score_threshold=0.3` or `diameter=60` (the cells'
    typical diameter in pixels, when it differs from the training images')."""
    return AnnotatedImage(name, image, segment_image(model, image, InferenceSettings.of(**settings))[0])
