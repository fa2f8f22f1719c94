"""What `donet predict` reads: glob patterns and folders expand to the right files in order, a
native TIFF is memory-mapped and segments as if read whole, and a whole slide given
--diameter (or estimating it) is read at the level and scale that bring its cells to the
model's, its cells coming back in level-0 coordinates."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment
from shapely.geometry import shape
from typer.testing import CliRunner

import donet
from donet.cli import app
from donet.data import CellClass, SynthConfig, generate
from donet.data.instances import encode_mask
from donet.data.stats import median_diameter
from donet.data.synthetic_slide import SyntheticSlide, write_pyramid
from donet.errors import DonetError
from donet.inference import Segmenter, SlideRun
from donet.inference.files import expand_inputs
from donet.io import open_dataset
from donet.io.images import open_image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    # Ten detections an image: an untrained model's hundreds would only cost time here.
    donet.save_weights(donet.build_model("donet", min_size=128, max_size=256, detections_per_img=10), path)
    return path


def predict(*args):
    """`donet predict` in this process (no interpreter to start), raising what it raised."""
    result = CliRunner().invoke(app, ["predict", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_patterns_and_folders_expand_to_their_images_in_the_order_given(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "b.tif", "c.jpg", "notes.txt", "sub/d.png", "sub/e.TIF", "sub/f.ome.btf"):
        (folder / name).write_bytes(b"")
    (folder / "stack.png").mkdir()  # a folder named like an image is no image

    def names(*items):
        return [p.relative_to(folder).as_posix() for p in expand_inputs([str(i) for i in items])]

    assert names(folder / "*.png") == ["a.png"]
    assert names(folder / "**" / "*.png") == ["a.png", "sub/d.png"]
    assert names(folder / "?.*") == ["a.png", "b.tif", "c.jpg"]
    assert names(folder / "[bc].*") == ["b.tif", "c.jpg"]
    assert names(folder / "sub" / "*.[Tt][Ii][Ff]") == ["sub/e.TIF"]
    # Files, patterns and folders keep the order given; a folder gives its images, sorted.
    assert names(folder / "c.jpg", folder / "[ab].*", folder / "sub") == ["c.jpg", "a.png", "b.tif", "sub/d.png",
                                                                          "sub/e.TIF", "sub/f.ome.btf"]  # BigTIFF too
    assert names(folder)[:3] == ["a.png", "b.tif", "c.jpg"]  # (see the next test)
    assert names(folder / "missing.png") == ["missing.png"]  # reported when it is read
    with pytest.raises(DonetError, match="matches no file"):
        expand_inputs([str(folder / "*.bmp")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DonetError, match="no input images"):
        expand_inputs([str(tmp_path / "empty")])


def test_a_folder_named_like_an_image_is_no_input(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "stack.png").mkdir()
    assert expand_inputs([str(tmp_path)]) == [tmp_path / "a.png"]


def test_predict_segments_the_files_a_pattern_matches(checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for k, name in enumerate(("b.png", "a.png", "c.jpg", "a.txt")):
        if name.endswith(".txt"):
            (folder / name).write_text("not an image")
            continue
        Image.fromarray(generate(k, SynthConfig(size=(96, 112)), seed=0).image).save(folder / name)
    done = predict(folder / "*.png", folder / "?.jpg", "--model", checkpoint, "--out", tmp_path / "out",
                   "--device", "cpu", "--score-threshold", 0)
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [image["file_name"] for image in predictions["images"]] == ["../in/a.png", "../in/b.png", "../in/c.jpg"]
    # The command prints the report it was given: what was found, counted from the outputs.
    counts = [sum(p["category_id"] == category for p in predictions["annotations"]) for category in (1, 2)]
    assert counts[0] + counts[1] > 0
    assert f"segmented 3 of 3 images into {tmp_path / 'out'}: {counts[0]} cells, {counts[1]} nuclei, " in \
        " ".join(done.output.split())


def test_a_native_tiff_is_memory_mapped_and_segments_as_if_read_whole(checkpoint, tmp_path):
    gray = generate(0, SynthConfig(size=(96, 160)), seed=0).image
    deep = gray.astype(np.uint16) * 200
    colour = np.stack([gray, gray // 2, 255 - gray], axis=-1)
    written = {"gray.tif": (gray, {}), "deep.tif": (deep, {}), "colour.tif": (colour, {"photometric": "rgb"}),
               "packed.tif": (gray, {"compression": "zlib"}), "swapped.tif": (deep, {"byteorder": ">"})}
    for name, (pixels, options) in written.items():
        tifffile.imwrite(tmp_path / name, pixels, **options)
    mapped = {"gray.tif", "deep.tif", "colour.tif"}  # compressed or foreign-endian: read whole
    for name, (pixels, _) in written.items():
        opened = open_image(tmp_path / name)
        assert isinstance(opened, np.memmap) == (name in mapped), name
        assert opened.dtype == pixels.dtype and np.array_equal(opened, pixels), name
    # Two tiles are sliced from the map as they are needed: the cells are those of the pixels in memory.
    segmenter = Segmenter(donet.load_model(checkpoint), device="cpu", score_threshold=0.0, tile=96, overlap=32)
    whole = segmenter.segment(gray.copy())
    from_map = segmenter.segment(open_image(tmp_path / "gray.tif"))
    [from_file] = list(segmenter.segment_many([tmp_path / "gray.tif"]))
    assert len(whole.instances) > 2
    for found in (from_map, from_file.result):
        assert [(i.category, i.rle["counts"], i.parent) for i in found.instances] == \
            [(i.category, i.rle["counts"], i.parent) for i in whole.instances]
        assert [i.score for i in found.instances] == pytest.approx([i.score for i in whole.instances], abs=1e-6)


OFFSET = 256  # where the field lies in the slide, level 0
FACTOR = 3  # the field scanned at three times the training images' resolution


@pytest.fixture(scope="module")
def real_cells(isbi):
    """The last train45 image (10 overlapping cells), seen by the shipped model in training."""
    return open_dataset(isbi / "isbi2014_train")[44]


@pytest.fixture(scope="module")
def large_cells_slide(real_cells, tmp_path_factory):
    """A 2048 x 2048 slide holding the field scanned at FACTOR times its resolution."""
    field = np.repeat(np.repeat(real_cells.image, FACTOR, axis=0), FACTOR, axis=1)
    path = tmp_path_factory.mktemp("slide") / "slide.ome.tif"
    write_pyramid(path, SyntheticSlide(2048, 2048, [((OFFSET, OFFSET), np.stack([field] * 3, axis=-1))]))
    return path


def slide_cells(table) -> list[dict]:
    """The cell rows of a slide's Parquet table, each with its level-0 mask ("mask")."""
    cells = [r for r in pq.read_table(table).to_pylist() if r["class"] == "cytoplasm"]
    for row in cells:
        row["mask"] = np.zeros((2048, 2048), bool)
        row["mask"][row["y"]:row["y"] + row["height"], row["x"]:row["x"] + row["width"]] = \
            mask_utils.decode({"size": [row["height"], row["width"]], "counts": row["rle"].encode()})
        assert row["area"] == row["mask"].sum()
    return cells


def matched_field_cells(cells: list[dict], real_cells) -> int:
    """How many of the field's cells are found with IoU > 0.7, one to one."""
    found = [row["mask"][OFFSET:OFFSET + 512 * FACTOR, OFFSET:OFFSET + 512 * FACTOR] for row in cells]
    truth = [np.repeat(np.repeat(m, FACTOR, axis=0), FACTOR, axis=1) for m in real_cells.masks(CellClass.CYTOPLASM)]
    ious = np.asarray(mask_utils.iou([encode_mask(m) for m in found], [encode_mask(m) for m in truth],
                                     [0] * len(truth)))
    return int((ious[linear_sum_assignment(-ious)] > 0.7).sum())


def test_a_slide_with_diameter_is_read_at_the_cells_scale_and_answers_at_level_0(large_cells_slide, real_cells,
                                                                               tmp_path, monkeypatch):
    model = donet.load_model()
    diameter = FACTOR * model.config.cell_diameter  # cells three times the size the model knows
    path = large_cells_slide
    seen = []
    detect = Segmenter.detect

    def spy(self, images, scale=None):
        seen.extend((image.shape[:2], scale) for image in images)
        return detect(self, images, scale)

    monkeypatch.setattr(Segmenter, "detect", spy)
    predict(path, "--diameter", diameter, "--device", "cpu", "--out", tmp_path / "out")
    # Level 1 (2x) is the coarsest not past the 3x wanted; its 1024-pixel tile is shrunk by 2/3 more.
    report = json.loads((tmp_path / "out" / "slides.json").read_text())["slide"]
    assert (report["level"], report["level_downsample"], report["model_input_downsample"]) == (1, 2, FACTOR)
    assert report["scale_from"] == f"cell diameter {diameter:g} px"
    assert seen and all(size == (1024, 1024) and scale == pytest.approx(2 / FACTOR) for size, scale in seen)
    cells = slide_cells(tmp_path / "out" / "slide.parquet")
    assert matched_field_cells(cells, real_cells) >= len(real_cells.masks(CellClass.CYTOPLASM)) - 1
    # The QuPath outlines lie on the table's level-0 boxes.
    features = json.loads((tmp_path / "out" / "slide.geojson").read_text())["features"]
    boxes = {f"slide/cell/{c['id']}": (c["x"], c["y"], c["x"] + c["width"], c["y"] + c["height"]) for c in cells}
    outlines = [f for f in features if f["properties"]["objectType"] == "cell"]
    assert len(outlines) == len(cells)
    for feature in outlines:
        bounds = shape(feature["geometry"]).bounds
        assert np.abs(np.subtract(bounds, boxes[feature["properties"]["name"]])).max() <= FACTOR


def test_a_slide_with_auto_diameter_estimates_it_on_tiles_holding_whole_cells(large_cells_slide, real_cells,
                                                                             tmp_path, monkeypatch):
    # Level 0's 1024-pixel tiles cut most of the 3x cells, which reads them too small: the
    # estimate must come from tiles of the level its first reading asks for.
    sampled = []
    sample = SlideRun._sample_estimate

    def spy(self, level):
        sampled.append(level.downsample)
        return sample(self, level)

    monkeypatch.setattr(SlideRun, "_sample_estimate", spy)
    predict(large_cells_slide, "--diameter", "auto", "--device", "cpu", "--out", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "slides.json").read_text())["slide"]
    assert sampled == [1, 2]
    true_diameter = FACTOR * median_diameter([real_cells])
    assert abs(np.log(report["estimated_diameter"] / true_diameter)) < np.log(1.15)
    assert abs(float(report["scale_from"].split()[2]) - report["estimated_diameter"]) <= 1
    wanted = true_diameter / donet.load_model().config.cell_diameter
    assert report["level"] == 1 and abs(np.log(report["model_input_downsample"] / wanted)) < np.log(1.15)
    assert report["tiles"] == 1  # the tiles sampled for the estimate are not counted as run
    cells = slide_cells(tmp_path / "out" / "slide.parquet")
    assert matched_field_cells(cells, real_cells) >= len(real_cells.masks(CellClass.CYTOPLASM)) - 1
