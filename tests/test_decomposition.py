import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from donet.data import AnnotatedImage, CellClass, Instance, decompose, decompose_image

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
