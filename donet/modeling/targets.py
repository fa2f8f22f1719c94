"""From the data layer's annotated images to the model's input tensors and targets."""

from __future__ import annotations

import numpy as np
import torch

from ..data.decomposition import decompose_image
from ..data.instances import AnnotatedImage
from .roi_heads import COMPLEMENT, INTERSECTION


def image_tensor(image: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """(3, H, W) float in [0, 1] on `device` (default the CPU) from gray (replicated) or colour
    (alpha dropped), 8- or 16-bit pixels: they travel as they are stored and are converted there."""
    # A read-only array (a memory map, a slide region) is copied: torch wants writable memory.
    pixels = torch.from_numpy(np.require(image, requirements="CW")).to(device, non_blocking=True)
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    pixels = pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)[:3]
    # Planes laid out while still 8 or 16 bits, so that the transform's normalisation, resize
    # and batching run on planar memory.
    pixels = pixels.contiguous().float() / scale
    return pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels


def training_target(sample: AnnotatedImage) -> dict[str, torch.Tensor]:
    """`boxes` (x0, y0, x1, y1), `labels` (CellClass values) and `masks`: one uint8 code per
    pixel and instance, COMPLEMENT or INTERSECTION inside the instance (SPEC §2)."""
    intersection, complement = decompose_image(sample)
    codes = complement.astype(np.uint8) * COMPLEMENT + intersection.astype(np.uint8) * INTERSECTION
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (inst.bbox for inst in sample.instances)]
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([int(inst.category) for inst in sample.instances], dtype=torch.int64),
        "masks": torch.from_numpy(codes),
    }
