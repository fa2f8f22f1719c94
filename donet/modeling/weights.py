"""Model weights as safetensors (no pickled code runs on load), with the model's config inside."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path
from ..errors import DonetError
from .config import ModelConfig
from .donet import DoNet

# Fields that change the parameters' shapes or names, or what the modules compute with them
# (RoI sizes, the attention switch, the box a mask was learnt in): a checkpoint fits only a
# model that agrees on all.
ARCHITECTURE = ("drm", "crm", "mrp", "backbone", "fpn_channels", "mask_head_channels", "box_head_dim",
                "concat_unit_depth", "fusion_unit_depth", "nucleus_mask_roi_size", "mrp_attention",
                "mask_box_margin")
# The scale the weights were trained at: it travels with them, whichever way they are loaded.
SCALE = ("min_size", "max_size", "train_image_size", "cell_diameter", "microns_per_pixel")


def save_weights(model: DoNet, path: str | Path, half: bool = False) -> None:
    """Write atomically; `half` stores float16 (half the size, loaded back as float32)."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    metadata = {"format": "donet", "config": model.config.model_dump_json()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    path = Path(path)
    if not path.is_file():
        raise DonetError(path, "no such weights file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DonetError(path, f"not a readable safetensors file ({exc})") from None
    if metadata.get("format") != "donet" or "config" not in metadata:
        raise DonetError(path, "not a donet checkpoint (no model config inside)")
    try:
        config = ModelConfig(**json.loads(metadata["config"]))
    except ValueError as exc:
        raise DonetError(path, f"checkpoint holds an invalid model config ({exc})") from None
    return state, config


def describe(config: ModelConfig) -> str:
    modules = "+".join(name.upper() for name in ("drm", "crm", "mrp") if getattr(config, name)) or "Mask R-CNN"
    return f"{modules}, {config.backbone.value}, FPN {config.fpn_channels}"


def load_weights(model: DoNet, path: str | Path) -> DoNet:
    """Load a checkpoint into `model`, refusing one made for another architecture."""
    state, config = read_checkpoint(path)
    differ = [f for f in ARCHITECTURE if getattr(config, f) != getattr(model.config, f)]
    if differ:
        raise DonetError(path, f"checkpoint is for another model ({describe(config)}; this model: "
                               f"{describe(model.config)}; differing: {', '.join(differ)})")
    reference = model.state_dict()
    state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DonetError(path, f"checkpoint does not fit the model ({len(missing)} missing, "
                               f"{len(unexpected)} unexpected tensors)")
    # Inference sizes each image from the config (`inference.Segmenter`); the transform's
    # own sizes are left alone, as a resumed training run has set them to its scale jitter.
    model.config = model.config.model_copy(update={field: getattr(config, field) for field in SCALE})
    return model


# Trained on ISBI 2014 train45 by benchmarks/default_model.py; see docs/model-card.md.
DEFAULT_MODEL = Path(__file__).parents[1] / "models" / "donet_light_isbi2014.safetensors"


def load_model(path: str | Path | None = None, **overrides) -> DoNet:
    """Build the model a checkpoint was saved from (with run-time `overrides` such as
    detections_per_img) and load its weights; with no `path`, the model that ships with
    donet (`DEFAULT_MODEL`)."""
    path = DEFAULT_MODEL if path is None else path
    _, config = read_checkpoint(path)
    # Backbone weights are already in the checkpoint; do not look for the original file.
    config = ModelConfig(**{**config.model_dump(), "backbone_weights": None, **overrides})
    return load_weights(DoNet(config), path)
