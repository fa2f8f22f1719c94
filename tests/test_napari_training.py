"""Human in the loop, in napari: the widget's "Train from these layers" writes the corrected
cells and nuclei layers of every segmented image as a COCO training set, fine-tunes the
current model on it, and selects the new model, which then segments."""

import pytest

napari = pytest.importorskip("napari")  # the `napari` extra; conftest makes Qt headless
pytest.importorskip("torch")

import json

import numpy as np
from napari.components import ViewerModel
from pycocotools import mask as mask_utils
from skimage.draw import polygon2mask

import donet.modeling.weights
from donet.atomic import atomic_dir
from donet.data import CellClass, SynthConfig, generate
from donet.io import open_dataset, write_dataset
from donet.io.polygons import mask_polygons
from donet.napari_plugin import widget as widget_module
from donet.napari_plugin.layers import instance_layers
from donet.napari_plugin.reader import get_reader
from donet.napari_plugin.widget import SegmentWidget

CONFIG = SynthConfig(size=(256, 256), cells=(3, 4))
TOP, LEFT = 128, 64  # the visible region segmented: every cell of image 0 lies inside it


def outline(mask: np.ndarray) -> np.ndarray:
    """A mask's outline as napari draws it: (row, column) pixel-edge vertices."""
    return mask_polygons(mask)[0][:, ::-1].astype(float)


def rasterised(polygon: np.ndarray, shape, offset=(0, 0)) -> np.ndarray:
    """A polygon's pixels, the layers' convention: vertices on pixel edges."""
    return polygon2mask(shape, np.asarray(polygon) - np.asarray(offset) - 0.5)


def rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def best_iou(masks: list[np.ndarray], rles: list[dict]) -> np.ndarray:
    """For each mask, its best IoU with any of `rles`."""
    if not rles:
        return np.zeros(len(masks))
    return np.asarray(mask_utils.iou([rle(m) for m in masks], rles, [0] * len(rles))).max(axis=1)


def test_corrected_layers_fine_tune_a_model_that_is_selected_and_segments(qtbot, tmp_path, monkeypatch):
    field, other = (generate(i, CONFIG, seed=0) for i in range(2))
    with atomic_dir(tmp_path / "earlier") as folder:  # annotations made before, opened to go on
        write_dataset(folder, [other])
    viewer = ViewerModel()  # image layers need OpenGL to be drawn, which offscreen Qt lacks
    path = tmp_path / "earlier" / "annotations.json"
    for data, meta, kind in get_reader(str(path))(str(path)):  # as File > Open: "image", "cells", "nuclei"
        getattr(viewer, f"add_{kind}")(data, **meta)
    image = viewer.add_image(field.image, name="field")
    image.corner_pixels = np.array([[TOP, LEFT], [255, 255]])  # what the canvas shows, as napari sets it
    widget = SegmentWidget(viewer)
    widget.image.value, widget.device.value, widget.visible_only.value = image, "cpu", True
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=60_000)
    cells, nuclei = viewer.layers["field cells"], viewer.layers["field nuclei"]
    assert len(cells.data) >= 1, widget.status.value

    # The corrections: the model's first cell is wrong, and the true cell it overlaps least is
    # drawn by hand with its nucleus. A second image comes with its true layers.
    deleted = rasterised(cells.data[0], field.size)
    truth = min(field.cells, key=lambda cell: best_iou([cell.mask], [rle(deleted)])[0])
    truth_nucleus = next(n for n in field.nuclei if n.parent == truth.id)
    cells.selected_data = {0}
    cells.remove_selected()
    cells.add_polygons([outline(truth.mask)])
    nuclei.add_polygons([outline(truth_nucleus.mask)])

    widget.iterations.value = 2
    widget.tune_folder.value = tmp_path / "tuned"
    widget.train_from_layers()
    qtbot.waitUntil(lambda: widget.train_button.enabled, timeout=120_000)
    model = tmp_path / "tuned" / "run" / "model.safetensors"
    assert widget.status.value == f"fine-tuned model selected: {model}"
    assert widget._count[:2] == (2, 2)  # the worker reported its last step to the progress bar

    # The training set is what the layers hold now: the segmented region of the field, with its
    # corrected cells (the deleted one gone, the drawn one there, exactly), and the other image
    # whole, with its own cells.
    dataset = open_dataset(tmp_path / "tuned" / "training_set")
    assert dataset.names == ["image", "field"]  # in layer order
    written_other, written_field = dataset[0], dataset[1]
    assert np.array_equal(written_field.image, field.image[TOP:, LEFT:])
    assert np.array_equal(written_other.image, other.image)
    written_cells = [i.rle for i in written_field.cells]
    drawn = [rasterised(p, written_field.size, (TOP, LEFT)) for p in cells.data]
    assert len(written_cells) == len(drawn) and (best_iou(drawn, written_cells) > 0.99).all()
    assert best_iou([deleted[TOP:, LEFT:]], [rle(m) for m in drawn])[0] < 0.9  # no duplicate of a kept cell
    assert best_iou([deleted[TOP:, LEFT:]], written_cells)[0] < 0.9
    assert best_iou([truth.mask[TOP:, LEFT:]], written_cells)[0] > 0.95
    assert len(written_field.nuclei) == len(nuclei.data)
    [hand_drawn] = [n for n in written_field.nuclei if best_iou([truth_nucleus.mask[TOP:, LEFT:]], [n.rle])[0] > 0.9]
    parent = next(c for c in written_field.cells if c.id == hand_drawn.parent)
    assert best_iou([truth.mask[TOP:, LEFT:]], [parent.rle])[0] > 0.95  # the nucleus keeps its cell
    for kind in CellClass:
        assert (best_iou([i.mask for i in other.of_class(kind)], [i.rle for i in written_other.of_class(kind)])
                > 0.95).all()

    # The model card names the images, and the file of the one that came from a file.
    card = json.loads((model.parent / "model_card.json").read_text())
    assert card["tuned_on"] == ["image", "field"] and card["iterations"] == 2 and card["init"] == "default"
    assert card["image_files"] == {"image": str(tmp_path / "earlier" / "images" / f"{other.name}.png"), "field": None}

    # The new model is the widget's model now, and segments.
    assert widget.model_file.value == model
    loaded = []
    load_model = donet.modeling.weights.load_model
    monkeypatch.setattr(donet.modeling.weights, "load_model", lambda path=None, **kw: loaded.append(path) or
                        load_model(path, **kw))
    viewer.layers.remove(cells)
    viewer.layers.remove(nuclei)
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=60_000)
    assert loaded == [model]
    assert widget.status.value.startswith("field:") and isinstance(viewer.layers["field cells"], napari.layers.Shapes)


def test_nothing_to_train_on_or_a_used_folder_is_one_clear_error(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    viewer = ViewerModel()
    viewer.add_image(generate(0, CONFIG, seed=0).image, name="field")
    widget = SegmentWidget(viewer)
    widget.train_from_layers()
    widget.tune_folder.value = tmp_path / "tuned"
    widget.train_from_layers()
    for data, meta, _ in instance_layers([], (256, 256), "field "):  # segmented, and all deleted
        viewer.add_shapes(data, **meta)
    widget.train_from_layers()
    viewer.layers["field cells"].add_polygons([np.array([[10, 10], [10, 50], [50, 50], [50, 10]], float)])
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "model.safetensors").touch()
    widget.tune_folder.value = tmp_path / "used"
    widget.train_from_layers()
    nothing = ("no cells layers to train from: segment an image and correct its '<image> cells' and "
               "'<image> nuclei' layers first")
    assert shown == ["pick a new folder for the fine-tuned model", nothing, nothing,
                     f"{tmp_path / 'used'}: output already exists; choose another path or remove it"]
    assert widget.status.value == shown[-1] and widget.train_button.enabled and widget.worker is None
    assert not (tmp_path / "tuned").exists() and [p.name for p in (tmp_path / "used").iterdir()] == ["model.safetensors"]
