"""QuPath GeoJSON: cells as `cell` objects (cytoplasm geometry + `nucleusGeometry`), orphan
nuclei as `detection` objects; QuPath imports the file by drag-and-drop."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from ..atomic import write_text_atomic
from ..data.instances import AnnotatedImage, CellClass
from .polygons import geojson_geometry

COLOURS = {CellClass.CYTOPLASM: [0, 160, 255], CellClass.NUCLEUS: [255, 60, 60]}


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


def to_geojson(result: AnnotatedImage) -> dict:
    features = []
    nuclei_of: dict[int, list] = {}
    for nucleus in result.nuclei:
        nuclei_of.setdefault(nucleus.parent, []).append(nucleus)
    for cell in result.cells:
        geometry = geojson_geometry(cell.mask)
        if geometry is None:
            continue
        feature = _feature(geometry, "cell", CellClass.CYTOPLASM, cell.score, f"{result.name}/cell/{cell.id}")
        nuclei = sorted(nuclei_of.pop(cell.id, []), key=lambda n: -n.score)
        if nuclei:
            # QuPath's cell holds one nucleus; a second one found in the cell is exported alone.
            nucleus_geometry = geojson_geometry(nuclei[0].mask)
            if nucleus_geometry is not None:
                feature["nucleusGeometry"] = nucleus_geometry
                feature["properties"]["measurements"]["nucleus score"] = round(nuclei[0].score, 4)
            nuclei_of.setdefault(None, []).extend(nuclei[1:])
        features.append(feature)
    for nucleus in (n for group in nuclei_of.values() for n in group):
        geometry = geojson_geometry(nucleus.mask)
        if geometry is not None:
            features.append(_feature(geometry, "detection", CellClass.NUCLEUS, nucleus.score,
                                     f"{result.name}/nucleus/{nucleus.id}"))
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | Path, result: AnnotatedImage) -> None:
    write_text_atomic(path, json.dumps(to_geojson(result)))
