import threading

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import roi_align

from donet.data import CellClass, SynthConfig, generate
from donet.data.instances import encode_at
from donet.data.nuclei import assign_parents
from donet.inference import InferenceSettings
from donet.inference.tiling import instances, segment_tiled, tile_starts

# Tiles of 384 px overlapping by 160; cells and nuclei thresholded at 0.5.
TILES = InferenceSettings(tile=384, overlap=160, nucleus_mask_threshold=0.5)


def test_encode_at_equals_encoding_the_whole_mask():
    rng = np.random.default_rng(0)
    for _ in range(20):
        size = tuple(int(v) for v in rng.integers(5, 40, 2))
        h, w = int(rng.integers(1, size[0] + 1)), int(rng.integers(1, size[1] + 1))
        y, x = int(rng.integers(0, size[0] - h + 1)), int(rng.integers(0, size[1] - w + 1))
        crop = rng.random((h, w)) < 0.5
        whole = np.zeros(size, bool)
        whole[y:y + h, x:x + w] = crop
        assert encode_at(crop, y, x, size) == mask_utils.encode(np.asfortranarray(whole.astype(np.uint8)))


def test_tiles_cover_the_image():
    assert tile_starts(1000, 384, 128) == [0, 256, 512, 616]
    assert tile_starts(300, 384, 128) == [0]


class FieldOfView:
    """A perfect detector with a field of view: it reports every ground-truth instance that
    touches the crop, cut to the crop as a real detector would see it, as boxes and 28x28
    RoI masks, as a model does."""

    def __init__(self, sample):
        self.instances = sample.instances

    def __call__(self, crops, corners):
        return [self.detect(crop, y0, x0) for crop, (y0, x0) in zip(crops, corners)]

    def detect(self, crop, y0, x0):
        h, w = crop.shape[:2]
        boxes, labels, probs = [], [], []
        for inst in self.instances:
            mask = inst.mask[y0:y0 + h, x0:x0 + w]
            if not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
            # RoI masks from the instance's own crop, so they do not depend on where the tile lies.
            local = torch.from_numpy(mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]).float()
            rois = torch.tensor([[0, 0, 0, local.shape[1], local.shape[0]]], dtype=torch.float32)
            probs.append(roi_align(local[None, None], rois, (28, 28), 1.0)[0, 0])
            boxes.append(box[0])
            labels.append(int(inst.category))
        boxes = torch.stack(boxes) if boxes else torch.zeros(0, 4)
        return {"boxes": boxes, "mask_boxes": boxes, "labels": torch.tensor(labels, dtype=torch.int64),
                "scores": torch.ones(len(boxes)), "mask_probs": torch.stack(probs) if probs else torch.zeros(0, 28, 28)}


def test_tiled_equals_one_pass_with_no_duplicates_and_overlaps_kept():
    config = SynthConfig(size=(1024, 1024), cells=(140, 140), clusters=(35, 35), cell_radius=(0.022, 0.035),
                         overlap=(0.1, 0.3), mimics=(0, 0))
    sample = generate(0, config, seed=1)
    detect = FieldOfView(sample)
    size = sample.image.shape[:2]
    whole = InferenceSettings(tile=1024, overlap=0, nucleus_mask_threshold=0.5)
    one_pass = instances(segment_tiled(detect, sample.image, whole), size)
    tiled = instances(segment_tiled(detect, sample.image, TILES), size)
    batched = instances(segment_tiled(detect, sample.image, TILES.model_copy(update={"batch_size": 4})), size)
    assert [(i.rle, i.parent) for i in batched] == [(i.rle, i.parent) for i in tiled]
    # One pass gives back the truth it was made from: every instance of each class, the cells
    # to within the resampling of 28 px masks (nuclei of a few pixels are not that close).
    assert len(one_pass) == len(sample.instances)
    found = [i.rle for i in one_pass if i.category == CellClass.CYTOPLASM]
    truth = [i.rle for i in sample.cells]
    assert len(found) == len(truth)
    assert np.asarray(mask_utils.iou(found, truth, [0] * len(truth))).max(axis=1).min() > 0.85
    assert sorted((i.rle["counts"], i.category) for i in tiled) == sorted((i.rle["counts"], i.category)
                                                                            for i in one_pass)
    cells = [i for i in tiled if i.category == CellClass.CYTOPLASM]
    assert len(cells) == 140
    # Overlapping cells stay separate objects: as many pairs of kept cells share pixels as in the
    # truth, or a few more where resampled outlines of touching cells meet.
    rles = [c.rle for c in cells]
    iou = np.asarray(mask_utils.iou(rles, rles, [0] * len(rles)))
    truth_iou = np.asarray(mask_utils.iou(truth, truth, [0] * len(truth)))
    sharing, truth_sharing = ((iou > 0) & (iou < 1)).sum(), ((truth_iou > 0) & (truth_iou < 1)).sum()
    assert 20 < truth_sharing <= sharing <= 1.1 * truth_sharing
    # Nuclei are linked within their window exactly as the whole-image rule links them.
    nuclei = [i for i in tiled if i.category == CellClass.NUCLEUS]
    whole_image = assign_parents([n.mask for n in nuclei], np.stack([c.mask for c in cells]))
    assert [n.parent for n in nuclei] == [None if p is None else cells[p].id for p in whole_image]
    assert sum(n.parent is not None for n in nuclei) >= 130


def test_results_stream_out_row_by_row_and_skipped_tiles_give_nothing():
    config = SynthConfig(size=(2400, 600), cells=(60, 60), clusters=(20, 20), cell_radius=(0.02, 0.03),
                         overlap=(0.1, 0.3), mimics=(0, 0))
    sample = generate(0, config, seed=2)
    detect = FieldOfView(sample)
    calls = []

    def counting(crops, corners):
        calls.extend(corners)
        return detect(crops, corners)

    size = sample.image.shape[:2]
    first_out = None
    found = []
    for item in segment_tiled(counting, sample.image, TILES):
        if first_out is None and item.piece.category == CellClass.CYTOPLASM:
            first_out = len(calls)
        found.append(item)
    rows = len(tile_starts(2400, 384, 160))
    assert first_out <= 4 * len(calls) // rows  # out after four rows of tiles, not at the end
    everything = instances(found, size)
    # Skipping the tiles of the left column loses exactly the cells those tiles own.
    kept = instances(segment_tiled(detect, sample.image, TILES, runs=lambda y, x, h, w: x > 0), size)
    seam = (0 + 384 + tile_starts(600, 384, 160)[1]) / 2
    owned_elsewhere = {i.rle["counts"] for i in everything if i.category == CellClass.CYTOPLASM
                       and mask_utils.toBbox(i.rle)[0] + mask_utils.toBbox(i.rle)[2] / 2 > seam + 8}
    cells_kept = {i.rle["counts"] for i in kept if i.category == CellClass.CYTOPLASM}
    assert owned_elsewhere and owned_elsewhere <= cells_kept
    assert all(mask_utils.toBbox(i.rle)[0] + mask_utils.toBbox(i.rle)[2] / 2 > seam - 8 for i in kept)


class RegionsRead:
    """An image read a region at a time, as a slide level is, noting each region it gave."""

    def __init__(self, image, fail_at=None):
        self.image, self.shape, self.fail_at = image, image.shape, fail_at
        self.read = []
        self.second_batch_read = threading.Event()

    def __getitem__(self, region):
        corner = (region[0].start, region[1].start)
        if corner == self.fail_at:
            raise OSError(f"tile at {corner} is corrupt")
        self.read.append(corner)
        if len(self.read) == 3:  # the first tile of the second batch (batches of 2)
            self.second_batch_read.set()
        return self.image[region]


def test_the_next_tiles_are_read_while_the_model_runs_and_a_failed_read_raises():
    config = SynthConfig(size=(900, 900), cells=(20, 20), clusters=(6, 6), mimics=(0, 0))
    sample = generate(0, config, seed=5)
    detect = FieldOfView(sample)
    image = RegionsRead(sample.image)
    settings = TILES.model_copy(update={"batch_size": 2})
    waited = []

    def detecting(crops, corners):
        if not waited:  # the first batch: its detection waits for the second batch's read
            waited.append(image.second_batch_read.wait(timeout=30))
        return detect(crops, corners)

    found = instances(segment_tiled(detecting, image, settings), sample.image.shape[:2])
    assert waited == [True]
    assert [(i.rle, i.parent) for i in found] == [(i.rle, i.parent) for i in instances(
        segment_tiled(detect, sample.image, settings), sample.image.shape[:2])]
    starts = tile_starts(900, 384, 160)
    assert sorted(image.read) == sorted((y, x) for y in starts for x in starts)  # each tile read once
    broken = RegionsRead(sample.image, fail_at=(starts[1], starts[2]))
    with pytest.raises(OSError, match="corrupt"):
        list(segment_tiled(detect, broken, settings))


def test_cells_and_nuclei_have_their_own_mask_threshold():
    config = SynthConfig(size=(384, 384), cells=(8, 8), clusters=(2, 2), mimics=(0, 0))
    sample = generate(0, config, seed=4)
    size = sample.image.shape[:2]

    def run(cell, nucleus):
        settings = InferenceSettings(tile=512, overlap=0, mask_threshold=cell, nucleus_mask_threshold=nucleus)
        found = instances(segment_tiled(FieldOfView(sample), sample.image, settings), size)
        return ({i.id: i.area for i in found if i.category == CellClass.CYTOPLASM},
                {i.id: i.area for i in found if i.category == CellClass.NUCLEUS})

    cells, nuclei = run(0.5, 0.5)
    same_cells, smaller_nuclei = run(0.5, 0.9)
    assert same_cells == cells
    assert smaller_nuclei.keys() == nuclei.keys() and all(smaller_nuclei[k] < nuclei[k] for k in nuclei)
