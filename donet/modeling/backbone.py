"""ResNet + FPN (P2-P6) that trains from scratch, with optional local pretrained weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ..errors import DonetError
from .config import ModelConfig


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm for heads and FPN: batch-size independent, so it trains from scratch on 2 images."""
    return nn.GroupNorm(min(32, channels // 4) if channels >= 8 else 1, channels)


def load_backbone_weights(body: nn.Module, path: str | Path) -> None:
    """A torchvision ResNet state dict (.pth or .safetensors) from a local file; the
    classifier is dropped and every other key must match."""
    path = Path(path)
    if not path.is_file():
        raise DonetError(path, "backbone weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for damaged files
        raise DonetError(path, f"not a readable weights file ({exc.__class__.__name__})") from None
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = body.load_state_dict(state, strict=False)
    except RuntimeError:  # shapes differ: another architecture
        raise DonetError(path, "weights do not fit the backbone (tensor shapes differ)") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise DonetError(path, f"weights do not fit the backbone ({len(missing)} missing, {len(unexpected)} unexpected keys)")


def resnet_fpn(config: ModelConfig) -> BackboneWithFPN:
    # BatchNorm (not torchvision's frozen default) so a backbone trained from scratch is
    # normalised; it also accepts ImageNet weights.
    body = getattr(resnet, config.backbone.value)(weights=None, norm_layer=nn.BatchNorm2d)
    if config.backbone_weights == "DEFAULT":
        # torchvision's ImageNet weights: downloaded once, so only where a network exists.
        try:
            state = resnet.get_weight(f"ResNet{config.backbone.value[6:]}_Weights.DEFAULT").get_state_dict(progress=False)
        except Exception as exc:  # no network, no cache: urllib and hub raise many types
            raise DonetError(None, f"cannot fetch torchvision's DEFAULT {config.backbone.value} weights "
                                   f"({exc.__class__.__name__}); give a local weights file instead") from None
        body.load_state_dict(state)
    elif config.backbone_weights:
        load_backbone_weights(body, config.backbone_weights)
    widths = [getattr(body, f"layer{i}")[-1].expansion * 64 * 2 ** (i - 1) for i in range(1, 5)]
    return BackboneWithFPN(
        body,
        return_layers={f"layer{i}": str(i - 1) for i in range(1, 5)},
        in_channels_list=widths,
        out_channels=config.fpn_channels,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=group_norm,
    )
