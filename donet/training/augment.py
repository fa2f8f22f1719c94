"""Training-time augmentation on (image tensor, target) pairs, and the random windows that
fine-tuning crops from annotated images."""

from __future__ import annotations

import numpy as np
import torch

from ..data.instances import AnnotatedImage, Instance


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


Flips = tuple[bool, bool, bool]  # horizontal, vertical, transposed


def draw_flips(rng: np.random.Generator, horizontal: bool, vertical: bool, transposed: bool = False) -> Flips:
    """Each allowed mirroring with probability 1/2: with all three, the eight symmetries of
    the square (the 90-degree rotations among them) come equally often."""
    return (horizontal and rng.random() < 0.5, vertical and rng.random() < 0.5, transposed and rng.random() < 0.5)


def apply_flips(image, target, flips: Flips):
    """Mirror an image with its target as `flips` says (see `draw_flips`)."""
    horizontal, vertical, transposed = flips
    if horizontal:
        image, target = flip(image, target, horizontal=True)
    if vertical:
        image, target = flip(image, target, horizontal=False)
    if transposed:
        image, target = transpose(image, target)
    return image, target


def draw_window(rng: np.random.Generator, size: tuple[int, int], side: int) -> tuple[int, int]:
    """The top-left corner (y, x) of a side x side window at a random place in an image of `size`."""
    return int(rng.integers(0, size[0] - side + 1)), int(rng.integers(0, size[1] - side + 1))


def unflipped_window(y: int, x: int, side: int, size: tuple[int, int], flips: Flips) -> tuple[int, int]:
    """The corner, in an image of `size`, of the square window at (y, x) of its mirrored copy."""
    horizontal, vertical, transposed = flips
    if transposed:
        y, x = x, y
    if vertical:
        y = size[0] - y - side
    if horizontal:
        x = size[1] - x - side
    return y, x


def window_sample(sample: AnnotatedImage, y: int, x: int, side: int) -> AnnotatedImage:
    """The side x side window of `sample` at (y, x), with every instance that reaches into it
    cut to it: each pixel's decomposition is then what it is in the whole image."""
    instances = []
    for inst in sample.instances:
        left, top, width, height = inst.bbox
        if left < x + side and left + width > x and top < y + side and top + height > y:
            mask = inst.mask[y:y + side, x:x + side]
            if mask.any():
                instances.append(Instance.from_mask(inst.id, inst.category, mask, inst.parent))
    return AnnotatedImage(sample.name, sample.image[y:y + side, x:x + side], instances)


def without_slivers(target: dict[str, torch.Tensor], min_pixels: int = 16) -> dict[str, torch.Tensor]:
    """The instances a window's edge left with at least `min_pixels`."""
    keep = (target["masks"] > 0).flatten(1).sum(dim=1) >= min_pixels
    return {name: value[keep] for name, value in target.items()}


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
    enlarged back to its size, bilinearly (torchvision's resizing; since 0f07816 inference
    enlarges small cells bicubically, see `InputTransform`); boxes and masks keep their place."""
    factor = float(np.exp(rng.uniform(np.log(factors[0]), np.log(factors[1]))))
    size = image.shape[-2:]
    small = [max(1, round(side * factor)) for side in size]
    shrunk = torch.nn.functional.interpolate(image[None], size=small, mode="bilinear", antialias=True)
    return torch.nn.functional.interpolate(shrunk, size=size, mode="bilinear").clamp(0, 1)[0]


