"""MRP, the Mask-guided Region Proposal strategy (paper §3.3, Fig. 3).

The recombined cytoplasm logits of the cell stack are pasted into image space at their
boxes, passed through ReLU, summed over instances and squashed by a sigmoid: the
attention map M (0.5 on background, in [0.5, 1) everywhere). Every FPN level is multiplied
by M, and nuclei are proposed and segmented on the re-weighted features, so that dark
round objects outside cells lose weight. Nothing is detached: the nucleus losses train the
backbone and the cell heads through M.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def paste_logits(boxes: torch.Tensor, logits: torch.Tensor, size: tuple[int, int], stride: float) -> torch.Tensor:
    """Differentiably paste (K, M, M) RoI logits at `boxes` (image coordinates) onto a
    (K, h, w) grid whose cells are `stride` image pixels; zero outside each box."""
    height, width = size
    ys = (torch.arange(height, device=boxes.device, dtype=logits.dtype) + 0.5) * stride
    xs = (torch.arange(width, device=boxes.device, dtype=logits.dtype) + 0.5) * stride
    x0, y0, x1, y1 = boxes.to(logits.dtype).unbind(dim=1)
    # grid_sample's [-1, 1] spans the RoI's outer edges (align_corners=False), as RoIAlign's bins do.
    gx = (xs[None, :] - x0[:, None]) / (x1 - x0).clamp(min=1e-3)[:, None] * 2 - 1
    gy = (ys[None, :] - y0[:, None]) / (y1 - y0).clamp(min=1e-3)[:, None] * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(-1, height, -1), gy[:, :, None].expand(-1, -1, width)], dim=-1)
    return F.grid_sample(logits[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def attention_map(mask_rois: list[tuple[torch.Tensor, torch.Tensor]], size: tuple[int, int],
                  stride: float) -> torch.Tensor:
    """(B, 1, h, w) attention from each image's (boxes, cytoplasm logits)."""
    maps = []
    for boxes, logits in mask_rois:
        if len(boxes) == 0:
            maps.append(logits.new_zeros(size) + logits.sum() * 0)
        else:
            maps.append(paste_logits(boxes, logits, size, stride).relu().sum(dim=0))
    # Past 15 the sigmoid rounds to 1 in float32 (its gradient is below 1e-6 there anyway):
    # the cap keeps M strictly inside [0.5, 1).
    return torch.stack(maps)[:, None].clamp(max=15).sigmoid()


def reweight(features: dict[str, torch.Tensor], attention: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every FPN level times the attention map, resized to the level (nearest)."""
    return {name: level * F.interpolate(attention, size=level.shape[-2:], mode="nearest")
            for name, level in features.items()}
