"""The model's typed configuration: one validated place for every architectural switch.

Defaults follow the paper where it is explicit and the official code where the paper is
silent; each loss weight names its source. See SPEC §3 for where the two disagree.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ConsistencyMode(str, Enum):
    SOFT = "soft"  # differentiable XOR of the two sigmoid maps (our default, paper Eq. 4 as intended)
    OFFICIAL = "official"  # the official code: hard 0.5 thresholds, reversed direction, no gradient


class Backbone(str, Enum):
    RESNET18 = "resnet18"
    RESNET34 = "resnet34"
    RESNET50 = "resnet50"


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Ablation ladder (paper Table 3/4): DRM needs nothing, CRM needs DRM, MRP stands alone.
    drm: bool = True
    crm: bool = True
    mrp: bool = True

    backbone: Backbone = Backbone.RESNET50
    # Backbone weights: a local file (a torchvision ResNet state dict, .pth or .safetensors),
    # or "DEFAULT" for torchvision's ImageNet weights where a network exists.
    backbone_weights: str | None = None
    fpn_channels: int = Field(256, ge=8)
    mask_head_channels: int = Field(256, ge=8)  # width of H_i, H_o, H_m
    box_head_dim: int = Field(1024, ge=16)
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)  # one per FPN level P2-P6

    min_size: int = Field(800, ge=32)  # shorter image side after resizing (test time; training may vary it)
    max_size: int = Field(1333, ge=32)
    # Shorter side of the training images. Inference scales every image by
    # min_size / train_image_size, so cells keep the pixel size they had in training
    # whatever the image's size (a tile, a whole slide); the trainer records it.
    train_image_size: int = Field(512, ge=16)
    # Median cytoplasm diameter (pixels, equivalent circle) in the training images, recorded
    # by the trainer: `--diameter` rescales other images to it. Microns per pixel of the
    # training images where known.
    cell_diameter: float | None = Field(None, gt=0)
    microns_per_pixel: float | None = Field(None, gt=0)
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    box_score_thresh: float = 0.05
    # Cells overlapping more than this (box IoU) keep only the best: overlapping cells have
    # overlapping boxes, so a clump loses cells when it is low. Nuclei, which do not overlap,
    # keep torchvision's 0.5.
    box_nms_thresh: float = Field(0.5, gt=0, le=1)
    # A cell's mask is learnt and predicted in its box grown on every side by this share of the
    # box's width and height, so that a box smaller than its cell does not cut the mask
    # straight (nuclei keep their boxes). Learnt with the weights: a checkpoint keeps its own.
    mask_box_margin: float = Field(0.0, ge=0, le=1)
    # Crowded slides hold more than torchvision's and detectron2's 100 cells.
    detections_per_img: int = Field(300, ge=1)

    # DRM: conv layers in each Concatenation Unit (paper intent 3; official code effectively 1).
    concat_unit_depth: int = Field(3, ge=1)
    fusion_unit_depth: int = Field(3, ge=1)  # CRM Fusion Unit (paper: 768 -> 768 -> 768 -> 256)

    # Loss weights. L_cmask 0.75, L_dec 1 and L_rmask 1 are the official code's; the paper
    # gives none. L_cons: the official 0.00125 carried no gradient; with the differentiable
    # XOR we use 0.1 (our choice: small beside the supervised mask losses it regularises).
    coarse_mask_weight: float = Field(0.75, ge=0)
    decomposition_weight: float = Field(1.0, ge=0)
    recombined_mask_weight: float = Field(1.0, ge=0)
    consistency_weight: float = Field(0.1, ge=0)
    consistency_mode: ConsistencyMode = ConsistencyMode.SOFT
    detach_merge: bool = False  # stop L_cons' gradient into H_o and H_m

    # MRP. `mrp_attention` off keeps both stacks but feeds the nucleus stack unweighted
    # features (M = 1): the control that separates the attention from the second stack.
    mrp_attention: bool = True
    # In training, paste each ground-truth cell once, at its box (test time pastes each
    # detection once): the sampled positive proposals (at most 25% of 64 RoIs) miss cells and
    # paste others several times. False pastes the positives as the official code does.
    attention_from_ground_truth: bool = True
    # RoIAlign output of the nucleus stack's mask branch (masks are twice this): nuclei are
    # small and found almost always, so their AP is lost to mask precision at high IoU.
    nucleus_mask_roi_size: int = Field(14, ge=7)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.crm and not self.drm:
            raise ValueError("crm needs drm: the Fusion Unit recombines the DRM's features")
        if len(self.anchor_sizes) != 5:
            raise ValueError("anchor_sizes needs one size per FPN level P2-P6 (5 values)")
        if self.max_size < self.min_size:
            raise ValueError("max_size must be at least min_size")
        return self
