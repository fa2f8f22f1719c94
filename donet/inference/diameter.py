"""Cell diameter and scale: the factor an image is resized by so that its cells reach the
size the model was trained at, given a diameter or estimated from a pass of the model
(`--diameter auto`)."""

from __future__ import annotations

import numpy as np

from ..data.instances import AnnotatedImage
from ..data.stats import equivalent_diameter
from ..errors import DonetError
from ..modeling.config import ModelConfig

# --diameter auto rescales images only when their cells ask for a scale that differs from the
# settings' by more than this factor.
AUTO_TOLERANCE = 1.25
# Cells far from the model's size are misread toward it, so an estimate is trusted once the
# pass it came from ran within this factor of the scale it asks for: a first pass that finds
# cells 1.2x too large is run again at their scale before the tolerance decides. An image gets
# at most AUTO_PASSES passes after its first; a slide's tiles are sampled at most AUTO_PASSES
# times (see `slides.SlideRun`).
AUTO_SETTLED = 1.1
AUTO_PASSES = 3
AUTO_SCORE = 0.5  # confident cells (and nuclei): those whose median diameter is the estimate
AUTO_RANGE = (0.25, 4.0)  # an estimate asking to rescale beyond this is a misreading (debris, merged cells)
# Many images share one diameter, the median of the own estimates of up to AUTO_SAMPLE images
# spread over the set (see `spread_sample`), so that a few misread images do not each go to
# their own scale. On the train45 split rescaled 0.5-2.0x (benchmarks/diameter_auto.py), one
# for the set against one per image: with the v2 recipe -2.0 at 0.5x, +3.0 at 0.7x and within
# 0.3 at 1.4x and 2.0x cytoplasm mAP; trained with a mask margin, +0.4 to +3.4 at all four.
AUTO_SAMPLE = 16


def trained_diameter(config: ModelConfig) -> float:
    """The cells' diameter in the model's training images, which images are rescaled to match."""
    if config.cell_diameter is None:
        raise DonetError(None, "this model records no training cell diameter (trained before donet recorded it); "
                               "retrain it, or leave the diameter out")
    return config.cell_diameter


def settings_scale(config: ModelConfig, diameter: float | str | None) -> float:
    """The factor that brings cells of a `diameter` setting to the model's size: 1 for None,
    and for "auto", whose passes start there (a model that records no diameter cannot take one)."""
    if diameter is None:
        return 1.0
    trained = trained_diameter(config)
    return 1.0 if diameter == "auto" else trained / diameter


def estimate_scale(config: ModelConfig, estimate: float) -> float:
    """The factor an estimated diameter asks for, within AUTO_RANGE."""
    return float(np.clip(trained_diameter(config) / estimate, *AUTO_RANGE))


def chosen_scale(config: ModelConfig, estimate: float | None, scale: float) -> float:
    """The scale to segment at: the one `estimate` asks for where it differs from `scale` by
    more than AUTO_TOLERANCE, else `scale` (also without an estimate)."""
    if estimate is None or within(estimate_scale(config, estimate), scale):
        return scale
    return estimate_scale(config, estimate)


def typical_diameter(result: AnnotatedImage) -> float | None:
    """Median equivalent-circle diameter of the confident cells that hold a confident nucleus
    (of all confident cells where none does), or None without any. In dense clusters the
    model finds parts of cells, which hold no nucleus and would read the cells small."""
    confident = [cell for cell in result.cells if cell.score >= AUTO_SCORE]
    holding = {nucleus.parent for nucleus in result.nuclei if nucleus.score >= AUTO_SCORE}
    whole = [cell for cell in confident if cell.id in holding] or confident
    return float(np.median([equivalent_diameter(cell.area) for cell in whole])) if whole else None


def spread_sample(count: int) -> list[int]:
    """Indices of up to AUTO_SAMPLE of `count` items, evenly spread from the first to the last:
    ordered inputs can hold one kind at their start (a folder's images sorted by name, grouped
    by slide or patient; a slide's tiles row by row)."""
    return np.unique(np.linspace(0, count - 1, min(count, AUTO_SAMPLE)).round().astype(int)).tolist()


def within(scale: float, other: float, factor: float = AUTO_TOLERANCE) -> bool:
    return abs(np.log(scale / other)) <= np.log(factor)
