"""Evaluation of overlapping instance segmentation: COCO AP, the DoNet paper's protocol,
standard nuclei-segmentation metrics and the ISBI 2014 challenge's."""

from .scores import (
    MAX_DETS,
    PAPER_SCORE_THRESHOLD,
    STANDARD_SCORE_THRESHOLD,
    TABLE_ROWS,
    evaluate,
    evaluate_model,
    json_safe,
    markdown_table,
    model_predictions,
    table_rows,
)

__all__ = ["MAX_DETS", "PAPER_SCORE_THRESHOLD", "STANDARD_SCORE_THRESHOLD", "TABLE_ROWS", "evaluate",
           "evaluate_model", "json_safe", "markdown_table", "model_predictions", "table_rows"]
