"""Nuclei annotated as one mask per image become instances linked to their cells.

Rule for the parent of a nucleus (documented in the README):
1. the cell whose *complement* (its part not under any other cell) holds most of the
   nucleus' pixels: a nucleus is opaque, so in a translucent overlap it belongs to the cell
   it shows through least ambiguously;
2. if no complement holds any of it (the nucleus lies wholly inside an overlap), the cell
   whose mask holds most of it, ties going to the cell whose centroid is nearest;
3. if no cell holds any of it, no parent (a nucleus outside every annotated cell).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .decomposition import decompose


def split_nuclei(nuclei_mask: np.ndarray) -> list[np.ndarray]:
    """Connected components (8-connected) of a binary nuclei mask, in raster order."""
    labels, count = ndimage.label(nuclei_mask, structure=np.ones((3, 3), dtype=bool))
    return [labels == k for k in range(1, count + 1)]


def assign_parents(nuclei: list[np.ndarray], cell_masks: np.ndarray) -> list[int | None]:
    """Index into `cell_masks` of each nucleus' parent cell, or None (rule in the module doc)."""
    if len(cell_masks) == 0:
        return [None] * len(nuclei)
    _, complement = decompose(cell_masks)
    centroids = [np.argwhere(cell).mean(axis=0) if cell.any() else np.full(2, np.inf) for cell in cell_masks]
    parents: list[int | None] = []
    for nucleus in nuclei:
        rows, cols = np.nonzero(nucleus)
        if rows.size == 0:
            parents.append(None)
            continue
        box = np.s_[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        nucleus_crop = nucleus[box]
        in_complement = (complement[(slice(None), *box)] & nucleus_crop).sum(axis=(1, 2))
        if in_complement.max() > 0:
            parents.append(int(in_complement.argmax()))
            continue
        inside = (cell_masks[(slice(None), *box)] & nucleus_crop).sum(axis=(1, 2))
        if inside.max() == 0:
            parents.append(None)
            continue
        candidates = np.flatnonzero(inside == inside.max())
        centre = np.array([rows.mean(), cols.mean()])
        distances = [np.linalg.norm(centroids[c] - centre) for c in candidates]
        parents.append(int(candidates[int(np.argmin(distances))]))
    return parents
