"""What cytologists measure, per cell and per nucleus, from whole (amodal) instances.

A cell's area is its whole mask, the part under its neighbours included, so its
nucleus-to-cytoplasm (N/C) ratio is the total area of its nuclei over that whole area. A
flat label image (one owner per pixel: Cellpose, StarDist, QuPath's detector) loses the
hidden part, and so overstates the N/C ratio of exactly the overlapped cells. Here every
number comes from the instances as they are, overlaps kept.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from skimage.measure import regionprops

from ..atomic import atomic_path
from .instances import AnnotatedImage, CellClass

# One place for the columns, in the order every table writes them.
CELL_COLUMNS = ("area", "perimeter", "equivalent_diameter", "eccentricity", "solidity", "mean_intensity",
                "std_intensity", "nuclei", "nucleus_area", "nc_ratio", "overlapping_cells", "overlapped_fraction")
NUCLEUS_COLUMNS = ("area", "perimeter", "eccentricity", "mean_intensity", "parent")
COLUMNS = ("image", "id", "class", "score", "centroid_x", "centroid_y", *CELL_COLUMNS, "parent")
# Lengths and areas also in microns where the pixel size is known.
MICRON_COLUMNS = {"area": ("area_um2", 2), "perimeter": ("perimeter_um", 1),
                  "equivalent_diameter": ("equivalent_diameter_um", 1), "nucleus_area": ("nucleus_area_um2", 2)}


def intensity(image: np.ndarray) -> np.ndarray:
    """One value per pixel, in the image's own units: a colour image's channel mean."""
    return image.astype(np.float32) if image.ndim == 2 else image[..., :3].astype(np.float32).mean(axis=-1)


@dataclass
class Crop:
    """An instance as a mask crop whose top-left corner lies at (y, x) of its image."""

    id: int
    category: CellClass
    y: int
    x: int
    mask: np.ndarray
    score: float = 1.0
    parent: int | None = None

    def overlap(self, other: Crop) -> np.ndarray | None:
        """The pixels of this crop that `other` covers too (None when they do not meet)."""
        top, left = max(self.y, other.y), max(self.x, other.x)
        bottom = min(self.y + self.mask.shape[0], other.y + other.mask.shape[0])
        right = min(self.x + self.mask.shape[1], other.x + other.mask.shape[1])
        if top >= bottom or left >= right:
            return None
        mine = self.mask[top - self.y:bottom - self.y, left - self.x:right - self.x]
        theirs = other.mask[top - other.y:bottom - other.y, left - other.x:right - other.x]
        shared = mine & theirs
        if not shared.any():
            return None
        covered = np.zeros_like(self.mask)
        covered[top - self.y:bottom - self.y, left - self.x:right - self.x] = shared
        return covered


def crops(result: AnnotatedImage) -> list[Crop]:
    """`result`'s instances as crops of their bounding boxes."""
    out = []
    for instance in result.instances:
        x, y, w, h = (int(round(v)) for v in mask_utils.toBbox(instance.rle))
        mask = instance.mask[y:y + max(h, 1), x:x + max(w, 1)]
        if mask.any():
            out.append(Crop(instance.id, instance.category, y, x, mask, instance.score, instance.parent))
    return out


class CellOverlaps:
    """The cells each cell meets and the part of it that others cover, as cells are added."""

    def __init__(self):
        self.cells: dict[int, Crop] = {}
        self.meets: dict[int, int] = {}
        self.hidden: dict[int, np.ndarray] = {}

    def add(self, cell: Crop) -> None:
        self.meets[cell.id], self.hidden[cell.id] = 0, np.zeros_like(cell.mask)
        for other in self.cells.values():
            covered = cell.overlap(other)
            if covered is not None:
                self.meets[cell.id] += 1
                self.meets[other.id] += 1
                self.hidden[cell.id] |= covered
                self.hidden[other.id] |= other.overlap(cell)
        self.cells[cell.id] = cell

    def pop(self, cell_id: int) -> tuple[int, float]:
        """The number of cells `cell_id` meets and its overlapped fraction; forgets it."""
        cell = self.cells.pop(cell_id)
        return self.meets.pop(cell_id), float(self.hidden.pop(cell_id).sum() / cell.mask.sum())


def measure_cell(image: str, cell: Crop | None, nuclei: list[Crop], values: Callable[[Crop], np.ndarray],
                 overlaps: tuple[int, float] | None, mpp: float | None = None) -> list[dict]:
    """The rows of one cell (`None` for nuclei of no cell) and its nuclei. `values(crop)` gives
    the intensities under a crop's mask; `overlaps`, the cells the cell meets and its
    overlapped fraction (see `CellOverlaps`)."""
    nucleus_rows = [_row(image, nucleus, "nucleus", _shape(nucleus, values(nucleus)), parent=nucleus.parent)
                    for nucleus in nuclei]
    rows = []
    if cell is not None:
        shape = _shape(cell, values(cell))
        own = [row["area"] for row in nucleus_rows if row["parent"] == cell.id]
        meets, hidden = overlaps if overlaps is not None else (None, None)
        shape.update({"nuclei": len(own), "nucleus_area": int(sum(own)), "nc_ratio": sum(own) / shape["area"],
                      "overlapping_cells": meets, "overlapped_fraction": hidden})
        rows.append(_row(image, cell, "cell", shape))
    rows += nucleus_rows
    if mpp is not None:
        for row in rows:
            for column, (name, power) in MICRON_COLUMNS.items():
                if row.get(column) is not None:
                    row[name] = row[column] * mpp ** power
    return rows


def _shape(crop: Crop, values: np.ndarray) -> dict:
    props = regionprops(crop.mask.astype(np.uint8))[0]
    y, x = props.centroid
    return {"area": int(props.area), "perimeter": float(props.perimeter),
            "equivalent_diameter": float(props.equivalent_diameter_area), "eccentricity": float(props.eccentricity),
            "solidity": float(props.solidity), "mean_intensity": float(values.mean()),
            "std_intensity": float(values.std()), "centroid": (float(y) + crop.y, float(x) + crop.x)}


def measure(result: AnnotatedImage, mpp: float | None = None) -> list[dict]:
    """One row per cell and one per nucleus (columns `COLUMNS`, a nucleus leaving the cell-only
    ones empty), with `_um` / `_um2` columns where `mpp` (microns per pixel) is known."""
    gray = intensity(np.asarray(result.image))

    def values(crop: Crop) -> np.ndarray:
        return gray[crop.y:crop.y + crop.mask.shape[0], crop.x:crop.x + crop.mask.shape[1]][crop.mask]

    everything = crops(result)
    cells = [c for c in everything if c.category is CellClass.CYTOPLASM]
    overlaps = CellOverlaps()
    for cell in cells:
        overlaps.add(cell)
    nuclei_of: dict[int | None, list[Crop]] = {}
    known = {cell.id for cell in cells}
    for nucleus in (c for c in everything if c.category is CellClass.NUCLEUS):
        if nucleus.parent not in known:
            nucleus.parent = None  # its cell is not measured (empty, or not in the image): alone
        nuclei_of.setdefault(nucleus.parent, []).append(nucleus)
    rows = []
    for cell in cells:
        rows += measure_cell(result.name, cell, nuclei_of.pop(cell.id, []), values, overlaps.pop(cell.id), mpp)
    cell_rows = [row for row in rows if row["class"] == "cell"]
    nucleus_rows = [row for row in rows if row["class"] == "nucleus"]
    return cell_rows + nucleus_rows + measure_cell(result.name, None, nuclei_of.pop(None, []), values, None, mpp)


def _row(image: str, crop: Crop, kind: str, shape: dict, parent: int | None = None) -> dict:
    y, x = shape.pop("centroid")
    row = dict.fromkeys(COLUMNS)
    row.update({"image": image, "id": crop.id, "class": kind, "score": crop.score, "centroid_x": x, "centroid_y": y,
                "parent": parent})
    row.update({k: v for k, v in shape.items() if kind == "cell" or k in NUCLEUS_COLUMNS})
    return row


def table_rows(rows: Iterable[dict]) -> list[dict]:
    """What `measurements.csv` holds: every cell, and the nuclei of no cell (a cell's nuclei
    are summed into its row)."""
    return [row for row in rows if row["class"] == "cell" or row["parent"] is None]


SUMMARY_COLUMNS = ("cells", "nuclei", "nc_ratio_median", "nc_ratio_p90", "overlapping_share", "multinucleated_share")


def summary(rows: list[dict]) -> dict:
    """Per image or slide: counts; median and 90th percentile N/C ratio over cells with a
    nucleus; the share of cells that overlap another, and of cells with two nuclei or more."""
    cells = [row for row in rows if row["class"] == "cell"]
    ratios = [row["nc_ratio"] for row in cells if row["nuclei"] > 0]
    share = (lambda test: sum(map(test, cells)) / len(cells)) if cells else (lambda test: None)
    return {"cells": len(cells), "nuclei": sum(row["class"] == "nucleus" for row in rows),
            "nc_ratio_median": float(np.median(ratios)) if ratios else None,
            "nc_ratio_p90": float(np.percentile(ratios, 90)) if ratios else None,
            "overlapping_share": share(lambda row: row["overlapping_cells"] > 0),
            "multinucleated_share": share(lambda row: row["nuclei"] > 1)}


def write_csv(path: str | Path, rows: list[dict], columns: Iterable[str] | None = None) -> None:
    """Rows as CSV, written atomically; columns by default `COLUMNS` then any micron columns."""
    if columns is None:
        columns = [*COLUMNS, *(name for name, _ in MICRON_COLUMNS.values() if any(name in row for row in rows))]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
