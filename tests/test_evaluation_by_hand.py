"""Evaluation worked out by hand where the earlier tests left room (mutation testing found
it): single pairs, one-to-one matching, pooling over images, missed cells and stray
predictions in each AJI, the thresholds' own values, more than ten cells an image, COCO's
IoU 0.75 column, and the measurement errors' matching, grouping and defaults."""

import math

import numpy as np
import pytest

from donet.data import AnnotatedImage, CellClass, Instance
from donet.errors import DonetError
from donet.evaluation import evaluate, json_safe, markdown_table, table_rows
from donet.evaluation.coco_map import segm_ap
from donet.evaluation.matching import Pairs
from donet.evaluation.measurement_accuracy import flatten, measurement_accuracy, measurement_rows
from donet.evaluation.protocols import aji_plus, isbi_protocol, kumar_aji, paper_aji, paper_protocol, \
    standard_protocol

SHAPE = (10, 40)


def columns(start, stop, shape=SHAPE):
    mask = np.zeros(shape, bool)
    mask[:, start:stop] = True
    return mask


def cell(mask, id=1, score=1.0, category=CellClass.CYTOPLASM, parent=None):
    return Instance.from_mask(id, category, mask, score=score, parent=parent)


def pairs(predicted, truth):
    return Pairs.of([cell(m).rle for m in predicted], [cell(m).rle for m in truth])


def image(name, *instances, shape=SHAPE):
    return AnnotatedImage(name, np.zeros(shape, np.uint8), list(instances))


def test_one_prediction_of_one_cell():
    p = pairs([columns(1, 10)], [columns(0, 10)])  # IoU 0.9, Dice 180 / 190
    assert paper_protocol([p]) == pytest.approx({"f1": 1.0, "aji": 0.9, "dice": 180 / 190})
    assert standard_protocol([p]) == pytest.approx({"aji_kumar": 0.9, "aji_plus": 0.9, "pq": 0.9, "sq": 0.9, "dq": 1.0,
                                                    "f1_at_0.5": 1.0})
    assert isbi_protocol([p]) == pytest.approx({"dice": 180 / 190, "fn_o": 0.0, "tp_p": 0.9, "fp_p": 0.0})


def test_dice_matches_are_one_to_one():
    # A duplicate detection of one cell does not count a second time...
    duplicate = pairs([columns(0, 10), columns(0, 9)], [columns(0, 10)])
    assert paper_protocol([duplicate])["dice"] == 1.0
    # ...nor does one prediction count for two (overlapping) cells.
    shared = pairs([columns(0, 10)], [columns(0, 10), columns(0, 11)])
    assert paper_protocol([shared])["dice"] == 1.0


def test_paper_dice_is_pooled_over_images_f1_and_aji_averaged():
    first = pairs([columns(0, 10)], [columns(0, 10)])
    second = pairs([columns(1, 10), columns(21, 30), columns(32, 36)], [columns(0, 10), columns(20, 30)])
    paper = paper_protocol([first, second])
    assert paper["dice"] == pytest.approx((1 + 2 * (180 / 190)) / 3)  # three matches, pooled
    assert paper["f1"] == pytest.approx((1 + 2 * 2 / 5) / 2)
    assert paper["aji"] == pytest.approx((1 + 180 / (200 + 40)) / 2)


def test_a_missed_cell_and_a_stray_prediction_enlarge_every_aji_union():
    # g1 found exactly; g2 (cols 30-39) missed; p2 (cols 15-24) touches no cell.
    p = pairs([columns(0, 10), columns(15, 25)], [columns(0, 10), columns(30, 40)])
    for aji in (paper_aji, kumar_aji, aji_plus):
        assert aji(p) == pytest.approx(100 / 300), aji.__name__
    missed = pairs([columns(0, 10)], [columns(0, 10), columns(30, 40)])
    assert kumar_aji(missed) == pytest.approx(100 / 200)


def test_no_match_scores_zero_not_nan():
    p = pairs([columns(20, 30)], [columns(0, 10)])
    standard = standard_protocol([p])
    assert standard == {"aji_kumar": 0.0, "aji_plus": 0.0, "pq": 0.0, "sq": 0.0, "dq": 0.0, "f1_at_0.5": 0.0}
    assert paper_protocol([p])["f1"] == 0.0 and math.isnan(paper_protocol([p])["dice"])


def test_an_empty_annotation_with_nothing_predicted_is_no_error():
    p = pairs([], [np.zeros(SHAPE, bool)])  # a cell annotated without pixels: the union is empty
    assert paper_aji(p) == kumar_aji(p) == aji_plus(p) == 1.0


def test_isbi_counts_the_cells_of_every_image():
    unpredicted = pairs([], [columns(0, 10)])
    predicted = pairs([columns(1, 11)], [columns(0, 10)])
    figures = isbi_protocol([unpredicted, predicted])
    assert figures["fn_o"] == pytest.approx(0.5) and figures["dice"] == pytest.approx(0.9)


@pytest.fixture
def truth():
    a = image("a", cell(columns(0, 10), 1), cell(columns(5, 20), 2),
              cell(columns(30, 34), 3, category=CellClass.NUCLEUS, parent=None))
    return [a, image("b", cell(columns(0, 10))), image("c", cell(columns(20, 30)))]


def test_evaluate_counts_scores_at_each_threshold_itself(truth):
    a = truth[0].instances
    predictions = {"a": [Instance(i.id, i.category, i.rle, score=0.9) for i in a[:2]]
                   + [Instance(3, CellClass.NUCLEUS, a[2].rle, score=0.95)],
                   "b": [cell(columns(0, 10), score=0.4)]}
    results = evaluate(truth, predictions, paper_score_threshold=0.9, standard_score_threshold=0.4, max_dets=50)
    assert results["images"] == 3 and results["images_without_predictions"] == 1
    assert results["settings"] == {"paper_score_threshold": 0.9, "standard_score_threshold": 0.4, "max_dets": 50}
    cells, nuclei = results["classes"]["cytoplasm"], results["classes"]["nucleus"]
    # Paper and ISBI: only image a's predictions reach 0.9 (exactly); b's 0.4 does not; c has none.
    assert cells["paper"]["f1"] == pytest.approx(1 / 3)
    assert cells["isbi"] == pytest.approx({"dice": 1.0, "fn_o": 0.5, "tp_p": 1.0, "fp_p": 0.0})
    # Standard (0.4): a and b perfect, c missed; F1 pooled over the 4 cells.
    assert cells["standard"]["pq"] == pytest.approx(2 / 3) and cells["standard"]["f1_at_0.5"] == pytest.approx(6 / 7)
    assert nuclei["paper"] == {"f1": 1.0, "aji": 1.0, "dice": 1.0}  # images without nuclei are left out
    average = results["classes"]["average"]
    assert average["paper"]["f1"] == pytest.approx((1 / 3 + 1) / 2)
    assert average["isbi"]["fn_o"] == pytest.approx(0.25)
    assert results["measurements"]["score_threshold"] == 0.4
    assert results["measurements"]["predicted"]["all"]["cells"] == 3


def test_evaluate_an_image_without_cells_and_a_class_nowhere():
    truth = [image("empty"), image("one", cell(columns(0, 10)))]
    results = evaluate(truth, {"empty": [cell(columns(0, 10), score=0.96)], "one": [cell(columns(0, 10), score=0.95)]})
    cells = results["classes"]["cytoplasm"]
    assert cells["paper"]["f1"] == pytest.approx(0.5)  # the empty image's prediction is a false positive
    assert cells["coco"]["ap"] == pytest.approx(0.5)  # the false positive ranks first
    # No nuclei anywhere: the averages are the cells' own.
    assert math.isnan(results["classes"]["nucleus"]["paper"]["f1"])
    assert results["classes"]["average"]["paper"]["f1"] == cells["paper"]["f1"]
    assert results["classes"]["average"]["standard"]["pq"] == cells["standard"]["pq"]


def test_a_metric_without_a_value_in_any_class_has_none_on_average():
    results = evaluate([image("a", cell(columns(0, 10)))], {"a": [cell(columns(20, 30), score=0.95)]})
    assert math.isnan(results["classes"]["average"]["paper"]["dice"])  # no Dice match anywhere
    assert results["classes"]["average"]["paper"]["f1"] == 0.0


def test_evaluate_names_what_is_wrong(truth):
    with pytest.raises(DonetError, match=r"for 4 image\(s\) not in the ground truth, e.g. w, x, y$"):
        evaluate(truth, {name: [] for name in "wxyz"})
    wide = Instance.from_mask(1, CellClass.CYTOPLASM, np.ones((10, 41), bool))
    with pytest.raises(DonetError, match="predicted mask is 41x10 but the ground truth is 40x10"):
        evaluate(truth, {"a": [wide]})


def test_ap_without_predictions_is_zero_and_quiet(capsys):
    assert segm_ap([(SHAPE, [cell(columns(0, 10))])], [[]], 100) == {
        c: {"ap": 0.0, "ap50": 0.0, "ap75": 0.0} for c in (int(CellClass.CYTOPLASM), int(CellClass.NUCLEUS))}
    segm_ap([(SHAPE, [cell(columns(0, 10))])], [[cell(columns(0, 10), score=0.5)]], 100)
    assert capsys.readouterr().out == ""  # pycocotools' progress lines are swallowed


def test_ap_counts_every_detection_up_to_max_dets_and_nan_for_an_absent_class():
    shape = (10, 120)
    cells = [cell(columns(10 * k, 10 * k + 10, shape), k + 1) for k in range(12)]  # twelve cells, more than ten
    found = [Instance(c.id, c.category, c.rle, score=0.5 + 0.01 * k) for k, c in enumerate(cells)]
    nucleus = cell(columns(0, 3, shape), 13, score=0.3, category=CellClass.NUCLEUS)
    scores = segm_ap([(shape, cells)], [found + [nucleus]], max_dets=100)
    assert scores[int(CellClass.CYTOPLASM)] == {"ap": 1.0, "ap50": 1.0, "ap75": 1.0}
    assert all(math.isnan(v) for v in scores[int(CellClass.NUCLEUS)].values())  # no nucleus to find


def test_ap75_is_read_at_iou_075_over_all_areas():
    shape = (40, 60)
    truth = cell(columns(0, 40, shape))  # 1600 pixels: not a COCO "small" object
    found = cell(columns(0, 31, shape), score=0.9)  # IoU 0.775: a match up to the 0.75 threshold
    scores = segm_ap([(shape, [truth])], [[found]], max_dets=100)[int(CellClass.CYTOPLASM)]
    assert scores == pytest.approx({"ap": 0.6, "ap50": 1.0, "ap75": 1.0})  # 6 of the 10 thresholds


def test_tables_show_percentages_decimals_and_dashes():
    metrics = {"coco": {"ap": 0.5, "ap50": 0.25, "ap75": None},
               "paper": {"dice": 0.875, "f1": 1.0, "aji": 0.123456},
               "standard": {"aji_kumar": 0.0, "aji_plus": float("nan"), "pq": 0.3333, "f1_at_0.5": 1.0},
               "isbi": {"dice": 0.91234, "fn_o": 0.25, "tp_p": float("nan"), "fp_p": 0.00012}}
    results = {"classes": {"cytoplasm": metrics, "nucleus": metrics, "average": metrics}}
    rows = {row[0]: row[1:] for row in table_rows(results)}
    assert rows["mAP"] == ["50.00"] * 3 and rows["AP75"] == ["-"] * 3 and rows["AJI (paper)"] == ["12.35"] * 3
    assert rows["AJI+"] == ["-"] * 3 and rows["PQ"] == ["33.33"] * 3
    assert rows["ISBI Dice"] == ["0.9123"] * 3 and rows["ISBI TP_p"] == ["-"] * 3
    assert rows["ISBI FP_p"] == ["0.0001"] * 3  # ISBI figures as fractions, four decimals
    lines = markdown_table(results).splitlines()
    assert lines[:2] == ["| metric | cytoplasm | nucleus | average |", "|---|---|---|---|"]
    assert lines[2] == "| mAP | 50.00 | 50.00 | 50.00 |" and len(lines) == 2 + len(rows)
    assert json_safe({"a": [1.0, float("nan"), (2, float("nan"))], "b": {"c": float("nan")}, "d": "x"}) == \
        {"a": [1.0, None, [2, None]], "b": {"c": None}, "d": "x"}
    accuracy = {"predicted": {"all": {"cells": 3, "cell_area": 0.125, "nucleus_area": None, "nc_ratio": 0.0},
                              "overlapped": {"cells": 0, "cell_area": None, "nucleus_area": None, "nc_ratio": None}},
                "flattened_truth": {"all": {"cells": 3, "cell_area": 0.5, "nucleus_area": 0.0, "nc_ratio": 1.0},
                                    "overlapped": {"cells": 1, "cell_area": 0.0314, "nucleus_area": 0.0,
                                                   "nc_ratio": 2.5}}}
    assert measurement_rows(accuracy) == [["predicted, all", "3", "12.5%", "-", "0.0%"],
                                          ["predicted, overlapped", "0", "-", "-", "-"],
                                          ["flat truth, all", "3", "50.0%", "0.0%", "100.0%"],
                                          ["flat truth, overlapped", "1", "3.1%", "0.0%", "250.0%"]]


# -- measurement errors ----------------------------------------------------------------------


def nucleus(start, stop, id, parent, score=1.0):
    return cell(columns(start, stop), id, score=score, category=CellClass.NUCLEUS, parent=parent)


def test_a_cells_nuclei_are_added_up():
    truth = image("t", cell(columns(0, 20)), nucleus(2, 4, 2, 1), nucleus(10, 15, 3, 1))  # 20 + 50 nucleus pixels
    found = [cell(columns(0, 20)), nucleus(2, 4, 2, 1)]  # the second nucleus missed
    predicted = measurement_accuracy([truth], {"t": found})["predicted"]["all"]
    assert predicted["cells"] == 1 and predicted["cell_area"] == 0.0
    assert predicted["nucleus_area"] == pytest.approx(50 / 70) and predicted["nc_ratio"] == pytest.approx(50 / 70)


def test_errors_of_cells_found_without_their_nucleus_and_of_cells_without_any():
    truth = image("t", cell(columns(0, 20), 1), nucleus(2, 7, 2, 1), cell(columns(30, 40), 3))
    found = [cell(columns(0, 16), 1), cell(columns(30, 40), 3), nucleus(32, 34, 4, 3)]
    predicted = measurement_accuracy([truth], {"t": found})["predicted"]["all"]
    # The nucleated cell: area 160 against 200, nucleus 0 against 50. The other has no true
    # nucleus: a nucleus found in it has no relative error.
    assert predicted == pytest.approx({"cells": 2, "cell_area": np.median([0.2, 0.0]), "nucleus_area": 1.0,
                                       "nc_ratio": 1.0})


def test_which_cells_are_matched():
    # Found cells match one to one at IoU 0.5 and above: cols 0-19 has IoU exactly 0.5 with
    # cols 0-9; a sliver inside a cell is no match (however much of it lies in the cell); a
    # prediction scoring exactly the threshold counts.
    truth = image("t", cell(columns(0, 10), 1), cell(columns(20, 30), 2), cell(columns(32, 40), 3))
    found = [cell(columns(0, 20), 1, score=0.5), cell(columns(22, 24), 2), cell(columns(32, 40), 3)]
    accuracy = measurement_accuracy([truth], {"t": found}, score_threshold=0.5)
    assert accuracy["predicted"]["all"]["cells"] == 2
    assert accuracy["predicted"]["all"]["cell_area"] == pytest.approx(np.median([1.0, 0.0]))
    assert {k: accuracy[k] for k in ("score_threshold", "match_iou", "overlapped_from")} == \
        {"score_threshold": 0.5, "match_iou": 0.5, "overlapped_from": 0.1}
    # An image where nothing was found does not stop the count of the next.
    accuracy = measurement_accuracy([image("u", cell(columns(0, 10))), truth], {"t": found})
    assert accuracy["predicted"]["all"]["cells"] == 2


def test_a_tenth_under_another_cell_makes_a_cell_overlapped():
    # a (cols 0-9) has 10 of its 100 pixels under b; b (cols 9-19) 10 of 110.
    truth = image("t", cell(columns(0, 10), 1), cell(columns(9, 20), 2))
    accuracy = measurement_accuracy([truth], {"t": truth.instances})
    assert accuracy["predicted"]["all"]["cells"] == 2 and accuracy["predicted"]["overlapped"]["cells"] == 1
    overlapped = accuracy["predicted"]["overlapped"]
    assert overlapped["nucleus_area"] is None and overlapped["nc_ratio"] is None  # no nucleus: no figure


def test_flat_truth_keeps_nuclei_whole_and_gives_the_larger_cells_own_pixels_to_it():
    # The smaller cell comes first here: the flattening must not depend on the order.
    small, large = columns(15, 30), columns(0, 20)
    own = nucleus(15, 17, 3, 2)  # the large cell's nucleus, inside the overlap (cols 15-19)
    sample = image("t", cell(small, 1), cell(large, 2), own)
    flat = {i.id: i for i in flatten(sample)}
    # The overlap goes to the smaller cell but for the large cell's nucleus.
    assert np.array_equal(flat[2].mask, columns(0, 17)) and np.array_equal(flat[1].mask, columns(17, 30))
    assert flat[3].category is CellClass.NUCLEUS and flat[3].parent == 2
    flat_truth = measurement_accuracy([sample], {"t": sample.instances})["flattened_truth"]["all"]
    assert flat_truth["nucleus_area"] == 0.0  # the nucleus stays whole and in its cell
    assert [i.id for i in flatten(image("n", own))] == [3]  # nuclei alone: nothing to flatten
