"""Metric protocols over per-image `Pairs` of one class (SPEC §6).

Images where a class has neither ground truth nor predictions carry no information about
it and are left out of that class' per-image averages.
"""

from __future__ import annotations

import numpy as np

from .matching import Pairs, greedy_matches, optimal_matches


def _informative(images: list[Pairs]) -> list[Pairs]:
    return [p for p in images if p.iou.shape != (0, 0)]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def paper_aji(pairs: Pairs) -> float:
    """DoNet's AJI: ground truths in order each take the unused prediction of highest IoU
    if that IoU >= 0.5; unmatched ground truths and predictions add their areas to the union."""
    used, intersection, union = set(), 0.0, 0.0
    for g in range(pairs.iou.shape[1]):
        candidates = [(pairs.iou[p, g], p) for p in range(pairs.iou.shape[0]) if p not in used]
        best_iou, best = max(candidates, default=(0.0, None))
        if best is not None and best_iou >= 0.5:
            used.add(best)
            intersection += pairs.intersection[best, g]
            union += pairs.union[best, g]
        else:
            union += pairs.gt_area[g]
    union += sum(pairs.pred_area[p] for p in range(len(pairs.pred_area)) if p not in used)
    return intersection / union if union else 1.0


def paper_protocol(images: list[Pairs]) -> dict[str, float]:
    """F1 (one-to-one IoU matching, TP at IoU > 0.5) and AJI per image, averaged over
    images; Dice over greedy one-to-one Dice matches above 0.7, pooled over images."""
    images = _informative(images)
    f1, aji, dice = [], [], []
    for pairs in images:
        n_pred, n_gt = pairs.iou.shape
        tp = len(optimal_matches(pairs.iou, 0.5))
        f1.append(2 * tp / (n_pred + n_gt))
        aji.append(paper_aji(pairs))
        dice += [pairs.dice[p, g] for p, g in greedy_matches(pairs.dice, 0.7)]
    return {"f1": _mean(f1), "aji": _mean(aji), "dice": _mean(dice)}


def kumar_aji(pairs: Pairs) -> float:
    """Kumar et al. (2017): each ground truth takes its highest-IoU prediction (a prediction
    may serve several); predictions never taken add their areas to the union."""
    intersection, union, used = 0.0, 0.0, set()
    for g in range(pairs.iou.shape[1]):
        if pairs.iou.shape[0] and pairs.iou[:, g].max() > 0:
            p = int(pairs.iou[:, g].argmax())
            intersection += pairs.intersection[p, g]
            union += pairs.union[p, g]
            used.add(p)
        else:
            union += pairs.gt_area[g]
    union += sum(pairs.pred_area[p] for p in range(len(pairs.pred_area)) if p not in used)
    return intersection / union if union else 1.0


def aji_plus(pairs: Pairs) -> float:
    """AJI+ (Graham et al., 2019): as Kumar's, but with a one-to-one matching that maximises
    the total IoU, so no prediction is counted twice."""
    matches = optimal_matches(pairs.iou, 0.0)
    matched_pred, matched_gt = {p for p, _ in matches}, {g for _, g in matches}
    intersection = sum(pairs.intersection[p, g] for p, g in matches)
    union = (sum(pairs.union[p, g] for p, g in matches)
             + sum(a for g, a in enumerate(pairs.gt_area) if g not in matched_gt)
             + sum(a for p, a in enumerate(pairs.pred_area) if p not in matched_pred))
    return intersection / union if union else 1.0


def standard_protocol(images: list[Pairs]) -> dict[str, float]:
    """Kumar AJI, AJI+ and PQ per image, averaged over images; F1 at IoU 0.5 pooled over the dataset."""
    images = _informative(images)
    kumar, plus, pq, sq, dq = [], [], [], [], []
    tp = fp = fn = 0
    for pairs in images:
        n_pred, n_gt = pairs.iou.shape
        kumar.append(kumar_aji(pairs))
        plus.append(aji_plus(pairs))
        matches = optimal_matches(pairs.iou, 0.5)
        matched_iou = [pairs.iou[p, g] for p, g in matches]
        detection = len(matches) / (len(matches) + 0.5 * (n_pred - len(matches)) + 0.5 * (n_gt - len(matches)))
        segmentation = float(np.mean(matched_iou)) if matched_iou else 0.0
        dq.append(detection)
        sq.append(segmentation)
        pq.append(detection * segmentation)
        tp, fp, fn = tp + len(matches), fp + n_pred - len(matches), fn + n_gt - len(matches)
    return {"aji_kumar": _mean(kumar), "aji_plus": _mean(plus), "pq": _mean(pq), "sq": _mean(sq), "dq": _mean(dq),
            "f1_at_0.5": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")}


def isbi_protocol(images: list[Pairs]) -> dict[str, float]:
    """ISBI 2014 challenge: each cell's best prediction by Dice is a "good" segmentation if
    Dice > 0.7. Dice averaged over good ones; FN_o the share of cells without one; TP_p =
    |S and G| / |G| and FP_p = |S - G| / |image - G| averaged over good ones."""
    dice, tp_rate, fp_rate, cells = [], [], [], 0
    for pairs in images:
        cells += pairs.iou.shape[1]
        if pairs.iou.shape[0] == 0:
            continue
        for g in range(pairs.iou.shape[1]):
            p = int(pairs.dice[:, g].argmax())
            if pairs.dice[p, g] > 0.7:
                overlap = pairs.intersection[p, g]
                dice.append(pairs.dice[p, g])
                tp_rate.append(overlap / pairs.gt_area[g])
                fp_rate.append((pairs.pred_area[p] - overlap) / max(pairs.image_pixels - pairs.gt_area[g], 1))
    return {"dice": _mean(dice), "fn_o": 1 - len(dice) / cells if cells else float("nan"),
            "tp_p": _mean(tp_rate), "fp_p": _mean(fp_rate)}
