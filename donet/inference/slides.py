"""Whole slides segmented as a stream: at the pyramid level that brings the slide to the
model's pixel size, skipping empty glass, each cell handed on with its nuclei as soon as it
is final, so a slide's instances are never all in memory (`files` writes them to QuPath
GeoJSON and a Parquet table in level-0 coordinates)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..data.instances import CellClass
from ..data.tissue import TissueMap
from ..io.slides import Slide, open_slide
from .diameter import AUTO_PASSES, AUTO_SETTLED, estimate_scale, spread_sample, within
from .tiling import Found, Grid, segment_tiled

# Skipping more of a slide than this as glass is more likely a misreading than an empty slide.
GLASS_WARNING = 0.99


class SlideRun:
    """`segmenter` on a whole slide (a path, or an open `Slide`), at the pyramid level that
    brings it to the model's pixel size (or to the settings' cell diameter, given or
    estimated), skipping empty glass when the settings say so. Iterating yields each cell with
    its nuclei, and each nucleus of no cell alone, as `(cell or None, [nuclei])`, as soon as
    they are final; the items are at `level` resolution (see `level0`), which can be read while
    iterating. Every process of the segmenter's torchrun group must iterate: each runs its
    share of the tiles. `report()` says what was done once the iteration is over."""

    def __init__(self, segmenter, slide: Slide | str | Path, progress: Callable[[int, int], None] | None = None,
                 estimating: Callable[[int, int], None] | None = None):
        self.segmenter, self.progress, self.estimating = segmenter, progress, estimating
        self.slide = slide if isinstance(slide, Slide) else None
        self.path = Path(slide.path if isinstance(slide, Slide) else slide)
        self.counts = {CellClass.CYTOPLASM: 0, CellClass.NUCLEUS: 0}
        self.seconds = 0.0
        self.tissue: TissueMap | None = None
        self.estimated_diameter: float | None = None  # level-0 pixels, with --diameter auto

    def __iter__(self) -> Iterator[tuple[Found | None, list[Found]]]:
        started = time.perf_counter()
        if self.slide is not None:
            yield from self._run(self.slide)
        else:
            with open_slide(self.path, self.segmenter.settings.mpp, planes=self.segmenter.settings.planes) as slide:
                yield from self._run(slide)
        self.seconds = time.perf_counter() - started

    def _run(self, slide: Slide) -> Iterator[tuple[Found | None, list[Found]]]:
        settings, processes = self.segmenter.settings, self.segmenter.processes
        self.mpp, self.planes = slide.mpp, slide.taken
        self.tissue = tissue = TissueMap(*slide.thumbnail()) if settings.skip_glass else None
        self.wanted, self.reason = self._downsample(slide)
        self.level_index = slide.level_for(self.wanted)
        level = slide.levels[self.level_index]
        self.level, self.downsample = level, level.downsample

        def runs(y: int, x: int, height: int, width: int) -> bool:
            return tissue.runs(y, x, height, width, level.downsample)

        scale = level.downsample / self.wanted

        def detect(crops, corners):
            return self.segmenter.detect(crops, scale)

        found = segment_tiled(detect, level, settings, runs=runs if tissue else None, share=processes,
                              progress=self.progress)
        for cell, nuclei in _with_nuclei(found):
            for item in ([cell] if cell else []) + nuclei:
                self.counts[item.piece.category] += 1
            yield cell, nuclei

    def _downsample(self, slide: Slide) -> tuple[float, str]:
        """Level-0 pixels per pixel the model should see, and what decided it: the cell
        diameter given or estimated, else the slide's and the model's pixel sizes, else full
        resolution."""
        settings = self.segmenter.settings
        if settings.diameter == "auto":
            return self._estimated(slide, *self._by_pixel_size(slide))
        if settings.diameter is not None:
            return 1 / self.segmenter.scale, f"cell diameter {settings.diameter:g} px"
        return self._by_pixel_size(slide)

    def _by_pixel_size(self, slide: Slide) -> tuple[float, str]:
        config = self.segmenter.model.config
        if slide.mpp and config.microns_per_pixel:
            return (config.microns_per_pixel / slide.mpp,
                    f"{slide.mpp:g} um/px slide, {config.microns_per_pixel:g} um/px model")
        missing = "the model records no pixel size" if slide.mpp else "the slide records no pixel size (use --mpp)"
        return 1.0, f"full resolution: {missing}"

    def _estimated(self, slide: Slide, downsample: float, reason: str) -> tuple[float, str]:
        """`downsample`, or the one the cells ask for where it differs by more than the tolerance.
        Their diameter is estimated on tissue tiles of the level the last estimate asked for, so
        that the tiles hold whole cells at about the model's size, until two estimates agree
        within AUTO_SETTLED (or AUTO_PASSES samples, or a level already sampled)."""
        wanted, sampled, estimate, tiles = downsample, set(), None, 0
        while len(sampled) < AUTO_PASSES and slide.level_for(wanted) not in sampled:
            index = slide.level_for(wanted)
            sampled.add(index)
            found, count = self._sample_estimate(slide.levels[index])
            if found is None and estimate is None:
                return downsample, f"{reason}; no confident cell in {count} tissue tiles to estimate the diameter"
            if found is None:
                break  # nothing confident at this level: keep the last estimate
            estimate, tiles = found * slide.levels[index].downsample, count  # in level-0 pixels
            # Within AUTO_RANGE of the pixel size's downsample, as an image's of its own scale.
            asked = downsample / estimate_scale(self.segmenter.model.config, estimate / downsample)
            settled, wanted = within(asked, wanted, AUTO_SETTLED), asked
            if settled:
                break
        self.estimated_diameter = estimate
        source = f"cell diameter {estimate:.0f} px at level 0, estimated on {tiles} tissue tiles"
        if within(wanted, downsample):
            return downsample, f"{reason}; {source}, within the tolerance"
        return wanted, source

    def _sample_estimate(self, level) -> tuple[float | None, int]:
        """The cells' diameter in `level`'s pixels on up to AUTO_SAMPLE tissue tiles spread over
        it, and how many tiles were sampled (each process reads only the tiles it runs)."""
        grid = Grid.over(level.shape, self.segmenter.settings)
        corners = [(y, x) for y in grid.rows for x in grid.cols
                   if self.tissue is None or self.tissue.touches(y, x, *grid.span, level.downsample)]
        tiles = _Tiles(level, [corners[i] for i in spread_sample(len(corners))], grid.tile)
        return self.segmenter.estimate_diameter(tiles, self.estimating), len(tiles)

    def report(self) -> dict:
        """What was done: level, scale and why, tiles run and skipped, counts, seconds, and a
        warning when glass detection left (almost) nothing to run."""
        tissue = self.tissue
        warning = None
        if tissue and tissue.asked and tissue.skipped_fraction > GLASS_WARNING:
            warning = (f"glass detection skipped {tissue.asked - tissue.kept} of {tissue.asked} tiles (a dark-field "
                       "or fluorescence slide looks like empty glass); run with --no-skip-glass to segment them")
        return {
            "slide": str(self.path), "level": self.level_index, "level_downsample": round(self.downsample, 4),
            "model_input_downsample": round(self.wanted, 4), "scale_from": self.reason,
            "mpp": self.mpp, "planes": self.planes,
            "estimated_diameter": None if self.estimated_diameter is None else round(self.estimated_diameter, 1),
            "tiles_run": tissue.kept if tissue else None, "tiles": tissue.asked if tissue else None,
            "glass_skipped": round(tissue.skipped_fraction, 4) if tissue else 0.0,
            "cells": self.counts[CellClass.CYTOPLASM], "nuclei": self.counts[CellClass.NUCLEUS],
            "seconds": round(self.seconds, 1), "warning": warning,
        }


class _Tiles(Sequence):
    """Tiles of a level at `corners`, each read only when indexed."""

    def __init__(self, level, corners: list[tuple[int, int]], tile: int):
        self.level, self.corners, self.tile = level, corners, tile

    def __len__(self) -> int:
        return len(self.corners)

    def __getitem__(self, index: int) -> np.ndarray:
        y, x = self.corners[index]
        return np.asarray(self.level[y:y + self.tile, x:x + self.tile])


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


def level0(item: Found, downsample: float) -> tuple[int, int, np.ndarray]:
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
