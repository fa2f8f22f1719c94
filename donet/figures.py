"""Pictures: outline overlays, the paper's Fig. 6 heatmaps and Fig. 3 attention map, from
instances and from maps already pasted into image space (`inference.probability_maps`)."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .atomic import atomic_path
from .data.instances import AnnotatedImage, CellClass

# Viridis at five stops: perceptually ordered and readable in gray.
VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32)


def colormap(values: np.ndarray, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """(H, W) values to (H, W, 3) uint8 viridis colours over [low, high]."""
    position = np.clip((values - low) / max(high - low, 1e-9), 0, 1) * (len(VIRIDIS) - 1)
    below = np.floor(position).astype(int).clip(0, len(VIRIDIS) - 2)
    fraction = (position - below)[..., None]
    return (VIRIDIS[below] * (1 - fraction) + VIRIDIS[below + 1] * fraction).astype(np.uint8)


def as_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:  # contrast-stretch 16-bit data for display
        low, high = np.percentile(image, (0.5, 99.5))
        image = ((image.astype(np.float32) - low) / max(high - low, 1) * 255).clip(0, 255).astype(np.uint8)
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3].copy()


def distinct_colour(index: int) -> tuple[int, int, int]:
    """Well-separated hues (golden-ratio steps) for neighbouring cells."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def overlay(result: AnnotatedImage, thickness: int = 2) -> np.ndarray:
    """The image with each cell outlined in its own colour and nuclei outlined in white."""
    canvas = as_rgb(result.image)
    for k, inst in enumerate(result.instances):
        mask = inst.mask
        edge = mask & ~ndimage.binary_erosion(mask, iterations=thickness)
        canvas[edge] = (255, 255, 255) if inst.category is CellClass.NUCLEUS else distinct_colour(k)
    return canvas


def heatmap_panel(maps: dict[str, np.ndarray]) -> np.ndarray:
    """The maps side by side with their names above."""
    tiles = []
    for name, values in maps.items():
        tile = Image.fromarray(colormap(values))
        label = Image.new("RGB", (tile.width, 18), "white")
        ImageDraw.Draw(label).text((4, 3), name, fill="black")
        column = Image.new("RGB", (tile.width, tile.height + 18), "white")
        column.paste(label, (0, 0))
        column.paste(tile, (0, 18))
        tiles.append(np.asarray(column))
    return np.concatenate(tiles, axis=1)


def attention_picture(attention: np.ndarray) -> np.ndarray:
    """Fig. 3: the MRP attention map, which lies in [0.5, 1]."""
    return colormap(attention, 0.5, 1.0)


def save_png(path: str | Path, pixels: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
