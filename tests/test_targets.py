"""Training targets by hand: flips move boxes with their masks, and the DRM's RoI targets
are the decomposition's layers cropped at each RoI as RoIAlign samples them."""

import numpy as np
import pytest
import torch

from donet.data import AnnotatedImage, CellClass, Instance
from donet.modeling import training_target
from donet.modeling.roi_heads import COMPLEMENT, INTERSECTION, roi_mask_targets
from donet.training.augment import apply_flips, draw_flips, flip

HEIGHT, WIDTH = 40, 64  # not square: an axis mixed up shows


def rectangle(y0, y1, x0, x1):
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture
def sample():
    """Two overlapping cells, a cell touching the right edge and a nucleus, off-centre."""
    masks = [rectangle(3, 20, 5, 30), rectangle(12, 33, 22, 41), rectangle(25, 40, 50, 64), rectangle(6, 10, 8, 13)]
    categories = [CellClass.CYTOPLASM] * 3 + [CellClass.NUCLEUS]
    image = np.arange(HEIGHT * WIDTH, dtype=np.uint16).reshape(HEIGHT, WIDTH)  # every pixel its own value
    instances = [Instance.from_mask(k + 1, c, m) for k, (c, m) in enumerate(zip(categories, masks))]
    return AnnotatedImage("s", image, instances)


def tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(x0, y0, x1, y1) of each mask's pixels, x1 and y1 one past the last pixel."""
    boxes = []
    for mask in masks.numpy() > 0:
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return torch.tensor(boxes, dtype=torch.float32)


@pytest.mark.parametrize("horizontal", [True, False])
def test_a_flipped_box_is_the_flipped_masks_box_and_two_flips_undo_it(sample, horizontal):
    image = torch.from_numpy(sample.image.astype(np.float32))[None].expand(3, -1, -1)
    target = training_target(sample)
    original = {k: v.clone() for k, v in target.items()}
    assert torch.equal(target["boxes"], tight_boxes(target["masks"]))
    flipped_image, flipped = flip(image, target, horizontal)
    assert torch.equal(flipped["boxes"], tight_boxes(flipped["masks"]))
    assert torch.equal(flipped["labels"], target["labels"])
    # Pixel (y, x) goes to the mirrored place, in the image and in every mask alike.
    y, x = 7, 11
    to = (y, WIDTH - 1 - x) if horizontal else (HEIGHT - 1 - y, x)
    assert flipped_image[0][to] == image[0][y, x]
    assert torch.equal(flipped["masks"][:, to[0], to[1]], target["masks"][:, y, x])
    mirrored = sample.masks()[:, :, ::-1] if horizontal else sample.masks()[:, ::-1, :]
    assert np.array_equal(flipped["masks"].numpy() > 0, mirrored)
    # The right-edge cell (x 50-64) comes to the left edge; nothing leaves the image.
    if horizontal:
        assert flipped["boxes"][2].tolist() == [0, 25, 14, 40]
    else:
        assert flipped["boxes"][2].tolist() == [50, 0, 64, 15]
    back_image, back = flip(flipped_image, flipped, horizontal)
    assert torch.equal(back_image, image)
    assert all(torch.equal(back[k], original[k]) for k in original)
    assert all(torch.equal(target[k], original[k]) for k in original)  # the input is left as it was


def test_random_flips_keep_boxes_and_masks_together(sample):
    image = torch.from_numpy(sample.image.astype(np.float32))[None].expand(3, -1, -1)
    target = training_target(sample)
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(24):
        flipped_image, flipped = apply_flips(image, target, draw_flips(rng, horizontal=True, vertical=True))
        assert torch.equal(flipped["boxes"], tight_boxes(flipped["masks"]))
        # Which flips were made, read off the image's corner value: each mask followed it.
        corner = int(flipped_image[0, 0, 0])
        horizontal, vertical = {0: (False, False), WIDTH - 1: (True, False), (HEIGHT - 1) * WIDTH: (False, True),
                                HEIGHT * WIDTH - 1: (True, True)}[corner]
        expected = sample.masks()[:, ::-1 if vertical else 1, ::-1 if horizontal else 1]
        assert np.array_equal(flipped["masks"].numpy() > 0, expected)
        seen.add((horizontal, vertical))
    assert len(seen) == 4
    same_image, same = apply_flips(image, target, draw_flips(rng, horizontal=False, vertical=False))
    assert same_image is image and same is target


def test_with_transposes_all_eight_symmetries_of_the_square_come_with_their_masks(sample):
    image = torch.from_numpy(sample.image.astype(np.float32))[None].expand(3, -1, -1)
    target = training_target(sample)
    masks = sample.masks()  # (N, H, W)
    symmetries = {}  # the image each symmetry makes, by its (0, 0) and (0, 1) values
    for k in range(4):
        for mirrored in (False, True):
            turned = np.rot90(masks, k, axes=(1, 2))
            turned = turned[:, :, ::-1] if mirrored else turned
            pixels = np.rot90(sample.image, k)
            pixels = pixels[:, ::-1] if mirrored else pixels
            symmetries[int(pixels[0, 0]), int(pixels[0, 1])] = turned
    assert len(symmetries) == 8
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(64):
        moved_image, moved = apply_flips(image, target, draw_flips(rng, horizontal=True, vertical=True, transposed=True))
        key = int(moved_image[0, 0, 0]), int(moved_image[0, 0, 1])
        assert np.array_equal(moved["masks"].numpy() > 0, symmetries[key])
        assert torch.equal(moved["boxes"], tight_boxes(moved["masks"]))
        assert moved_image.shape[1:] == moved["masks"].shape[1:]
        seen.add(key)
    assert len(seen) == 8


def roi_align_weights(start: int, length: int, size: int, extent: int) -> np.ndarray:
    """(size, extent) weights of RoIAlign (aligned=False, adaptive sampling) along one axis for
    a RoI at integer `start` spanning `length` = k * size pixels: each bin averages k samples
    at start + k * bin + i + 0.5, each half way between two pixels."""
    k = length // size
    assert k * size == length
    weights = np.zeros((size, extent))
    for b in range(size):
        for i in range(k):
            left = start + k * b + i
            weights[b, left] += 0.5 / k
            weights[b, left + 1] += 0.5 / k
    return weights


def expected_crop(layer: np.ndarray, box, size: int) -> np.ndarray:
    x0, y0, x1, y1 = (int(v) for v in box)
    rows = roi_align_weights(y0, y1 - y0, size, layer.shape[0])
    cols = roi_align_weights(x0, x1 - x0, size, layer.shape[1])
    return rows @ layer.astype(np.float64) @ cols.T


def test_roi_targets_are_the_decomposition_cropped_at_each_roi(sample):
    size = 8
    codes = training_target(sample)["masks"]
    other = AnnotatedImage("t", sample.image, [Instance.from_mask(1, CellClass.CYTOPLASM, rectangle(0, 30, 30, 60))])
    other_codes = training_target(other)["masks"]
    masks = sample.masks()
    shared = masks[0] & masks[1]
    # RoIs (x0, y0, x1, y1) of 1x and 2x the output size, matched to chosen instances; the
    # second image has one instance, which its RoI must find at its own index 0.
    rois = [torch.tensor([[16.0, 8, 24, 16], [4.0, 2, 20, 18], [20.0, 10, 36, 26], [48.0, 23, 56, 31]]),
            torch.tensor([[28.0, 4, 44, 20]])]
    matched = [torch.tensor([0, 0, 1, 2]), torch.tensor([0])]
    whole, intersection, complement = roi_mask_targets([codes, other_codes], rois, matched, size)
    assert whole.shape == intersection.shape == complement.shape == (5, size, size)
    layers = [(masks, shared), (other.masks(), np.zeros((HEIGHT, WIDTH), bool))]
    k = 0
    for (image_masks, overlap), boxes, index in zip(layers, rois, matched):
        for box, instance in zip(boxes.tolist(), index.tolist()):
            mask = image_masks[instance]
            assert np.allclose(whole[k].numpy(), expected_crop(mask, box, size), atol=1e-6)
            assert np.allclose(intersection[k].numpy(), expected_crop(mask & overlap, box, size), atol=1e-6)
            assert np.allclose(complement[k].numpy(), expected_crop(mask & ~overlap, box, size), atol=1e-6)
            k += 1
    # The RoI across the overlap sees both layers; the cell's own RoI outside it only one.
    assert intersection[2].max() == 1 and complement[2].max() == 1
    assert intersection[4].max() == 0 and torch.equal(whole[4], complement[4])
    assert torch.allclose(whole, intersection + complement)
    assert (codes[:3].numpy() == INTERSECTION).sum() == 2 * shared.sum()
    assert ((codes.numpy() == COMPLEMENT) == (masks & ~shared)).all()


def test_roi_targets_of_an_image_without_rois_are_empty(sample):
    codes = training_target(sample)["masks"]
    whole, intersection, complement = roi_mask_targets([codes], [torch.zeros((0, 4))],
                                                       [torch.zeros(0, dtype=torch.int64)], 28)
    assert whole.shape == intersection.shape == complement.shape == (0, 28, 28)
