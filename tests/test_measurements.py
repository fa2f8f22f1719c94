"""Measurements of whole cells (overlaps kept) and their accuracy against the truth."""

import csv

import numpy as np
import pytest
from skimage.draw import disk

from donet.data.instances import AnnotatedImage, CellClass, Instance
from donet.data.measurements import measure, summary, table_rows, write_csv
from donet.evaluation.measurement_accuracy import flatten, measurement_accuracy


def disk_mask(centre, radius, size=(200, 240)):
    mask = np.zeros(size, bool)
    mask[disk(centre, radius, shape=size)] = True
    return mask


@pytest.fixture
def pair():
    """A large cell under a smaller one, each with a nucleus; a third nucleus lies outside
    both, and the large cell holds a second nucleus. The image is 100 everywhere but 40 on
    the large cell's visible part, so intensities are known."""
    big, small = disk_mask((100, 90), 50), disk_mask((100, 150), 35)
    nuclei = [disk_mask((100, 70), 10), disk_mask((95, 125), 6), disk_mask((100, 160), 8), disk_mask((20, 220), 7)]
    image = np.full(big.shape, 100, np.uint8)
    image[big] = 40
    instances = [Instance.from_mask(1, CellClass.CYTOPLASM, big), Instance.from_mask(2, CellClass.CYTOPLASM, small),
                 Instance.from_mask(3, CellClass.NUCLEUS, nuclei[0], parent=1),
                 Instance.from_mask(4, CellClass.NUCLEUS, nuclei[1], parent=1),
                 Instance.from_mask(5, CellClass.NUCLEUS, nuclei[2], parent=2),
                 Instance.from_mask(6, CellClass.NUCLEUS, nuclei[3])]
    return AnnotatedImage("pair", image, instances), big, small, nuclei


def test_cells_are_measured_whole_with_their_nuclei_and_overlap(pair):
    sample, big, small, nuclei = pair
    rows = {row["id"]: row for row in measure(sample)}
    large = rows[1]
    assert large["area"] == big.sum()  # the part under the small cell counts
    assert large["equivalent_diameter"] == pytest.approx(100, abs=1.5) and large["eccentricity"] < 0.1
    assert large["solidity"] > 0.98 and large["perimeter"] == pytest.approx(np.pi * 100, rel=0.05)
    assert large["nuclei"] == 2 and large["nucleus_area"] == nuclei[0].sum() + nuclei[1].sum()
    assert large["nc_ratio"] == pytest.approx(large["nucleus_area"] / big.sum())
    assert large["mean_intensity"] == pytest.approx(40) and large["std_intensity"] == pytest.approx(0)
    assert large["overlapping_cells"] == rows[2]["overlapping_cells"] == 1
    assert large["overlapped_fraction"] == pytest.approx((big & small).sum() / big.sum())
    assert rows[2]["overlapped_fraction"] == pytest.approx((big & small).sum() / small.sum())
    assert (large["centroid_x"], large["centroid_y"]) == pytest.approx((90, 100), abs=0.5)
    nucleus = rows[5]
    assert nucleus["class"] == "nucleus" and nucleus["parent"] == 2 and nucleus["area"] == nuclei[2].sum()
    assert nucleus["nc_ratio"] is None and nucleus["solidity"] is None  # cell-only columns stay empty
    # The table: every cell, and the nucleus of no cell.
    assert [(row["class"], row["id"]) for row in table_rows(rows.values())] == [("cell", 1), ("cell", 2),
                                                                               ("nucleus", 6)]


def test_microns_where_the_pixel_size_is_known(pair):
    sample = pair[0]
    plain, scaled = measure(sample)[0], measure(sample, mpp=0.5)[0]
    assert scaled["area_um2"] == pytest.approx(plain["area"] * 0.25)
    assert scaled["perimeter_um"] == pytest.approx(plain["perimeter"] * 0.5)
    assert scaled["nucleus_area_um2"] == pytest.approx(plain["nucleus_area"] * 0.25)
    assert "area_um2" not in plain


def test_summary_and_csv(pair, tmp_path):
    rows = measure(pair[0])
    figures = summary(rows)
    ratios = sorted(row["nc_ratio"] for row in rows if row["class"] == "cell")
    assert figures["cells"] == 2 and figures["nuclei"] == 4
    assert figures["nc_ratio_median"] == pytest.approx(np.median(ratios))
    assert figures["nc_ratio_p90"] == pytest.approx(np.percentile(ratios, 90))
    assert figures["overlapping_share"] == 1.0 and figures["multinucleated_share"] == 0.5
    write_csv(tmp_path / "m.csv", table_rows(rows))
    read = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert [r["id"] for r in read] == ["1", "2", "6"] and float(read[0]["area"]) == rows[0]["area"]


def test_flattening_gives_the_overlap_to_one_cell(pair):
    sample, big, small, nuclei = pair
    flat = {i.id: i for i in flatten(sample)}
    # The smaller cell keeps the overlap, but the large cell's nucleus stays in the large cell.
    hidden_nucleus = nuclei[1] & small
    assert hidden_nucleus.any()
    assert np.array_equal(flat[2].mask, small & ~hidden_nucleus)
    assert np.array_equal(flat[1].mask, (big & ~small) | hidden_nucleus)
    assert flat[4].parent == 1 and flat[5].parent == 2 and flat[6].parent is None


def test_accuracy_of_perfect_predictions_and_of_flat_labels(pair):
    sample, big, small, nuclei = pair
    accuracy = measurement_accuracy([sample], {"pair": sample.instances})
    for group in ("all", "overlapped"):
        assert accuracy["predicted"][group] == {"cells": 2, "cell_area": 0.0, "nucleus_area": 0.0, "nc_ratio": 0.0}
    flat = accuracy["flattened_truth"]["overlapped"]
    # The large cell loses its hidden part; its N/C ratio is overstated by as much.
    visible = (big & ~small).sum() + (nuclei[1] & small).sum()
    assert flat["cells"] == 2 and flat["cell_area"] > 0
    large_error = abs(visible - big.sum()) / big.sum()
    small_error = abs(small.sum() - (nuclei[1] & small).sum() - small.sum()) / small.sum()
    assert flat["cell_area"] == pytest.approx(np.median([large_error, small_error]))
    # Nuclei stay whole when flattened, so each N/C ratio is overstated by its cell's lost area.
    small_visible = small.sum() - (nuclei[1] & small).sum()
    nc_errors = [big.sum() / visible - 1, small.sum() / small_visible - 1]
    assert flat["nc_ratio"] == pytest.approx(np.median(nc_errors))


def test_a_nucleus_whose_cell_is_missing_is_measured_alone(pair):
    sample = pair[0]
    without_large = AnnotatedImage(sample.name, sample.image, [i for i in sample.instances if i.id != 1])
    rows = table_rows(measure(without_large))
    # Its two nuclei lose their (absent) parent and are listed on their own.
    assert sorted(row["id"] for row in rows if row["class"] == "nucleus") == [3, 4, 6]
    assert all(row["parent"] is None for row in rows if row["class"] == "nucleus")
