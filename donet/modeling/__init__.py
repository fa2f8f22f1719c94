"""The DoNet model, composed from torchvision's detection parts."""

from .config import ConsistencyMode, ModelConfig
from .donet import DoNet
from .presets import LADDER, SIZES, build_model, preset_config
from .targets import image_tensor, training_target

__all__ = ["ConsistencyMode", "DoNet", "LADDER", "ModelConfig", "SIZES", "build_model", "image_tensor",
           "preset_config", "training_target"]
