"""Overlap of every prediction with every ground-truth instance of one image and class.

Intersections and unions follow exactly from pycocotools' IoU and the two areas
(I = IoU (A + B) / (1 + IoU), U = (A + B) / (1 + IoU)), so no patched pycocotools is
needed, and masks may overlap each other freely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment


@dataclass
class Pairs:
    iou: np.ndarray  # (P, G)
    pred_area: np.ndarray  # (P,)
    gt_area: np.ndarray  # (G,)
    image_pixels: int

    @classmethod
    def of(cls, predicted: list[dict], truth: list[dict]) -> Pairs:
        """From RLEs of the predictions and of the ground truth (same image size)."""
        size = (truth or predicted or [{"size": [0, 0]}])[0]["size"]
        iou = (np.asarray(mask_utils.iou(predicted, truth, [0] * len(truth)), dtype=np.float64).reshape(
            len(predicted), len(truth)) if predicted and truth else np.zeros((len(predicted), len(truth))))
        return cls(iou, _areas(predicted), _areas(truth), int(size[0]) * int(size[1]))

    @property
    def sums(self) -> np.ndarray:
        return self.pred_area[:, None] + self.gt_area[None, :]

    @property
    def intersection(self) -> np.ndarray:
        return self.iou * self.sums / (1 + self.iou)

    @property
    def union(self) -> np.ndarray:
        return self.sums / (1 + self.iou)

    @property
    def dice(self) -> np.ndarray:
        return 2 * self.iou / (1 + self.iou)


def _areas(rles: list[dict]) -> np.ndarray:
    return np.asarray(mask_utils.area(rles), dtype=np.float64).reshape(-1) if rles else np.zeros(0)


def optimal_matches(score: np.ndarray, minimum: float) -> list[tuple[int, int]]:
    """One-to-one (pred, gt) pairs maximising the summed `score`, keeping pairs above `minimum`."""
    if score.size == 0:
        return []
    rows, cols = linear_sum_assignment(score, maximize=True)
    return [(r, c) for r, c in zip(rows, cols) if score[r, c] > minimum]


def greedy_matches(score: np.ndarray, minimum: float) -> list[tuple[int, int]]:
    """One-to-one (pred, gt) pairs taken in decreasing `score` while it stays above `minimum`."""
    if score.size == 0:
        return []
    order = np.argsort(-score, axis=None, kind="stable")
    used_pred, used_gt, pairs = set(), set(), []
    for flat in order:
        p, g = np.unravel_index(flat, score.shape)
        if score[p, g] <= minimum:
            break
        if p not in used_pred and g not in used_gt:
            used_pred.add(p)
            used_gt.add(g)
            pairs.append((int(p), int(g)))
    return pairs
