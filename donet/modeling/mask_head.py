"""H_i's architecture, shared by the instance, intersection and complement heads (SPEC §3)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from .backbone import group_norm


class MaskHead(nn.Module):
    """4 conv3x3 -> features f (14x14); deconv 2x2 stride 2 + ReLU + conv1x1 -> class-specific
    28x28 logits. `features` and `predict` are exposed separately because CRM feeds the
    fused feature through the SAME instance head, and DRM consumes f."""

    def __init__(self, in_channels: int, width: int, num_classes: int):
        super().__init__()
        self.convs = MaskRCNNHeads(in_channels, [width] * 4, dilation=1, norm_layer=group_norm)
        self.predictor = MaskRCNNPredictor(width, width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.predictor(features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.convs(x)
        return features, self.predictor(features)


def conv_chain(in_channels: int, out_channels: int, depth: int) -> nn.Sequential:
    """`depth` conv3x3 + GroupNorm + ReLU layers: in -> in -> ... -> out (the paper's units)."""
    layers = []
    for index in range(depth):
        out = out_channels if index == depth - 1 else in_channels
        layers += [nn.Conv2d(in_channels, out, 3, padding=1, bias=False), group_norm(out), nn.ReLU(inplace=True)]
    chain = nn.Sequential(*layers)
    for layer in chain.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    return chain


def labelled_channel(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, C, M, M) class-specific logits -> (K, M, M) at each RoI's class."""
    return logits[torch.arange(len(labels), device=logits.device), labels]
