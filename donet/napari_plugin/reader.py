"""Open donet's outputs as overlapping polygons, and whole slides as multiscale images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DonetError
from ..io import coco, geojson, imagej
from ..io.images import read_image
from ..io.slides import OPENSLIDE_SUFFIXES, TIFF_SUFFIXES, is_slide, open_slide
from .layers import instance_layers, outline_layers


def get_reader(path):
    """napari's reader hook: a reading function for files this plugin understands, else None."""
    if isinstance(path, list):
        return None if len(path) != 1 else get_reader(path[0])
    path = Path(path)
    suffix = path.suffix.lower()
    kind = _json_kind(path) if suffix == ".json" else None  # parsed once: predictions can be large
    if suffix == ".geojson" or kind == "geojson":
        return read_geojson
    if kind == "coco":
        return read_coco
    if suffix == ".zip":
        return read_roi_zip
    if suffix in TIFF_SUFFIXES + OPENSLIDE_SUFFIXES and is_slide(path):
        return read_slide
    return None


def _json_kind(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and "annotations" in data and "images" in data:
        return "coco"
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        return "geojson"
    return None


def read_coco(path) -> list[tuple]:
    """COCO annotations or `donet predict`'s predictions.json: per image, the image itself
    where its file is found, a cells layer and a nuclei layer."""
    dataset = coco.read_coco(path, pixels=False)
    layers = []
    for sample, file in zip(dataset, dataset.files):
        prefix = f"{sample.name} " if len(dataset) > 1 else ""
        pixels = _pixels(file, sample.size)
        if pixels is not None:
            layers.append((pixels, {"name": prefix + "image"}, "image"))
        layers += instance_layers(sample.instances, sample.size, prefix,
                                  image_file=None if pixels is None else str(file))
    return layers


def _pixels(file: Path | None, size: tuple[int, int]) -> np.ndarray | None:
    """The annotated image, where its file is an ordinary image of the annotated size."""
    if file is None or is_slide(file):
        return None
    try:
        pixels = read_image(file)
    except DonetError:
        return None
    return pixels if pixels.shape[:2] == tuple(size) else None


def read_geojson(path) -> list[tuple]:
    """QuPath GeoJSON (donet's, or QuPath's own export) as a cells and a nuclei layer."""
    return outline_layers(geojson.read_geojson(path))


def read_roi_zip(path) -> list[tuple]:
    """An ImageJ / Fiji ROI set as a cells and a nuclei layer."""
    return outline_layers(imagej.read_roi_zip(path))


def read_slide(path) -> list[tuple]:
    """A whole slide as a multiscale image layer: levels are read lazily, a tile at a time."""
    slide = open_slide(path)
    levels = [level for level in slide.levels if min(level.shape[:2]) >= 64] or slide.levels[:1]
    meta = {"name": Path(path).name, "multiscale": True, "rgb": len(levels[0].shape) == 3,
            "metadata": {"slide": str(path), "mpp": slide.mpp}}
    return [(levels, meta, "image")]
