"""Exact ground-truth decomposition of overlapping cells (SPEC §2).

For cytoplasm e_i among the cells of one image:
  intersection o_i = e_i AND (union of the other cells)
  complement   m_i = e_i AND NOT o_i
so e_i = o_i XOR m_i with o_i, m_i disjoint. Nuclei get an empty intersection and are
their own complement. Computed from full-resolution masks: no polygons, no fixed size.
"""

from __future__ import annotations

import numpy as np

from .instances import AnnotatedImage, CellClass


def coverage(cell_masks: np.ndarray) -> np.ndarray:
    """How many cells cover each pixel, (H, W) from a (N, H, W) boolean stack."""
    dtype = np.uint8 if len(cell_masks) < 256 else np.uint16
    return cell_masks.sum(axis=0, dtype=dtype)


def decompose(cell_masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersection and complement stacks (N, H, W) for a stack of cytoplasm masks."""
    cell_masks = np.asarray(cell_masks, dtype=bool)
    if cell_masks.ndim != 3:
        raise ValueError(f"expected a (N, H, W) mask stack, got shape {cell_masks.shape}")
    # Pixels covered by at least two cells; each cell's intersection is its share of them.
    shared = coverage(cell_masks) >= 2
    intersection = cell_masks & shared
    complement = cell_masks & ~shared
    return intersection, complement


def decompose_image(sample: AnnotatedImage) -> tuple[np.ndarray, np.ndarray]:
    """Intersection and complement for every instance of `sample`, in instance order."""
    masks = sample.masks()
    is_cell = np.array([inst.category == CellClass.CYTOPLASM for inst in sample.instances], dtype=bool)
    intersection = np.zeros_like(masks)
    complement = masks.copy()
    if is_cell.any():
        intersection[is_cell], complement[is_cell] = decompose(masks[is_cell])
    return intersection, complement
