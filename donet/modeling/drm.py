"""DRM, the Dual-path Region segmentation Module (paper §3.2).

Two heads with H_i's architecture predict each cell's intersection with other cells (H_o)
and its complement (H_m), each from a Concatenation Unit on cat[f_roi, f_c].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mask_head import MaskHead, conv_chain, labelled_channel


class ConcatenationUnit(nn.Module):
    """conv chain on cat[f_roi, f_c]: paper 512 -> 512 -> 512 -> 256 (depth 3); the official
    code's loop bug leaves one conv 512 -> 256 (depth 1)."""

    def __init__(self, roi_channels: int, coarse_channels: int, depth: int):
        super().__init__()
        self.convs = conv_chain(roi_channels + coarse_channels, coarse_channels, depth)

    def forward(self, roi_features: torch.Tensor, coarse_features: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([roi_features, coarse_features], dim=1))


class DualPathRegionModule(nn.Module):
    def __init__(self, roi_channels: int, width: int, num_classes: int, concat_depth: int):
        super().__init__()
        self.intersection_unit = ConcatenationUnit(roi_channels, width, concat_depth)
        self.complement_unit = ConcatenationUnit(roi_channels, width, concat_depth)
        self.intersection_head = MaskHead(width, width, num_classes)
        self.complement_head = MaskHead(width, width, num_classes)

    def forward(self, roi_features: torch.Tensor, coarse_features: torch.Tensor):
        """Returns (f_o, intersection logits, f_m, complement logits)."""
        f_o, o_logits = self.intersection_head(self.intersection_unit(roi_features, coarse_features))
        f_m, m_logits = self.complement_head(self.complement_unit(roi_features, coarse_features))
        return f_o, o_logits, f_m, m_logits


def decomposition_loss(o_logits, m_logits, labels, o_targets, m_targets) -> torch.Tensor:
    """L_dec = BCE(o_hat, o) + BCE(m_hat, m) on each RoI's class channel."""
    if len(labels) == 0:
        return o_logits.sum() * 0 + m_logits.sum() * 0
    return (F.binary_cross_entropy_with_logits(labelled_channel(o_logits, labels), o_targets)
            + F.binary_cross_entropy_with_logits(labelled_channel(m_logits, labels), m_targets))
