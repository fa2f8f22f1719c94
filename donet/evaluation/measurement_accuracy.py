"""How close measured cells come to the truth: cell area, nucleus area and N/C ratio of
ground-truth cells matched to a predicted cell (mask IoU >= 0.5, one to one), as the median
absolute relative error, for all matched cells and for overlapped ones (a tenth of their
area or more under other cells).

The same is reported for the ground truth flattened to one label per pixel, the best any
flat-label tool could do: each pixel under several cells goes to one of them (the one whose
own nucleus covers it, else the smallest: in a translucent overlap the smaller cell is the
one seen whole), so each cell keeps only its visible part. Nuclei, which do not overlap, are
kept whole and belong to the flat cell holding most of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from ..data.instances import AnnotatedImage, CellClass, Instance, encode_mask

OVERLAPPED = 0.1  # overlapped fraction from which a cell counts as overlapped
MATCH_IOU = 0.5


def _cells_and_nuclei(instances: list[Instance]) -> tuple[list[Instance], dict[int, int]]:
    """Cells, and each cell's total nucleus area by cell id."""
    cells = [i for i in instances if i.category is CellClass.CYTOPLASM]
    nucleus_area: dict[int, int] = {}
    for nucleus in (i for i in instances if i.category is CellClass.NUCLEUS and i.parent is not None):
        nucleus_area[nucleus.parent] = nucleus_area.get(nucleus.parent, 0) + nucleus.area
    return cells, nucleus_area


def flatten(sample: AnnotatedImage) -> list[Instance]:
    """`sample`'s instances with the cells cut to one owner per pixel (see the module doc)."""
    cells, _ = _cells_and_nuclei(sample.instances)
    nuclei = [i for i in sample.instances if i.category is CellClass.NUCLEUS]
    if not cells:
        return list(nuclei)
    masks = mask_utils.decode([c.rle for c in cells]).astype(bool).transpose(2, 0, 1)
    # Priority per pixel: a cell's own nucleus first, then the smaller cell.
    order = np.argsort([c.area for c in cells], kind="stable")
    rank = np.empty(len(cells), int)
    rank[order] = np.arange(len(cells))
    priority = np.where(masks, len(cells) - rank[:, None, None], 0).astype(np.int32)
    index = {c.id: k for k, c in enumerate(cells)}
    for nucleus in nuclei:
        if nucleus.parent in index:
            k = index[nucleus.parent]
            priority[k][nucleus.mask & masks[k]] = 2 * len(cells) + 1
    owner = priority.argmax(axis=0)
    covered = masks.any(axis=0)
    flat = [Instance(c.id, CellClass.CYTOPLASM, encode_mask(covered & (owner == k)), score=1.0)
            for k, c in enumerate(cells)]
    labels = np.where(covered, owner, -1)
    for nucleus in nuclei:
        under = labels[nucleus.mask]
        under = under[under >= 0]
        parent = cells[np.bincount(under).argmax()].id if under.size else None
        flat.append(Instance(nucleus.id, CellClass.NUCLEUS, nucleus.rle, parent=parent))
    return flat


def _overlapped_fractions(cells: list[Instance]) -> np.ndarray:
    if not cells:
        return np.zeros(0)
    masks = mask_utils.decode([c.rle for c in cells]).astype(bool).transpose(2, 0, 1)
    under_others = masks.sum(axis=0) > 1
    return np.array([(under_others & m).sum() / max(m.sum(), 1) for m in masks])


def _errors(truth: Sequence[AnnotatedImage], predictions: Mapping[str, list[Instance]], score_threshold: float):
    """Per matched ground-truth cell: (overlapped, cell area error, nucleus area error, N/C error)."""
    rows = []
    for sample in truth:
        true_cells, true_nuclei = _cells_and_nuclei(sample.instances)
        kept = [i for i in predictions.get(sample.name, []) if i.score >= score_threshold]
        found_cells, found_nuclei = _cells_and_nuclei(kept)
        if not true_cells or not found_cells:
            continue
        iou = np.asarray(mask_utils.iou([c.rle for c in found_cells], [c.rle for c in true_cells],
                                        [0] * len(true_cells)))
        overlapped = _overlapped_fractions(true_cells) >= OVERLAPPED
        for f, t in zip(*linear_sum_assignment(-iou)):
            if iou[f, t] < MATCH_IOU:
                continue
            true_cell, found_cell = true_cells[t], found_cells[f]
            true_area, found_area = true_cell.area, found_cell.area
            true_nucleus, found_nucleus = true_nuclei.get(true_cell.id, 0), found_nuclei.get(found_cell.id, 0)

            def relative(found: float, true: float) -> float | None:
                return abs(found - true) / true if true > 0 else None

            rows.append((bool(overlapped[t]), relative(found_area, true_area), relative(found_nucleus, true_nucleus),
                         relative(found_nucleus / found_area, true_nucleus / true_area)))
    return rows


def _summary(rows) -> dict:
    def median(values):
        values = [v for v in values if v is not None]
        return float(np.median(values)) if values else None

    out = {}
    for group, chosen in (("all", rows), ("overlapped", [r for r in rows if r[0]])):
        out[group] = {"cells": len(chosen), "cell_area": median(r[1] for r in chosen),
                      "nucleus_area": median(r[2] for r in chosen), "nc_ratio": median(r[3] for r in chosen)}
    return out


def measurement_accuracy(truth: Sequence[AnnotatedImage], predictions: Mapping[str, list[Instance]],
                         score_threshold: float = 0.5) -> dict:
    """Median absolute relative errors of `predictions` (scoring at least `score_threshold`)
    and of the flattened ground truth, for all matched cells and for overlapped ones."""
    flat = {sample.name: flatten(sample) for sample in truth}
    return {"score_threshold": score_threshold, "match_iou": MATCH_IOU, "overlapped_from": OVERLAPPED,
            "predicted": _summary(_errors(truth, predictions, score_threshold)),
            "flattened_truth": _summary(_errors(truth, flat, 0.0))}


MEASUREMENT_COLUMNS = ("cells", "matched", "cell area", "nucleus area", "N/C ratio")


def measurement_rows(accuracy: dict) -> list[list[str]]:
    """`measurement_accuracy`'s figures as table rows (`MEASUREMENT_COLUMNS`, errors in %)."""
    rows = []
    for source, label in (("predicted", "predicted"), ("flattened_truth", "flat truth")):
        for group in ("all", "overlapped"):
            figures = accuracy[source][group]
            rows.append([f"{label}, {group}", str(figures["cells"])] + [
                "-" if figures[k] is None else f"{100 * figures[k]:.1f}%" for k in ("cell_area", "nucleus_area",
                                                                                     "nc_ratio")])
    return rows
