"""Evaluation of predicted instances (or of a model) against ground truth: every protocol, per
class and averaged."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..data.instances import AnnotatedImage, CellClass, Instance
from ..errors import DonetError
from .coco_map import segm_ap
from .matching import Pairs
from .measurement_accuracy import measurement_accuracy
from .protocols import isbi_protocol, paper_protocol, standard_protocol

CLASSES = {"cytoplasm": CellClass.CYTOPLASM, "nucleus": CellClass.NUCLEUS}
# The defaults of `evaluate` (and of `donet evaluate`): the official scripts' score threshold
# for the paper's and the ISBI protocols, the standard protocol's, and the detections per
# image COCO AP counts (COCO's own 100 would cut crowded images short).
PAPER_SCORE_THRESHOLD = 0.9
STANDARD_SCORE_THRESHOLD = 0.5
MAX_DETS = 1000


def evaluate(truth: Sequence[AnnotatedImage], predictions: Mapping[str, list[Instance]],
             paper_score_threshold: float = PAPER_SCORE_THRESHOLD,
             standard_score_threshold: float = STANDARD_SCORE_THRESHOLD, max_dets: int = MAX_DETS) -> dict:
    """Scores of `predictions` (image name -> scored instances) against `truth`.

    COCO AP uses every prediction; the paper's and the ISBI protocols keep predictions
    scoring at least `paper_score_threshold`, the standard protocol those at least
    `standard_score_threshold`, as do the measurement errors (see `measurement_accuracy`).
    A ground-truth image without predictions counts as predicted empty (reported in
    `images_without_predictions`); predictions for images not in the ground truth are an error.
    """
    names = [sample.name for sample in truth]
    unknown = sorted(set(predictions) - set(names))
    if unknown:
        raise DonetError(None, f"predictions for {len(unknown)} image(s) not in the ground truth, e.g. "
                               f"{', '.join(unknown[:3])}")
    sizes = {}
    for sample in truth:
        size = tuple(sample.instances[0].shape) if sample.instances else tuple(sample.size)
        sizes[sample.name] = size
        for inst in predictions.get(sample.name, []):
            if tuple(inst.shape) != size:
                raise DonetError(None, f"image {sample.name}: predicted mask is {inst.shape[1]}x{inst.shape[0]} "
                                       f"but the ground truth is {size[1]}x{size[0]}")
    predicted = [predictions.get(name, []) for name in names]
    ap = segm_ap([(sizes[s.name], s.instances) for s in truth], predicted, max_dets)

    per_class = {}
    for class_name, category in CLASSES.items():
        def pairs_at(threshold: float) -> list[Pairs]:
            return [Pairs.of([i.rle for i in preds if i.category == category and i.score >= threshold],
                             [i.rle for i in sample.instances if i.category == category])
                    for sample, preds in zip(truth, predicted)]

        paper_pairs = pairs_at(paper_score_threshold)
        per_class[class_name] = {
            "coco": ap[int(category)],
            "paper": paper_protocol(paper_pairs),
            "standard": standard_protocol(pairs_at(standard_score_threshold)),
            "isbi": isbi_protocol(paper_pairs),
        }
    average = {protocol: {metric: _nanmean([per_class[c][protocol][metric] for c in CLASSES])
                          for metric in per_class["cytoplasm"][protocol]}
               for protocol in per_class["cytoplasm"]}
    return {
        "images": len(truth),
        "images_without_predictions": sum(1 for name in names if name not in predictions),
        "settings": {"paper_score_threshold": paper_score_threshold,
                     "standard_score_threshold": standard_score_threshold, "max_dets": max_dets},
        "classes": {**per_class, "average": average},
        # Cell area, nucleus area and N/C ratio of matched cells, at the standard threshold.
        "measurements": measurement_accuracy(truth, predictions, standard_score_threshold),
    }


def model_predictions(model, truth: Iterable[AnnotatedImage], device: str | None = None,
                      progress: Callable[[], None] | None = None, **settings) -> dict[str, list[Instance]]:
    """What `model` (a `DoNet`) finds in `truth`'s images, by image name: every detection (score
    threshold 0), as AP ranks them and the protocols apply their own score thresholds, on
    `device` (None: the inference settings' default), under any other `InferenceSettings`
    fields given (e.g. `mask_threshold`). `progress()` is called after each image."""
    # Imported here: inference needs torch, which scoring saved predictions does without.
    from ..inference import Segmenter

    found = {}
    for done in Segmenter(model, device=device, score_threshold=0.0, **settings).segment_many(truth):
        if done.problem is not None:
            raise DonetError(None, done.problem)  # the problem names its file
        found[done.name] = done.instances
        if progress:
            progress()
    return found


def evaluate_model(model, truth: Sequence[AnnotatedImage], device: str | None = None,
                   progress: Callable[[], None] | None = None, **thresholds) -> dict:
    """`evaluate` of `model_predictions`."""
    return evaluate(truth, model_predictions(model, truth, device, progress), **thresholds)


def json_safe(value):
    """NaN (a metric with nothing to measure) as null, so the output is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


# (protocol, metric, label, shown as a percentage)
TABLE_ROWS = [
    ("coco", "ap", "mAP", True), ("coco", "ap50", "AP50", True), ("coco", "ap75", "AP75", True),
    ("paper", "dice", "Dice (paper)", True), ("paper", "f1", "F1 (paper)", True), ("paper", "aji", "AJI (paper)", True),
    ("standard", "aji_kumar", "AJI (Kumar)", True), ("standard", "aji_plus", "AJI+", True),
    ("standard", "pq", "PQ", True), ("standard", "f1_at_0.5", "F1@0.5", True),
    ("isbi", "dice", "ISBI Dice", False), ("isbi", "fn_o", "ISBI FN_o", False),
    ("isbi", "tp_p", "ISBI TP_p", False), ("isbi", "fp_p", "ISBI FP_p", False),
]


def table_rows(results: dict) -> list[list[str]]:
    """Rows of metric, cytoplasm, nucleus, average (percentages as in the paper's tables)."""
    rows = []
    for protocol, metric, label, percent in TABLE_ROWS:
        row = [label]
        for class_name in ("cytoplasm", "nucleus", "average"):
            value = results["classes"][class_name][protocol][metric]
            row.append("-" if value is None or math.isnan(value) else f"{100 * value:.2f}" if percent else f"{value:.4f}")
        rows.append(row)
    return rows


def markdown_table(results: dict) -> str:
    lines = ["| metric | cytoplasm | nucleus | average |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines)
