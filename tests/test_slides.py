"""Whole slides segmented at the right level, glass skipped, results the same over processes."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment
from shapely.geometry import shape

import donet
from donet.data import CellClass
from donet.data.instances import AnnotatedImage, Instance, encode_mask
from donet.data.measurements import measure
from donet.data.synthetic_slide import SyntheticSlide, write_pyramid
from donet.distributed import Processes, _machine, _reason, _running
from donet.inference import InferenceSettings, Segmenter
from donet.inference.files import write_slide
from donet.io import open_dataset
from donet.io.slides import open_slide

OFFSET = 1024  # where the real image lies in the slide, level 0


@pytest.fixture(scope="module")
def real_cells(isbi):
    """The last train45 image (10 overlapping cells), seen by the shipped model in training."""
    return open_dataset(isbi / "isbi2014_train")[44]


@pytest.fixture(scope="module")
def slide_path(real_cells, tmp_path_factory):
    """A 4096 x 4096 slide at 0.125 um/px holding the image scanned at twice its resolution:
    level 1 (0.25 um/px) shows it at its own scale."""
    gray = np.repeat(np.repeat(real_cells.image, 2, axis=0), 2, axis=1)
    path = tmp_path_factory.mktemp("slides") / "real.ome.tif"
    write_pyramid(path, SyntheticSlide(4096, 4096, [((OFFSET, OFFSET), np.stack([gray] * 3, axis=-1))]), mpp=0.125)
    return path


@pytest.fixture(scope="module")
def model():
    network = donet.load_model()
    network.config = network.config.model_copy(update={"microns_per_pixel": 0.25})
    return network


def segment_slide(model, slide, name, folder, settings, measure=False):
    run = Segmenter(model, settings).segment_slide(slide)
    written, measured = write_slide(run, name, folder, main=True, measure=measure)
    assert written == [f"{name}.geojson", f"{name}.parquet"] and (measured is not None) == measure
    return {**run.report(), "measurements": measured}


def at(row, size=(4096, 4096)):
    """A Parquet row's mask in the whole slide."""
    mask = np.zeros(size, bool)
    mask[row["y"]:row["y"] + row["height"], row["x"]:row["x"] + row["width"]] = \
        mask_utils.decode({"size": [row["height"], row["width"]], "counts": row["rle"].encode()})
    return mask


def rows_by_class(folder, name, category):
    return [r for r in pq.read_table(folder / f"{name}.parquet").to_pylist() if r["class"] == category]


def test_level_is_chosen_by_pixel_size_and_cells_come_back_at_level_0(model, slide_path, real_cells, tmp_path):
    with open_slide(slide_path) as slide:
        report = segment_slide(model, slide, "real", tmp_path, InferenceSettings(device="cpu"), measure=True)
    assert report["level"] == 1 and report["level_downsample"] == 2
    cells = rows_by_class(tmp_path, "real", "cytoplasm")
    window = 2 * 512
    found = []
    for row in cells:
        found.append(at(row)[OFFSET:OFFSET + window, OFFSET:OFFSET + window])
        assert row["area"] == at(row).sum()
    truth = [np.repeat(np.repeat(m, 2, axis=0), 2, axis=1) for m in real_cells.masks(CellClass.CYTOPLASM)]
    ious = np.asarray(mask_utils.iou([encode_mask(m) for m in found], [encode_mask(m) for m in truth],
                                     [0] * len(truth)))
    rows, cols = linear_sum_assignment(-ious)
    assert (ious[rows, cols] > 0.5).sum() >= len(truth) - 1
    nuclei = rows_by_class(tmp_path, "real", "nucleus")
    # Nuclei are linked, in level-0 ids, to the cell that holds them.
    by_id = {c["id"]: c for c in cells}
    linked = [n for n in nuclei if n["parent"] is not None]
    assert len(linked) >= len(truth) - 1
    assert all((at(n) & at(by_id[n["parent"]])).sum() > 0.5 * n["area"] for n in linked)
    geojson = json.loads((tmp_path / "real.geojson").read_text())
    assert sum(f["properties"]["objectType"] == "cell" for f in geojson["features"]) == len(cells)
    # Outlines in level-0 coordinates, where the table's boxes are.
    boxes = {f"real/cell/{c['id']}": (c["x"], c["y"], c["x"] + c["width"], c["y"] + c["height"]) for c in cells}
    for feature in geojson["features"]:
        if feature["properties"]["objectType"] == "cell":
            bounds = shape(feature["geometry"]).bounds
            assert np.abs(np.subtract(bounds, boxes[feature["properties"]["name"]])).max() <= 2
            assert {"nc_ratio", "overlapped_fraction", "area_um2"} <= feature["properties"]["measurements"].keys()
    # Streamed measurements equal those of the same instances measured as one image.
    rows = pq.read_table(tmp_path / "real.parquet").to_pylist()
    whole = [Instance.from_mask(r["id"], CellClass.CYTOPLASM if r["class"] == "cytoplasm" else CellClass.NUCLEUS,
                                at(r), parent=r["parent"]) for r in rows]
    expected = {r["id"]: r for r in measure(AnnotatedImage("real", np.zeros((4096, 4096), np.uint8), whole), 0.125)}
    assert sum(r["overlapping_cells"] > 0 for r in rows if r["class"] == "cytoplasm") >= 5
    for row in rows:
        for column in ("perimeter", "nuclei", "nucleus_area", "nc_ratio", "overlapping_cells", "overlapped_fraction",
                       "area_um2"):
            value = expected[row["id"]][column]
            assert row[column] is None if value is None else row[column] == pytest.approx(value), column
    assert report["measurements"]["cells"] == len(cells) and report["measurements"]["nc_ratio_median"] > 0


def test_skipped_glass_changes_nothing_but_the_time(model, slide_path, tmp_path):
    reports = {}
    for skip in (True, False):
        (tmp_path / str(skip)).mkdir()
        settings = InferenceSettings(device="cpu", tile=512, overlap=160, skip_glass=skip)
        with open_slide(slide_path) as slide:
            reports[skip] = segment_slide(model, slide, "real", tmp_path / str(skip), settings)
    assert reports[True]["tiles_run"] <= reports[True]["tiles"] / 2 and reports[False]["tiles_run"] is None
    assert pq.read_table(tmp_path / "True" / "real.parquet").equals(pq.read_table(tmp_path / "False" / "real.parquet"))


def test_glass_alone_is_skipped_whole(model, tmp_path):
    path = tmp_path / "glass.ome.tif"
    write_pyramid(path, SyntheticSlide(2048, 2048), mpp=0.25)
    with open_slide(path) as slide:
        report = segment_slide(model, slide, "glass", tmp_path, InferenceSettings(device="cpu"))
    assert report["tiles_run"] == 0 and report["cells"] == report["nuclei"] == 0
    assert pq.read_table(tmp_path / "glass.parquet").num_rows == 0
    assert json.loads((tmp_path / "glass.geojson").read_text())["features"] == []


@pytest.mark.slow
def test_two_processes_give_what_one_gives(slide_path, real_cells, tmp_path):
    images = []
    for k in range(3):  # whole images too: they are shared out by file
        images.append(tmp_path / f"field{k}.png")
        Image.fromarray(np.roll(real_cells.image, 100 * k, axis=1)).save(images[-1])
    # One thread per process in both runs (torchrun's default): the same arithmetic.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["predict", str(slide_path), *map(str, images), "--device", "cpu", "--mpp", "0.25",
              "--tile", "512", "--overlap", "160"]
    for out, launcher in (("one", [sys.executable, "-m", "donet"]),
                          ("two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                   "-m", "donet"])):
        done = subprocess.run([*launcher, *common, "--out", str(tmp_path / out)], capture_output=True, text=True,
                              env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    one, two = tmp_path / "one", tmp_path / "two"
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    assert pq.read_table(one / "real.parquet").num_rows > 10
    assert pq.read_table(one / "real.parquet").equals(pq.read_table(two / "real.parquet"))
    for name in ("real.geojson", "predictions.json"):
        assert (one / name).read_text() == (two / name).read_text()
    predictions = json.loads((one / "predictions.json").read_text())
    assert [image["file_name"].rsplit("/", 1)[-1] for image in predictions["images"]] == [p.name for p in images]
    slides = json.loads((two / "slides.json").read_text())
    assert slides["real"]["level"] == 0 and slides["real"]["mpp"] == 0.25


def rank_process(rank: int) -> int | None:
    """The pid of this test's torchrun worker of `rank`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"DONET_KILL_TEST=1" in environ:
            return int(pid)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's workers in /proc")
def test_a_process_killed_mid_slide_stops_the_others_with_one_line(model, tmp_path):
    path = tmp_path / "busy.ome.tif"
    write_pyramid(path, SyntheticSlide.scattered(3072, 3072, per_megapixel=3.0), mpp=0.25)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DONET_KILL_TEST": "1"}
    out = tmp_path / "out"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "donet", "predict", str(path),
         "--device", "cpu", "--tile", "256", "--overlap", "64", "--no-skip-glass", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # Once the output folder is being written, the slide is under way: kill process 1 there.
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".out.*.part")) and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)
    victim = rank_process(1)
    assert victim is not None and launcher.poll() is None, "the slide finished before process 1 could be killed"
    os.kill(victim, 9)
    killed = time.monotonic()
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode != 0 and time.monotonic() - killed < 60
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "busy.ome.tif" in errors[0] and "process 1 of 2 ended" in errors[0], stderr[-3000:]
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_lost_connection_is_told_by_the_first_line_of_its_error_without_gloos_source_location():
    gloo = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by "
                        "peer [127.0.0.1]:4242\nException raised from ...")
    assert _reason(gloo) == "Connection closed by peer [127.0.0.1]:4242"
    nccl = RuntimeError("[Rank 1] Watchdog caught collective operation timeout")
    assert _reason(nccl) == "[Rank 1] Watchdog caught collective operation timeout"  # no source location: kept
    assert _reason(RuntimeError("")) == "RuntimeError"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a zombie is told apart in /proc")
def test_the_process_that_ended_is_named_even_before_torchrun_waits_for_it():
    """Killed, a worker stays a zombie until torchrun's agent waits for it: it has ended all
    the same. A process on another machine cannot be seen, so it is not named."""
    here = _machine()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        killed.kill()
        deadline = time.monotonic() + 10
        while not _zombie(killed.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        processes = Processes(0, 4)
        processes.peers = [(here, os.getpid()), (here, running.pid), (here, killed.pid), ("elsewhere/1", killed.pid)]
        assert processes._ended(wait=0) == [2]
        processes.peers = [(here, os.getpid()), (here, running.pid), ("elsewhere/1", killed.pid)]
        assert processes._ended(wait=0.3) == []
        assert _running(running.pid) and not _running(killed.pid)
        killed.wait()  # waited for: gone
        assert not _running(killed.pid)
    finally:
        running.kill()
        running.wait()
        killed.wait()
