import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from donet.data import AnnotatedImage, CellClass, Instance, decompose, decompose_image
from donet.data.decomposition import coverage

mask_stacks = st.integers(1, 6).flatmap(
    lambda n: arrays(bool, st.tuples(st.just(n), st.integers(1, 24), st.integers(1, 31)))
)


@settings(max_examples=200, deadline=None)
@given(mask_stacks)
def test_decomposition_properties(cells):
    intersection, complement = decompose(cells)
    assert np.array_equal(intersection ^ complement, cells)
    assert not (intersection & complement).any()
    for i in range(len(cells)):
        others = np.delete(cells, i, axis=0).any(axis=0)
        assert np.array_equal(intersection[i], cells[i] & others)


def test_isolated_cell_has_empty_intersection_and_nuclei_are_their_own_complement():
    size = (40, 70)
    left, right, nucleus = (np.zeros(size, bool) for _ in range(3))
    left[5:30, 5:30] = True
    right[5:30, 40:65] = True  # touches nothing
    nucleus[10:14, 10:14] = True
    sample = AnnotatedImage("t", np.zeros(size, np.uint8), [
        Instance.from_mask(1, CellClass.CYTOPLASM, left),
        Instance.from_mask(2, CellClass.CYTOPLASM, right),
        Instance.from_mask(3, CellClass.NUCLEUS, nucleus, parent=1),
    ])
    intersection, complement = decompose_image(sample)
    assert not intersection.any()
    assert np.array_equal(complement[2], nucleus)
    # The nucleus lies inside `left` but is not a cell: it must not create an intersection.
    assert np.array_equal(complement[0], left)


def test_overlap_is_shared_by_both_cells_only():
    a, b = np.zeros((2, 20, 20), bool)
    a[2:12, 2:12] = True
    b[8:18, 8:18] = True
    intersection, complement = decompose(np.stack([a, b]))
    shared = a & b
    assert np.array_equal(intersection[0], shared) and np.array_equal(intersection[1], shared)
    assert complement[0].sum() == a.sum() - shared.sum()


def test_more_than_255_cells_and_masks_of_any_dtype():
    # 256 cells over the same pixels: a count kept in 8 bits would wrap to 0 and lose the overlap.
    many = np.ones((256, 2, 3), bool)
    assert coverage(many).max() == 256
    intersection, complement = decompose(many)
    assert intersection.all() and not complement.any()
    # 0/255 masks, as 8-bit files hold them, decompose as booleans do.
    levels = np.zeros((2, 4, 6), np.uint8)
    levels[0, :, :4] = 255
    levels[1, :, 3:] = 255
    for found, expected in zip(decompose(levels), decompose(levels > 0)):
        assert found.dtype == bool and np.array_equal(found, expected)
    with pytest.raises(ValueError, match=r"expected a \(N, H, W\) mask stack, got shape \(4, 6\)"):
        decompose(levels[0])


def test_an_image_shares_its_overlaps_between_cells_and_never_with_a_nucleus():
    size = (20, 20)
    a, nucleus, b = (np.zeros(size, bool) for _ in range(3))
    a[2:12, 2:12] = True
    b[8:18, 8:18] = True
    nucleus[9:11, 9:11] = True  # inside the overlap
    sample = AnnotatedImage("t", np.zeros(size, np.uint8), [
        Instance.from_mask(1, CellClass.CYTOPLASM, a),
        Instance.from_mask(2, CellClass.NUCLEUS, nucleus, parent=1),
        Instance.from_mask(3, CellClass.CYTOPLASM, b),
    ])
    intersection, complement = decompose_image(sample)
    shared = a & b
    assert np.array_equal(intersection[0], shared) and np.array_equal(intersection[2], shared)
    assert np.array_equal(complement[0], a & ~shared) and np.array_equal(complement[2], b & ~shared)
    assert not intersection[1].any() and np.array_equal(complement[1], nucleus)
