"""Open donet's outputs as overlapping polygons, and whole slides as multiscale images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.coco import segmentation_rle
from ..data.imageio import read_image
from ..data.instances import CellClass, Instance
from ..data.slide import OPENSLIDE_SUFFIXES, TIFF_SUFFIXES, is_slide, open_slide
from ..errors import DonetError
from .layers import LAYER_NAMES, instance_layers, shapes_layer


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
    """COCO annotations or `donet predict`'s predictions.json (RLE or polygons): per image,
    the image itself where its file is found, a cells layer and a nuclei layer."""
    path = Path(path)
    data = json.loads(path.read_text())
    names = {c["id"]: c["name"].lower() for c in data.get("categories", [])}
    layers = []
    for record in data["images"]:
        height, width = record["height"], record["width"]
        anns = [a for a in data["annotations"] if a["image_id"] == record["id"]]
        local = {a["id"]: k + 1 for k, a in enumerate(anns)}
        instances = [Instance(local[a["id"]], _coco_class(names.get(a["category_id"], "")),
                              segmentation_rle(a["segmentation"], height, width),
                              parent=local.get(a.get("parent_id")), score=float(a.get("score", 1.0)))
                     for a in anns]
        prefix = f"{Path(record['file_name']).stem} " if len(data["images"]) > 1 else ""
        image = _image_beside(path, record["file_name"], (height, width))
        if image is not None:
            layers.append((image[1], {"name": prefix + "image"}, "image"))
        layers += instance_layers(instances, (height, width), prefix,
                                  image_file=None if image is None else str(image[0].absolute()))
    return layers


def _coco_class(name: str) -> CellClass:
    return CellClass.NUCLEUS if "nucle" in name else CellClass.CYTOPLASM


def _image_beside(path: Path, file_name: str, size: tuple[int, int]) -> tuple[Path, np.ndarray] | None:
    """The annotated image's file and pixels, where `file_name` resolves (beside the JSON or
    in its images/) to a readable image of the annotated size."""
    for candidate in (path.parent / file_name, path.parent / "images" / file_name):
        if candidate.is_file() and not is_slide(candidate):
            try:
                pixels = read_image(candidate)
            except DonetError:
                return None
            return (candidate, pixels) if pixels.shape[:2] == tuple(size) else None
    return None


def read_geojson(path) -> list[tuple]:
    """QuPath GeoJSON (donet's, or QuPath's own export): cells with their nucleusGeometry,
    detections classified as nuclei, anything else as cells."""
    features = json.loads(Path(path).read_text()).get("features", [])
    rings: dict[CellClass, list] = {CellClass.CYTOPLASM: [], CellClass.NUCLEUS: []}
    properties = {c: {"id": [], "score": [], "area": [], "parent": []} for c in CellClass}
    next_id = 0
    for feature in features:
        props = feature.get("properties", {})
        classification = (props.get("classification") or {}).get("name", "")
        category = CellClass.NUCLEUS if "nucle" in classification.lower() else CellClass.CYTOPLASM
        score = float((props.get("measurements") or {}).get("score", 1.0))
        # donet names features ".../cell/7"; QuPath's own exports are numbered in order.
        named = str(props.get("name", "")).rsplit("/", 1)[-1]
        own = int(named) if named.isdigit() else next_id + 1
        next_id = max(next_id, own)
        _add_geometry(feature.get("geometry"), category, own, score, -1, rings, properties)
        if feature.get("nucleusGeometry"):
            next_id += 1
            _add_geometry(feature["nucleusGeometry"], CellClass.NUCLEUS, -next_id,
                          float(props.get("measurements", {}).get("nucleus score", score)), own, rings, properties)
    return [shapes_layer(rings[c], properties[c], c, LAYER_NAMES[c], None) for c in CellClass]


def _add_geometry(geometry, category, number, score, parent, rings, properties) -> None:
    if not geometry:
        return
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry.get("coordinates", [])
    for polygon in polygons:
        outer = np.asarray(polygon[0], dtype=float)
        rings[category].append(outer[:, ::-1])  # GeoJSON (x, y) -> napari (row, column)
        properties[category]["id"].append(number)
        properties[category]["score"].append(score)
        properties[category]["area"].append(round(_shoelace(outer)))
        properties[category]["parent"].append(parent)


def _shoelace(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))) / 2


def read_roi_zip(path) -> list[tuple]:
    """An ImageJ / Fiji ROI set: ROIs named `nucleus-...` (as donet writes them) are nuclei,
    the rest cells; `...-of-cell-N` links a nucleus to cell N."""
    import roifile

    rings: dict[CellClass, list] = {CellClass.CYTOPLASM: [], CellClass.NUCLEUS: []}
    properties = {c: {"id": [], "score": [], "area": [], "parent": []} for c in CellClass}
    for number, roi in enumerate(roifile.roiread(str(path)), start=1):
        name = roi.name or ""
        category = CellClass.NUCLEUS if name.startswith("nucle") else CellClass.CYTOPLASM
        outline = np.asarray(roi.coordinates(), dtype=float)
        if len(outline) < 3:
            continue
        number = _number(name, number)
        parent = int(name.rsplit("-of-cell-", 1)[1]) if "-of-cell-" in name else -1
        rings[category].append(outline[:, ::-1])
        properties[category]["id"].append(number)
        properties[category]["score"].append(1.0)
        properties[category]["area"].append(round(_shoelace(outline)))
        properties[category]["parent"].append(parent)
    return [shapes_layer(rings[c], properties[c], c, LAYER_NAMES[c], None) for c in CellClass]


def _number(name: str, fallback: int) -> int:
    """The instance number in `cell-0007-2-of-cell-3`-style names (7), else `fallback`."""
    parts = name.split("-")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else fallback


def read_slide(path) -> list[tuple]:
    """A whole slide as a multiscale image layer: levels are read lazily, a tile at a time."""
    slide = open_slide(path)
    levels = [level for level in slide.levels if min(level.shape[:2]) >= 64] or slide.levels[:1]
    meta = {"name": Path(path).name, "multiscale": True, "rgb": len(levels[0].shape) == 3,
            "metadata": {"slide": str(path), "mpp": slide.mpp}}
    return [(levels, meta, "image")]
