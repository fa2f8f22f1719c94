"""COCO segmentation AP with pycocotools, on per-instance masks (overlaps allowed)."""

from __future__ import annotations

import contextlib
import io

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.instances import AnnotatedImage
from ..io.coco import categories, rle_to_json, to_coco


def segm_ap(truth: list[tuple[tuple[int, int], list]], predicted: list[list], max_dets: int) -> dict[int, dict]:
    """AP@[.5:.95], AP50 and AP75 per category id, from per-image ground-truth instances
    (with the image size) and predicted instances (with scores), in the same image order.

    `max_dets` replaces COCO's 100 detections per image. AP is read from the accumulated
    precision at area 'all' and the last maxDets: COCOeval.summarize() would assume 100.
    """
    # The ground truth as a COCO dataset, written as donet writes COCO (image ids from 1).
    dataset = to_coco(AnnotatedImage.without_pixels(str(k), size, instances) for k, (size, instances) in enumerate(truth))
    results = []
    for image_id, instances in enumerate(predicted, start=1):
        for inst in instances:
            results.append({"image_id": image_id, "category_id": int(inst.category),
                            "segmentation": rle_to_json(inst.rle), "score": float(inst.score)})
    ids = [c["id"] for c in categories()]
    if not results:
        return {c: {"ap": 0.0, "ap50": 0.0, "ap75": 0.0} for c in ids}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        ground_truth = COCO()
        ground_truth.dataset = dataset
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="segm")
        evaluation.params.maxDets = [1, 10, max_dets]
        evaluation.params.catIds = ids
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"]  # (IoU thresholds, recall, category, area, maxDets)
    scores = {}
    for k, category in enumerate(ids):
        def mean_of(values):
            values = values[values > -1]
            return float(values.mean()) if values.size else float("nan")

        scores[category] = {"ap": mean_of(precision[:, :, k, 0, -1]), "ap50": mean_of(precision[0, :, k, 0, -1]),
                            "ap75": mean_of(precision[5, :, k, 0, -1])}
    return scores
