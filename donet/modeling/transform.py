"""The model's input transform: torchvision's normalising, resizing and batching, with
sharper enlargement where the cells ask for it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class InputTransform(GeneralizedRCNNTransform):
    """torchvision's transform, except that while `enlarge_sharply` is set (by the Segmenter,
    for images whose cells are smaller than the training images', which `--diameter`
    enlarges: twice for cells of half the size) a test image it enlarges is interpolated
    bicubically: bilinear interpolation blurs the faint cytoplasm edges the model relies on
    (benchmarks/enlarge.py, on the train45 split). Everything else, a model's own input
    ratio included (the paper size enlarges 512 px images to 800, as it trained), stays
    torchvision's bilinear resizing."""

    enlarge_sharply = False

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None):
        scale = min(self.min_size[-1] / min(image.shape[-2:]), self.max_size / max(image.shape[-2:]))
        if not self.enlarge_sharply or self.training or target is not None or self.fixed_size is not None \
                or scale <= 1:
            return super().resize(image, target)
        enlarged = F.interpolate(image[None], scale_factor=scale, mode="bicubic", recompute_scale_factor=True,
                                 align_corners=False)[0]
        return enlarged, target
