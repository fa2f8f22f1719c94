"""The one in-memory form of an annotated cytology image.

Every reader produces it and every writer consumes it. Instances keep their own masks, so
overlapping cells stay separate: nothing here ever flattens them into one label per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from pycocotools import mask as mask_utils


class CellClass(IntEnum):
    """Foreground classes; the values are the COCO category ids the project writes."""

    CYTOPLASM = 1
    NUCLEUS = 2


def encode_mask(mask: np.ndarray) -> dict:
    """Lossless compressed RLE (pycocotools' form) of a 2-D boolean mask."""
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {mask.shape}")
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))


def encode_at(crop: np.ndarray, y: int, x: int, size: tuple[int, int]) -> dict:
    """Whole-image RLE of a mask crop placed at (y, x), built from the crop's own runs: no
    image-sized mask is ever made, so large images cost memory per cell, not per pixel."""
    height, width = size
    h, w = crop.shape
    strip = np.zeros((height, w), dtype=np.uint8)  # full columns, only as wide as the crop
    strip[y:y + h] = crop
    values = strip.T.ravel()  # COCO RLE runs down columns
    edges = np.flatnonzero(values[1:] != values[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [len(values)]])).tolist()
    if values[0]:
        runs.insert(0, 0)  # RLE starts with a run of zeros
    runs[0] += height * x
    trailing = height * (width - x - w)
    if len(runs) % 2 == 1:  # ends on zeros
        runs[-1] += trailing
    elif trailing:
        runs.append(trailing)
    return mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)


def decode_mask(rle: dict) -> np.ndarray:
    return mask_utils.decode(rle).astype(bool)


@dataclass
class Instance:
    """One cytoplasm or nucleus.

    `id` is unique within its image; a nucleus' `parent` is the `id` of the cell that holds
    it (None for a nucleus outside every cell, or when no link is known).
    """

    id: int
    category: CellClass
    rle: dict
    parent: int | None = None
    score: float = 1.0

    @classmethod
    def from_mask(cls, id: int, category: CellClass, mask: np.ndarray, parent: int | None = None,
                  score: float = 1.0) -> Instance:
        return cls(id=id, category=CellClass(category), rle=encode_mask(mask), parent=parent, score=score)

    @property
    def mask(self) -> np.ndarray:
        return decode_mask(self.rle)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.rle["size"])

    @property
    def area(self) -> int:
        return int(mask_utils.area(self.rle))

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """COCO box (x, y, width, height) of the mask's pixels."""
        return tuple(float(v) for v in mask_utils.toBbox(self.rle))


@dataclass
class AnnotatedImage:
    """An image (H x W or H x W x C, uint8 or uint16) and its possibly overlapping instances.
    An annotations-only record (`without_pixels`) has no image, only its size."""

    name: str
    image: np.ndarray | None
    instances: list[Instance] = field(default_factory=list)
    pixel_free_size: tuple[int, int] | None = field(default=None, repr=False)

    @classmethod
    def without_pixels(cls, name: str, size: tuple[int, int], instances: list[Instance]) -> AnnotatedImage:
        """Masks whose image lives elsewhere (a predictions file, edited napari layers)."""
        return cls(name, None, instances, (int(size[0]), int(size[1])))

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[:2] if self.image is not None else self.pixel_free_size

    def of_class(self, category: CellClass) -> list[Instance]:
        return [inst for inst in self.instances if inst.category == category]

    @property
    def cells(self) -> list[Instance]:
        return self.of_class(CellClass.CYTOPLASM)

    @property
    def nuclei(self) -> list[Instance]:
        return self.of_class(CellClass.NUCLEUS)

    def measurements(self, mpp: float | None = None) -> list[dict]:
        """One row (a dict) per cell and per nucleus: area, perimeter, N/C ratio, overlap...
        (see `data.measurements`); lengths also in microns where `mpp` is known."""
        from .measurements import measure

        return measure(self, mpp)

    def masks(self, category: CellClass | None = None) -> np.ndarray:
        """Boolean stack (N, H, W) of the instances' masks, in instance order."""
        chosen = self.instances if category is None else self.of_class(category)
        if not chosen:
            return np.zeros((0, *self.size), dtype=bool)
        return mask_utils.decode([inst.rle for inst in chosen]).astype(bool).transpose(2, 0, 1)
