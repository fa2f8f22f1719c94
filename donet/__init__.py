"""donet: DoNet (CVPR 2023) instance segmentation of overlapping, translucent cells.

    model = donet.load_model()                    # the shipped model; or a checkpoint path
    result = donet.segment(model, image)          # AnnotatedImage of overlapping instances
    model = donet.build_model("donet")            # preset: maskrcnn, drm, drm_crm, donet

The model API needs torch; `donet.data`, `donet.evaluation` and `donet.export` do not, so
they are imported here only on first use of a model name.
"""

import importlib

__version__ = "0.1.0"

_MODEL_API = {
    "predict": "inference", "segment": "inference",
    "DoNet": "modeling", "ModelConfig": "modeling", "build_model": "modeling", "preset_config": "modeling",
    "load_model": "weights", "load_weights": "weights", "save_weights": "weights",
}

__all__ = sorted(_MODEL_API)


def __getattr__(name: str):
    if name in _MODEL_API:
        return getattr(importlib.import_module(f".{_MODEL_API[name]}", __name__), name)
    raise AttributeError(f"module 'donet' has no attribute '{name}'")
