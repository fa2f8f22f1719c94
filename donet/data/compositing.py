"""Translucent cell clusters: placing cells at a chosen overlap and compositing them.

Shared by the synthetic generator (procedural cells) and the cluster augmentor (cells cut
from annotated images). Cytoplasm is translucent, so light passing through a stack of cells
is attenuated by each of them: the image is the background times every covering cell's
transmittance (Beer-Lambert), which makes overlaps darker, as in Pap smears and in the
ISBI 2014 images (themselves made by overlaying real cells).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .instances import AnnotatedImage, CellClass, Instance, encode_at


@dataclass
class CellSprite:
    """One cell ready to paste: masks and per-channel transmittance in its own window."""

    cell: np.ndarray  # (h, w) bool, the whole (amodal) cytoplasm
    transmittance: np.ndarray  # (h, w, C) float32 in (0, 1], 1 outside the cell
    nucleus: np.ndarray | None = None  # (h, w) bool, inside `cell`

    @property
    def shape(self) -> tuple[int, int]:
        return self.cell.shape

    def with_translucency(self, exponent: float) -> CellSprite:
        """Transmittance raised to `exponent`: above 1 denser cells, below 1 more translucent."""
        return CellSprite(self.cell, self.transmittance ** np.float32(exponent), self.nucleus)


def overlap_ratio(cell: np.ndarray, covered: np.ndarray, y: int, x: int) -> float:
    """Share of `cell`'s pixels that fall on already `covered` canvas pixels at offset (y, x)."""
    h, w = cell.shape
    return float((covered[y:y + h, x:x + w] & cell).sum()) / max(int(cell.sum()), 1)


def place_cells(shapes: list[np.ndarray], canvas: tuple[int, int], overlap: tuple[float, float],
                rng: np.random.Generator, clusters: int = 1) -> list[tuple[int, int]]:
    """Top-left offsets for cell masks `shapes` on a canvas of size `canvas`.

    The first `clusters` cells seed separate clusters; each later cell joins a random placed
    cell so that the share of its area lying under cells placed before it falls in the
    `overlap` band (found by bisection along a random direction). A cell that cannot reach
    the band (the canvas is too small, say) takes the closest placement found.
    """
    height, width = canvas
    covered = np.zeros(canvas, dtype=bool)
    offsets: list[tuple[int, int]] = []
    lo, hi = overlap
    for index, cell in enumerate(shapes):
        h, w = cell.shape
        if h > height or w > width:
            raise ValueError(f"cell of size {w}x{h} does not fit a {width}x{height} canvas")
        if index < clusters:
            offset = _free_spot(cell, covered, rng)
        else:
            target = rng.uniform(lo, hi)
            offset, best_error = None, np.inf
            for _ in range(8):
                anchor_index = int(rng.integers(len(offsets)))
                anchor_y, anchor_x = offsets[anchor_index]
                anchor = shapes[anchor_index].shape
                centre = np.array([anchor_y + anchor[0] / 2, anchor_x + anchor[1] / 2])
                direction = rng.normal(size=2)
                direction /= np.linalg.norm(direction) + 1e-9
                spot, ratio = _bisect(cell, covered, centre, direction, target, (max(anchor) + max(h, w)) / 2)
                if abs(ratio - target) < best_error:
                    offset, best_error = spot, abs(ratio - target)
                if lo <= ratio <= hi:
                    break
        y, x = offset
        covered[y:y + h, x:x + w] |= cell
        offsets.append(offset)
    return offsets


def _clamp(cell: np.ndarray, covered: np.ndarray, top_left: np.ndarray) -> tuple[int, int]:
    h, w = cell.shape
    y = int(np.clip(round(top_left[0]), 0, covered.shape[0] - h))
    x = int(np.clip(round(top_left[1]), 0, covered.shape[1] - w))
    return y, x


def _bisect(cell, covered, centre, direction, target, reach) -> tuple[tuple[int, int], float]:
    """Distance along `direction` from `centre` at which the overlap share crosses `target`."""
    half = np.array(cell.shape) / 2
    near, far = 0.0, reach
    spot = _clamp(cell, covered, centre - half)
    ratio = overlap_ratio(cell, covered, *spot)
    for _ in range(10):
        middle = (near + far) / 2
        candidate = _clamp(cell, covered, centre + middle * direction - half)
        candidate_ratio = overlap_ratio(cell, covered, *candidate)
        if abs(candidate_ratio - target) < abs(ratio - target):
            spot, ratio = candidate, candidate_ratio
        if candidate_ratio > target:
            near = middle
        else:
            far = middle
    return spot, ratio


def _free_spot(cell: np.ndarray, covered: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    h, w = cell.shape
    best, best_ratio = (0, 0), np.inf
    for _ in range(30):
        spot = (int(rng.integers(0, covered.shape[0] - h + 1)), int(rng.integers(0, covered.shape[1] - w + 1)))
        ratio = overlap_ratio(cell, covered, *spot)
        if ratio < best_ratio:
            best, best_ratio = spot, ratio
        if ratio == 0:
            break
    return best


def composite(background: np.ndarray, sprites: list[CellSprite],
              offsets: list[tuple[int, int]]) -> tuple[np.ndarray, list[Instance]]:
    """Multiply the background (H, W, C float) by each placed cell's transmittance and build
    exact instances: cells 1..n in placement order, then their nuclei linked to them."""
    image = background.copy()
    size = background.shape[:2]
    cells, nuclei = [], []
    for number, (sprite, (y, x)) in enumerate(zip(sprites, offsets), start=1):
        h, w = sprite.shape
        image[y:y + h, x:x + w] *= sprite.transmittance
        cells.append(Instance(number, CellClass.CYTOPLASM, encode_at(sprite.cell, y, x, size)))
        if sprite.nucleus is not None and sprite.nucleus.any():
            nuclei.append((number, encode_at(sprite.nucleus, y, x, size)))
    instances = cells + [Instance(len(cells) + k + 1, CellClass.NUCLEUS, rle, parent=parent)
                         for k, (parent, rle) in enumerate(nuclei)]
    return image, instances


def to_pixels(image: np.ndarray, gray: bool) -> np.ndarray:
    """Float image in [0, 1] to uint8, (H, W) when `gray`."""
    pixels = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
    return pixels[..., 0] if gray else pixels


def cluster_sample(name: str, background: np.ndarray, sprites: list[CellSprite], overlap: tuple[float, float],
                   rng: np.random.Generator, clusters: int = 1) -> tuple[AnnotatedImage, np.ndarray]:
    """Place and composite `sprites`; returns the sample (float image in [0, 1]) and the
    coverage of every canvas pixel by cells, for adding unannotated clutter where no cell is."""
    offsets = place_cells([s.cell for s in sprites], background.shape[:2], overlap, rng, clusters)
    image, instances = composite(background, sprites, offsets)
    covered = np.zeros(background.shape[:2], dtype=bool)
    for sprite, (y, x) in zip(sprites, offsets):
        covered[y:y + sprite.shape[0], x:x + sprite.shape[1]] |= sprite.cell
    return AnnotatedImage(name, image, instances), covered
