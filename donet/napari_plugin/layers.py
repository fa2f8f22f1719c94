"""Instances <-> napari layer data. Polygons are (row, column) vertices in pixel-edge
coordinates; a cell whose mask has several parts gives one polygon per part, all with its id
(and comes back from the writer as one cell per part)."""

from __future__ import annotations

import colorsys

import numpy as np
from skimage.draw import polygon2mask

from ..data.instances import CellClass, Instance, encode_mask
from ..data.measurements import CELL_COLUMNS, NUCLEUS_COLUMNS
from ..io.polygons import Outline, mask_polygons

LAYER_NAMES = {CellClass.CYTOPLASM: "cells", CellClass.NUCLEUS: "nuclei"}


def colours(ids: list[int], alpha: float) -> np.ndarray:
    """A distinct, stable colour per id (golden-ratio hues), RGBA."""
    rgb = [colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 1.0) for i in ids]
    return np.array([[*c, alpha] for c in rgb]).reshape(-1, 4)


def shapes_layer(polygons: list[np.ndarray], properties: dict[str, list], category: CellClass, name: str,
                 image_shape: tuple[int, int] | None, translate=(0, 0), scale=(1, 1),
                 image_file: str | None = None) -> tuple:
    """A napari LayerDataTuple for a Shapes layer of one class. Cells are filled faintly, so
    overlaps show as deeper colour; nuclei are outlined."""
    ids = list(properties.get("id", []))
    faint = 0.3 if category is CellClass.CYTOPLASM else 0.0
    meta = {
        "name": name, "shape_type": "polygon", "properties": properties,
        "face_color": colours(ids, faint) if ids else "transparent",
        "edge_color": colours(ids, 1.0) if category is CellClass.CYTOPLASM and ids else "red",
        "edge_width": 1.5, "translate": translate, "scale": scale,
        "metadata": {"donet_class": category.name.lower(), "image_shape": image_shape, "image_file": image_file},
    }
    return (polygons, meta, "shapes")


def instance_layers(instances: list[Instance], image_shape: tuple[int, int], prefix: str = "",
                    offset=(0, 0), translate=(0, 0), scale=(1, 1), image_file: str | None = None,
                    measured: list[dict] | None = None) -> list[tuple]:
    """A cells layer and a nuclei layer (properties: id, score, area, parent, and with
    `measured` rows from `data.measurements` every measurement of the class) for instances
    found in a region whose corner lies at `offset` (row, column) of the image; `translate`
    and `scale` are the image layer's."""
    rows = {row["id"]: row for row in measured or []}
    layers = []
    for category in CellClass:
        columns = (CELL_COLUMNS if category is CellClass.CYTOPLASM else NUCLEUS_COLUMNS) if measured else ()
        properties = {"id": [], "score": [], "area": [], "parent": [],
                      **{c: [] for c in columns if c not in ("area", "parent")}}
        polygons = []
        for instance in (i for i in instances if i.category is category):
            for outline in mask_polygons(instance.mask):
                polygons.append(outline[:, ::-1] + np.asarray(offset, float))  # (x, y) -> napari's (row, column)
                properties["id"].append(instance.id)
                properties["score"].append(round(float(instance.score), 4))
                properties["area"].append(int(instance.area))
                properties["parent"].append(-1 if instance.parent is None else instance.parent)
                for column in properties.keys() - {"id", "score", "area", "parent"}:
                    value = rows.get(instance.id, {}).get(column)
                    properties[column].append(np.nan if value is None else value)
        layers.append(shapes_layer(polygons, properties, category, prefix + LAYER_NAMES[category], image_shape,
                                   translate, scale, image_file))
    return layers


def outline_layers(outlines: list[Outline]) -> list[tuple]:
    """A cells layer and a nuclei layer (properties: id, score, area, parent) of outlines
    read from a file (`io.geojson`, `io.imagej`)."""
    layers = []
    for category in CellClass:
        chosen = [o for o in outlines if o.category is category]
        properties = {"id": [o.id for o in chosen], "score": [o.score for o in chosen],
                      "area": [round(o.area) for o in chosen],
                      "parent": [-1 if o.parent is None else o.parent for o in chosen]}
        polygons = [o.polygon[:, ::-1] for o in chosen]  # (x, y) -> napari's (row, column)
        layers.append(shapes_layer(polygons, properties, category, LAYER_NAMES[category], None))
    return layers


def layer_instances(layers: list[tuple], image_shape: tuple[int, int] | None = None) -> list[Instance]:
    """Instances from (data, meta, type) Shapes layers, one per polygon (napari gives a new
    polygon the properties of the last one selected, so ids cannot tell parts of one cell
    from new cells). A layer's class comes from its metadata, else its name ("nucle..." for
    nuclei); nuclei are linked to cells by the data layer's parent rule (containment)."""
    from ..data.nuclei import assign_parents

    shape = image_shape or _extent(layers)
    masks: dict[CellClass, list[np.ndarray]] = {CellClass.CYTOPLASM: [], CellClass.NUCLEUS: []}
    for data, meta, _ in layers:
        drawn = (polygon2mask(shape, _pixel_centres(np.asarray(polygon)[:, -2:])) for polygon in data)
        masks[_category(meta)] += [mask for mask in drawn if mask.any()]
    cells, nuclei = masks[CellClass.CYTOPLASM], masks[CellClass.NUCLEUS]
    instances = [Instance(k + 1, CellClass.CYTOPLASM, encode_mask(m)) for k, m in enumerate(cells)]
    parents = assign_parents(nuclei, np.array(cells, dtype=bool).reshape(-1, *shape))
    for mask, parent in zip(nuclei, parents):
        instances.append(Instance(len(instances) + 1, CellClass.NUCLEUS, encode_mask(mask),
                                  parent=None if parent is None else parent + 1))
    return instances


def _pixel_centres(polygon: np.ndarray) -> np.ndarray:
    """Pixel-edge vertices -> the polygon through pixel centres that rasterises to the same pixels."""
    return polygon - 0.5


def _category(meta: dict) -> CellClass:
    named = (meta.get("metadata") or {}).get("donet_class")
    if named:
        return CellClass[named.upper()]
    return CellClass.NUCLEUS if "nucle" in meta.get("name", "").lower() else CellClass.CYTOPLASM


def _extent(layers: list[tuple]) -> tuple[int, int]:
    for _, meta, _ in layers:
        stored = (meta.get("metadata") or {}).get("image_shape")
        if stored:
            return tuple(stored)
    corners = [np.asarray(p)[:, -2:].max(axis=0) for data, _, _ in layers for p in data]
    return tuple(int(np.ceil(v)) + 1 for v in np.max(corners, axis=0)) if corners else (1, 1)
