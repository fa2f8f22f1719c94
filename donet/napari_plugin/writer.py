"""Edited Shapes layers back to COCO annotations that `donet train` reads: overlaps kept,
nuclei linked to the cells that contain them."""

from __future__ import annotations

from pathlib import Path

from ..data.instances import AnnotatedImage
from ..io.coco import relative_file, write_coco
from .layers import layer_instances


def write_coco_annotations(path: str, layer_data: list[tuple]) -> list[str]:
    """napari's writer hook for one or more Shapes layers (cells, nuclei) of one image. The
    image's file, where the layers came from donet, is recorded relative to the JSON."""
    shapes = [layer for layer in layer_data if layer[2] == "shapes"]
    metadata = next(((meta.get("metadata") or {}) for _, meta, _ in shapes if meta.get("metadata")), {})
    instances = layer_instances(shapes)
    size = tuple(metadata.get("image_shape") or _size(instances))
    image_file = metadata.get("image_file")
    file_name = relative_file(image_file, Path(path).parent) if image_file else f"{Path(path).stem}.png"
    sample = AnnotatedImage.without_pixels(Path(file_name).stem, size, instances)
    write_coco(path, [sample], [file_name])
    return [path]


def _size(instances) -> tuple[int, int]:
    return tuple(instances[0].rle["size"]) if instances else (1, 1)
