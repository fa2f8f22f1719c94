"""Recall by clump size and masks cut straight by their box: the two failure modes of crowded cells."""

import numpy as np
from skimage.draw import disk

from donet.data.instances import AnnotatedImage, CellClass, Instance
from donet.evaluation.failure_modes import clipped_share, clipped_sides, overlapped_cells, recall_by_clump_size

SIZE = (120, 200)


def disk_mask(centre, radius, size=SIZE):
    mask = np.zeros(size, bool)
    mask[disk(centre, radius, shape=size)] = True
    return mask


def cell(id, mask, score=1.0):
    return Instance.from_mask(id, CellClass.CYTOPLASM, mask, score=score)


def chain():
    """a overlaps b, b overlaps c, d stands alone (a and c only touch b); a nucleus inside
    b must not count as a cell."""
    masks = [disk_mask((40, 40), 20), disk_mask((40, 75), 20), disk_mask((40, 110), 20), disk_mask((95, 170), 15)]
    instances = [cell(k + 1, m) for k, m in enumerate(masks)]
    instances.append(Instance.from_mask(9, CellClass.NUCLEUS, disk_mask((40, 75), 5), parent=2))
    return AnnotatedImage("chain", np.zeros(SIZE, np.uint8), instances), masks


def test_each_cell_counts_the_cells_it_shares_pixels_with():
    sample, _ = chain()
    assert overlapped_cells([i for i in sample.instances if i.category is CellClass.CYTOPLASM]).tolist() == [1, 2, 1, 0]
    assert overlapped_cells([]).tolist() == []


def test_recall_is_split_by_how_many_cells_a_true_cell_overlaps():
    sample, masks = chain()
    found = [cell(1, masks[0]), cell(2, masks[3], score=0.9),
             cell(3, masks[2], score=0.3),  # too unsure: not counted
             cell(4, masks[1] & ~disk_mask((40, 75), 16))]  # a ring: IoU below 0.5 with b
    recall = recall_by_clump_size([sample], {"chain": found})
    assert recall["0"] == {"cells": 1, "recall": 1.0}
    assert recall["1"] == {"cells": 2, "recall": 0.5}
    assert recall["2"] == {"cells": 1, "recall": 0.0}
    assert recall["4+"] == {"cells": 0, "recall": None}
    # With the unsure one kept, c is found too.
    assert recall_by_clump_size([sample], {"chain": found}, score_threshold=0.2)["1"]["recall"] == 1.0
    assert recall_by_clump_size([sample], {})["1"] == {"cells": 2, "recall": 0.0}


def test_a_match_above_the_threshold_is_not_traded_for_two_below_it():
    def band(x0, x1):
        mask = np.zeros(SIZE, bool)
        mask[10:60, x0:x1] = True
        return mask

    left, right = band(0, 100), band(100, 200)  # side by side, not overlapping
    sample = AnnotatedImage("pair", np.zeros(SIZE, np.uint8), [cell(1, left), cell(2, right)])
    # IoU 0.53 with left (and 0.33 with right); the other IoU 0.45 with left: summing every
    # IoU would pair them crosswise and match nothing.
    found = [cell(1, band(20, 150)), cell(2, band(0, 45))]
    assert recall_by_clump_size([sample], {"pair": found})["0"] == {"cells": 2, "recall": 0.5}


def test_a_mask_cut_by_its_box_is_told_from_a_round_one_and_from_one_cut_by_the_image():
    size = (200, 300)
    round_cell = disk_mask((100, 120), 60, size)  # its flat pixel runs at the extremes are ~18% of a side
    assert clipped_sides(round_cell) == 0
    cut = round_cell.copy()
    cut[:, 150:] = False  # a box whose right side stops 30 px short of the cell's
    assert clipped_sides(cut) == 1
    cut[:60] = False
    assert clipped_sides(cut) == 2
    at_border = disk_mask((100, 270), 60, size)  # the image's right edge cuts it
    assert clipped_sides(at_border) == 0
    assert clipped_sides(np.zeros(size, bool)) == 0


def test_clipped_share_counts_cells_confident_enough():
    size = (200, 300)
    round_cell = disk_mask((100, 70), 60, size)
    cut = disk_mask((100, 200), 60, size)
    cut[:, 220:] = False
    instances = [cell(1, round_cell), cell(2, cut), cell(3, cut, score=0.2),
                 Instance.from_mask(4, CellClass.NUCLEUS, cut)]
    assert clipped_share({"a": instances}) == {"cells": 2, "clipped": 0.5}
    assert clipped_share([AnnotatedImage("a", np.zeros(size, np.uint8), instances)], 0.1) == {
        "cells": 3, "clipped": 2 / 3}
    assert clipped_share({"a": []}) == {"cells": 0, "clipped": None}
