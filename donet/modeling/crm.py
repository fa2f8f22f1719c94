"""CRM, the semantic Consistency-guided Recombination Module (paper §3.3).

The Fusion Unit merges f_roi, f_o and f_m; the fused feature goes through the SAME instance
head H_i (same parameters) to give the recombined mask, which a consistency loss ties to
the XOR merge of the intersection and complement predictions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConsistencyMode
from .mask_head import conv_chain, labelled_channel


class FusionUnit(nn.Module):
    """conv chain on cat[f_roi, f_o, f_m]: paper 768 -> 768 -> 768 -> 256, back to f_roi's width
    so that H_i can take it."""

    def __init__(self, roi_channels: int, region_channels: int, depth: int):
        super().__init__()
        self.convs = conv_chain(roi_channels + 2 * region_channels, roi_channels, depth)

    def forward(self, roi_features, intersection_features, complement_features) -> torch.Tensor:
        return self.convs(torch.cat([roi_features, intersection_features, complement_features], dim=1))


def soft_xor(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Differentiable XOR of two probability maps: p + q - 2pq (exact on 0/1 inputs)."""
    return p + q - 2 * p * q


def consistency_loss(r_logits, o_logits, m_logits, labels, mode: ConsistencyMode, detach_merge: bool) -> torch.Tensor:
    """L_cons between the recombined mask and F_merge(o_hat, m_hat) (paper Eq. 4).

    SOFT: BCE(e_r, soft_xor(sigmoid o_hat, sigmoid m_hat)), gradient to both sides unless
    `detach_merge`. OFFICIAL: as the authors' code, both sides thresholded at 0.5 and the
    direction reversed (the merge scored against the recombined mask): no gradient at all.
    """
    if len(labels) == 0:
        return r_logits.sum() * 0
    r, o, m = (labelled_channel(x, labels) for x in (r_logits, o_logits, m_logits))
    if mode is ConsistencyMode.OFFICIAL:
        with torch.no_grad():
            merged = ((o.sigmoid() > 0.5) ^ (m.sigmoid() > 0.5)).float()
            return F.binary_cross_entropy_with_logits(merged, (r.sigmoid() > 0.5).float())
    merged = soft_xor(o.sigmoid(), m.sigmoid())
    if detach_merge:
        merged = merged.detach()
    return F.binary_cross_entropy_with_logits(r, merged.clamp(0, 1))
