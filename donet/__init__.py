"""donet: DoNet (CVPR 2023) instance segmentation of overlapping, translucent cells.

    model = donet.load_model()                    # the shipped model; or a checkpoint path
    result = donet.segment(model, image)          # AnnotatedImage of overlapping instances
    segmenter = donet.Segmenter(model, device="cuda")  # a GPU takes 8 images or tiles a step
    for done in segmenter.segment_many(paths):    # batched across images, read ahead
        ...
    model = donet.build_model("donet")            # preset: maskrcnn, drm, drm_crm, donet

The model API needs torch; `donet.data`, `donet.io` and `donet.evaluation` do not, so
they are imported here only on first use of a model name.
"""

import importlib

__version__ = "0.1.0"

_MODEL_API = {
    "segment": "inference", "Segmenter": "inference", "InferenceSettings": "inference",
    "DoNet": "modeling", "ModelConfig": "modeling", "build_model": "modeling", "preset_config": "modeling",
    "load_model": "modeling.weights", "load_weights": "modeling.weights", "save_weights": "modeling.weights",
}

__all__ = sorted(_MODEL_API)


def __getattr__(name: str):
    if name in _MODEL_API:
        return getattr(importlib.import_module(f".{_MODEL_API[name]}", __name__), name)
    raise AttributeError(f"module 'donet' has no attribute '{name}'")
