"""DoNet: Mask R-CNN with DRM and CRM in the mask branch and MRP for nuclei.

Without MRP one stack (RPN + RoI heads) detects both classes. With MRP a cell stack and a
nucleus stack share the backbone; the nucleus stack runs on features re-weighted by the
cell stack's attention map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.rpn import AnchorGenerator, RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import MultiScaleRoIAlign

from .backbone import resnet_fpn
from .config import ModelConfig
from .crm import FusionUnit
from .drm import DualPathRegionModule
from .mask_head import MaskHead
from .mrp import attention_map, reweight
from .roi_heads import DeoverlapRoIHeads
from .transform import InputTransform

CYTOPLASM_LABEL, NUCLEUS_LABEL = 1, 2  # the data layer's CellClass values
P2_STRIDE = 4


def region_proposal_network(config: ModelConfig) -> RegionProposalNetwork:
    anchors = AnchorGenerator(tuple((s,) for s in config.anchor_sizes), ((0.5, 1.0, 2.0),) * 5)
    return RegionProposalNetwork(
        anchors, RPNHead(config.fpn_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=config.rpn_batch_size_per_image,
        positive_fraction=0.5,
        pre_nms_top_n={"training": config.rpn_pre_nms_top_n_train, "testing": config.rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": config.rpn_post_nms_top_n_train, "testing": config.rpn_post_nms_top_n_test},
        nms_thresh=0.7,
    )


def roi_heads(config: ModelConfig, num_classes: int, deoverlap: bool, mask_roi_size: int = 14) -> DeoverlapRoIHeads:
    """Box head and mask branch for `num_classes` (background included); DRM and CRM as the
    config says when `deoverlap`, else the plain Mask R-CNN mask head. Masks are
    2 * `mask_roi_size` pixels a side."""
    channels, width = config.fpn_channels, config.mask_head_channels
    levels = ["0", "1", "2", "3"]
    return DeoverlapRoIHeads(
        box_roi_pool=MultiScaleRoIAlign(levels, 7, 2),
        box_head=TwoMLPHead(channels * 7 * 7, config.box_head_dim),
        box_predictor=FastRCNNPredictor(config.box_head_dim, num_classes),
        # One 14x14 RoI feature f_roi feeds every mask head.
        mask_roi_pool=MultiScaleRoIAlign(levels, mask_roi_size, 2),
        mask_head=MaskHead(channels, width, num_classes),
        config=config,
        # The cell stack (the only stack without MRP) takes the cell settings; nuclei keep the plain ones.
        nms_thresh=config.box_nms_thresh if deoverlap else 0.5,
        mask_margin=config.mask_box_margin if deoverlap else 0.0,
        drm=DualPathRegionModule(channels, width, num_classes, config.concat_unit_depth)
        if deoverlap and config.drm else None,
        fusion=FusionUnit(channels, width, config.fusion_unit_depth) if deoverlap and config.crm else None,
    )


class DoNet(GeneralizedRCNN):
    """Inputs as torchvision's detection models: a list of (3, H, W) float images in [0, 1]
    and, in training, targets with `boxes`, `labels` (1 cytoplasm, 2 nucleus) and `masks`
    (uint8 decomposition codes, see `roi_heads`). Returns losses in training; at test, per
    image, `boxes`, `labels`, `scores`, `mask_probs` (28x28 per RoI, lying in `mask_boxes`:
    cells' boxes grown by `mask_box_margin`), for DRM models
    `intersection_probs` and `complement_probs`, and for MRP models the `attention` map."""

    def __init__(self, config: ModelConfig):
        transform = InputTransform(config.min_size, config.max_size, list(config.image_mean), list(config.image_std))
        # With MRP the cell stack knows only cytoplasm; without, one stack knows both classes.
        cell_classes = 2 if config.mrp else 3
        super().__init__(resnet_fpn(config), region_proposal_network(config),
                         roi_heads(config, cell_classes, deoverlap=True), transform)
        self.config = config
        self.nucleus_rpn = region_proposal_network(config) if config.mrp else None
        # Nuclei are opaque and do not overlap: their intersection is empty by definition, so
        # their stack keeps the plain mask head.
        self.nucleus_roi_heads = (roi_heads(config, 2, deoverlap=False, mask_roi_size=config.nucleus_mask_roi_size)
                                  if config.mrp else None)

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None):
        if self.training and targets is None:
            raise ValueError("targets are required in training mode")
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        images, targets = self.transform(images, targets)
        features = self.backbone(images.tensors)
        if not self.config.mrp:
            proposals, losses = self.rpn(images, features, targets)
            detections, roi_losses, _ = self.roi_heads(_pooled(features), proposals, images.image_sizes, targets)
            losses.update(roi_losses)
            if self.training:
                return losses
            return _postprocess(self.transform, detections, images.image_sizes, original_sizes)

        cell_targets = _of_class(targets, CYTOPLASM_LABEL)
        nucleus_targets = _of_class(targets, NUCLEUS_LABEL)
        proposals, losses = self.rpn(images, features, cell_targets)
        cells, roi_losses, mask_rois = self.roi_heads(_pooled(features), proposals, images.image_sizes, cell_targets,
                                                      attention_cells=self.config.mrp_attention)
        losses.update(roi_losses)
        p2 = features["0"]
        if self.config.mrp_attention:
            attention = attention_map(mask_rois, tuple(p2.shape[-2:]), P2_STRIDE)
        else:
            attention = p2.new_ones((len(p2), 1, *p2.shape[-2:]))
        nucleus_features = reweight(features, attention)
        proposals, nucleus_rpn_losses = self.nucleus_rpn(images, nucleus_features, nucleus_targets)
        nuclei, nucleus_losses, _ = self.nucleus_roi_heads(_pooled(nucleus_features), proposals, images.image_sizes,
                                                           nucleus_targets)
        losses.update({f"nucleus_{k}": v for k, v in {**nucleus_rpn_losses, **nucleus_losses}.items()})
        if self.training:
            return losses
        detections = [_merge(c, n) for c, n in zip(cells, nuclei)]
        detections = _postprocess(self.transform, detections, images.image_sizes, original_sizes)
        for detection, image_map, resized, original in zip(detections, attention, images.image_sizes, original_sizes):
            # The map covers the padded batch: crop to this image, then back to its input size.
            h, w = (-(-s // P2_STRIDE) for s in resized)
            detection["attention"] = F.interpolate(image_map[None, :, :h, :w], size=original, mode="bilinear",
                                                   align_corners=False)[0, 0]
        return detections


def _postprocess(transform: GeneralizedRCNNTransform, detections, resized, original):
    """The transform's postprocess, which maps `boxes` back to the input images, for the
    `mask_boxes` too."""
    for detection, before, after in zip(detections, resized, original):
        detection["mask_boxes"] = resize_boxes(detection["mask_boxes"], before, after)
    return transform.postprocess(detections, resized, original)


def _pooled(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The features RoIAlign reads: it wants them contiguous and would otherwise copy every
    level once per call on a channels-last model (see `inference.segmenter`)."""
    return {name: _contiguous(level) for name, level in features.items()}


def _contiguous(level: torch.Tensor) -> torch.Tensor:
    """`level` in the default layout. On the CPU, from channels-last, each image is one
    (H*W, C) matrix to transpose, which PyTorch's CPU copy does in cache-sized blocks: about 7
    times faster than its generic strided copy, which cost the CPU engine about 5% of its
    forward pass."""
    channels_last = level.is_contiguous(memory_format=torch.channels_last) and not level.is_contiguous()
    if level.device.type != "cpu" or not channels_last:
        return level.contiguous()
    n, c, h, w = level.shape
    out = level.new_empty((n, c, h, w))
    for index in range(n):  # one view per image, so that autograd can follow the in-place copy
        out[index].view(c, h * w).copy_(level[index].permute(1, 2, 0).reshape(h * w, c).t())
    return out


def _of_class(targets, label: int):
    """The targets of one class, relabelled 1 for a stack that knows only that class."""
    if targets is None:
        return None
    chosen = []
    for target in targets:
        keep = target["labels"] == label
        chosen.append({"boxes": target["boxes"][keep], "labels": torch.ones_like(target["labels"][keep]),
                       "masks": target["masks"][keep]})
    return chosen


def _merge(cells: dict[str, torch.Tensor], nuclei: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One detection list: cells labelled cytoplasm, nuclei labelled nucleus. Nuclei have no
    intersection and are their own complement (SPEC §2). Where the nucleus stack's masks are
    finer, the cells' are resampled to their size (pasting resamples them again anyway)."""
    nucleus_probs = nuclei["mask_probs"]
    size = nucleus_probs.shape[-1]

    def resized(probs: torch.Tensor) -> torch.Tensor:
        if probs.shape[-1] == size:
            return probs
        return F.interpolate(probs[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]

    merged = {
        "boxes": torch.cat([cells["boxes"], nuclei["boxes"]]),
        "mask_boxes": torch.cat([cells["mask_boxes"], nuclei["mask_boxes"]]),
        "labels": torch.cat([torch.full_like(cells["labels"], CYTOPLASM_LABEL),
                             torch.full_like(nuclei["labels"], NUCLEUS_LABEL)]),
        "scores": torch.cat([cells["scores"], nuclei["scores"]]),
        "mask_probs": torch.cat([resized(cells["mask_probs"]), nucleus_probs]),
    }
    if "intersection_probs" in cells:
        merged["intersection_probs"] = torch.cat([resized(cells["intersection_probs"]), torch.zeros_like(nucleus_probs)])
        merged["complement_probs"] = torch.cat([resized(cells["complement_probs"]), nucleus_probs])
    return merged
