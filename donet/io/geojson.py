"""QuPath GeoJSON: cells as `cell` objects (cytoplasm geometry + `nucleusGeometry`), orphan
nuclei as `detection` objects; QuPath imports the file by drag-and-drop. A whole slide's
file is written feature by feature (`GeoJSONWriter`), never held whole."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..atomic import atomic_path, write_text_atomic
from ..data.instances import AnnotatedImage, CellClass
from ..errors import DonetError
from .polygons import Outline, geojson_geometry

COLOURS = {CellClass.CYTOPLASM: [0, 160, 255], CellClass.NUCLEUS: [255, 60, 60]}


class QuPathObject(NamedTuple):
    """An instance as QuPath sees it: its GeoJSON geometry (None when empty) and score."""

    id: int
    geometry: dict | None
    score: float


def _feature(geometry: dict, object_type: str, category: CellClass, score: float, name: str) -> dict:
    return {
        "type": "Feature",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),  # stable across runs
        "geometry": geometry,
        "properties": {
            "objectType": object_type,
            "name": name,
            "classification": {"name": category.name.capitalize(), "color": COLOURS[category]},
            "measurements": {"score": round(score, 4)},
        },
    }


def cell_features(image: str, cell: QuPathObject | None, nuclei: list[QuPathObject],
                  measured: dict[int, dict] | None = None) -> list[dict]:
    """A cell with its nuclei (or, with no cell, nuclei on their own) as features. QuPath's
    cell holds one nucleus: the best-scoring; any other is exported alone. `measured` (by
    instance id) adds measurements, which QuPath lists in its measurement table."""
    nuclei = sorted((n for n in nuclei if n.geometry is not None), key=lambda n: -n.score)
    features = []
    if cell is not None and cell.geometry is not None:
        feature = _feature(cell.geometry, "cell", CellClass.CYTOPLASM, cell.score, f"{image}/cell/{cell.id}")
        feature["properties"]["measurements"].update((measured or {}).get(cell.id, {}))
        if nuclei:
            feature["nucleusGeometry"] = nuclei[0].geometry
            feature["properties"]["measurements"]["nucleus score"] = round(nuclei[0].score, 4)
            nuclei = nuclei[1:]
        features.append(feature)
    for nucleus in nuclei:
        features.append(_feature(nucleus.geometry, "detection", CellClass.NUCLEUS, nucleus.score,
                                 f"{image}/nucleus/{nucleus.id}"))
        features[-1]["properties"]["measurements"].update((measured or {}).get(nucleus.id, {}))
    return features


def measured_values(rows: list[dict]) -> dict[int, dict]:
    """Measurement rows (`data.measurements`) as QuPath measurements by instance id: the
    numbers only, the id, class and position being the feature's own."""
    skip = {"image", "id", "class", "score", "parent", "centroid_x", "centroid_y"}
    return {row["id"]: {k: round(v, 4) for k, v in row.items() if k not in skip and v is not None} for row in rows}


def to_geojson(result: AnnotatedImage, measured: dict[int, dict] | None = None) -> dict:
    def outline(instance) -> QuPathObject:
        return QuPathObject(instance.id, geojson_geometry(instance.mask), instance.score)

    nuclei_of: dict[int | None, list] = {}
    for nucleus in result.nuclei:
        nuclei_of.setdefault(nucleus.parent, []).append(outline(nucleus))
    features = []
    for cell in result.cells:
        features += cell_features(result.name, outline(cell), nuclei_of.pop(cell.id, []), measured)
    features += cell_features(result.name, None, [n for group in nuclei_of.values() for n in group], measured)
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | Path, result: AnnotatedImage, measured: dict[int, dict] | None = None) -> None:
    write_text_atomic(path, json.dumps(to_geojson(result, measured)))


class GeoJSONWriter:
    """A FeatureCollection written as features arrive (see `open_geojson`)."""

    def __init__(self, handle):
        self.handle, self.count = handle, 0

    def add(self, features: list[dict]) -> None:
        for feature in features:
            self.handle.write(("\n" if self.count == 0 else ",\n") + json.dumps(feature))
            self.count += 1


@contextmanager
def open_geojson(path: str | Path) -> Iterator[GeoJSONWriter]:
    """Write a FeatureCollection feature by feature; the file appears, complete, only when
    the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write('{"type": "FeatureCollection", "features": [')
        yield GeoJSONWriter(handle)
        handle.write("\n]}\n")


def read_geojson(path: str | Path) -> list[Outline]:
    """QuPath GeoJSON (donet's, or QuPath's own export: a FeatureCollection, a list of
    features or one feature) as outlines: cells with their `nucleusGeometry`, objects
    classified as nuclei, anything else as cells; points and lines are skipped."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DonetError(path, f"not a readable GeoJSON file ({exc})") from None
    features = data if isinstance(data, list) else data.get("features", [data]) if isinstance(data, dict) else []
    outlines: list[Outline] = []
    last = 0
    for feature in (f for f in features if isinstance(f, dict)):
        props = feature.get("properties") or {}
        classification = props.get("classification") or {}
        name = classification.get("name", "") if isinstance(classification, dict) else str(classification)
        category = CellClass.NUCLEUS if name.lower().startswith("nucle") else CellClass.CYTOPLASM
        measured = props.get("measurements") or {}
        if isinstance(measured, list):  # QuPath before 0.4: [{"name": ..., "value": ...}]
            measured = {m.get("name"): m.get("value") for m in measured if isinstance(m, dict)}
        score = float(measured.get("score", 1.0))
        # donet names features ".../cell/7"; QuPath's own exports are numbered in order.
        named = str(props.get("name", "")).rsplit("/", 1)[-1]
        number = int(named) if named.isdigit() else last + 1
        last = max(last, number)
        outlines += _outlines(feature.get("geometry"), number, category, score, None)
        if feature.get("nucleusGeometry"):
            last += 1
            outlines += _outlines(feature["nucleusGeometry"], -last, CellClass.NUCLEUS,
                                  float(measured.get("nucleus score", score)), number)
    return outlines


def _outlines(geometry: dict | None, number: int, category: CellClass, score: float,
              parent: int | None) -> list[Outline]:
    """The outer ring of each polygon of a Polygon or MultiPolygon; nothing of other kinds."""
    kind = (geometry or {}).get("type")
    polygons = [geometry["coordinates"]] if kind == "Polygon" else geometry["coordinates"] if kind == "MultiPolygon" \
        else []
    return [Outline(number, category, np.asarray(polygon[0], dtype=float), score, parent)
            for polygon in polygons if polygon and len(polygon[0]) >= 3]
