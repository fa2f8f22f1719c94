"""The exports keep overlaps: GeoJSON, ImageJ ROIs and label stacks read back and compared with
the instances they came from. No torch needed."""

import json
import zipfile

import numpy as np
import pytest
import roifile
import tifffile
from PIL import Image, ImageDraw
from scipy import ndimage
from shapely.geometry import shape

from donet.atomic import atomic_path
from donet.data import CellClass, SynthConfig, generate
from donet.io.geojson import to_geojson
from donet.io.imagej import write_roi_zip
from donet.io.label_stack import label_stack, read_label_stack, write_label_stack
from donet.io.polygons import mask_polygons


@pytest.fixture(scope="module")
def truth():
    """Ground truth with overlapping cells stands in for a prediction: exports must keep it."""
    sample = generate(0, SynthConfig(size=(256, 320), cells=(5, 5), clusters=(1, 1), overlap=(0.2, 0.3),
                                     cell_radius=(0.15, 0.2)), seed=2)
    for k, inst in enumerate(sample.instances):
        inst.score = 0.5 + 0.05 * k
    return sample


def overlapping_pairs(masks):
    return sum((a & b).any() for i, a in enumerate(masks) for b in masks[i + 1:])


def test_polygons_trace_the_mask():
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:20] = True
    (polygon,) = mask_polygons(mask)
    assert polygon[:, 0].min() == pytest.approx(10, abs=0.51) and polygon[:, 0].max() == pytest.approx(20, abs=0.51)
    assert polygon[:, 1].min() == pytest.approx(5, abs=0.51) and polygon[:, 1].max() == pytest.approx(15, abs=0.51)


def test_geojson_is_valid_geometry_with_nuclei_inside_and_overlaps_kept(truth):
    collection = json.loads(json.dumps(to_geojson(truth)))  # valid JSON round trip
    assert collection["type"] == "FeatureCollection"
    cells = [f for f in collection["features"] if f["properties"]["objectType"] == "cell"]
    assert len(cells) == len(truth.cells) == 5  # overlapping cells stay separate features
    by_name = {inst.id: inst for inst in truth.cells}
    polygons = []
    for feature in cells:
        polygon = shape(feature["geometry"])
        assert polygon.is_valid and not polygon.is_empty
        mask = by_name[int(feature["properties"]["name"].rsplit("/", 1)[1])].mask
        canvas = Image.new("1", mask.shape[::-1])
        ImageDraw.Draw(canvas).polygon(list(polygon.exterior.coords), fill=1)
        filled = np.asarray(canvas)  # the outline, filled, is its own cell's mask, in place
        assert (filled & mask).sum() / (filled | mask).sum() > 0.9
        nucleus = shape(feature["nucleusGeometry"])
        assert nucleus.is_valid and polygon.buffer(1.0).contains(nucleus)
        polygons.append(polygon)
    overlapping = sum(a.intersection(b).area > 1 for i, a in enumerate(polygons) for b in polygons[i + 1:])
    assert overlapping == overlapping_pairs([c.mask for c in truth.cells]) > 0


def test_roi_zip_reads_back_with_roifile(truth, tmp_path):
    count = write_roi_zip(tmp_path / "r.zip", truth)
    rois = roifile.roiread(tmp_path / "r.zip")
    assert len(rois) == count == len(truth.instances) == 10  # 5 cells, 5 nuclei, each one blob
    names = [r.name for r in rois]
    assert sum(n.startswith("cell-") for n in names) == 5
    # Each nucleus names the cell that holds it.
    parents = {int(n.split("-")[1]): int(n.rsplit("-of-cell-", 1)[1]) for n in names if n.startswith("nucleus-")}
    assert parents == {i.id: i.parent for i in truth.nuclei}
    with zipfile.ZipFile(tmp_path / "r.zip") as archive:
        assert archive.testzip() is None
    # Each outline, filled, is its instance's mask to within 2 pixels (outlines are simplified).
    by_id = {inst.id: inst for inst in truth.instances}
    for roi in rois:
        canvas = Image.new("1", (320, 256))
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in roi.coordinates()], fill=1)
        filled, mask = np.asarray(canvas), by_id[int(roi.name.split("-")[1])].mask
        assert not (ndimage.binary_erosion(mask, iterations=2) & ~filled).any(), roi.name
        assert not (filled & ~ndimage.binary_dilation(mask, iterations=2)).any(), roi.name


def test_temporary_names_keep_the_suffix_writers_choose_formats_by(tmp_path):
    """roifile 2026.11 refuses to write several ROIs unless the name ends in .zip."""
    with atomic_path(tmp_path / "img_rois.zip") as tmp:
        assert tmp.name.endswith(".zip") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "img_rois.zip").read_bytes() == b"x" and len(list(tmp_path.iterdir())) == 1


def test_label_stack_keeps_every_cell_whole(truth, tmp_path):
    stack = label_stack(truth, CellClass.CYTOPLASM)
    assert len(stack) >= 2  # overlapping cells need a second plane
    for cell in truth.cells:
        assert np.array_equal((stack == cell.id).any(axis=0), cell.mask)
    write_label_stack(tmp_path / "l.tif", truth, CellClass.CYTOPLASM)
    assert np.array_equal(tifffile.imread(tmp_path / "l.tif"), stack)
    read = {i.id: i for i in read_label_stack(tmp_path / "l.tif", CellClass.CYTOPLASM)}
    assert sorted(read) == sorted(c.id for c in truth.cells)  # overlapping cells come back whole
    assert all(np.array_equal(read[c.id].mask, c.mask) and read[c.id].category is CellClass.CYTOPLASM
               for c in truth.cells)


def test_qupath_geojson_variants_are_read(tmp_path):
    """QuPath's own exports: a bare list of features, list-form measurements (before 0.4),
    MultiPolygons, and points or lines, which are no cells."""
    import json

    from donet.io.geojson import read_geojson

    square = [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square},
         "properties": {"classification": {"name": "Nucleus"}, "measurements": [{"name": "score", "value": 0.25}]}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [square, [[[20, 20], [30, 20], [30, 30]]]]},
         "properties": {"classification": "Tumor"}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}, "properties": {}},
    ]
    (tmp_path / "qupath.geojson").write_text(json.dumps(features))
    outlines = read_geojson(tmp_path / "qupath.geojson")
    assert [(o.id, o.category, o.score) for o in outlines] == [
        (1, CellClass.NUCLEUS, 0.25), (2, CellClass.CYTOPLASM, 1.0), (2, CellClass.CYTOPLASM, 1.0)]
    assert [o.area for o in outlines] == [100.0, 100.0, 50.0]
