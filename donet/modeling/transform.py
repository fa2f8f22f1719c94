"""The model's input transform: torchvision's normalising, resizing and batching, with
sharper enlargement at test time."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class InputTransform(GeneralizedRCNNTransform):
    """torchvision's transform, except that an image it enlarges at test time is interpolated
    bicubically instead of bilinearly. Images whose cells are smaller than the training
    images' are enlarged to the model's scale (`--diameter`: twice for cells of half the
    size), and bilinear interpolation blurs the faint cytoplasm edges the model relies on
    (benchmarks/enlarge.py, on the train45 split). Shrinking, and training, stay bilinear."""

    enlarge_mode = "bicubic"  # "bilinear": torchvision's own, for comparison

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None):
        scale = min(self.min_size[-1] / min(image.shape[-2:]), self.max_size / max(image.shape[-2:]))
        if self.training or target is not None or self.fixed_size is not None or scale <= 1 \
                or self.enlarge_mode == "bilinear":
            return super().resize(image, target)
        enlarged = F.interpolate(image[None], scale_factor=scale, mode=self.enlarge_mode,
                                 recompute_scale_factor=True, align_corners=False)[0]
        return enlarged, target
