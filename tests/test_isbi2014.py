import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from donet.data import CellClass, dataset_stats
from donet.data.nuclei import assign_parents, split_nuclei
from donet.errors import DonetError
from donet.io import read_isbi_mat, read_isbi_png


def same_instances(a, b):
    assert a.name == b.name
    assert np.array_equal(a.image, b.image)
    assert [(i.id, i.category, i.parent, i.rle) for i in a.instances] == \
           [(i.id, i.category, i.parent, i.rle) for i in b.instances]


def test_train45_layouts_a_and_b_give_identical_instances(isbi):
    layout_a = read_isbi_png(isbi / "isbi2014_train")
    layout_b = read_isbi_mat(isbi / "challenge_mat" / "isbi_train_GT.mat", isbi / "isbi2014_train" / "orig")
    assert len(layout_a) == len(layout_b) == 45
    for a, b in zip(layout_a, layout_b):
        same_instances(a, b)


@pytest.mark.parametrize("split, gt, images, cells", [
    ("isbi2014_train", "isbi_train_GT.mat", 45, 270),
    ("isbi2014_test", "isbi_test90_GT.mat", 90, 540),
])
def test_counts_in_both_layouts(isbi, split, gt, images, cells):
    for dataset in (read_isbi_png(isbi / split), read_isbi_mat(isbi / "challenge_mat" / gt, isbi / split / "orig")):
        figures = dataset_stats(dataset)
        assert figures["images"] == images
        assert figures["cytoplasm_instances"] == cells
        # About a fifth of cell pixels lie under two or more cells (data README).
        assert 0.15 < figures["overlap_share"] < 0.25
        # One nucleus per cell: the nucleus masks' 8-connected components number 270 and 540
        # (4-connected, the data README's count, 272 and 553: a nucleus joined only diagonally counts twice).
        assert figures["nucleus_instances"] == figures["nuclei_linked_to_a_cell"] == cells


def test_companion_image_mat_is_read_like_the_challenge_release(isbi, tmp_path):
    """The challenge ships images as an object array (45, 1) of uint8 512x512 in isbi_train.mat."""
    shutil.copy(isbi / "challenge_mat" / "isbi_train_GT.mat", tmp_path / "isbi_train_GT.mat")
    folder = read_isbi_png(isbi / "isbi2014_train")
    stack = np.empty((45, 1), dtype=object)
    for i in range(45):
        stack[i, 0] = np.asarray(Image.open(isbi / "isbi2014_train" / "orig" / f"{folder.names[i]}.png"))
    scipy.io.savemat(tmp_path / "isbi_train.mat", {"ISBI_Train": stack})
    from_mat = read_isbi_mat(tmp_path / "isbi_train_GT.mat")  # companion found beside it
    assert len(from_mat) == 45
    for index in (0, 17, 44):
        a, b = folder[index], from_mat[index]
        assert np.array_equal(a.image, b.image)
        assert [i.rle for i in a.instances] == [i.rle for i in b.instances]


def test_every_nucleus_lies_mostly_inside_its_parent(isbi):
    sample = read_isbi_png(isbi / "isbi2014_train")[3]
    cells = {c.id: c.mask for c in sample.cells}
    for nucleus in sample.nuclei:
        mask = nucleus.mask
        assert (mask & cells[nucleus.parent]).sum() > 0.5 * mask.sum()


def test_parent_rule():
    size = (60, 100)
    a, b = np.zeros((2, *size), bool)
    a[10:50, 10:60] = True
    b[10:50, 40:90] = True  # overlap: columns 40-59
    partly_in_b_only = np.zeros(size, bool)
    partly_in_b_only[20:26, 55:64] = True  # mostly in the overlap, partly in b's own part
    inside_overlap_near_a = np.zeros(size, bool)
    inside_overlap_near_a[28:32, 41:44] = True  # a's centroid (30, 35) is nearer than b's (30, 65)
    outside = np.zeros(size, bool)
    outside[52:58, 2:6] = True
    parents = assign_parents([partly_in_b_only, inside_overlap_near_a, outside], np.stack([a, b]))
    assert parents == [1, 0, None]


def test_split_nuclei_uses_8_connectivity():
    mask = np.zeros((10, 10), bool)
    mask[2, 2] = mask[3, 3] = True  # diagonal neighbours: one nucleus
    mask[7:9, 7:9] = True
    assert len(split_nuclei(mask)) == 2


def write_layout_a(root, cell_shapes, image_shape=(32, 32)):
    (root / "orig").mkdir(parents=True)
    (root / "gt" / "Cyto" / "im1").mkdir(parents=True)
    (root / "gt" / "Nucleus").mkdir(parents=True)
    Image.fromarray(np.full(image_shape, 200, np.uint8)).save(root / "orig" / "x_im001.png")
    for k, (shape, filled) in enumerate(cell_shapes, start=1):
        mask = np.zeros(shape, np.uint8)
        if filled:
            mask[4:12, 4:12] = 255
        Image.fromarray(mask).save(root / "gt" / "Cyto" / "im1" / f"im_{k:03d}.png")
    Image.fromarray(np.zeros(image_shape, np.uint8)).save(root / "gt" / "Nucleus" / "x_GT_im001.png")


@pytest.mark.parametrize("cells, problem", [
    ([((32, 32), True), ((32, 40), True)], "differs from its image"),
    ([((32, 32), True), ((32, 32), False)], "empty cell mask"),
])
def test_bad_masks_name_the_file(tmp_path, cells, problem):
    write_layout_a(tmp_path, cells)
    with pytest.raises(DonetError, match=problem) as caught:
        read_isbi_png(tmp_path)[0]
    assert caught.value.path.name == "im_002.png"


def test_truncated_mat_is_a_clear_error(isbi, tmp_path):
    broken = tmp_path / "isbi_train_GT.mat"
    broken.write_bytes((isbi / "challenge_mat" / "isbi_train_GT.mat").read_bytes()[:5000])
    with pytest.raises(DonetError, match="not a readable MATLAB file"):
        read_isbi_mat(broken, isbi / "isbi2014_train" / "orig")


def test_cell_class_values_are_coco_ids():
    assert int(CellClass.CYTOPLASM) == 1 and int(CellClass.NUCLEUS) == 2
