"""Segmenting image files into an output folder: reading, whole slides, and the chosen
exports, with a report of what became of each input."""

from __future__ import annotations

import glob
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_text_atomic
from ..data.instances import AnnotatedImage, CellClass
from ..data.measurements import (
    SUMMARY_COLUMNS,
    CellOverlaps,
    Crop,
    intensity,
    measure,
    measure_cell,
    summary,
    table_rows,
    write_csv,
)
from ..errors import DonetError, ProcessLost
from ..figures import attention_picture, heatmap_panel, overlay, save_png
from ..io.coco import relative_file, write_predictions
from ..io.geojson import (
    QuPathObject,
    cell_features,
    measured_values,
    open_geojson,
    write_geojson,
)
from ..io.imagej import write_roi_zip
from ..io.images import IMAGE_SUFFIXES
from ..io.label_stack import write_label_stack
from ..io.names import unique_names
from ..io.parquet import open_table, table_row
from ..io.polygons import geojson_geometry
from ..io.slides import OPENSLIDE_SUFFIXES, is_slide
from .paste import probability_maps
from .segmenter import Segmenter
from .settings import Exports, InferenceSettings
from .slides import SlideRun, level0

INPUT_SUFFIXES = (*IMAGE_SUFFIXES, ".svs", *OPENSLIDE_SUFFIXES)


@dataclass
class InputReport:
    """What became of one input: its output name, the files written for it, its cells and
    nuclei, the seconds it took and, when it failed, the problem (one line). A slide's
    report also says how it was read (`slide`: level, scale, tiles run)."""

    path: str
    name: str
    outputs: list[str] = field(default_factory=list)
    cells: int = 0
    nuclei: int = 0
    seconds: float = 0.0
    problem: str | None = None
    slide: dict | None = None


@dataclass
class Report:
    """Every input's `InputReport`, in input order, the shared files written and, with
    --diameter auto, the typical cell diameter estimated for the images (slides say their own)."""

    inputs: list[InputReport]
    outputs: list[str] = field(default_factory=list)
    diameter: float | None = None

    @property
    def failures(self) -> list[InputReport]:
        return [item for item in self.inputs if item.problem is not None]


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns, in the order given."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if any(ch in item for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
            if not matches:
                raise DonetError(item, "the pattern matches no file")
            found += [p for p in matches if p.is_file()]
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in INPUT_SUFFIXES and p.is_file())
        else:
            found.append(path)  # a missing file is reported when it is read
    if not found:
        raise DonetError(None, "no input images")
    return found


def write_exports(result: AnnotatedImage, detection: dict | None, folder: Path, exports: Exports,
                  score_threshold: float, measured: list[dict] | None = None) -> list[str]:
    """The chosen exports of one image (their file names); heatmaps only for an image
    segmented as one tile (`detection` is then its raw detection). `measured`: the image's
    measurement rows, carried into the GeoJSON."""
    name, written = result.name, []

    def path(suffix: str) -> Path:
        written.append(f"{name}{suffix}")
        return folder / written[-1]

    if exports.geojson:
        write_geojson(path(".geojson"), result, measured_values(measured) if measured else None)
    if exports.imagej:
        write_roi_zip(path("_rois.zip"), result)
    if exports.labels:
        write_label_stack(path("_cytoplasm_layers.tif"), result, CellClass.CYTOPLASM)
        write_label_stack(path("_nucleus_layers.tif"), result, CellClass.NUCLEUS)
    if exports.overlay:
        save_png(path("_overlay.png"), overlay(result))
    if exports.heatmaps and detection is not None:
        maps = probability_maps(detection, result.size, score_threshold)
        if maps:
            save_png(path("_heatmaps.png"), heatmap_panel(maps))
        if "attention" in detection:
            save_png(path("_attention.png"), attention_picture(detection["attention"].cpu().numpy()))
    return written


def write_slide(run: SlideRun, name: str, folder: Path, main: bool,
                measure: bool = False) -> tuple[list[str], dict | None]:
    """Stream `run` to `name`.geojson (QuPath) and `name`.parquet (one row per instance) in
    level-0 coordinates, with the measurements when `measure` (in microns too where the
    slide's pixel size is known);
    only the `main` process writes, the others run their tiles. Returns the files written
    and, when measuring, the slide's summary (`data.measurements.summary`)."""
    if not main:
        for _ in run:
            pass
        return [], None
    overlaps, pending, summarised = CellOverlaps(), [], []
    with open_geojson(folder / f"{name}.geojson") as geojson, open_table(folder / f"{name}.parquet") as table:

        def flush(entry) -> None:
            cell, nuclei, crops, values = entry
            measured = {}
            if measure:
                cell_crop = crops[cell.number] if cell else None
                found = measure_cell(name, cell_crop, [crops[n.number] for n in nuclei], lambda c: values[c.id],
                                     overlaps.pop(cell.number) if cell else None, run.mpp)
                measured = {row["id"]: row for row in found}
                summarised.extend({k: row[k] for k in ("class", "nc_ratio", "nuclei", "overlapping_cells")}
                                  for row in found)
            outlines = []
            for item in ([cell] if cell else []) + nuclei:
                crop = crops[item.number]
                table.add(table_row(item.number, item.piece.category.name.lower(), item.parent, item.piece.score,
                                    crop.x, crop.y, crop.mask, measured.get(item.number)))
                origin = (item.piece.x, item.piece.y)
                outlines.append(QuPathObject(item.number, geojson_geometry(item.piece.mask, origin, run.downsample),
                                        item.piece.score))
            geojson.add(cell_features(name, outlines[0] if cell else None, outlines[1:] if cell else outlines,
                                      measured_values(measured.values()) if measured else None))

        for cell, nuclei in run:
            items = ([cell] if cell else []) + nuclei
            crops, values = {}, {}
            for item in items:
                x, y, mask = level0(item, run.downsample)
                crops[item.number] = Crop(item.number, item.piece.category, y, x, mask, item.piece.score, item.parent)
                if measure:  # read now: the slide is open only while it is being iterated
                    piece = item.piece
                    region = run.level[piece.y:piece.y + piece.mask.shape[0], piece.x:piece.x + piece.mask.shape[1]]
                    values[item.number] = intensity(region)[piece.mask]
            if measure and cell:
                overlaps.add(crops[cell.number])
            pending.append((cell, nuclei, crops, values))
            # Cells two tile rows apart never meet (cells are narrower than the overlap). Cells
            # arrive in row order; a nucleus of no cell may come from a later row, so only a
            # cell moves the row on.
            if cell:
                row = cell.piece.tile[0]
                while pending and (pending[0][0] is None or pending[0][0].piece.tile[0] <= row - 2):
                    flush(pending.pop(0))
        for entry in pending:
            flush(entry)
    return [f"{name}.geojson", f"{name}.parquet"], summary(summarised) if measure else None


def segment_files(segmenter: Segmenter, paths: list[Path], folder: Path, exports: Exports,
                  on_input: Callable[[InputReport], None] | None = None,
                  on_tiles: Callable[[int, int], None] | None = None,
                  on_estimate: Callable[[int, int], None] | None = None) -> Report:
    """Segment every file into `folder` (the settings go to settings.json, COCO predictions
    of ordinary images to predictions.json, slides' reports to slides.json) and report what
    became of each. Whole slides (see `io.slides.is_slide`) are streamed to GeoJSON and
    Parquet. Under torchrun each process takes its share of the images and of each slide's
    tiles, and process 0 writes the shared files. `on_input` hears of each input as it is
    done (once, on process 0); `on_tiles(done, total)` follows a slide's tiles and
    `on_estimate(done, total)` the images or tiles of a `--diameter auto` estimate."""
    processes = segmenter.processes
    names = unique_names(paths)
    reports = [InputReport(str(path), name) for path, name in zip(paths, names)]
    slides = [i for i, path in enumerate(paths) if is_slide(path)]
    # Ordinary images are dealt round-robin over the processes; every process runs every slide.
    mine = [i for i in range(len(paths)) if i not in slides and i % processes.world == processes.rank]

    def heard(report: InputReport) -> None:
        if on_input and processes.main:
            on_input(report)

    # With --diameter auto one diameter for all the images, found by all processes on a sample of them.
    settled = segmenter.settled_on([path for i, path in enumerate(paths) if i not in slides], on_estimate)
    found = _segment_images(settled, [paths[i] for i in mine], [reports[i] for i in mine], folder, exports, heard)
    for index in slides:
        _segment_slide(segmenter, paths[index], reports[index], folder, exports, on_tiles, on_estimate)
        heard(reports[index])
    # Every process learns what became of each input; process 0 alone, which writes the shared
    # files, receives the others' instances.
    for rank, theirs in enumerate(processes.all_gather([(i, reports[i]) for i in mine])):
        if rank != processes.rank:
            for index, item in theirs:
                reports[index] = item
                heard(item)
    parts = processes.gather(found)
    report = Report(reports, diameter=settled.set_diameter)
    if processes.main and len(report.failures) < len(reports):
        _write_shared(report, folder, segmenter.settings, exports, _Found.merged(parts, names),
                      [reports[i] for i in slides])
    return report


@dataclass
class _Found:
    """What ordinary images gave, by output name, for the shared files: their instances and
    sizes (COCO), files (relative to the output folder, as COCO tools resolve them) and
    measurements."""

    instances: dict[str, list] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    measured: dict[str, list] = field(default_factory=dict)

    @classmethod
    def merged(cls, parts: list[_Found], names: list[str]) -> _Found:
        """The processes' parts as one, in input order."""
        return cls(*({name: getattr(part, key)[name] for name in names for part in parts
                      if name in getattr(part, key)} for key in ("instances", "sizes", "files", "measured")))


def _segment_images(segmenter: Segmenter, paths: list[Path], reports: list[InputReport], folder: Path,
                    exports: Exports, heard: Callable[[InputReport], None]) -> _Found:
    """Each ordinary image's own exports, its report filled in; what the shared files need."""
    settings, found = segmenter.settings, _Found()
    for path, report, done in zip(paths, reports, segmenter.segment_many(paths, [r.name for r in reports])):
        report.seconds, report.problem = round(done.seconds, 3), done.problem
        if done.result is not None:
            result = done.result
            measured = measure(result, settings.mpp) if exports.measure else None
            report.outputs = write_exports(result, done.detection, folder, exports, settings.score_threshold,
                                           measured)
            report.cells, report.nuclei = _counts(result)
            found.instances[result.name], found.sizes[result.name] = result.instances, result.size
            found.files[result.name] = relative_file(path, folder)
            if measured is not None:
                found.measured[result.name] = measured
        heard(report)
    return found


def _segment_slide(segmenter: Segmenter, path: Path, report: InputReport, folder: Path, exports: Exports,
                   on_tiles: Callable[[int, int], None] | None, on_estimate: Callable[[int, int], None] | None) -> None:
    """A whole slide streamed to its files, its report filled in (a slide's problem, which
    every process meets, goes in the report; a lost process stops the run)."""
    run = segmenter.segment_slide(path, progress=on_tiles, estimating=on_estimate)
    try:
        report.outputs, measured = write_slide(run, report.name, folder, segmenter.processes.main, exports.measure)
        report.slide = run.report()
        if measured is not None:
            report.slide["measurements"] = measured
        report.cells, report.nuclei, report.seconds = report.slide["cells"], report.slide["nuclei"], run.seconds
    except ProcessLost as exc:
        raise ProcessLost(path, exc.problem) from None
    except DonetError as exc:
        report.problem = str(exc)


def _write_shared(report: Report, folder: Path, settings: InferenceSettings, exports: Exports, found: _Found,
                  slides: list[InputReport]) -> None:
    """Process 0's files for the whole run: the settings, COCO predictions and measurement
    tables of the ordinary images, and the slides' reports."""
    recorded = settings.model_dump(mode="json")
    if settings.diameter == "auto":
        recorded["estimated_diameter"] = report.diameter
    write_text_atomic(folder / "settings.json", json.dumps(recorded, indent=2))
    report.outputs.append("settings.json")
    if exports.coco and found.instances:
        write_predictions(folder / "predictions.json", found.instances, found.sizes, found.files)
        report.outputs.append("predictions.json")
    if found.measured:
        write_csv(folder / "measurements.csv", [row for rows in found.measured.values() for row in table_rows(rows)])
        write_csv(folder / "measurements_summary.csv", [{"image": name, **summary(rows)}
                                                        for name, rows in found.measured.items()],
                  columns=("image", *SUMMARY_COLUMNS))
        report.outputs += ["measurements.csv", "measurements_summary.csv"]
    if slides:
        write_text_atomic(folder / "slides.json", json.dumps({item.name: item.slide for item in slides
                                                              if item.slide is not None}, indent=2))
        report.outputs.append("slides.json")


def _counts(result: AnnotatedImage) -> tuple[int, int]:
    cells = sum(i.category is CellClass.CYTOPLASM for i in result.instances)
    return cells, len(result.instances) - cells
