"""The napari plugin, headless: readers give overlapping polygons where the cells are, the
widget segments an image layer, and edited layers go back to COCO with every polygon and link."""

import pytest

napari = pytest.importorskip("napari")  # the `napari` extra; conftest makes Qt headless

import json  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402
from napari.components import ViewerModel  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402
from shapely.geometry import Polygon  # noqa: E402
from skimage import draw  # noqa: E402
from skimage.transform import rescale  # noqa: E402

from donet.data import CellClass, SynthConfig, generate  # noqa: E402
from donet.data.instances import AnnotatedImage  # noqa: E402
from donet.data.stats import median_diameter  # noqa: E402
from donet.data.synthetic_slide import SyntheticSlide, write_pyramid  # noqa: E402
from donet.io import open_dataset  # noqa: E402
from donet.io.coco import write_predictions  # noqa: E402
from donet.io.geojson import write_geojson  # noqa: E402
from donet.io.imagej import write_roi_zip  # noqa: E402
from donet.napari_plugin.widget import SegmentWidget  # noqa: E402


@pytest.fixture
def sample():
    config = SynthConfig(size=(256, 256), cells=(6, 6), clusters=(1, 1), overlap=(0.1, 0.3), mimics=(0, 0))
    return generate(0, config, seed=3)


def polygons_of(layer) -> list[Polygon]:
    return [Polygon(np.asarray(p)[:, ::-1]).buffer(0) for p in layer.data]  # (row, col) -> (x, y)


def check_layers(viewer, sample):
    cells, nuclei = viewer.layers["cells"], viewer.layers["nuclei"]
    assert isinstance(cells, napari.layers.Shapes)
    truth = [AnnotatedImage("t", sample.image, [i]).masks()[0] for i in sample.cells]
    assert len(cells.data) == len(truth) and len(nuclei.data) == len(sample.nuclei)
    shapes = polygons_of(cells)
    # Each polygon lies on its own cell (by area overlap with the true mask's pixels).
    for shape, cell_id in zip(shapes, cells.properties["id"]):
        mask = next(i for i in sample.cells if i.id == cell_id).mask
        ys, xs = np.nonzero(mask)
        assert abs(shape.area - mask.sum()) < 0.15 * mask.sum()
        assert abs(shape.centroid.x - (xs.mean() + 0.5)) < 2 and abs(shape.centroid.y - (ys.mean() + 0.5)) < 2
    overlapping = sum(a.intersection(b).area > 10 for k, a in enumerate(shapes) for b in shapes[k + 1:])
    assert overlapping >= 1  # overlaps stay overlaps: separate polygons sharing area


def test_reads_coco_predictions_as_overlapping_polygons(make_napari_viewer, sample, tmp_path):
    path = tmp_path / "predictions.json"
    write_predictions(path, {"cells": sample.instances}, {"cells": sample.size})
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="donet")
    check_layers(viewer, sample)
    nuclei = viewer.layers["nuclei"].properties
    assert dict(zip(nuclei["id"], nuclei["parent"])) == {n.id: -1 if n.parent is None else n.parent
                                                         for n in sample.nuclei}


def test_reads_coco_polygon_annotations(make_napari_viewer, sample, tmp_path):
    from donet.io.polygons import mask_polygons

    path = tmp_path / "annotations.json"
    write_predictions(path, {"cells": sample.instances}, {"cells": sample.size})
    data = json.loads(path.read_text())
    for annotation, instance in zip(data["annotations"], sample.instances):
        annotation["segmentation"] = [p.ravel().tolist() for p in mask_polygons(instance.mask)]  # x, y, x, y...
    path.write_text(json.dumps(data))
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="donet")
    check_layers(viewer, sample)


def test_reads_qupath_geojson_and_imagej_rois(make_napari_viewer, sample, tmp_path):
    write_geojson(tmp_path / "cells.geojson", sample)
    write_roi_zip(tmp_path / "cells_rois.zip", sample)
    for name in ("cells.geojson", "cells_rois.zip"):
        viewer = make_napari_viewer()
        viewer.open(str(tmp_path / name), plugin="donet")
        check_layers(viewer, sample)
        # Nucleus ids are the format's own, their links the cells' ids.
        parents = viewer.layers["nuclei"].properties["parent"]
        assert sorted(parents) == sorted(-1 if n.parent is None else n.parent for n in sample.nuclei)


def test_edited_layers_go_back_to_coco_with_every_polygon_and_link(make_napari_viewer, sample, tmp_path):
    source = tmp_path / "predictions.json"
    write_predictions(source, {"cells": sample.instances}, {"cells": sample.size})
    viewer = make_napari_viewer()
    viewer.open(str(source), plugin="donet")
    cells, nuclei = viewer.layers["cells"], viewer.layers["nuclei"]
    cells.add_polygons([np.array([[5, 5], [5, 30], [30, 30], [30, 5]], float)])  # a cell drawn by hand
    out = tmp_path / "corrected" / "annotations.json"
    out.parent.mkdir()
    viewer.layers.selection = {cells, nuclei}
    viewer.layers.save(str(out), selected=True, plugin="donet")
    data = json.loads(out.read_text())
    written = [a for a in data["annotations"] if a["category_id"] == int(CellClass.CYTOPLASM)]
    written_nuclei = [a for a in data["annotations"] if a["category_id"] == int(CellClass.NUCLEUS)]
    assert len(written) == len(sample.cells) + 1 and len(written_nuclei) == len(sample.nuclei)
    truth = [i.rle for i in sample.cells]
    ious = np.asarray(mask_utils.iou([a["segmentation"] for a in written], truth, [0] * len(truth)))
    assert (ious[:-1].max(axis=1) > 0.9).all() and ious[-1].max() < 0.5  # every cell, then the new one
    # Every nucleus keeps its cell.
    cell_of = {a["id"]: sample.cells[int(np.argmax(row))].id for a, row in zip(written, ious)}
    for nucleus in written_nuclei:
        overlap = [float(mask_utils.iou([nucleus["segmentation"]], [n.rle], [0])[0][0]) for n in sample.nuclei]
        assert cell_of[nucleus["parent_id"]] == sample.nuclei[int(np.argmax(overlap))].parent


def test_a_whole_slide_opens_as_a_multiscale_layer(tmp_path):
    path = tmp_path / "slide.ome.tif"
    field = generate(0, SynthConfig(size=(512, 512), color=True), seed=0).image
    write_pyramid(path, SyntheticSlide(2048, 3072, [((700, 900), field)]))
    viewer = ViewerModel()  # image layers need OpenGL to be drawn, which offscreen Qt lacks
    [layer] = viewer.open(str(path), plugin="donet")
    assert layer.multiscale and [level.shape for level in layer.data] == [(2048, 3072, 3), (1024, 1536, 3), (512, 768, 3)]
    assert np.abs(np.asarray(layer.data[0][700:710, 900:910]).astype(int) - field[:10, :10]).mean() < 4


def test_widget_segments_an_image_layer(qtbot, isbi):
    real = open_dataset(isbi / "isbi2014_train")[44]
    viewer = ViewerModel()
    image = viewer.add_image(real.image, name="field")
    widget = SegmentWidget(viewer)
    widget.image.value = image
    widget.device.value = "cpu"
    widget.maps.value = True
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=120_000)
    cells = viewer.layers["field cells"]
    assert isinstance(cells, napari.layers.Shapes)
    assert abs(len(set(cells.properties["id"])) - len(real.cells)) <= 1
    assert len(viewer.layers["field nuclei"].data) >= len(real.cells) - 1
    assert {"field intersection", "field complement", "field attention"} <= {layer.name for layer in viewer.layers}
    inside = np.any([cell.mask for cell in real.cells], axis=0)
    for name in ("intersection", "complement", "attention"):
        layer = viewer.layers[f"field {name}"]
        rows, cols = layer.data.shape[-2:]
        # Each map covers the image, and its mass lies on the cells.
        assert np.allclose(np.array([rows, cols]) * np.asarray(layer.scale[-2:]), real.size, atol=1)
        on = inside[np.ix_((np.arange(rows) * layer.scale[-2]).astype(int),
                           (np.arange(cols) * layer.scale[-1]).astype(int))]
        floor = 0.5 if name == "attention" else 0.0  # MRP's attention is 0.5 on background
        above = layer.data - floor
        assert above.min() >= 0 and above[on].mean() > 3 * above[~on].mean(), name
    assert widget.status.value.startswith("field:")


def test_widget_with_auto_diameter_says_the_diameter_it_found(qtbot, isbi):
    real = open_dataset(isbi / "isbi2014_train")[44]
    half = rescale(real.image, 0.5, anti_aliasing=True, preserve_range=True).astype(np.uint8)
    viewer = ViewerModel()
    widget = SegmentWidget(viewer)
    widget.image.value, widget.device.value = viewer.add_image(half, name="field"), "cpu"
    widget.auto_diameter.value = True
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=120_000)
    found = re.fullmatch(r"field: \d+ cells, \d+ nuclei \(cell diameter (\d+) px\)", widget.status.value)
    assert found, widget.status.value
    assert abs(np.log(int(found[1]) / (0.5 * median_diameter([real])))) < np.log(1.3)
    assert len(viewer.layers["field cells"].data) >= len(real.cells) - 1


def test_widget_segments_the_visible_region_in_image_coordinates(qtbot, isbi):
    real = open_dataset(isbi / "isbi2014_train")[44]
    viewer = ViewerModel()
    image = viewer.add_image(real.image, name="field")
    image.corner_pixels = np.array([[96, 128], [415, 447]])  # what the canvas shows, as napari sets it
    widget = SegmentWidget(viewer)
    widget.image.value, widget.device.value, widget.visible_only.value = image, "cpu", True
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=120_000)
    assert widget.status.value.startswith("field:")
    cells = viewer.layers["field cells"]
    polygons = np.concatenate(cells.data)
    assert (polygons.min(axis=0) >= [96, 128]).all() and (polygons.max(axis=0) <= [416, 448]).all()
    # The true cells lying whole in the region are found where they are in the image.
    found = {}
    for polygon, cell_id in zip(cells.data, cells.properties["id"]):
        rows, cols = draw.polygon(polygon[:, 0], polygon[:, 1], real.size)
        found.setdefault(cell_id, np.zeros(real.size, bool))[rows, cols] = True
    whole = [m for m in real.masks(CellClass.CYTOPLASM) if m[96:416, 128:448].sum() >= 0.99 * m.sum()]
    assert len(whole) == 5
    best = [max((m & f).sum() / (m | f).sum() for f in found.values()) for m in whole]
    assert sum(iou > 0.5 for iou in best) >= len(whole) - 1  # the model finds them at IoU 0.58-0.86
