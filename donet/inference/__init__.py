"""Inference: a `Segmenter` runs a model under `InferenceSettings` on images, datasets, files
and whole slides (`files.segment_files` writes an output folder and reports each input).

`InferenceSettings` and `Exports` are torch-free, so the command line reads their defaults
without loading torch; the rest is imported on first use.
"""

import importlib

from .settings import Exports, InferenceSettings

_LAZY = {
    "Segmenter": "segmenter", "Segmented": "segmenter", "segment": "segmenter", "probability_maps": "paste",
    "InputReport": "files", "Report": "files", "expand_inputs": "files",
    "segment_files": "files", "SlideRun": "slides",
}

__all__ = ["Exports", "InferenceSettings", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'donet.inference' has no attribute '{name}'")
