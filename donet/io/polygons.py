"""Mask outlines as polygons in pixel-edge coordinates (pixel (r, c) spans [c, c+1) x [r, r+1))."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import measure

from ..data.instances import CellClass


def mask_polygons(mask: np.ndarray, tolerance: float = 0.5) -> list[np.ndarray]:
    """One closed (N, 2) array of (x, y) vertices per connected part, largest part first."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    parts = []
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        part = np.pad(labels[window] == index, 1)
        contours = measure.find_contours(part.astype(np.uint8), 0.5)
        outline = max(contours, key=len)  # the outer boundary; holes are shorter
        outline = measure.approximate_polygon(outline, tolerance)
        # Contours run through pixel centres at half-pixel steps; shift into pixel-edge space.
        xy = np.stack([outline[:, 1] - 1 + window[1].start + 0.5, outline[:, 0] - 1 + window[0].start + 0.5], axis=1)
        if len(xy) >= 4:
            parts.append((int(part.sum()), xy))
    parts.sort(key=lambda p: -p[0])
    return [xy for _, xy in parts]


def geojson_geometry(mask: np.ndarray, origin: tuple[float, float] = (0, 0), scale: float = 1.0) -> dict | None:
    """Polygon(s) of `mask`; a mask crop whose top-left pixel lies at `origin` (x, y) of an
    image `scale` times smaller than the output coordinates (a slide level) is placed there."""
    polygons = mask_polygons(mask)
    if not polygons:
        return None
    rings = [[[round(float((x + origin[0]) * scale), 2), round(float((y + origin[1]) * scale), 2)]
              for x, y in polygon] for polygon in polygons]
    rings = [ring if ring[0] == ring[-1] else ring + [ring[0]] for ring in rings]
    if len(rings) == 1:
        return {"type": "Polygon", "coordinates": [rings[0]]}
    return {"type": "MultiPolygon", "coordinates": [[ring] for ring in rings]}


@dataclass(frozen=True)
class Outline:
    """An instance read as a polygon (GeoJSON, ImageJ ROIs), not rasterised: (N, 2) (x, y)
    vertices in pixel-edge coordinates. A multi-part instance gives one Outline per part."""

    id: int
    category: CellClass
    polygon: np.ndarray
    score: float = 1.0
    parent: int | None = None

    @property
    def area(self) -> float:
        """Shoelace area of the polygon."""
        x, y = self.polygon[:, 0], self.polygon[:, 1]
        return abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))) / 2
