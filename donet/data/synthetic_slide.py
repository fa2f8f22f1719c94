"""Synthetic whole slides: `donet synth` fields of view as cell clusters on empty glass,
written tile by tile as a JPEG-compressed pyramidal OME-TIFF, so slides of any size are
made (and read back) without ever holding one in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from .synthetic import SynthConfig, generate

GLASS = (232, 225, 220)  # the synthetic fields' own background


@dataclass
class SyntheticSlide:
    """A `height` x `width` RGB slide: `clusters` are ((y, x), field of view) at level 0."""

    height: int
    width: int
    clusters: list[tuple[tuple[int, int], np.ndarray]] = field(default_factory=list)
    seed: int = 0

    @classmethod
    def scattered(cls, height: int, width: int, per_megapixel: float, field_size: int = 512,
                  seed: int = 0) -> SyntheticSlide:
        """Clusters placed at random (not touching), `per_megapixel` of them per million pixels."""
        rng = np.random.default_rng(seed)
        count = max(1, round(per_megapixel * height * width / 1e6))
        grid_y, grid_x = height // field_size, width // field_size
        places = rng.choice(grid_y * grid_x, size=min(count, grid_y * grid_x), replace=False)
        config = SynthConfig(size=(field_size, field_size), color=True)
        return cls(height, width, [((int(p // grid_x) * field_size, int(p % grid_x) * field_size),
                                    generate(i, config, seed=seed).image) for i, p in enumerate(places)], seed)

    def render(self, y: int, x: int, height: int, width: int, step: int = 1) -> np.ndarray:
        """Level-0 region (y, x, height, width) sampled every `step` pixels."""
        rows, cols = np.arange(y, y + height, step), np.arange(x, x + width, step)
        noise = np.random.default_rng([self.seed, y, x, step]).normal(0, 2, (len(rows), len(cols), 1))
        out = (np.asarray(GLASS, np.float32) + noise).clip(0, 255).astype(np.uint8)
        for (top, left), pixels in self.clusters:
            inside_y = (rows >= top) & (rows < top + pixels.shape[0])
            inside_x = (cols >= left) & (cols < left + pixels.shape[1])
            if inside_y.any() and inside_x.any():
                out[np.ix_(inside_y, inside_x)] = pixels[np.ix_(rows[inside_y] - top, cols[inside_x] - left)]
        return out


def write_pyramid(path: str | Path, slide: SyntheticSlide, mpp: float = 0.25, tile: int = 512,
                  quality: int = 90) -> None:
    """A tiled, JPEG-compressed pyramidal OME-TIFF (each level half the last, down to one
    tile), written tile by tile."""
    levels = 1
    while max(slide.height, slide.width) // 2 ** levels >= tile:
        levels += 1

    def tiles(step: int):
        height, width = -(-slide.height // step), -(-slide.width // step)
        for y in range(0, height, tile):
            for x in range(0, width, tile):
                region = slide.render(y * step, x * step, min(tile, height - y) * step, min(tile, width - x) * step,
                                      step)
                padded = np.full((tile, tile, 3), GLASS, np.uint8)
                padded[:region.shape[0], :region.shape[1]] = region
                yield padded

    options = dict(tile=(tile, tile), compression="jpeg", compressionargs={"level": quality}, photometric="rgb", dtype=np.uint8)
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        tif.write(tiles(1), shape=(slide.height, slide.width, 3), subifds=levels - 1,
                  metadata={"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeY": mpp}, **options)
        for level in range(1, levels):
            step = 2 ** level
            tif.write(tiles(step), shape=(-(-slide.height // step), -(-slide.width // step), 3), subfiletype=1,
                      **options)
