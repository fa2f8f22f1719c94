"""DoNet and Mask R-CNN at the same load: every model keeps exactly K detections in all
(score threshold 0; with MRP, K/2 cells and K/2 nuclei from its two stacks), so their mask
branches carry the same number of RoIs (model_speed.py, model_flops.py, throughput.py)."""

from __future__ import annotations

import torch

from donet.modeling import DoNet, build_model

# Each size at its own input side: the light preset's native 512 px, the paper's 800.
SIDES = {"light": 512, "paper": 800}


def keeping(model: DoNet, detections: int) -> DoNet:
    """`model`, keeping exactly `detections` in all."""
    stacks = [heads for heads in (model.roi_heads, model.nucleus_roi_heads) if heads is not None]
    for heads in stacks:
        heads.score_thresh, heads.detections_per_img = 0.0, detections // len(stacks)
    return model


def untrained(preset: str, size: str, detections: int, device: torch.device | str = "cpu") -> DoNet:
    """`preset` at `size`, untrained (seed 0), in eval mode at its side, keeping `detections`."""
    torch.manual_seed(0)
    side = SIDES[size]
    return keeping(build_model(preset, size, min_size=side, max_size=side), detections).to(device).eval()
