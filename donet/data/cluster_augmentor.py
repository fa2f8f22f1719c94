"""Instance-level cluster augmentation (paper §3.4, "DoNet w/ Aug.").

Annotated cells (with their nuclei) are cut out of training images and composited into new
clusters with a chosen overlap ratio and translucency, giving new images with exact masks.

Cutting a translucent cell out of an overlap needs its own transmittance there: the image
divided by the background gives the product of every covering cell's transmittance, so
each other covering cell is divided back out using its typical transmittance (the median
over its unshared, nucleus-free part).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .compositing import CellSprite, cluster_sample, to_pixels
from .decomposition import decompose
from .instances import AnnotatedImage, CellClass
from .synthetic import smooth_noise


def _as_float(image: np.ndarray) -> np.ndarray:
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    pixels = image.astype(np.float32) / scale
    return pixels[..., None] if pixels.ndim == 2 else pixels


def cut_cells(sample: AnnotatedImage) -> tuple[list[CellSprite], np.ndarray, np.ndarray]:
    """Sprites of every annotated cell of `sample`, plus its background level and noise (per channel)."""
    image = _as_float(sample.image)
    cells = sample.masks(CellClass.CYTOPLASM)
    if len(cells) == 0:
        return [], np.zeros(image.shape[-1]), np.zeros(image.shape[-1])
    outside = ~cells.any(axis=0)
    reference = image[outside] if outside.sum() > 100 else image.reshape(-1, image.shape[-1])
    background = np.quantile(reference, 0.5 if outside.sum() > 100 else 0.95, axis=0).clip(1e-3, None)
    noise = reference.std(axis=0) if outside.sum() > 100 else np.full(image.shape[-1], 0.01)
    observed = (image / background).clip(1e-3, 1)

    cell_ids = [inst.id for inst in sample.cells]
    nuclei = {cid: np.zeros(sample.size, bool) for cid in cell_ids}
    for nucleus in sample.nuclei:
        if nucleus.parent in nuclei:
            nuclei[nucleus.parent] |= nucleus.mask
    _, complement = decompose(cells)
    typical = []
    for k, cid in enumerate(cell_ids):
        region = complement[k] & ~nuclei[cid]
        typical.append(np.median(observed[region if region.sum() > 20 else cells[k]], axis=0))

    sprites = []
    for k, cid in enumerate(cell_ids):
        rows, cols = np.nonzero(cells[k])
        window = np.s_[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        own = observed[window].copy()
        for j in range(len(cells)):
            if j != k:
                own[cells[j][window]] /= typical[j]
        cell = cells[k][window]
        own[~cell] = 1.0
        nucleus = nuclei[cid][window]
        sprites.append(CellSprite(cell, own.clip(1e-3, 1).astype(np.float32), nucleus if nucleus.any() else None))
    return sprites, background, noise


class ClusterAugmentor:
    """New clusters from the cells of `samples`.

    Call it for a new sample; `maybe_replace` swaps a training sample for a new cluster of
    the same size with probability `probability` (the on-the-fly form).
    `translucency` is a range of exponents applied to each cell's transmittance (1 keeps
    the source's look, below 1 more translucent, above 1 denser).
    """

    def __init__(self, samples: Iterable[AnnotatedImage], size: tuple[int, int] | None = None,
                 cells: tuple[int, int] = (2, 10), overlap: tuple[float, float] = (0.1, 0.3),
                 translucency: tuple[float, float] = (0.8, 1.25), clusters: tuple[int, int] = (1, 2)):
        self.sprites: list[CellSprite] = []
        self.backgrounds: list[tuple[np.ndarray, np.ndarray]] = []
        channels, first_size = set(), None
        for sample in samples:
            sprites, background, noise = cut_cells(sample)
            self.sprites += sprites
            if sprites:
                self.backgrounds.append((background, noise))
                channels.add(background.shape[0])
                first_size = first_size or sample.size
        if not self.sprites:
            raise ValueError("no annotated cells to build clusters from")
        if len(channels) > 1:
            raise ValueError("cannot mix grayscale and colour source images")
        self.gray = channels == {1}
        self.size = tuple(size or first_size)
        self.cells, self.overlap, self.translucency, self.clusters = cells, overlap, translucency, clusters

    def __call__(self, rng: np.random.Generator, name: str = "cluster") -> AnnotatedImage:
        height, width = self.size
        fitting = [s for s in self.sprites if s.shape[0] < height and s.shape[1] < width]
        if not fitting:
            raise ValueError(f"no source cell fits a {width}x{height} image")
        count = int(rng.integers(self.cells[0], self.cells[1] + 1))
        chosen = [fitting[i].with_translucency(rng.uniform(*self.translucency))
                  for i in rng.integers(0, len(fitting), count)]
        chosen = [_maybe_flip(sprite, rng) for sprite in chosen]
        level, noise = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        background = level * (1 + 0.015 * smooth_noise((height, width), rng, grain=4))[..., None]
        clusters = int(min(count, rng.integers(self.clusters[0], self.clusters[1] + 1)))
        sample, _ = cluster_sample(name, background.astype(np.float32), chosen, self.overlap, rng, clusters)
        image = sample.image + rng.normal(0, 1, sample.image.shape).astype(np.float32) * noise
        sample.image = to_pixels(image, gray=self.gray)
        return sample

    def maybe_replace(self, sample: AnnotatedImage, rng: np.random.Generator, probability: float) -> AnnotatedImage:
        if rng.random() >= probability:
            return sample
        previous, self.size = self.size, sample.size
        try:
            return self(rng, name=f"{sample.name}_cluster")
        finally:
            self.size = previous


def _maybe_flip(sprite: CellSprite, rng: np.random.Generator) -> CellSprite:
    """A random flip and quarter turn, so reused cells do not repeat one pose."""
    turns, flip = int(rng.integers(4)), bool(rng.integers(2))

    def pose(array):
        array = np.rot90(array, turns, axes=(0, 1))
        return np.ascontiguousarray(array[:, ::-1] if flip else array)

    return CellSprite(pose(sprite.cell), pose(sprite.transmittance),
                      None if sprite.nucleus is None else pose(sprite.nucleus))
