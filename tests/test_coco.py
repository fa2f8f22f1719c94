import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from donet.atomic import atomic_dir
from donet.data import AnnotatedImage, CellClass, Instance, SynthConfig, generate
from donet.errors import DonetError
from donet.io import read_coco, read_isbi_png, write_dataset


def round_trip(samples, tmp_path):
    with atomic_dir(tmp_path / "out") as folder:
        write_dataset(folder, samples)
    return read_coco(tmp_path / "out" / "annotations.json")


def assert_same(original, read):
    assert read.name == original.name
    assert np.array_equal(read.image, original.image)
    assert len(read.instances) == len(original.instances)
    for a, b in zip(original.instances, read.instances):
        assert (a.id, a.category, a.parent) == (b.id, b.category, b.parent)
        assert np.array_equal(a.mask, b.mask)


def test_isbi_round_trip_through_coco_and_pycocotools_is_lossless(isbi, tmp_path):
    source = read_isbi_png(isbi / "isbi2014_train")
    originals = [source[i] for i in range(6)]
    read = round_trip(originals, tmp_path)
    for original, again in zip(originals, read):
        assert_same(original, again)
    coco = COCO(str(tmp_path / "out" / "annotations.json"))
    assert len(coco.getAnnIds(catIds=[1])) == sum(len(s.cells) for s in originals)
    for k, original in enumerate(originals, start=1):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[k], catIds=[1]))
        masks = [coco.annToMask(a).astype(bool) for a in anns]
        expected = [c.mask for c in original.cells]
        assert len(masks) == len(expected) and all(np.array_equal(m, e) for m, e in zip(masks, expected))
        # Overlapping cells survive as separate objects: their masks share pixels.
        stack = np.stack(masks)
        assert (stack.sum(axis=0) >= 2).any() == (np.stack(expected).sum(axis=0) >= 2).any()


def test_synthetic_colour_round_trip(tmp_path):
    originals = [generate(i, SynthConfig(size=(96, 128), color=True, cell_radius=(0.15, 0.25)), seed=3)
                 for i in range(3)]
    for original, again in zip(originals, round_trip(originals, tmp_path)):
        assert_same(original, again)


def coco_file(tmp_path, annotations, categories=({"id": 7, "name": "Cyto"}, {"id": 9, "name": "nuc"}),
              images=({"id": 1, "file_name": "a.png", "height": 20, "width": 30},)):
    from PIL import Image
    Image.fromarray(np.full((20, 30), 128, np.uint8)).save(tmp_path / "a.png")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": list(images), "annotations": annotations, "categories": list(categories)}))
    return path


def test_polygons_uncompressed_rle_category_mapping_and_overlap(tmp_path):
    wide = [[2, 2, 20, 2, 20, 8, 2, 8]]  # x across, y down: a swap would make it tall
    # Two parts make one object; a part of fewer than 3 points is dropped.
    two_parts = [[22, 2, 27, 2, 27, 6, 22, 6], [0, 0, 1, 1], [22, 12, 27, 12, 27, 16, 22, 16]]
    mask = np.zeros((20, 30), np.uint8, order="F")
    mask[5:15, 8:20] = 1
    counts, previous, run = [], 0, 0
    for value in mask.flatten(order="F"):  # uncompressed column-major RLE, starting with zeros
        if value != previous:
            counts.append(run)
            previous, run = value, 0
        run += 1
    counts.append(run)
    path = coco_file(tmp_path, [
        {"id": 10, "image_id": 1, "category_id": 7, "segmentation": wide},
        {"id": 11, "image_id": 1, "category_id": 7, "segmentation": {"size": [20, 30], "counts": counts}},
        {"id": 12, "image_id": 1, "category_id": 9, "segmentation": [[9, 9, 11, 9, 11, 11, 9, 11]], "parent_id": 11},
        {"id": 13, "image_id": 1, "category_id": 7, "segmentation": two_parts},
    ])
    sample = read_coco(path, category_map={"Cyto": "cytoplasm", "nuc": CellClass.NUCLEUS})[0]
    cells = sample.masks(CellClass.CYTOPLASM)
    assert np.array_equal(cells[1], mask.astype(bool))
    assert (cells[0] & cells[1]).any()  # overlapping cells stay two objects
    rows, cols = np.nonzero(cells[0])
    assert rows.min() >= 2 and rows.max() <= 8 and cols.min() >= 2 and cols.max() >= 19
    assert cells[2][3:5, 23:26].all() and cells[2][13:15, 23:26].all() and not cells[2][8:11].any()
    assert not cells[2][:, :21].any()
    nucleus = sample.masks(CellClass.NUCLEUS)[0]
    assert nucleus[10, 10] and nucleus.sum() <= 9 and sample.nuclei[0].parent == 2


@pytest.mark.parametrize("annotations, categories, problem", [
    ([{"id": 1, "image_id": 5, "category_id": 7, "segmentation": [[1, 1, 5, 1, 5, 5]]}], None, "unknown image id 5"),
    ([{"id": 1, "image_id": 1, "category_id": 8, "segmentation": [[1, 1, 5, 1, 5, 5]]}], None, "unknown category id 8"),
    ([], [{"id": 7, "name": "platelet"}], "unknown category 'platelet'"),
])
def test_inconsistent_coco_files_are_refused(tmp_path, annotations, categories, problem):
    kwargs = {"categories": categories} if categories else {}
    path = coco_file(tmp_path, annotations, **kwargs)
    with pytest.raises(DonetError, match=problem) as caught:
        read_coco(path, category_map={"Cyto": "cytoplasm", "nuc": "nucleus"})
    assert caught.value.path == path


def test_zero_area_and_wrong_size_masks_are_refused(tmp_path):
    empty = mask_utils.encode(np.zeros((20, 30), np.uint8, order="F"))
    empty["counts"] = empty["counts"].decode()
    path = coco_file(tmp_path, [{"id": 1, "image_id": 1, "category_id": 7, "segmentation": empty}])
    with pytest.raises(DonetError, match="zero area"):
        read_coco(path, category_map={"Cyto": "cytoplasm", "nuc": "nucleus"})[0]
    wrong = coco_file(tmp_path, [], images=({"id": 1, "file_name": "a.png", "height": 21, "width": 30},))
    with pytest.raises(DonetError, match="30x20"):
        read_coco(wrong, category_map={"Cyto": "cytoplasm", "nuc": "nucleus"})[0]


def test_instance_properties():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    instance = Instance.from_mask(1, CellClass.CYTOPLASM, mask)
    assert instance.area == 18 and instance.bbox == (3.0, 2.0, 6.0, 3.0) and instance.shape == (10, 12)
    sample = AnnotatedImage("s", np.zeros((10, 12), np.uint8), [instance])
    assert sample.masks(CellClass.NUCLEUS).shape == (0, 10, 12)
