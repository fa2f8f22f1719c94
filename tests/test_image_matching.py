"""Predictions are matched to ground-truth images by their files, never by name: two images
called `a.png` in two folders stay two images."""

import json
from pathlib import Path

import numpy as np
import pytest
from commands import donet

from donet.data import SynthConfig, generate
from donet.data.instances import Instance
from donet.errors import DonetError
from donet.evaluation import evaluate, json_safe
from donet.io import read_coco, read_predictions, write_coco, write_predictions
from donet.io.images import write_image


def samples():
    """Two different images, and imperfect predictions for each (a cell dropped, scores spread)."""
    images = [generate(i, SynthConfig(size=(96, 128), cells=(3, 4)), seed=3) for i in range(2)]
    rng = np.random.default_rng(0)
    predictions = []
    for sample in images:
        kept = sample.instances[1:]
        predictions.append([Instance(k + 1, i.category, i.rle, score=float(rng.uniform(0.3, 1.0)))
                            for k, i in enumerate(kept)])
    return images, predictions


def write_case(root: Path, files: list[str], images, predictions) -> tuple[Path, Path]:
    """Ground truth listing `files`, and predictions naming the same files from another folder."""
    for file_name, sample in zip(files, images):
        (root / "gt" / file_name).parent.mkdir(parents=True, exist_ok=True)
        write_image(root / "gt" / file_name, sample.image)
    write_coco(root / "gt" / "annotations.json", images, files)
    (root / "out").mkdir()
    names = [f"p{k}" for k in range(len(files))]
    write_predictions(root / "out" / "predictions.json", dict(zip(names, predictions)),
                      {n: s.size for n, s in zip(names, images)}, {n: f"../gt/{f}" for n, f in zip(names, files)})
    return root / "gt", root / "out" / "predictions.json"


def test_same_name_images_in_two_folders_score_as_distinct_images(tmp_path):
    images, predictions = samples()
    same = write_case(tmp_path / "same", ["x/a.png", "y/a.png"], images, predictions)
    distinct = write_case(tmp_path / "distinct", ["a.png", "b.png"], images, predictions)
    figures = []
    for gt, found in (same, distinct):
        result = donet("evaluate", found, "--gt", gt, "--out", gt.parent / "r.json")
        assert result.returncode == 0, result.stderr
        figures.append(json.loads((gt.parent / "r.json").read_text()))
    assert figures[0]["images"] == 2
    assert figures[0]["classes"] == figures[1]["classes"]
    # Each image's predictions scored against its own cells, as when they are paired in memory.
    paired = json_safe(evaluate(images, {image.name: found for image, found in zip(images, predictions)}))
    assert figures[0]["classes"] == paired["classes"]


def test_reading_keeps_same_name_images_apart(tmp_path):
    images, predictions = samples()
    gt, found = write_case(tmp_path, ["x/a.png", "y/a.png"], images, predictions)
    truth = read_coco(gt / "annotations.json")
    assert truth.names == ["a", "a_2"]
    assert truth.files == [(gt / "x" / "a.png").absolute(), (gt / "y" / "a.png").absolute()]
    matched = read_predictions(found, truth)
    assert [len(matched[name]) for name in truth.names] == [len(p) for p in predictions]
    assert [i.score for i in matched["a_2"]] == [i.score for i in predictions[1]]


def test_a_prediction_that_could_be_either_image_is_refused(tmp_path):
    images, predictions = samples()
    gt, _ = write_case(tmp_path, ["x/a.png", "y/a.png"], images, predictions)
    # Named only "a.png", from a folder where no such file is: it could be either.
    write_predictions(tmp_path / "loose.json", {"a": predictions[0]}, {"a": images[0].size}, {"a": "a.png"})
    with pytest.raises(DonetError, match="matches 2 ground-truth images"):
        read_predictions(tmp_path / "loose.json", read_coco(gt / "annotations.json"))
    # Two predictions for one image are not merged either.
    write_predictions(tmp_path / "twice.json", {"p": predictions[0], "q": predictions[0]},
                      {"p": images[0].size, "q": images[0].size}, {"p": "gt/x/a.png", "q": "gt/x/../x/a.png"})
    with pytest.raises(DonetError, match="same ground-truth image"):
        read_predictions(tmp_path / "twice.json", read_coco(gt / "annotations.json"))


def test_numbered_names_never_take_another_files_own_name():
    from donet.io.names import unique_names

    paths = [Path("x/a.png"), Path("y/a.png"), Path("a_2.png"), Path("z/a.ome.tif")]
    names = unique_names(paths)
    # The first comer and a file of its own name keep theirs; repeats take the next free number,
    # and `.ome.tif` is one suffix.
    assert names == ["a", "a_3", "a_2", "a_4"]
