"""Two ways cells are lost where they crowd, each as a number: recall by clump size (how
many other true cells a true cell overlaps), and the share of cell masks cut straight by
their detection box.

A mask cut by its box ends on the box's edge, which is then its own bounding box's edge:
so a cut shows as a side of the mask's bounding box that the mask fills along more than
`CLIPPED_SIDE` of its length. A round cell touches each side of its box along a flat run
of pixels about 2 sqrt(2 r) long: under a quarter of the side for cells wider than about 60
px (ISBI 2014's are 90 px and more; their annotated masks fill at most 10% of a side), so
the measure is meant for cells at least that large. Sides on the image's border do not
count: there the image, not the box, cut the cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from ..data.instances import AnnotatedImage, CellClass, Instance
from .matching import Pairs, optimal_matches

MATCH_IOU = 0.5
CLUMP_BINS = (0, 1, 2, 3, 4)  # cells overlapping this many others; the last bin is "or more"
CLIPPED_SIDE = 0.25


def _cells(instances: Sequence[Instance], score_threshold: float = 0.0) -> list[Instance]:
    return [i for i in instances if i.category is CellClass.CYTOPLASM and i.score >= score_threshold]


def overlapped_cells(cells: Sequence[Instance]) -> np.ndarray:
    """How many of the other `cells` each cell shares a pixel with."""
    if not cells:
        return np.zeros(0, int)
    rles = [c.rle for c in cells]
    shared = np.asarray(mask_utils.iou(rles, rles, [0] * len(rles))).reshape(len(rles), len(rles)) > 0
    return shared.sum(axis=1) - shared.diagonal()


def _bin(count: int) -> str:
    last = CLUMP_BINS[-1]
    return f"{last}+" if count >= last else str(count)


def recall_by_clump_size(truth: Sequence[AnnotatedImage], predictions: Mapping[str, Sequence[Instance]],
                         score_threshold: float = 0.5) -> dict[str, dict]:
    """Per clump-size bin: the true cells in it and the share matched one to one by a
    predicted cell (mask IoU >= 0.5, scoring at least `score_threshold`)."""
    found = {_bin(b): [0, 0] for b in CLUMP_BINS}
    for sample in truth:
        true_cells = _cells(sample.instances)
        kept = _cells(predictions.get(sample.name, []), score_threshold)
        pairs = Pairs.of([c.rle for c in kept], [c.rle for c in true_cells])
        # Pairs below the threshold weigh nothing: they must not outbid a match above it.
        matched = {g for _, g in optimal_matches(np.where(pairs.iou >= MATCH_IOU, pairs.iou, 0), MATCH_IOU - 1e-9)}
        for index, count in enumerate(overlapped_cells(true_cells)):
            found[_bin(int(count))][0] += 1
            found[_bin(int(count))][1] += index in matched
    return {key: {"cells": total, "recall": hits / total if total else None} for key, (total, hits) in found.items()}


def clipped_sides(mask: np.ndarray) -> int:
    """How many sides of `mask`'s bounding box (not on the image's border) it fills along
    more than `CLIPPED_SIDE` of their length."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0
    top, bottom, left, right = rows[0], rows[-1], cols[0], cols[-1]
    height, width = mask.shape
    sides = [(top > 0, mask[top, left:right + 1]), (bottom < height - 1, mask[bottom, left:right + 1]),
             (left > 0, mask[top:bottom + 1, left]), (right < width - 1, mask[top:bottom + 1, right])]
    return sum(bool(inside and line.mean() > CLIPPED_SIDE) for inside, line in sides)


def clipped_share(instances_by_image: Mapping[str, Sequence[Instance]] | Sequence[AnnotatedImage],
                  score_threshold: float = 0.5) -> dict:
    """The cells (scoring at least `score_threshold`) and the share of them with a side cut
    straight (`clipped_sides`)."""
    groups = (instances_by_image.values() if isinstance(instances_by_image, Mapping)
              else [sample.instances for sample in instances_by_image])
    cells = [c for instances in groups for c in _cells(instances, score_threshold)]
    clipped = sum(clipped_sides(c.mask) > 0 for c in cells)
    return {"cells": len(cells), "clipped": float(clipped / len(cells)) if cells else None}
