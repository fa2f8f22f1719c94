"""donet: DoNet (CVPR 2023) instance segmentation of overlapping, translucent cells.

    model = donet.build_model("donet")            # preset: maskrcnn, drm, drm_crm, donet
    donet.load_weights(model, "donet.safetensors")
    result = donet.segment(model, image)          # AnnotatedImage of overlapping instances
"""

from .inference import predict, segment
from .modeling import DoNet, ModelConfig, build_model, preset_config
from .weights import load_model, load_weights, save_weights

__version__ = "0.1.0"

__all__ = ["DoNet", "ModelConfig", "build_model", "load_model", "load_weights", "predict", "preset_config",
           "save_weights", "segment"]
