"""Pictures by content: outlines sit on the masks' edges in each instance's colour, heatmap
panels and the attention picture show the maps they are given, and the report's SVGs draw
the numbers they are given."""

import json
import re

import numpy as np
import pytest

from donet.data import AnnotatedImage, CellClass, Instance
from donet.figures import VIRIDIS, attention_picture, distinct_colour, heatmap_panel, overlay
from donet.report import histogram_svg, loss_curve_svg
from pictures import decode_colours, ring

SIZE = (60, 90)


def image_with_cells():
    image = np.full(SIZE, 100, np.uint8)
    first, second, nucleus = (np.zeros(SIZE, bool) for _ in range(3))
    first[10:30, 20:50] = True
    second[20:45, 40:70] = True
    nucleus[14:20, 26:32] = True
    instances = [Instance.from_mask(1, CellClass.CYTOPLASM, first), Instance.from_mask(2, CellClass.CYTOPLASM, second),
                 Instance.from_mask(3, CellClass.NUCLEUS, nucleus, parent=1)]
    return AnnotatedImage("cells", image, instances), (first, second, nucleus)


def test_overlay_colours_each_outline_and_nothing_else():
    sample, (first, second, nucleus) = image_with_cells()
    before = sample.image.copy()
    picture = overlay(sample)
    assert picture.shape == (*SIZE, 3) and picture.dtype == np.uint8
    assert np.array_equal(sample.image, before)  # drawn on a copy
    rings = [ring(first, 2), ring(second, 2), ring(nucleus, 2)]
    assert rings[0][10:12, 20:50].all() and not rings[0][12:28, 22:48].any()  # two pixels thick
    changed = (picture != 100).any(axis=-1)
    assert np.array_equal(changed, rings[0] | rings[1] | rings[2])
    # Each cell in its own colour, the later one on top where outlines cross; nuclei in white.
    def colours(where):
        return {tuple(int(v) for v in c) for c in picture[where]}

    assert colours(rings[0] & ~rings[1] & ~rings[2]) == {distinct_colour(0)}
    assert colours(rings[1] & ~rings[2]) == {distinct_colour(1)} != {distinct_colour(0)}
    assert (picture[rings[2]] == 255).all()
    assert (picture[first & ~rings[0] & ~rings[1] & ~rings[2]] == 100).all()  # inside stays as it was
    # 16-bit images are stretched for display: the outline is drawn on the stretched picture.
    deep = AnnotatedImage("deep", (sample.image.astype(np.uint16) * 10), sample.instances)
    deep.image[:, :45] = 4000
    stretched = overlay(deep)
    assert stretched[0, 0].tolist() == [255] * 3 and stretched[0, -1].tolist() == [0] * 3
    assert np.array_equal((stretched != picture).any(axis=-1) & (rings[0] | rings[1] | rings[2]),
                          np.zeros(SIZE, bool))


def test_heatmap_panel_puts_each_map_under_its_name_with_its_maximum_in_place():
    rows, cols = np.mgrid[0:40, 0:50]
    maps = {"intersection": np.exp(-((rows - 10) ** 2 + (cols - 35) ** 2) / 40.0),
            "complement": np.clip(cols / 49, 0, 1), "recombined": np.zeros((40, 50))}
    panel = heatmap_panel(maps)
    assert panel.shape == (40 + 18, 3 * 50, 3) and panel.dtype == np.uint8
    for k, values in enumerate(maps.values()):
        label, tile = panel[:18, 50 * k:50 * (k + 1)], panel[18:, 50 * k:50 * (k + 1)]
        assert (label < 128).any() and (label == 255).mean() > 0.6  # dark text on white
        assert np.abs(decode_colours(tile) - values).max() <= 0.01
    intersection = decode_colours(panel[18:, :50])
    assert np.unravel_index(intersection.argmax(), intersection.shape) == (10, 35)
    assert (panel[18:, 100:150] == VIRIDIS[0]).all()  # an empty map is uniformly the lowest colour
    # Names differ, so their labels do.
    assert not np.array_equal(panel[:18, :50], panel[:18, 50:100])


def test_attention_picture_spans_half_to_one():
    attention = np.full((30, 40), 0.5, np.float32)
    attention[10:20, 5:15] = 0.75
    attention[12, 8] = 1.0
    picture = attention_picture(attention)
    assert (picture[attention == 0.5] == VIRIDIS[0]).all() and (picture[12, 8] == VIRIDIS[-1]).all()
    assert (picture[10, 5] == VIRIDIS[2]).all()  # 0.75 is the middle of [0.5, 1]
    assert np.abs(decode_colours(picture, 0.5, 1.0) - attention).max() <= 0.005


def bar_heights(svg: str) -> list[float]:
    return [float(h) for h in re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', svg)]


def test_histogram_bars_count_the_values_in_their_bins():
    values = [0.05, 0.1, 0.12, 0.5, 0.52, 0.54, 0.55, 1.0]  # bins of 0.1 up to the largest, 1.0
    svg = histogram_svg(values, "N/C", bins=10, height=200)
    heights = bar_heights(svg)
    counts = [1, 2, 0, 0, 0, 4, 0, 0, 0, 1]  # 1.0 falls in the last bin
    assert len(heights) == 10
    assert heights == pytest.approx([c / 4 * (200 - 2 * 40) for c in counts])
    assert "8 cells, 0 to 1 (tallest bar 4)" in svg
    assert "nothing to show" in histogram_svg([], "N/C")


def test_loss_curve_runs_from_the_first_logged_loss_to_the_last(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    records = [{"kind": "train", "iteration": i, "loss": 10.0 / i} for i in (1, 10, 100)]
    records.insert(1, {"kind": "validation", "iteration": 5, "results": {}})
    metrics.write_text("\n".join(json.dumps(r) for r in records))
    svg = loss_curve_svg(metrics, width=640, height=240)
    points = [tuple(map(float, p.split(","))) for p in re.search(r'points="([^"]+)"', svg).group(1).split()]
    # Log-scaled loss falls linearly in log iteration here; x is linear in iteration.
    assert [x for x, _ in points] == pytest.approx([40, 40 + 9 / 99 * 560, 600], abs=0.06)
    assert [y for _, y in points] == pytest.approx([40, 40 + 160 / 2, 200], abs=0.06)
    assert "10.00 at iteration 1 to 0.10 at iteration 100" in svg
