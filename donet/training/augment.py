"""Training-time augmentation on (image tensor, target) pairs."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import masks_to_boxes


def flip(image: torch.Tensor, target: dict[str, torch.Tensor], horizontal: bool) -> tuple[torch.Tensor, dict]:
    """Mirror an image with its boxes and masks (horizontally, or else vertically)."""
    axis = -1 if horizontal else -2
    extent = image.shape[axis]
    boxes = target["boxes"].clone()
    low, high = (0, 2) if horizontal else (1, 3)
    boxes[:, low], boxes[:, high] = extent - target["boxes"][:, high], extent - target["boxes"][:, low]
    return image.flip(axis), {**target, "boxes": boxes, "masks": target["masks"].flip(axis)}


def transpose(image: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Mirror an image with its boxes and masks about its main diagonal."""
    return image.transpose(-1, -2), {**target, "boxes": target["boxes"][:, [1, 0, 3, 2]],
                                     "masks": target["masks"].transpose(-1, -2)}


def random_flips(image, target, rng: np.random.Generator, horizontal: bool, vertical: bool, transposed: bool = False):
    """Each allowed mirroring with probability 1/2: with all three, the eight symmetries of
    the square (the 90-degree rotations among them) come equally often."""
    if horizontal and rng.random() < 0.5:
        image, target = flip(image, target, horizontal=True)
    if vertical and rng.random() < 0.5:
        image, target = flip(image, target, horizontal=False)
    if transposed and rng.random() < 0.5:
        image, target = transpose(image, target)
    return image, target


def photometric_jitter(image: torch.Tensor, rng: np.random.Generator, brightness: float,
                       contrast: float) -> torch.Tensor:
    """Scale an image's contrast about its mean by a factor in [1 - contrast, 1 + contrast],
    then shift its brightness by up to `brightness`; values stay in [0, 1]."""
    factor = 1 + rng.uniform(-contrast, contrast)
    shift = rng.uniform(-brightness, brightness)
    mean = image.mean()
    return ((image - mean) * factor + mean + shift).clamp(0, 1)


def low_resolution(image: torch.Tensor, rng: np.random.Generator, factors: tuple[float, float]) -> torch.Tensor:
    """The image shrunk (antialiased) by a factor drawn log-uniformly from `factors` and
    enlarged back to its size (bilinear, as inference enlarges images); boxes and masks
    keep their place."""
    factor = float(np.exp(rng.uniform(np.log(factors[0]), np.log(factors[1]))))
    size = image.shape[-2:]
    small = [max(1, round(side * factor)) for side in size]
    shrunk = torch.nn.functional.interpolate(image[None], size=small, mode="bilinear", antialias=True)
    return torch.nn.functional.interpolate(shrunk, size=size, mode="bilinear").clamp(0, 1)[0]


def random_crop(image: torch.Tensor, target: dict[str, torch.Tensor], side: int, rng: np.random.Generator,
                min_pixels: int = 16) -> tuple[torch.Tensor, dict]:
    """A side x side window at a random place; an instance keeps what of it lies inside (if
    at least `min_pixels`), its box shrunk to that part."""
    height, width = image.shape[-2:]
    y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    masks = target["masks"][:, y:y + side, x:x + side]
    keep = (masks > 0).flatten(1).sum(dim=1) >= min_pixels
    masks = masks[keep]
    boxes = masks_to_boxes(masks > 0) + torch.tensor([0, 0, 1, 1])  # boxes end after their last pixel
    return image[:, y:y + side, x:x + side], {**target, "boxes": boxes, "labels": target["labels"][keep],
                                              "masks": masks}
