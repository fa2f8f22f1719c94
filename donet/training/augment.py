"""Training-time augmentation on (image tensor, target) pairs."""

from __future__ import annotations

import numpy as np
import torch


def flip(image: torch.Tensor, target: dict[str, torch.Tensor], horizontal: bool) -> tuple[torch.Tensor, dict]:
    """Mirror an image with its boxes and masks (horizontally, or else vertically)."""
    axis = -1 if horizontal else -2
    extent = image.shape[axis]
    boxes = target["boxes"].clone()
    low, high = (0, 2) if horizontal else (1, 3)
    boxes[:, low], boxes[:, high] = extent - target["boxes"][:, high], extent - target["boxes"][:, low]
    return image.flip(axis), {**target, "boxes": boxes, "masks": target["masks"].flip(axis)}


def random_flips(image, target, rng: np.random.Generator, horizontal: bool, vertical: bool):
    if horizontal and rng.random() < 0.5:
        image, target = flip(image, target, horizontal=True)
    if vertical and rng.random() < 0.5:
        image, target = flip(image, target, horizontal=False)
    return image, target


def photometric_jitter(image: torch.Tensor, rng: np.random.Generator, brightness: float,
                       contrast: float) -> torch.Tensor:
    """Scale an image's contrast about its mean by a factor in [1 - contrast, 1 + contrast],
    then shift its brightness by up to `brightness`; values stay in [0, 1]."""
    factor = 1 + rng.uniform(-contrast, contrast)
    shift = rng.uniform(-brightness, brightness)
    mean = image.mean()
    return ((image - mean) * factor + mean + shift).clamp(0, 1)
