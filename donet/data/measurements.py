"""What cytologists measure, per cell and per nucleus, from whole (amodal) instances.

A cell's area is its whole mask, the part under its neighbours included, so its
nucleus-to-cytoplasm (N/C) ratio is the total area of its nuclei over that whole area. A
flat label image (one owner per pixel: Cellpose, StarDist, QuPath's detector) loses the
hidden part, and so overstates the N/C ratio of exactly the overlapped cells. Here every
number comes from the instances as they are, overlaps kept.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from skimage.measure import regionprops

from ..atomic import atomic_path
from .instances import AnnotatedImage, CellClass, Instance

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


def _shape(mask: np.ndarray, gray: np.ndarray) -> dict:
    """Shape and intensity of one mask (cropped to its box, with the image crop beside it)."""
    props = regionprops(mask.astype(np.uint8), intensity_image=gray)[0]
    values = gray[mask]
    y, x = props.centroid
    return {"area": int(props.area), "perimeter": float(props.perimeter),
            "equivalent_diameter": float(props.equivalent_diameter_area), "eccentricity": float(props.eccentricity),
            "solidity": float(props.solidity), "mean_intensity": float(values.mean()),
            "std_intensity": float(values.std()), "centroid": (float(y), float(x))}


def _crop(instance: Instance) -> tuple[slice, slice]:
    x, y, w, h = (int(round(v)) for v in mask_utils.toBbox(instance.rle))
    return slice(y, y + max(h, 1)), slice(x, x + max(w, 1))


def measure(result: AnnotatedImage, mpp: float | None = None) -> list[dict]:
    """One row per cell and one per nucleus (columns `COLUMNS`, a nucleus leaving the cell-only
    ones empty), with `_um` / `_um2` columns where `mpp` (microns per pixel) is known."""
    gray = intensity(np.asarray(result.image))
    cells, nuclei = result.cells, result.nuclei
    coverage = np.zeros(result.size, dtype=np.uint16)  # how many cells cover each pixel
    masks = {}
    for cell in cells:
        box = _crop(cell)
        masks[cell.id] = (box, cell.mask[box])
        coverage[box] += masks[cell.id][1]
    touching = (np.asarray(mask_utils.iou([c.rle for c in cells], [c.rle for c in cells], [0] * len(cells))) > 0
                if cells else np.zeros((0, 0), bool))
    nucleus_rows = []
    for nucleus in nuclei:
        box = _crop(nucleus)
        mask = nucleus.mask[box]
        if not mask.any():
            continue
        shape = _shape(mask, gray[box])
        nucleus_rows.append(_row(result.name, nucleus, "nucleus", shape, box, parent=nucleus.parent))
    nucleus_area: dict[int, list[int]] = {}
    for row in nucleus_rows:
        if row["parent"] is not None:
            nucleus_area.setdefault(row["parent"], []).append(row["area"])
    rows = []
    for k, cell in enumerate(cells):
        box, mask = masks[cell.id]
        if not mask.any():
            continue
        shape = _shape(mask, gray[box])
        own = nucleus_area.get(cell.id, [])
        hidden = int((coverage[box][mask] > 1).sum())
        shape.update({"nuclei": len(own), "nucleus_area": int(sum(own)), "nc_ratio": sum(own) / shape["area"],
                      "overlapping_cells": int(touching[k].sum()) - 1, "overlapped_fraction": hidden / shape["area"]})
        rows.append(_row(result.name, cell, "cell", shape, box))
    rows += nucleus_rows
    if mpp is not None:
        for row in rows:
            for column, (name, power) in MICRON_COLUMNS.items():
                if row.get(column) is not None:
                    row[name] = row[column] * mpp ** power
    return rows


def _row(image: str, instance: Instance, kind: str, shape: dict, box, parent: int | None = None) -> dict:
    y, x = shape.pop("centroid")
    row = dict.fromkeys(COLUMNS)
    row.update({"image": image, "id": instance.id, "class": kind, "score": instance.score,
                "centroid_x": x + box[1].start, "centroid_y": y + box[0].start, "parent": parent})
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
