"""The Fig. 6 probability maps are the kept cells' pasted mask probabilities, at their maximum,
where the instances are: checked against maps built by hand from known boxes and masks."""

import numpy as np
import pytest
import torch

from donet.data import CellClass
from donet.inference import InferenceSettings, probability_maps
from donet.inference.paste import CHUNK, paste_thresholded

SIZE = (60, 90)
CELL, NUCLEUS = int(CellClass.CYTOPLASM), int(CellClass.NUCLEUS)


def constant(value, n=1):
    return torch.full((n, 28, 28), float(value))


def detection(boxes, labels, scores, mask, intersection=None, complement=None):
    boxes = torch.tensor(boxes, dtype=torch.float32)
    found = {"boxes": boxes, "mask_boxes": boxes, "labels": torch.tensor(labels),
             "scores": torch.tensor(scores), "mask_probs": torch.cat(mask)}
    if intersection is not None:
        found["intersection_probs"], found["complement_probs"] = torch.cat(intersection), torch.cat(complement)
    return found


def inside(box, margin=2):
    """Pixels (rows, cols) of an integer box (x0, y0, x1, y1) at least `margin` from its edges."""
    x0, y0, x1, y1 = box
    return slice(y0 + margin, y1 - margin), slice(x0 + margin, x1 - margin)


def outside(boxes, size=SIZE, margin=2):
    """Pixels more than `margin` away from every box."""
    far = np.ones(size, bool)
    for x0, y0, x1, y1 in boxes:
        far[max(0, y0 - margin):y1 + margin, max(0, x0 - margin):x1 + margin] = False
    return far


def test_probability_maps_are_the_kept_cells_pasted_probabilities_at_their_maximum():
    a, b, nucleus, weak = [10, 5, 50, 45], [40, 20, 80, 55], [60, 30, 70, 40], [0, 48, 20, 60]
    left_right = constant(0.3)
    left_right[:, :, :14] = 0.9  # the left half of cell a's mask: x 10-30 in the image
    found = detection([a, b, nucleus, weak], [CELL, CELL, NUCLEUS, CELL], [0.9, 0.6, 0.99, 0.2],
                      [left_right, constant(0.6), constant(1.0), constant(1.0)],
                      [constant(0.2), constant(0.8), constant(0.0), constant(1.0)],
                      [constant(0.7), constant(0.1), constant(1.0), constant(1.0)])
    maps = probability_maps(found, SIZE, score_threshold=0.5)
    assert list(maps) == ["intersection", "complement", "recombined"]
    assert all(m.shape == SIZE and m.dtype == np.float32 for m in maps.values())
    recombined, intersection, complement = maps["recombined"], maps["intersection"], maps["complement"]
    # Cell a alone: its left half 0.9, its right half 0.3; where b covers it too, the larger 0.6.
    assert np.allclose(recombined[7:43, 12:28], 0.9) and np.allclose(recombined[7:18, 32:48], 0.3)
    assert np.allclose(recombined[inside(b)], 0.6)  # the nucleus inside b (probability 1) is no cell
    assert np.allclose(intersection[inside(a)][:, :26], 0.2) and np.allclose(intersection[inside(b)], 0.8)
    assert np.allclose(complement[inside(a)], 0.7) and np.allclose(complement[47:53, 52:78], 0.1)
    assert np.allclose(complement[inside(nucleus)], 0.1)
    # The cell scoring under the threshold leaves no trace; nor does anything away from the kept cells.
    far = outside([a, b])
    for values in maps.values():
        assert values[far].max() == 0
    # Without DRM heads there is only the recombined (final) mask.
    plain = {k: v for k, v in found.items() if k not in ("intersection_probs", "complement_probs")}
    assert list(probability_maps(plain, SIZE, 0.5)) == ["recombined"]
    assert probability_maps(found, SIZE, 1.0)["recombined"].max() == 0  # nothing kept


def test_probability_maps_hold_every_detection_past_a_chunk():
    count = CHUNK + 8
    boxes = [[8 * (k % 11), 12 * (k // 11), 8 * (k % 11) + 8, 12 * (k // 11) + 12] for k in range(count)]
    values = [(k + 1) / (count + 1) for k in range(count)]
    found = detection(boxes, [CELL] * count, [1.0] * count, [constant(v) for v in values])
    recombined = probability_maps(found, (48, 88), 0.0)["recombined"]
    for box, value in zip(boxes, values):
        assert recombined[inside(box, 3)] == pytest.approx(value), box


def test_the_recombined_map_at_the_mask_threshold_is_the_pasted_instance_masks():
    """The heatmap and the instances come from two pastes (torchvision's and the batched one):
    thresholded, the map must give the cells' masks."""
    generator = torch.Generator().manual_seed(0)
    probs = torch.nn.functional.avg_pool2d(torch.rand(6, 1, 34, 34, generator=generator), 7, stride=1)[:, 0]
    probs = (probs - probs.mean()) * 8 + 0.5  # smooth, about half above 0.5
    corners = torch.rand(6, 2, generator=generator) * 40
    boxes = torch.cat([corners, corners + 10 + torch.rand(6, 2, generator=generator) * 30], dim=1)
    found = {"boxes": boxes, "mask_boxes": boxes, "labels": torch.tensor([CELL] * 6), "scores": torch.ones(6),
             "mask_probs": probs}
    size = (90, 90)
    union = np.zeros(size, bool)
    for top, left, mask in paste_thresholded(probs, boxes, torch.full((6,), 0.5)):
        placed = np.zeros((size[0] + 16, size[1] + 16), bool)
        placed[top + 8:top + 8 + mask.shape[0], left + 8:left + 8 + mask.shape[1]] = mask
        union |= placed[8:-8, 8:-8]
    assert union.sum() > 500
    differing = (probability_maps(found, size, 0.0)["recombined"] >= 0.5) != union
    assert differing.sum() <= 2  # a pixel exactly at the threshold may round either way


def test_a_large_cell_is_pasted_where_its_heatmap_shows_it():
    """A 135-pixel cell (ISBI's median): instances and heatmaps must put it in the same place."""
    generator = torch.Generator().manual_seed(1)
    probs = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 34, 34, generator=generator), 7, stride=1)[:, 0]
    probs = (probs - probs.mean()) * 8 + 0.5
    box = torch.tensor([[100.3, 50.2, 235.3, 185.2]])
    found = {"boxes": box, "mask_boxes": box, "labels": torch.tensor([CELL]), "scores": torch.ones(1),
             "mask_probs": probs}
    [(top, left, mask)] = paste_thresholded(probs, box, torch.tensor([0.5]))
    placed = np.zeros((300, 300), bool)
    placed[top:top + mask.shape[0], left:left + mask.shape[1]] = mask
    assert placed.sum() > 5000
    assert ((probability_maps(found, (300, 300), 0.0)["recombined"] >= 0.5) != placed).sum() <= 2


def test_masks_lie_in_their_mask_boxes_not_their_detection_boxes():
    """A model with `mask_box_margin` predicts each cell's mask in its grown box: the heatmap
    and the instances must both paste it there."""
    from donet.inference.tiling import instances, segment_tiled

    box, grown = torch.tensor([[30.0, 20.0, 60.0, 40.0]]), torch.tensor([[24.0, 16.0, 66.0, 44.0]])
    found = {"boxes": box, "mask_boxes": grown, "labels": torch.tensor([CELL]), "scores": torch.ones(1),
             "mask_probs": constant(0.9)}
    # The grown box's pixels, give or take the one-pixel ring the paste's interpolation blurs.
    core, hull = np.zeros(SIZE, bool), np.zeros(SIZE, bool)
    core[17:43, 25:65] = True
    hull[15:45, 23:67] = True
    pasted = probability_maps(found, SIZE, 0.0)["recombined"] >= 0.5
    assert pasted[core].all() and not pasted[~hull].any()
    settings = InferenceSettings(tile=128, overlap=32, nucleus_mask_threshold=0.5)
    [cell] = instances(segment_tiled(lambda crops, corners: [found], np.zeros(SIZE, np.uint8), settings), SIZE)
    assert cell.mask[core].all() and not cell.mask[~hull].any()
