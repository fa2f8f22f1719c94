"""One 2-D picture from a multi-dimensional microscopy file (focal stacks, time series,
channels; tifffile's axis letters): the first time point; the middle focal plane, or all
planes fused into one extended-depth-of-field image; RGB where the file has it, else the
chosen channel (the first by default). Images and slides choose the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

Focus = Literal["middle", "edf"]


@dataclass(frozen=True)
class Planes:
    """What to take from each axis other than Y, X. `focus` "middle": the middle Z plane;
    "edf": every plane, fused (see `fuse`). `channel`: a channel (or a
    colour sample) by index; None: colour where the file has 3 or 4 samples, else the first."""

    focus: Focus = "middle"
    channel: int | None = None

    def index(self, axes: str, shape: tuple[int, ...], dtype: np.dtype) -> tuple[list, str]:
        """Per axis, an index (an int drops the axis) or a slice, and the axes kept, in order.
        Z is kept whole for "edf" (fuse it with `fuse`)."""
        index, kept = [], ""
        colour = self.colour_axis(axes, shape, dtype)
        for axis, size in zip(axes, shape):
            if axis in "YX":
                index.append(slice(None))
            elif axis == "Z" and self.focus == "edf" and size > 1:
                index.append(slice(None))
            elif axis == "Z":
                index.append(size // 2)
                continue
            elif axis == colour:
                index.append(slice(0, 3))  # alpha carries no stain information
            elif axis in "CS":
                channel = self.channel or 0
                if not 0 <= channel < size:
                    raise ValueError(f"channel {channel} does not exist (the file has {size}: 0-{size - 1})")
                index.append(channel)
                continue
            else:  # time and any other sequence: the first
                index.append(0)
                continue
            kept += axis
        return index, kept

    def colour_axis(self, axes: str, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
        """The axis read as RGB: 3 or 4 samples per pixel, or (8-bit) 3 or 4 channels."""
        if self.channel is not None:
            return None
        for axis in ("S", "C"):
            if axis in axes and shape[axes.index(axis)] in (3, 4) and (axis == "S" or np.dtype(dtype) == np.uint8):
                return axis
        return None

    def describe(self, axes: str, shape: tuple[int, ...], dtype: np.dtype) -> dict:
        """What was taken, for settings.json / slides.json."""
        sizes = dict(zip(axes, shape))
        taken = {}
        if sizes.get("Z", 1) > 1:
            taken["focus"] = "extended depth of field" if self.focus == "edf" else f"plane {sizes['Z'] // 2}"
        if sizes.get("T", 1) > 1:
            taken["time"] = 0
        if any(sizes.get(a, 1) > 1 for a in "CS"):
            colour = self.colour_axis(axes, shape, dtype)
            taken["channel"] = "RGB" if colour else (self.channel or 0)
        return taken


def select(pixels: np.ndarray, axes: str, planes: Planes) -> np.ndarray:
    """(H, W) or (H, W, 3) pixels of the chosen planes of an array with tifffile's `axes`."""
    index, kept = planes.index(axes, pixels.shape, pixels.dtype)
    return arrange(np.asarray(pixels[tuple(index)]), kept)


def arrange(chosen: np.ndarray, kept: str) -> np.ndarray:
    """Chosen planes (axes `kept`) as (H, W[, 3]); a kept Z is fused."""
    rest = [i for i, a in enumerate(kept) if a not in "ZYX"]
    if "Z" in kept:
        return fuse(np.transpose(chosen, [kept.index(a) for a in "ZYX"] + rest))
    return np.transpose(chosen, [kept.index(a) for a in "YX"] + rest)


def fuse(stack: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Extended depth of field of a (Z, H, W[, C]) focal stack: per pixel, the plane of
    highest local contrast (squared Laplacian, averaged over a Gaussian of `sigma` px so the
    choice is smooth and noise does not decide it)."""
    gray = stack.astype(np.float32)
    if gray.ndim == 4:
        gray = gray.mean(axis=-1)
    energy = np.stack([ndimage.gaussian_filter(ndimage.laplace(plane) ** 2, sigma) for plane in gray])
    best = ndimage.median_filter(energy.argmax(axis=0), size=5)
    rows, cols = np.indices(best.shape)
    return stack[best, rows, cols]
