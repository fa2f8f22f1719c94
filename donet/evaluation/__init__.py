"""Evaluation of overlapping instance segmentation: COCO AP, the DoNet paper's protocol,
standard nuclei-segmentation metrics and the ISBI 2014 challenge's."""

from .evaluate import evaluate, json_safe, markdown_table, table_rows

__all__ = ["evaluate", "json_safe", "markdown_table", "table_rows"]
