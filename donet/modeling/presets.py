"""The paper's ablation ladder (Table 3/4) in two sizes.

`paper`: ResNet-50-FPN, 256 channels, the paper's input size: for GPUs.
`light`: sized for CPUs from measured costs: most CPU time goes to the 256-channel FPN, RPN
and mask-head convolutions, not the backbone, so the light preset narrows those (64
channels), uses ResNet-18, keeps 300 proposals and 64 RoIs per image, and works at the
native 512 px of ISBI 2014 instead of upscaling to 800. Its smaller anchors (16-256 px)
suit nuclei at that scale. Its Concatenation and Fusion Units are one conv deep (the
official code's effective depth for the former): at three, DoNet's mask branch costs about
14 times Mask R-CNN's per RoI, which dominates CPU inference on crowded images.
"""

from __future__ import annotations

from .config import Backbone, ModelConfig
from .donet import DoNet

LADDER = {
    "maskrcnn": {"drm": False, "crm": False, "mrp": False},
    "drm": {"drm": True, "crm": False, "mrp": False},
    "drm_crm": {"drm": True, "crm": True, "mrp": False},
    "donet": {"drm": True, "crm": True, "mrp": True},
    # Control rung, not in the paper: both stacks, attention map off (M = 1).
    "donet_no_attention": {"drm": True, "crm": True, "mrp": True, "mrp_attention": False},
}

SIZES = {
    "paper": {},
    "light": {
        "backbone": Backbone.RESNET18, "fpn_channels": 64, "mask_head_channels": 64, "box_head_dim": 256,
        "anchor_sizes": (16, 32, 64, 128, 256), "min_size": 512, "max_size": 1024,
        "rpn_pre_nms_top_n_train": 1000, "rpn_post_nms_top_n_train": 300,
        "rpn_pre_nms_top_n_test": 600, "rpn_post_nms_top_n_test": 300,
        "box_batch_size_per_image": 64, "concat_unit_depth": 1, "fusion_unit_depth": 1,
    },
}


def preset_config(preset: str = "donet", size: str = "light", **overrides) -> ModelConfig:
    """The config of `preset` (maskrcnn, drm, drm_crm, donet) at `size` (light, paper),
    with any field overridden."""
    if preset not in LADDER:
        raise ValueError(f"unknown preset '{preset}' (choose from {', '.join(LADDER)})")
    if size not in SIZES:
        raise ValueError(f"unknown size '{size}' (choose from {', '.join(SIZES)})")
    return ModelConfig(**{**SIZES[size], **LADDER[preset], **overrides})


def build_model(preset: str = "donet", size: str = "light", **overrides) -> DoNet:
    return DoNet(preset_config(preset, size, **overrides))
