"""RoI masks pasted into image space, many at once on the model's device, and the probability
maps of the paper's Fig. 6.

torchvision pastes one detection per call (`paste_mask_in_image`), which on a GPU costs a
few kernel launches per cell. Here every detection of a tile is pasted by one gather on
the device, then thresholded, and only the boolean crops travel to the CPU. Each mask is
pasted into a small canvas around its own box with exactly torchvision's geometry (the
mask padded by one pixel, the box widened to match, integer corners, bilinear resampling
as `F.interpolate` does it), so the result is the same wherever the box lies: a tile or
the whole image.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from ..data.instances import CellClass

CHUNK = 32  # detections pasted at once: bounds memory on crowded tiles


def paste_thresholded(probs: torch.Tensor, boxes: torch.Tensor,
                      thresholds: torch.Tensor) -> list[tuple[int, int, np.ndarray]]:
    """For (N, M, M) RoI probabilities at (N, 4) boxes (x0, y0, x1, y1), each thresholded at
    its own value: (top, left, boolean mask) per detection, the mask's corner in the
    boxes' coordinates."""
    out: list[tuple[int, int, np.ndarray]] = []
    for start in range(0, len(probs), CHUNK):
        chunk = slice(start, start + CHUNK)
        out += _paste_chunk(probs[chunk], boxes[chunk], thresholds[chunk].to(probs.device))
    return out


def _paste_chunk(probs, boxes, thresholds):
    n, size = len(probs), probs.shape[-1]
    # The canvas: the box with 2 pixels to spare on each side, at small coordinates (float32
    # box arithmetic at large coordinates would round differently).
    left = torch.floor(boxes[:, 0]) - 2
    top = torch.floor(boxes[:, 1]) - 2
    local = boxes - torch.stack([left, top, left, top], dim=1)
    heights = torch.ceil(local[:, 3]).long() + 3
    widths = torch.ceil(local[:, 2]).long() + 3
    # torchvision's expand_masks / expand_boxes: one pixel of zeros around the mask, the box
    # widened by (M + 2) / M about its centre, corners truncated to integers (in image
    # coordinates, where they are positive: floored here, as a large box's widened corner can
    # fall below this canvas' origin).
    padded = torch.nn.functional.pad(probs, (1, 1, 1, 1))
    scale = (size + 2) / size
    half_w, half_h = (local[:, 2] - local[:, 0]) * 0.5 * scale, (local[:, 3] - local[:, 1]) * 0.5 * scale
    centre_x, centre_y = (local[:, 2] + local[:, 0]) * 0.5, (local[:, 3] + local[:, 1]) * 0.5
    x0, x1 = torch.floor(centre_x - half_w).long(), torch.floor(centre_x + half_w).long()
    y0, y1 = torch.floor(centre_y - half_h).long(), torch.floor(centre_y + half_h).long()
    rows = _axis(y0, y1, heights, size + 2, int(heights.max()))
    cols = _axis(x0, x1, widths, size + 2, int(widths.max()))
    (r0, r1, ry, r_in), (c0, c1, cx, c_in) = rows, cols
    flat = padded.reshape(n, -1)
    stride = size + 2

    def at(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        index = (r[:, :, None] * stride + c[:, None, :]).reshape(n, -1)
        return flat.gather(1, index).reshape(n, r.shape[1], c.shape[1])

    cx, ry = cx[:, None, :], ry[:, :, None]
    # F.interpolate's bilinear order of operations, so the values match it bit for bit.
    values = ((1 - ry) * ((1 - cx) * at(r0, c0) + cx * at(r0, c1))
              + ry * ((1 - cx) * at(r1, c0) + cx * at(r1, c1)))
    inside = r_in[:, :, None] & c_in[:, None, :]
    masks = ((values >= thresholds[:, None, None]) & inside).cpu().numpy()
    tops, lefts = top.long().tolist(), left.long().tolist()
    return [(tops[k], lefts[k], masks[k, :heights[k], :widths[k]]) for k in range(n)]


def _axis(start: torch.Tensor, end: torch.Tensor, canvas: torch.Tensor, source: int, length: int):
    """Along one axis, for canvas pixels 0..length-1 of each detection: the two source pixels,
    the weight of the second, and whether the pixel lies inside the pasted box and canvas."""
    span = end - start + 1
    extent = span.clamp(min=1)
    position = torch.arange(length, device=start.device)
    index = position[None, :] - start[:, None]  # pixel within the resized mask
    step = source / extent.to(torch.float32)
    src = ((index.to(torch.float32) + 0.5) * step[:, None] - 0.5).clamp(min=0)
    low = src.long().clamp(max=source - 1)
    high = (low + 1).clamp(max=source - 1)
    weight = src - low.to(torch.float32)
    inside = (index >= 0) & (index < span[:, None]) & (position[None, :] < canvas[:, None])
    return low, high, weight, inside


def probability_maps(detection: dict[str, torch.Tensor], size: tuple[int, int],
                     score_threshold: float) -> dict[str, np.ndarray]:
    """Image-space maxima over detected cells of the intersection, complement and recombined
    probabilities (the paper's Fig. 6 heatmaps)."""
    keep = (detection["scores"] >= score_threshold) & (detection["labels"] == int(CellClass.CYTOPLASM))
    maps = {}
    for key, name in (("intersection_probs", "intersection"), ("complement_probs", "complement"),
                      ("mask_probs", "recombined")):
        if key not in detection:
            continue
        total = np.zeros(size, dtype=np.float32)
        probs, boxes = detection[key][keep], detection["mask_boxes"][keep]
        for start in range(0, len(probs), CHUNK):
            chunk = slice(start, start + CHUNK)
            pasted = paste_masks_in_image(probs[chunk, None], boxes[chunk], size, padding=1)[:, 0]
            total = np.maximum(total, pasted.max(dim=0).values.cpu().numpy())
        maps[name] = total
    return maps
