"""The model that ships with donet: found without a path, accurate on real cells, rescaled by
--diameter, its Fig. 6 heatmaps and Fig. 3 attention map showing the cells it found."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pictures import decode_colours
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from skimage.transform import rescale

import donet
import donet.inference.segmenter as segmenter_module
from donet.data import CellClass
from donet.data.instances import AnnotatedImage, Instance, encode_mask
from donet.data.stats import equivalent_diameter, median_diameter
from donet.distributed import Processes
from donet.errors import DonetError
from donet.inference.diameter import AUTO_PASSES, AUTO_SETTLED, typical_diameter
from donet.inference import Exports
from donet.inference.files import segment_files, write_exports
from donet.io import open_dataset, write_dataset
from donet.modeling.weights import DEFAULT_MODEL


@pytest.fixture(scope="module")
def model():
    return donet.load_model()


@pytest.fixture(scope="module")
def train_image(isbi):
    """The last train45 image: 10 overlapping cells. The model has seen it: these tests check
    that the shipped weights work, not how well they generalise (docs/model-card.md)."""
    return open_dataset(isbi / "isbi2014_train")[44]


def matched_cells(truth: list[np.ndarray], found: list[np.ndarray], iou: float = 0.5) -> int:
    if not truth or not found:
        return 0
    ious = np.asarray(mask_utils.iou([encode_mask(m) for m in found], [encode_mask(m) for m in truth],
                                     [0] * len(truth)))
    rows, cols = linear_sum_assignment(-ious)  # one-to-one
    return int((ious[rows, cols] > iou).sum())


def test_ships_inside_the_package_in_float16_within_30_mb(model):
    assert DEFAULT_MODEL.stat().st_size <= 30e6
    with open(DEFAULT_MODEL, "rb") as handle:  # safetensors: 8-byte header length, then the JSON header
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert "F16" in dtypes and "F32" not in dtypes
    config = model.config
    assert (config.drm, config.crm, config.mrp) == (True, True, True)


def test_records_the_scale_of_the_cells_it_was_trained_on(model, isbi):
    assert model.config.cell_diameter == pytest.approx(median_diameter(open_dataset(isbi / "isbi2014_train")), rel=1e-4)


def test_segments_real_overlapping_cells(model, train_image):
    result = donet.segment(model, train_image.image)
    truth = list(train_image.masks(CellClass.CYTOPLASM))
    found = list(result.masks(CellClass.CYTOPLASM))
    assert matched_cells(truth, found) >= len(truth) - 1
    # Overlap is kept: some pixel belongs to two predicted cells.
    assert (np.sum(found, axis=0) >= 2).any()
    # Nuclei (MRP's stack) are found, each linked to the cell that holds it.
    nuclei = list(train_image.masks(CellClass.NUCLEUS))
    assert matched_cells(nuclei, list(result.masks(CellClass.NUCLEUS))) >= len(nuclei) - 1
    cells = {cell.id: cell.mask for cell in result.cells}
    assert all((n.mask & cells[n.parent]).sum() > 0.5 * n.mask.sum() for n in result.nuclei)


def test_diameter_rescales_images_of_another_magnification(model, train_image):
    small = (rescale(train_image.image, 0.5, anti_aliasing=True, preserve_range=True)).astype(np.uint8)
    truth = [rescale(m.astype(float), 0.5, order=1) > 0.5 for m in train_image.masks(CellClass.CYTOPLASM)]
    found = donet.segment(model, small, diameter=model.config.cell_diameter / 2).masks(CellClass.CYTOPLASM)
    assert matched_cells(truth, list(found)) >= len(truth) - 1
    with pytest.raises(DonetError, match="diameter"):
        donet.segment(model, small, diameter=0)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_auto_diameter_finds_the_scale_itself(model, train_image, factor):
    pixels = rescale(train_image.image, factor, anti_aliasing=factor < 1, preserve_range=True).astype(np.uint8)
    truth = [rescale(m.astype(float), factor, order=1) > 0.5 for m in train_image.masks(CellClass.CYTOPLASM)]
    segmenter = donet.Segmenter(model, device="cpu", diameter="auto")
    done = segmenter.segmented(pixels)
    result, estimate = done.result, done.diameter
    true_diameter = factor * median_diameter([train_image])
    assert abs(np.log(estimate / true_diameter)) < np.log(1.3)
    found = matched_cells(truth, list(result.masks(CellClass.CYTOPLASM)))
    unscaled = matched_cells(truth, list(donet.segment(model, pixels).masks(CellClass.CYTOPLASM)))
    assert found >= len(truth) - 2 and found > unscaled


def _auto_passes(model, monkeypatch, read):
    """The scales of an image's `diameter="auto"` passes, its result and estimate, where a pass
    at scale s reads the cells' diameter as `read(s)` (in the image's pixels)."""
    scales = []

    def segment_at(self, image, name, scale, progress=None):
        scales.append(scale)
        return SimpleNamespace(scale=scale), None

    monkeypatch.setattr(segmenter_module, "typical_diameter", lambda result: read(result.scale))
    monkeypatch.setattr(donet.Segmenter, "_segment_at", segment_at)
    done = donet.Segmenter(model, device="cpu", diameter="auto").segmented(np.zeros((8, 8)))
    return scales, done.result, done.diameter


@pytest.mark.parametrize(("truth", "passes", "kept"), [(194, 2, "last"), (110, 2, "first")])
def test_auto_diameter_runs_again_until_the_estimate_settles(model, monkeypatch, truth, passes, kept):
    """Cells far from the model's size are read as nearer to it: here as the geometric mean of
    the two. A first reading of 194 px cells is 162, within the tolerance of the model's 135,
    so it is only trusted once a pass at the scale it asks for agrees."""
    trained = model.config.cell_diameter

    def read(scale):
        return np.sqrt(truth * scale * trained) / scale

    scales, result, estimate = _auto_passes(model, monkeypatch, read)
    assert len(scales) == passes and scales[0] == 1
    # Settled: the last pass ran within AUTO_SETTLED of the scale its estimate asks for.
    assert abs(np.log(scales[-1] * estimate / trained)) <= np.log(AUTO_SETTLED)
    assert abs(np.log(estimate / truth)) < abs(np.log(read(1.0) / truth))
    # The result is the first pass's where the settled scale is within the tolerance of 1.
    assert result.scale == (scales[-1] if kept == "last" else 1.0)


def test_the_diameter_estimate_measures_the_cells_that_hold_a_nucleus():
    """Parts of cells, as the model finds them in dense clusters, hold no nucleus: they are
    left out of the estimate, unless no confident cell holds a confident nucleus."""
    rows, cols = np.mgrid[:300, :600]

    def disc(k: int, radius: int) -> np.ndarray:
        return (rows - 150) ** 2 + (cols - 60 - 120 * k) ** 2 <= radius ** 2

    whole = [Instance.from_mask(k, CellClass.CYTOPLASM, disc(k, 55), score=0.9) for k in (0, 1)]
    parts = [Instance.from_mask(k, CellClass.CYTOPLASM, disc(k, 20), score=0.9) for k in (2, 3, 4)]

    def estimate(nucleus_score: float) -> float:
        nuclei = [Instance.from_mask(10 + k, CellClass.NUCLEUS, disc(k, 8), parent=k, score=nucleus_score)
                  for k in (0, 1)]
        return typical_diameter(AnnotatedImage("cluster", np.zeros((300, 600), np.uint8), whole + parts + nuclei))

    assert estimate(0.9) == pytest.approx(equivalent_diameter(whole[0].area))
    assert estimate(0.2) == pytest.approx(equivalent_diameter(parts[0].area))  # no confident nucleus: all cells


def test_auto_diameter_stops_after_its_passes_when_the_estimate_never_settles(model, monkeypatch):
    trained = model.config.cell_diameter

    def read(scale):  # at scale 1 cells ask for 1.3, at 1.3 for 1: round and round
        return trained / 1.3 if scale == 1 else trained / scale * 1.3

    scales, result, estimate = _auto_passes(model, monkeypatch, read)
    assert scales == pytest.approx([1, 1.3] * 2) and len(scales) == 1 + AUTO_PASSES
    assert estimate == pytest.approx(trained) and result.scale == 1  # the last estimate asks for the first scale



def test_a_settled_segmenter_runs_at_the_sets_scale_and_still_estimates_from_the_settings(model, monkeypatch):
    """A slide's own estimate on a segmenter settled for a set of images starts where any
    estimate starts, not at the set's scale."""
    trained = model.config.cell_diameter
    monkeypatch.setattr(donet.Segmenter, "estimate_diameter", lambda self, images, progress=None: trained / 2)
    settled = donet.Segmenter(model, device="cpu", diameter="auto").settled_on([np.zeros((8, 8))])
    assert settled.scale == pytest.approx(2) and settled.set_diameter == pytest.approx(trained / 2)
    assert settled.settled_on([np.ones((8, 8))]) is settled
    scales = []

    def segment_at(self, image, name, scale, progress=None):
        scales.append(scale)
        return SimpleNamespace(scale=scale), None

    monkeypatch.setattr(segmenter_module, "typical_diameter", lambda result: trained / result.scale)
    monkeypatch.setattr(donet.Segmenter, "_segment_at", segment_at)
    settled.segment(np.zeros((8, 8)))
    assert scales == [pytest.approx(2)]  # one pass, at the set's scale
    estimate = settled._at_its_cells_scale(np.zeros((8, 8)), "tile")[2]  # as a slide's sample is estimated
    assert scales[1:] == [1.0] and estimate == pytest.approx(trained)

class _OtherProcess(Processes):
    """Process 0 of 2 beside one that found `estimates` (what torchrun's all_gather returns)."""

    def __init__(self, estimates):
        super().__init__(0, 2)
        self.estimates = estimates

    def all_gather(self, item):
        return [item, self.estimates]


def test_auto_diameter_gives_a_set_of_images_one_diameter(model, train_image, tmp_path):
    half = rescale(train_image.image, 0.5, anti_aliasing=True, preserve_range=True).astype(np.uint8)
    images = [half, np.ascontiguousarray(half[::-1, 20:])]
    segmenter = donet.Segmenter(model, device="cpu", diameter="auto")
    own = [segmenter.segmented(image).diameter for image in images]
    done = list(segmenter.segment_many([tmp_path / "missing.png", *images], names=["gone", "a", "b"]))
    assert [d.name for d in done] == ["gone", "a", "b"] and "missing.png" in done[0].problem
    set_diameter = float(np.median(own))
    assert [d.diameter for d in done[1:]] == [pytest.approx(set_diameter)] * 2
    streamed = list(segmenter.segment_many(image for image in images))  # an iterator: its first images wait
    assert [d.diameter for d in streamed] == [d.diameter for d in done[1:]]
    at_set_diameter = donet.Segmenter(model, device="cpu", diameter=set_diameter)
    for image, d in zip(images, done[1:]):
        expected = list(at_set_diameter.segment(image).masks(CellClass.CYTOPLASM))
        assert matched_cells(expected, list(d.result.masks(CellClass.CYTOPLASM)), iou=0.99) == len(expected)
    # Under torchrun the other processes' estimates count too; progress follows this process's share.
    gathered = donet.Segmenter(model, processes=_OtherProcess([2 * own[0]] * 3), device="cpu", diameter="auto")
    followed = []
    assert gathered.estimate_diameter(images, lambda *p: followed.append(p)) == pytest.approx(2 * own[0])
    assert followed == [(1, 1)]  # images[0] is process 0's, images[1] the other's
    # Files segmented into a folder (what `donet predict` runs) record the diameter found beside the setting.
    paths = [tmp_path / f"field{k}.png" for k in range(len(images))]
    for path, image in zip(paths, images):
        Image.fromarray(image).save(path)
    report = segment_files(segmenter, paths, tmp_path / "predicted", Exports())
    recorded = json.loads((tmp_path / "predicted" / "settings.json").read_text())
    assert recorded["diameter"] == "auto" and recorded["estimated_diameter"] == pytest.approx(set_diameter)
    assert report.diameter == recorded["estimated_diameter"]


def test_a_process_without_images_still_joins_the_diameter_estimate(model, train_image, tmp_path):
    calls = []

    class SecondProcess(Processes):
        def all_gather(self, item):
            calls.append(item)
            return [item] * self.world

        def gather(self, item):
            calls.append(item)
            return None  # process 0's alone

    Image.fromarray(train_image.image).save(tmp_path / "cells.png")
    segmenter = donet.Segmenter(model, processes=SecondProcess(1, 2), device="cpu", diameter="auto")
    segment_files(segmenter, [tmp_path / "cells.png"], tmp_path / "out", Exports())  # process 0 takes the image
    # Its (no) estimates and (no) reports, then what it found, for process 0 only.
    assert calls[:2] == [[], []] and len(calls) == 3 and not calls[2].instances


def test_predict_and_evaluate_use_it_when_no_model_is_named(train_image, tmp_path):
    Image.fromarray(train_image.image).save(tmp_path / "cells.png")
    run = subprocess.run([sys.executable, "-m", "donet", "predict", tmp_path / "cells.png", "--out", tmp_path / "out"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert sum(a["category_id"] == 1 for a in predictions["annotations"]) >= len(train_image.cells) - 1
    # With --diameter auto it says the diameter it found, as settings.json records it.
    run = subprocess.run([sys.executable, "-m", "donet", "predict", tmp_path / "cells.png", "--diameter", "auto",
                          "--device", "cpu", "--out", tmp_path / "auto"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    found = json.loads((tmp_path / "auto" / "settings.json").read_text())["estimated_diameter"]
    assert f"cell diameter estimated at {found:.0f} px" in " ".join((run.stdout + run.stderr).split())

    write_dataset(tmp_path / "gt", [train_image])
    run = subprocess.run([sys.executable, "-m", "donet", "evaluate", "--gt", tmp_path / "gt", "--out",
                          tmp_path / "eval.json", "--device", "cpu"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "eval.json").read_text())
    assert results["classes"]["cytoplasm"]["coco"]["ap50"] > 0.8


def test_tiles_batched_in_one_forward_pass_give_the_same_cells(model, train_image):
    wide = np.concatenate([train_image.image, train_image.image[:, ::-1]], axis=1)  # 512 x 1024: 3 tiles of 512
    one = donet.segment(model, wide, tile=512, overlap=256, batch_size=1)
    three = donet.segment(model, wide, tile=512, overlap=256, batch_size=3)
    assert len(one.cells) == len(three.cells) >= 2 * len(train_image.cells) - 2
    assert matched_cells(list(one.masks(CellClass.CYTOPLASM)), list(three.masks(CellClass.CYTOPLASM)), 0.95) \
        == len(one.cells)


def test_heatmaps_and_attention_map_show_the_cells_found(model, train_image, tmp_path):
    segmenter = donet.Segmenter(model, device="cpu")
    done = segmenter.segmented(train_image.image, "field")
    result, detection = done.result, done.detection
    written = write_exports(result, detection, tmp_path, Exports(coco=False, heatmaps=True), 0.5)
    assert written == ["field_heatmaps.png", "field_attention.png"]
    panel = np.asarray(Image.open(tmp_path / "field_heatmaps.png").convert("RGB"))
    assert panel.shape == (512 + 18, 3 * 512, 3)
    intersection, complement, recombined = (decode_colours(panel[18:, 512 * k:512 * (k + 1)]) for k in range(3))
    cover = result.masks(CellClass.CYTOPLASM).sum(axis=0)  # how many predicted cells cover each pixel
    one, shared = cover == 1, cover >= 2
    assert shared.sum() > 1000
    # Fig. 6: the intersection lights up where cells overlap, the complement where one cell
    # lies alone, the recombined mask on every cell and on nothing else.
    assert intersection[shared].mean() > 0.6 > 0.2 > intersection[one].mean()
    assert cover.flat[intersection.argmax()] >= 2
    assert complement[one].mean() > 0.7 > 0.3 > complement[shared].mean()
    assert recombined[ndimage.binary_erosion(cover > 0, np.ones((3, 3)))].min() >= 0.49
    assert recombined[~ndimage.binary_dilation(cover > 0, np.ones((3, 3)))].max() < 0.51
    # Fig. 3: 0.5 on the glass, higher on cells, highest where they overlap.
    attention = decode_colours(np.asarray(Image.open(tmp_path / "field_attention.png").convert("RGB")), 0.5, 1.0)
    away = ~ndimage.binary_dilation(cover > 0, iterations=8)
    assert away.sum() > 50_000 and attention[away].max() < 0.51
    assert attention[shared].mean() > attention[one].mean() > 0.9 and cover.flat[attention.argmax()] >= 1


def test_a_set_diameter_is_estimated_on_images_spread_from_the_first_to_the_last(model, tmp_path, monkeypatch):
    """A folder lists its images by name, which often groups them by slide or magnification:
    its first images alone could all be of one kind."""
    monkeypatch.setattr("donet.inference.diameter.AUTO_SAMPLE", 3)
    sampled = []

    def recording(self, images, progress=None):
        sampled.append([int(np.asarray(Image.open(i) if isinstance(i, Path) else i)[0, 0]) for i in images])
        return None

    monkeypatch.setattr(donet.Segmenter, "estimate_diameter", recording)
    images = [np.full((24, 24), k, np.uint8) for k in range(7)]
    segmenter = donet.Segmenter(model, device="cpu", diameter="auto")
    assert len(list(segmenter.segment_many(images))) == 7
    paths = [tmp_path / f"field{k}.png" for k in range(7)]
    for path, image in zip(paths, images):
        Image.fromarray(image).save(path)
    segment_files(segmenter, paths, tmp_path / "predicted", Exports())
    assert sampled == [[0, 3, 6], [0, 3, 6]]
