"""RoI heads with DoNet's mask branch: coarse instance mask, DRM and CRM on one shared RoI feature.

Subclasses torchvision's `RoIHeads` and keeps its sampling, box head, box loss and box
post-processing; only the mask branch differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import roi_align

from .config import ModelConfig
from .crm import FusionUnit, consistency_loss
from .drm import DualPathRegionModule, decomposition_loss
from .mask_head import MaskHead, labelled_channel

# Ground-truth masks travel as one uint8 code per pixel so that the transform's resizing
# keeps the three layers aligned: 0 outside, COMPLEMENT, INTERSECTION (e = code > 0).
COMPLEMENT, INTERSECTION = 1, 2


@dataclass
class MaskOutputs:
    """Class-specific 28x28 logits of the mask branch for a set of RoIs."""

    coarse: torch.Tensor | None  # skipped at test time when CRM replaces it
    intersection: torch.Tensor | None = None
    complement: torch.Tensor | None = None
    recombined: torch.Tensor | None = None

    @property
    def final(self) -> torch.Tensor:
        """The output mask: recombined when CRM is on, else the coarse one."""
        return self.recombined if self.recombined is not None else self.coarse


def grown(boxes: torch.Tensor, margin: torch.Tensor | float) -> torch.Tensor:
    """(x0, y0, x1, y1) `boxes` grown on every side by `margin` (one per box, or one for all)
    times their width and height."""
    margin = torch.as_tensor(margin, dtype=boxes.dtype, device=boxes.device).reshape(-1, 1)
    grow = (boxes[:, 2:] - boxes[:, :2]) * margin
    return torch.cat([boxes[:, :2] - grow, boxes[:, 2:] + grow], dim=1)


def roi_mask_targets(codes: list[torch.Tensor], rois: list[torch.Tensor], matched: list[torch.Tensor], size: int):
    """Whole, intersection and complement targets of each RoI, (K, size, size) each, cropped
    from the full-resolution decomposition as torchvision crops instance masks."""
    whole, intersection, complement = [], [], []
    for code, boxes, index in zip(codes, rois, matched):
        layers = torch.stack([code > 0, code == INTERSECTION, code == COMPLEMENT], dim=1).float()
        boxes = torch.cat([index[:, None].to(boxes), boxes], dim=1)
        crops = roi_align(layers, boxes, (size, size), 1.0)
        whole.append(crops[:, 0])
        intersection.append(crops[:, 1])
        complement.append(crops[:, 2])
    return torch.cat(whole), torch.cat(intersection), torch.cat(complement)


def mask_loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if len(labels) == 0:
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(labelled_channel(logits, labels), targets)


class DeoverlapRoIHeads(RoIHeads):
    """`mask_head` is H_i. With `drm` set, H_o and H_m; with `fusion` set too, CRM. Cells'
    masks are learnt and predicted in their boxes grown by `mask_margin` (`grown`); each
    detection's `mask_boxes` says where its mask lies."""

    def __init__(self, box_roi_pool, box_head, box_predictor, mask_roi_pool, mask_head: MaskHead,
                 config: ModelConfig, drm: DualPathRegionModule | None = None, fusion: FusionUnit | None = None,
                 nms_thresh: float = 0.5, mask_margin: float = 0.0):
        super().__init__(
            box_roi_pool, box_head, box_predictor,
            fg_iou_thresh=0.5, bg_iou_thresh=0.5,
            batch_size_per_image=config.box_batch_size_per_image, positive_fraction=0.25,
            bbox_reg_weights=None, score_thresh=config.box_score_thresh, nms_thresh=nms_thresh,
            detections_per_img=config.detections_per_img,
            mask_roi_pool=mask_roi_pool, mask_head=mask_head,
        )
        self.drm = drm
        self.fusion = fusion
        self.config = config
        self.mask_margin = mask_margin

    def mask_boxes(self, boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Where the masks of `boxes` are taken: cells' (label 1 in either stack's numbering)
        grown by the margin; nuclei, which never lie under a neighbour, keep theirs."""
        return grown(boxes, (labels == 1) * self.mask_margin) if self.mask_margin else boxes

    def mask_branch(self, roi_features: torch.Tensor) -> MaskOutputs:
        coarse_features = self.mask_head.features(roi_features)
        coarse = self.mask_head.predict(coarse_features) if self.training or self.fusion is None else None
        if self.drm is None:
            return MaskOutputs(coarse)
        f_o, intersection, f_m, complement = self.drm(roi_features, coarse_features)
        if self.fusion is None:
            return MaskOutputs(coarse, intersection, complement)
        # CRM: the fused feature takes the same path as f_roi, through the same H_i.
        recombined = self.mask_head.predict(self.mask_head.features(self.fusion(roi_features, f_o, f_m)))
        return MaskOutputs(coarse, intersection, complement, recombined)

    def mask_losses(self, outputs: MaskOutputs, labels, codes, rois, matched) -> dict[str, torch.Tensor]:
        whole, intersection, complement = roi_mask_targets(codes, rois, matched, outputs.coarse.shape[-1])
        cfg = self.config
        losses = {"loss_mask": cfg.coarse_mask_weight * mask_loss(outputs.coarse, labels, whole)}
        if outputs.intersection is not None:
            losses["loss_decomposition"] = cfg.decomposition_weight * decomposition_loss(
                outputs.intersection, outputs.complement, labels, intersection, complement)
        if outputs.recombined is not None:
            losses["loss_recombined_mask"] = cfg.recombined_mask_weight * mask_loss(outputs.recombined, labels, whole)
            losses["loss_consistency"] = cfg.consistency_weight * consistency_loss(
                outputs.recombined, outputs.intersection, outputs.complement, labels,
                cfg.consistency_mode, cfg.detach_merge)
        return losses

    def forward(self, features, proposals, image_shapes, targets=None, attention_cells: bool = False):
        """Returns (detections, losses, mask_rois): `mask_rois` is, per image, the boxes of
        the cells for MRP's attention map (at test the detections; in training the positive
        proposals, or with `attention_cells` and `attention_from_ground_truth` the
        ground-truth boxes, run through the mask branch once more) and the final mask logits
        at each box's class."""
        if self.training:
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)

        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
            positive = [torch.where(image_labels > 0)[0] for image_labels in labels]
            rois = [self.mask_boxes(p[keep], image_labels[keep])
                    for p, image_labels, keep in zip(proposals, labels, positive)]
            matched = [m[keep] for m, keep in zip(matched_idxs, positive)]
            roi_labels = torch.cat([image_labels[keep] for image_labels, keep in zip(labels, positive)])
            outputs = self.mask_branch(self.mask_roi_pool(features, rois, image_shapes))
            losses.update(self.mask_losses(outputs, roi_labels, [t["masks"] for t in targets], rois, matched))
            if attention_cells and self.config.attention_from_ground_truth:
                rois = [self.mask_boxes(t["boxes"], t["labels"]) for t in targets]
                roi_labels = torch.cat([t["labels"] for t in targets])
                outputs = self.mask_branch(self.mask_roi_pool(features, rois, image_shapes))
            final = labelled_channel(outputs.final, roi_labels)
            return [], losses, list(zip(rois, final.split([len(r) for r in rois])))

        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        mask_boxes = [self.mask_boxes(b, image_labels) for b, image_labels in zip(boxes, labels)]
        outputs = self.mask_branch(self.mask_roi_pool(features, mask_boxes, image_shapes))
        roi_labels = torch.cat(labels)
        counts = [len(b) for b in boxes]
        probs = {"mask_probs": outputs.final}
        if outputs.intersection is not None:
            probs["intersection_probs"] = outputs.intersection
            probs["complement_probs"] = outputs.complement
        probs = {k: labelled_channel(v, roi_labels).sigmoid().split(counts) for k, v in probs.items()}
        final = labelled_channel(outputs.final, roi_labels).split(counts)
        detections = []
        for i in range(len(boxes)):
            detection = {"boxes": boxes[i], "mask_boxes": mask_boxes[i], "labels": labels[i], "scores": scores[i]}
            detection.update({k: v[i] for k, v in probs.items()})
            detections.append(detection)
        return detections, {}, list(zip(mask_boxes, final))
