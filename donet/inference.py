"""Running a model on images and turning its detections into the data layer's instances."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from .data.instances import AnnotatedImage, CellClass, Instance, encode_mask
from .data.nuclei import assign_parents
from .errors import DonetError
from .modeling import DoNet, image_tensor

PASTE_CHUNK = 32  # masks pasted at once: bounds memory on crowded or large images


def paste_probs(probs: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]):
    """Yield (N_chunk, H, W) image-space probabilities of RoI masks, a chunk at a time."""
    for start in range(0, len(probs), PASTE_CHUNK):
        chunk = slice(start, start + PASTE_CHUNK)
        yield paste_masks_in_image(probs[chunk, None], boxes[chunk], size, padding=1)[:, 0]


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
        for pasted in paste_probs(detection[key][keep], detection["boxes"][keep], size):
            total = np.maximum(total, pasted.max(dim=0).values.cpu().numpy())
        maps[name] = total
    return maps


def to_instances(detection: dict[str, torch.Tensor], size: tuple[int, int], score_threshold: float = 0.5,
                 mask_threshold: float = 0.5) -> list[Instance]:
    """Instances (cells first, then nuclei linked to them) of detections above `score_threshold`."""
    keep = detection["scores"] >= score_threshold
    boxes, labels, scores = detection["boxes"][keep], detection["labels"][keep], detection["scores"][keep]
    probs = detection["mask_probs"][keep]
    masks, classes, kept_scores = [], [], []
    offset = 0
    for pasted in paste_probs(probs, boxes, size):
        for k, mask in enumerate((pasted >= mask_threshold).cpu().numpy()):
            if mask.any():  # a detection whose mask vanishes at the threshold is no instance
                masks.append(mask)
                classes.append(CellClass(int(labels[offset + k])))
                kept_scores.append(float(scores[offset + k]))
        offset += len(pasted)
    cells = [i for i, c in enumerate(classes) if c is CellClass.CYTOPLASM]
    nuclei = [i for i, c in enumerate(classes) if c is CellClass.NUCLEUS]
    order = cells + nuclei
    new_id = {old: new for new, old in enumerate(order, start=1)}
    cell_stack = np.stack([masks[i] for i in cells]) if cells else np.zeros((0, *size), bool)
    parents = assign_parents([masks[i] for i in nuclei], cell_stack)
    parent_of = {n: (None if p is None else new_id[cells[p]]) for n, p in zip(nuclei, parents)}
    return [Instance(id=new_id[i], category=classes[i], rle=encode_mask(masks[i]), parent=parent_of.get(i),
                     score=kept_scores[i]) for i in order]


def diameter_scale(model: DoNet, diameter: float | None) -> float:
    """The factor that brings cells of `diameter` pixels to the size the model was trained
    at (1 for None)."""
    if diameter is None:
        return 1.0
    if diameter <= 0:
        raise DonetError(None, f"--diameter must be positive (got {diameter})")
    if model.config.cell_diameter is None:
        raise DonetError(None, "this model records no training cell diameter (trained before donet recorded it); "
                               "retrain it, or leave --diameter out")
    return model.config.cell_diameter / diameter


@contextmanager
def input_size(model: DoNet, size: tuple[int, int], scale: float = 1.0):
    """Resize an image of `size` by the model's training scale (not to a fixed side), times
    `scale` (see `diameter_scale`)."""
    scale = scale * model.config.min_size / model.config.train_image_size
    saved = model.transform.min_size, model.transform.max_size
    model.transform.min_size = (max(1, round(min(size) * scale)),)
    model.transform.max_size = max(1, round(max(size) * scale))
    try:
        yield
    finally:
        model.transform.min_size, model.transform.max_size = saved


@torch.no_grad()
def predict(model: DoNet, images: list[np.ndarray], scale: float = 1.0) -> list[dict[str, torch.Tensor]]:
    """Raw detections (see `DoNet`) for numpy images of any size, gray or colour, each at
    the scale the model was trained at times `scale`, in the images' own coordinates."""
    model.eval()
    device = next(model.parameters()).device
    detections = []
    for image in images:
        with input_size(model, image.shape[:2], scale):
            detections += model([image_tensor(image).to(device)])
    return detections


def predict_dataset(model: DoNet, dataset: Sequence[AnnotatedImage], score_threshold: float = 0.0,
                    progress: Callable[[], None] | None = None) -> dict[str, list[Instance]]:
    """Scored instances per image name for every image of `dataset`."""
    predictions = {}
    for sample in dataset:
        detection = predict(model, [sample.image])[0]
        predictions[sample.name] = to_instances(detection, sample.size, score_threshold)
        if progress:
            progress()
    return predictions


def segment(model: DoNet, image: np.ndarray, score_threshold: float = 0.5, name: str = "image",
            diameter: float | None = None) -> AnnotatedImage:
    """Segment one numpy image: overlapping cells stay separate instances. `diameter`: the
    cells' typical diameter in pixels, when it differs from the training images'."""
    detection = predict(model, [image], diameter_scale(model, diameter))[0]
    return AnnotatedImage(name, image, to_instances(detection, image.shape[:2], score_threshold))
