"""Segmenting whole slides: at the pyramid level that brings the slide to the model's pixel
size, skipping empty glass, with the results streamed to QuPath GeoJSON and a Parquet table
in level-0 coordinates as they are found (a slide's instances are never all in memory)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .data.instances import CellClass
from .data.slide import Slide
from .data.tissue import TissueMap
from .export.polygons import geojson_geometry
from .export.qupath import Outline, cell_features, open_geojson
from .export.table import open_table, table_row
from .inference import InferenceSettings, detector, diameter_scale
from .modeling import DoNet
from .tiling import Found, Share, segment_tiled


def slide_downsample(model: DoNet, slide: Slide, settings: InferenceSettings) -> tuple[float, str]:
    """Level-0 pixels per pixel the model should see, and what decided it: the cell diameter
    given, else the slide's and the model's pixel sizes, else full resolution."""
    if settings.diameter is not None:
        return 1 / diameter_scale(model, settings.diameter), f"cell diameter {settings.diameter:g} px"
    if slide.mpp and model.config.microns_per_pixel:
        return (model.config.microns_per_pixel / slide.mpp,
                f"{slide.mpp:g} um/px slide, {model.config.microns_per_pixel:g} um/px model")
    missing = "the model records no pixel size" if slide.mpp else "the slide records no pixel size (use --mpp)"
    return 1.0, f"full resolution: {missing}"


def segment_slide(model: DoNet, slide: Slide, name: str, folder: Path, settings: InferenceSettings,
                  skip_glass: bool = True, share: Share | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Segment `slide` into `folder`/`name`.geojson and `name`.parquet (written by process 0
    of `share`); returns what was done (level, scale, tiles run and skipped, counts)."""
    started = time.perf_counter()
    wanted, reason = slide_downsample(model, slide, settings)
    index = slide.level_for(wanted)
    level = slide.levels[index]
    tissue = TissueMap(*slide.thumbnail()) if skip_glass else None

    def runs(y: int, x: int, height: int, width: int) -> bool:
        return tissue.runs(y, x, height, width, level.downsample)

    found = segment_tiled(detector(model, level.downsample / wanted), level, settings.tile, settings.overlap,
                          settings.score_threshold, settings.mask_thresholds, settings.batch_size,
                          runs=runs if tissue else None, share=share, progress=progress)
    counts = {CellClass.CYTOPLASM: 0, CellClass.NUCLEUS: 0}
    if share is None or share.rank == 0:
        with open_geojson(folder / f"{name}.geojson") as geojson, open_table(folder / f"{name}.parquet") as table:
            for cell, nuclei in _with_nuclei(found):
                outlines = []
                for item in ([cell] if cell else []) + nuclei:
                    counts[item.piece.category] += 1
                    x, y, mask = _at_level0(item, level.downsample)
                    table.add(table_row(item.number, item.piece.category.name.lower(), item.parent,
                                        item.piece.score, x, y, mask))
                    origin = (item.piece.x, item.piece.y)
                    outlines.append(Outline(item.number, geojson_geometry(item.piece.mask, origin, level.downsample),
                                            item.piece.score))
                geojson.add(cell_features(name, outlines[0] if cell else None, outlines[1:] if cell else outlines))
    else:
        for _ in found:  # the other processes run their tiles and take part in every gather
            pass
    tiles = tissue.asked if tissue else None
    return {
        "slide": str(slide.path), "level": index, "level_downsample": round(level.downsample, 4),
        "model_input_downsample": round(wanted, 4), "scale_from": reason,
        "mpp": slide.mpp, "tiles_run": tissue.kept if tissue else None, "tiles": tiles,
        "glass_skipped": round(tissue.skipped_fraction, 4) if tissue else 0.0,
        "cells": counts[CellClass.CYTOPLASM], "nuclei": counts[CellClass.NUCLEUS],
        "seconds": round(time.perf_counter() - started, 1),
    }


def _with_nuclei(found: Iterator[Found]) -> Iterator[tuple[Found | None, list[Found]]]:
    """(cell, its nuclei) and (None, [nucleus]) for nuclei of no cell, from `segment_tiled`'s
    order (each cell directly followed by its nuclei)."""
    cell, nuclei = None, []
    for item in found:
        if item.piece.category is CellClass.NUCLEUS and cell is not None and item.parent == cell.number:
            nuclei.append(item)
            continue
        if cell is not None:
            yield cell, nuclei
        cell, nuclei = None, []
        if item.piece.category is CellClass.CYTOPLASM:
            cell = item
        else:
            yield None, [item]
    if cell is not None:
        yield cell, nuclei


def _at_level0(item: Found, downsample: float) -> tuple[int, int, np.ndarray]:
    """A detection's corner (x, y) and mask at level 0, the mask upsampled nearest-neighbour."""
    piece = item.piece
    if downsample == 1:
        return piece.x, piece.y, piece.mask
    h, w = piece.mask.shape
    top, left = int(np.floor(piece.y * downsample)), int(np.floor(piece.x * downsample))
    bottom, right = int(np.ceil((piece.y + h) * downsample)), int(np.ceil((piece.x + w) * downsample))
    rows = np.clip(((np.arange(top, bottom) + 0.5) / downsample).astype(int) - piece.y, 0, h - 1)
    cols = np.clip(((np.arange(left, right) + 0.5) / downsample).astype(int) - piece.x, 0, w - 1)
    return left, top, piece.mask[np.ix_(rows, cols)]
