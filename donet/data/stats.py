"""Summary figures of an annotated dataset."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from .decomposition import coverage
from .instances import AnnotatedImage, CellClass


def equivalent_diameter(area: float) -> float:
    """Diameter of the circle of `area` pixels: Cellpose's measure of cell size."""
    return float(np.sqrt(4 * area / np.pi))


def median_diameter(samples: Iterable[AnnotatedImage], category: CellClass = CellClass.CYTOPLASM) -> float | None:
    """Median equivalent diameter (pixels) of the instances of `category`; None when there are none."""
    diameters = [equivalent_diameter(i.area) for sample in samples for i in sample.of_class(category)]
    return float(np.median(diameters)) if diameters else None


def dataset_stats(samples: Iterable[AnnotatedImage], progress: Callable[[], None] | None = None) -> dict:
    """Images, instances per class, cells per image, and the share of cytoplasm pixels under
    two or more cells (the overlap that one-label-per-pixel formats cannot represent)."""
    cells_per_image, nuclei, cell_pixels, shared_pixels = [], 0, 0, 0
    sizes, linked, diameters = set(), 0, []
    for sample in samples:
        cells = sample.masks(CellClass.CYTOPLASM)
        diameters += [equivalent_diameter(cell.area) for cell in sample.cells]
        cells_per_image.append(len(cells))
        nuclei += len(sample.nuclei)
        linked += sum(n.parent is not None for n in sample.nuclei)
        sizes.add(sample.size)
        if len(cells):
            count = coverage(cells)
            cell_pixels += int((count >= 1).sum())
            shared_pixels += int((count >= 2).sum())
        if progress:
            progress()
    per_image = np.array(cells_per_image) if cells_per_image else np.zeros(1)
    return {
        "images": len(cells_per_image),
        "cytoplasm_instances": int(per_image.sum()) if cells_per_image else 0,
        "nucleus_instances": nuclei,
        "nuclei_linked_to_a_cell": linked,
        "overlap_share": shared_pixels / cell_pixels if cell_pixels else 0.0,
        "cells_per_image": {"min": int(per_image.min()), "median": float(np.median(per_image)),
                            "mean": float(per_image.mean()), "max": int(per_image.max())},
        "image_sizes": sorted(f"{w}x{h}" for h, w in sizes),
        # What `donet predict --diameter` asks for: compare it with a model's own.
        "median_cell_diameter": float(np.median(diameters)) if diameters else None,
    }
