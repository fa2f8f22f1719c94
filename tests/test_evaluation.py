import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import ndimage

from donet.data import AnnotatedImage, CellClass, Instance, SynthConfig, generate
from donet.io import to_coco
from donet.io.coco import rle_to_json
from donet.errors import DonetError
from donet.evaluation import evaluate
from donet.evaluation.coco_map import segm_ap
from donet.evaluation.matching import Pairs
from donet.evaluation.protocols import aji_plus, isbi_protocol, kumar_aji, paper_aji, paper_protocol, \
    standard_protocol

SHAPE = (10, 40)


def columns(start, stop):
    mask = np.zeros(SHAPE, bool)
    mask[:, start:stop] = True
    return mask


def cell(mask, id=1, score=1.0, category=CellClass.CYTOPLASM):
    return Instance.from_mask(id, category, mask, score=score)


def pairs(predicted, truth):
    return Pairs.of([cell(m).rle for m in predicted], [cell(m).rle for m in truth])


def test_intersections_and_unions_follow_from_iou():
    a, b = columns(0, 10), columns(5, 25)
    p = pairs([a], [b])
    assert p.intersection[0, 0] == pytest.approx(50) and p.union[0, 0] == pytest.approx(250)


def test_the_three_ajis_differ_on_a_merged_prediction():
    """g1 = cols 0-9, g2 = cols 10-19; p1 spans both (IoU 0.5 with each), p2 = cols 12-15 (IoU 0.4 with g2)."""
    p = pairs([columns(0, 20), columns(12, 16)], [columns(0, 10), columns(10, 20)])
    # Kumar: both cells take p1 (reused): C = 100 + 100, U = 200 + 200 + |p2| 40.
    assert kumar_aji(p) == pytest.approx(200 / 440)
    # AJI+: one-to-one, p1-g1 and p2-g2: C = 100 + 40, U = 200 + 100.
    assert aji_plus(p) == pytest.approx(140 / 300)
    # Paper: g1 takes p1 (IoU 0.5 >= 0.5); g2's only free choice p2 has IoU 0.4: unmatched.
    # C = 100, U = 200 + |g2| 100 + |p2| 40.
    assert paper_aji(p) == pytest.approx(100 / 340)
    assert paper_protocol([p])["f1"] == 0  # TP needs IoU > 0.5
    assert math.isnan(paper_protocol([p])["dice"])  # best Dice 2/3 < 0.7


def test_overlapping_cells_predicted_exactly_score_perfectly():
    a, b = columns(0, 25), columns(15, 40)  # share columns 15-24
    p = pairs([b, a], [a, b])
    paper, standard = paper_protocol([p]), standard_protocol([p])
    assert paper == pytest.approx({"f1": 1, "aji": 1, "dice": 1})
    assert standard["aji_kumar"] == pytest.approx(1) and standard["aji_plus"] == pytest.approx(1)
    assert standard["pq"] == pytest.approx(1) and standard["f1_at_0.5"] == 1
    # Flattened to one label per pixel (b on top), cell a loses its shared part: 15 of its 25
    # columns are found, so AJI = (15 + 25) / (25 + 25), though both cells still match.
    flat = pairs([columns(0, 15), b], [a, b])
    assert paper_protocol([flat])["aji"] == pytest.approx(0.8) and paper_protocol([flat])["f1"] == 1
    assert standard_protocol([flat])["aji_kumar"] == pytest.approx(0.8)


def test_f1_pq_and_dice_by_hand():
    truth = [columns(0, 10), columns(20, 30)]
    predicted = [columns(1, 10), columns(30, 36)]  # IoU 0.9 with g1; nothing on g2; one false positive
    p = pairs(predicted, truth)
    assert paper_protocol([p])["f1"] == pytest.approx(2 * 1 / 4)
    assert paper_protocol([p])["dice"] == pytest.approx(2 * 90 / 190)
    standard = standard_protocol([p])
    assert standard["pq"] == pytest.approx(0.9 * 1 / (1 + 0.5 + 0.5))
    assert standard["f1_at_0.5"] == pytest.approx(0.5)


def test_isbi_metrics_by_hand():
    truth = [columns(0, 10), columns(25, 35)]
    p = pairs([columns(1, 11)], truth)  # I = 90, |S| = 100: Dice 0.9 for g1; g2 missed
    figures = isbi_protocol([p])
    assert figures["dice"] == pytest.approx(0.9) and figures["fn_o"] == pytest.approx(0.5)
    assert figures["tp_p"] == pytest.approx(0.9)
    assert figures["fp_p"] == pytest.approx(10 / (400 - 100))


def perturbed(sample: AnnotatedImage, rng) -> list[Instance]:
    """Predictions: each instance eroded or dilated, random scores, a few false positives."""
    out = []
    for inst in sample.instances:
        mask = inst.mask
        mask = ndimage.binary_dilation(mask, iterations=int(rng.integers(1, 4))) if rng.random() < 0.5 else \
            ndimage.binary_erosion(mask, iterations=int(rng.integers(1, 4)))
        if mask.any() and rng.random() < 0.9:
            out.append(Instance.from_mask(len(out) + 1, inst.category, mask, score=float(rng.random())))
    for _ in range(2):
        mask = np.zeros(sample.size, bool)
        y, x = rng.integers(0, sample.size[0] - 20), rng.integers(0, sample.size[1] - 20)
        mask[y:y + 20, x:x + 20] = True
        out.append(Instance.from_mask(len(out) + 1, CellClass(int(rng.integers(1, 3))), mask, score=float(rng.random())))
    return out


def test_ap_matches_pycocotools_own_cocoeval():
    rng = np.random.default_rng(0)
    truth = [generate(i, SynthConfig(size=(128, 128), cells=(3, 6), cell_radius=(0.12, 0.2)), seed=4) for i in range(6)]
    predicted = [perturbed(s, rng) for s in truth]
    ours = segm_ap([(s.size, s.instances) for s in truth], predicted, max_dets=100)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = to_coco(truth)
        gt.createIndex()
        results = [{"image_id": k, "category_id": int(i.category), "segmentation": rle_to_json(i.rle),
                    "score": i.score} for k, preds in enumerate(predicted, start=1) for i in preds]
        reference = COCOeval(gt, gt.loadRes(results), iouType="segm")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    assert np.mean([ours[c]["ap"] for c in (1, 2)]) == pytest.approx(reference.stats[0], abs=1e-9)
    assert np.mean([ours[c]["ap50"] for c in (1, 2)]) == pytest.approx(reference.stats[1], abs=1e-9)


def test_ap_works_with_pycocotools_releases_that_copy_info(monkeypatch):
    """pycocotools 2.0.9 and 2.0.10 read the ground truth's "info" in loadRes."""
    original = COCO.loadRes

    def strict_load_res(self, results):
        self.dataset["info"]  # raises KeyError as those releases do
        return original(self, results)

    monkeypatch.setattr(COCO, "loadRes", strict_load_res)
    truth = [generate(0, SynthConfig(size=(128, 128), cells=(3, 3)), seed=1)]
    predicted = [[Instance(i.id, i.category, i.rle, score=0.9) for i in truth[0].instances]]
    assert segm_ap([(truth[0].size, truth[0].instances)], predicted, max_dets=100)[1]["ap"] == pytest.approx(1.0)
    gt = COCO()
    gt.dataset = to_coco(truth)  # files donet writes work with those releases too
    gt.createIndex()
    assert len(gt.loadRes([{"image_id": 1, "category_id": 1, "segmentation": rle_to_json(truth[0].instances[0].rle),
                            "score": 1.0}]).anns) == 1


def test_evaluate_end_to_end_and_bad_input():
    truth = [AnnotatedImage("a", np.zeros(SHAPE, np.uint8), [cell(columns(0, 10)), cell(columns(5, 20), id=2)]),
             AnnotatedImage("b", np.zeros(SHAPE, np.uint8), [cell(columns(0, 10))])]
    predictions = {"a": [cell(columns(0, 10), score=0.95), cell(columns(5, 20), id=2, score=0.95)]}
    results = evaluate(truth, predictions)
    assert results["images_without_predictions"] == 1
    cyto = results["classes"]["cytoplasm"]
    assert cyto["paper"]["f1"] == pytest.approx(0.5)  # image a perfect, image b empty
    # Recall reaches 2/3 at precision 1: 67 of COCO's 101 recall points.
    assert cyto["coco"]["ap"] == pytest.approx(67 / 101)
    assert math.isnan(results["classes"]["nucleus"]["paper"]["f1"])  # no nuclei anywhere
    with pytest.raises(DonetError, match="not in the ground truth"):
        evaluate(truth, {"zzz": []})
    wrong = Instance.from_mask(1, CellClass.CYTOPLASM, np.ones((11, 40), bool), score=1.0)
    with pytest.raises(DonetError, match="40x11"):
        evaluate(truth, {"a": [wrong]})
