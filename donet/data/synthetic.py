"""The built-in dataset: procedurally generated cytology images with exact instance masks.

Cells are translucent (Beer-Lambert absorption, so overlaps are darker), with irregular
outlines, some straight-cut like the ISBI 2014 cells, textured cytoplasm and a dark nucleus.
The background carries what makes real slides hard: small dark round objects outside any
cell (the nucleus look-alikes MRP exists to reject), faint debris, speckle, uneven
illumination, noise and blur. Everything follows from the seed and the image index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .compositing import CellSprite, cluster_sample, to_pixels
from .instances import AnnotatedImage

# Optical densities per RGB channel, scaled to mean 1: light blue-green (cyanophilic) and
# pink (eosinophilic) cytoplasm, blue-purple haematoxylin nuclei.
CYANOPHILIC = np.array([1.5, 0.9, 0.6], dtype=np.float32)
EOSINOPHILIC = np.array([0.5, 1.4, 1.1], dtype=np.float32)
HAEMATOXYLIN = np.array([1.15, 1.25, 0.6], dtype=np.float32)


@dataclass(frozen=True)
class SynthConfig:
    """Ranges are inclusive (low, high); a value is drawn per image or per cell."""

    size: tuple[int, int] = (512, 512)
    cells: tuple[int, int] = (2, 10)
    clusters: tuple[int, int] = (1, 2)
    # Share of each new cell's area lying under cells placed before it (ISBI bands: 0-0.1, 0.1-0.2, ...).
    overlap: tuple[float, float] = (0.1, 0.3)
    cell_radius: tuple[float, float] = (0.07, 0.14)  # fraction of the shorter image side
    # Light transmitted through one layer of cytoplasm: higher is more translucent.
    translucency: tuple[float, float] = (0.72, 0.9)
    nuclei: bool = True
    mimics: tuple[int, int] = (2, 10)  # small dark round objects outside cells
    debris: tuple[int, int] = (0, 4)  # faint irregular clutter
    noise: float = 0.012
    blur: float = 0.8
    color: bool = False  # Pap-stain colour instead of grayscale

    def __post_init__(self):
        checks = [
            (min(self.size) >= 64, "size must be at least 64x64"),
            (1 <= self.cells[0] <= self.cells[1], "cells must be a range (low >= 1)"),
            (1 <= self.clusters[0] <= self.clusters[1], "clusters must be a range (low >= 1)"),
            (0 <= self.overlap[0] <= self.overlap[1] < 1, "overlap must be a band within [0, 1)"),
            (0 < self.cell_radius[0] <= self.cell_radius[1] <= 0.35, "cell_radius must lie in (0, 0.35]"),
            (0 < self.translucency[0] <= self.translucency[1] < 1, "translucency must lie in (0, 1)"),
            (0 <= self.mimics[0] <= self.mimics[1] and 0 <= self.debris[0] <= self.debris[1],
             "mimics and debris must be ranges"),
            (self.noise >= 0 and self.blur >= 0, "noise and blur must be non-negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def smooth_noise(shape: tuple[int, int], rng: np.random.Generator, grain: int = 6) -> np.ndarray:
    """Zero-mean, unit-scale noise varying over about 1/`grain` of `shape`."""
    grid = rng.normal(size=(grain, grain)).astype(np.float32)
    field = ndimage.zoom(grid, (shape[0] / grain, shape[1] / grain), order=1, grid_mode=True, mode="nearest")
    return field[: shape[0], : shape[1]]


def _blob(radius: float, rng: np.random.Generator, elongation: float = 1.0, harmonics: float = 0.12):
    """Boolean mask of an irregular star-convex blob and its centre, in a tight window."""
    size = int(np.ceil(radius * max(elongation, 1) * 1.4)) * 2 + 3
    yy, xx = np.mgrid[:size, :size].astype(np.float32) - size / 2
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) * elongation
    theta = np.arctan2(v, u)
    outline = np.ones_like(theta)
    for k in range(2, 6):
        outline += rng.normal(0, harmonics / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(u, v) <= radius * outline


def _crop(*masks: np.ndarray) -> tuple[slice, slice]:
    rows, cols = np.nonzero(masks[0])
    return np.s_[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def make_cell(radius: float, config: SynthConfig, rng: np.random.Generator) -> CellSprite:
    cell = _blob(radius, rng, elongation=rng.uniform(1.0, 1.5))
    size = cell.shape[0]
    yy, xx = np.mgrid[:size, :size].astype(np.float32) - size / 2
    for _ in range(rng.integers(0, 4)):  # straight cut edges, as on the ISBI 2014 cells
        phi = rng.uniform(0, 2 * np.pi)
        cell &= xx * np.cos(phi) + yy * np.sin(phi) < radius * rng.uniform(0.55, 0.95)
    cell = ndimage.binary_fill_holes(cell)
    window = _crop(cell)
    cell = cell[window]
    h, w = cell.shape

    density = -np.log(rng.uniform(*config.translucency))
    distance = ndimage.distance_transform_edt(np.pad(cell, 1))[1:-1, 1:-1]
    rim = 1 + 0.5 * np.exp(-distance / 3)  # cell borders read slightly darker
    texture = 0.15 * smooth_noise((h, w), rng, grain=5) + 0.08 * smooth_noise((h, w), rng, grain=14)
    field = density * rim * (1 + texture) * cell
    stain = (CYANOPHILIC if rng.random() < 0.65 else EOSINOPHILIC) if config.color else np.ones(1, np.float32)

    nucleus = None
    if config.nuclei:
        nucleus_radius = radius * rng.uniform(0.1, 0.18)
        core = _blob(nucleus_radius, rng, elongation=rng.uniform(1.0, 1.4), harmonics=0.05)
        core = core[_crop(core)]
        # Nuclei sit well inside the cell, nearer the centre than its rim.
        inner = np.argwhere(distance >= max(core.shape) * 0.8)
        if len(inner):
            centre = np.argwhere(distance == distance.max()).mean(axis=0)
            choice = inner[rng.integers(len(inner))]
            y0, x0 = (0.5 * choice + 0.5 * centre).astype(int) - np.array(core.shape) // 2
            y0, x0 = np.clip(y0, 0, h - core.shape[0]), np.clip(x0, 0, w - core.shape[1])
            nucleus = np.zeros_like(cell)
            nucleus[y0:y0 + core.shape[0], x0:x0 + core.shape[1]] = core
            nucleus &= cell
    optical = field[..., None] * stain
    if nucleus is not None:
        chromatin = -np.log(rng.uniform(0.22, 0.4)) * (1 + 0.12 * rng.normal(size=(h, w)).astype(np.float32))
        nucleus_stain = HAEMATOXYLIN if config.color else np.ones(1, np.float32)
        optical += (ndimage.gaussian_filter(nucleus.astype(np.float32), 0.8) * chromatin)[..., None] * nucleus_stain
    return CellSprite(cell, np.exp(-optical).astype(np.float32), nucleus)


def _scatter(image: np.ndarray, covered: np.ndarray, count: int, radius: tuple[float, float], strength: tuple,
             stain: np.ndarray, rng: np.random.Generator, harmonics: float) -> None:
    """Unannotated clutter where no cell is (so it can never be mistaken for ground truth)."""
    height, width = covered.shape
    for _ in range(count):
        blob = _blob(rng.uniform(*radius), rng, elongation=rng.uniform(1, 1.6), harmonics=harmonics)
        h, w = blob.shape
        if h >= height or w >= width:
            continue
        for _attempt in range(10):
            y, x = rng.integers(0, height - h), rng.integers(0, width - w)
            if not (covered[y:y + h, x:x + w] & ndimage.binary_dilation(blob, iterations=2)).any():
                soft = ndimage.gaussian_filter(blob.astype(np.float32), 1.0)
                image[y:y + h, x:x + w] *= np.exp(-(soft * -np.log(rng.uniform(*strength)))[..., None] * stain)
                break


def generate(index: int, config: SynthConfig = SynthConfig(), seed: int = 0) -> AnnotatedImage:
    """Image number `index` of the synthetic dataset with `seed` (independent of the others)."""
    rng = np.random.default_rng([seed, index])
    height, width = config.size
    channels = 3 if config.color else 1
    tint = np.array([1.0, 0.97, 0.95], np.float32) if config.color else np.ones(1, np.float32)
    background = rng.uniform(0.86, 0.95) * (1 + 0.02 * smooth_noise((height, width), rng, grain=4))
    background = (background[..., None] * tint).astype(np.float32)

    count = int(rng.integers(config.cells[0], config.cells[1] + 1))
    clusters = int(min(count, rng.integers(config.clusters[0], config.clusters[1] + 1)))
    side = min(height, width)
    sprites = [make_cell(rng.uniform(*config.cell_radius) * side, config, rng) for _ in range(count)]
    sample, covered = cluster_sample(f"synth_{index:05d}", background, sprites, config.overlap, rng, clusters)
    image = sample.image

    gray_stain = np.ones(channels, np.float32)
    nucleus_radius = (config.cell_radius[0] * side * 0.1, config.cell_radius[1] * side * 0.18)
    _scatter(image, covered, int(rng.integers(config.mimics[0], config.mimics[1] + 1)), nucleus_radius,
             (0.25, 0.45), HAEMATOXYLIN if config.color else gray_stain, rng, harmonics=0.05)
    _scatter(image, covered, int(rng.integers(config.debris[0], config.debris[1] + 1)),
             (side * 0.01, side * 0.04), (0.75, 0.92), gray_stain, rng, harmonics=0.3)
    speckles = rng.random((height, width)) < 0.002  # the fine dark grains of the ISBI backgrounds
    image *= (1 - 0.35 * ndimage.gaussian_filter(speckles.astype(np.float32), 0.7) * 4)[..., None].clip(0.5, 1)

    if config.blur > 0:
        image = ndimage.gaussian_filter(image, (config.blur, config.blur, 0))
    if config.noise > 0:
        image = image + rng.normal(0, config.noise, image.shape).astype(np.float32)
    sample.image = to_pixels(image, gray=not config.color)
    return sample
