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

from ..atomic import atomic_path, write_text_atomic
from ..data.instances import AnnotatedImage, CellClass
from .polygons import geojson_geometry

COLOURS = {CellClass.CYTOPLASM: [0, 160, 255], CellClass.NUCLEUS: [255, 60, 60]}


class Outline(NamedTuple):
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


def cell_features(image: str, cell: Outline | None, nuclei: list[Outline],
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
    def outline(instance) -> Outline:
        return Outline(instance.id, geojson_geometry(instance.mask), instance.score)

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
