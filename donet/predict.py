"""Segmenting image files: reading, tiling large images, and writing the chosen exports."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch

from .atomic import write_text_atomic
from .data.coco import write_predictions
from .data.imageio import IMAGE_SUFFIXES, read_image
from .data.instances import AnnotatedImage, CellClass
from .data.slide import OPENSLIDE_SUFFIXES, is_slide, open_slide
from .distributed import Processes
from .errors import DonetError
from .export.figures import attention_picture, heatmap_panel, overlay, save_png
from .export.imagej import write_roi_zip
from .export.label_stack import write_label_stack
from .export.qupath import write_geojson
from .inference import InferenceSettings, probability_maps, segment_image
from .modeling import DoNet
from .slides import segment_slide

MAX_PIXELS = 2 ** 31  # beyond this a single plane no longer fits the RLE size fields
INPUT_SUFFIXES = (*IMAGE_SUFFIXES, ".svs", *OPENSLIDE_SUFFIXES)


@dataclass(frozen=True)
class Exports:
    coco: bool = True
    geojson: bool = False
    imagej: bool = False
    labels: bool = False
    overlay: bool = False
    heatmaps: bool = False  # Fig. 6 heatmaps and, for MRP models, the Fig. 3 attention map


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DonetError(None, "--device cuda: no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DonetError(None, "--device mps: no MPS device is available")
    return torch.device(name)


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
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in INPUT_SUFFIXES)
        else:
            found.append(path)  # a missing file is reported when it is read
    if not found:
        raise DonetError(None, "no input images")
    return found


def unique_names(paths: list[Path]) -> list[str]:
    """Output names: file names less their suffix (`.ome.tif` whole), numbered when repeated."""
    names, seen = [], {}
    for path in paths:
        stem = path.stem.removesuffix(".ome") if path.suffix.lower() in (".tif", ".tiff") else path.stem
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(stem if count == 0 else f"{stem}_{count + 1}")
    return names


def open_image(path: Path) -> np.ndarray:
    """Pixels; a large uncompressed TIFF is memory-mapped so tiles are read as needed."""
    if path.suffix.lower() in (".tif", ".tiff") and path.is_file():
        try:
            pixels = tifffile.memmap(path, mode="r")
            if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] in (3, 4)):
                return pixels
        except (ValueError, tifffile.TiffFileError, OSError):
            pass  # compressed or unusual layout: read it whole
    pixels = read_image(path)
    if pixels.shape[0] * pixels.shape[1] > MAX_PIXELS:
        raise DonetError(path, f"image of {pixels.shape[1]}x{pixels.shape[0]} pixels is too large")
    return pixels


def write_exports(result: AnnotatedImage, detection: dict | None, folder: Path, exports: Exports,
                  score_threshold: float) -> None:
    """The chosen exports of one image; heatmaps only for an image segmented as one tile
    (`detection` is then its raw detection)."""
    name = result.name
    if exports.geojson:
        write_geojson(folder / f"{name}.geojson", result)
    if exports.imagej:
        write_roi_zip(folder / f"{name}_rois.zip", result)
    if exports.labels:
        write_label_stack(folder / f"{name}_cytoplasm_layers.tif", result, CellClass.CYTOPLASM)
        write_label_stack(folder / f"{name}_nucleus_layers.tif", result, CellClass.NUCLEUS)
    if exports.overlay:
        save_png(folder / f"{name}_overlay.png", overlay(result))
    if exports.heatmaps and detection is not None:
        maps = probability_maps(detection, result.size, score_threshold)
        if maps:
            save_png(folder / f"{name}_heatmaps.png", heatmap_panel(maps))
        if "attention" in detection:
            save_png(folder / f"{name}_attention.png", attention_picture(detection["attention"].cpu().numpy()))


def predict_files(model: DoNet, paths: list[Path], folder: Path, exports: Exports, settings: InferenceSettings,
                  on_image: Callable[[Path, str | None], None] | None = None, mpp: float | None = None,
                  skip_glass: bool = True, processes: Processes | None = None,
                  on_tiles: Callable[[int, int], None] | None = None) -> list[tuple[Path, str]]:
    """Segment every image into `folder` under `settings` (written there as settings.json);
    returns (path, problem) for each image that failed (the others are written regardless).
    Whole slides (see `data.slide.is_slide`) go to `slides.segment_slide`, at `mpp` where the
    file does not say, and are listed in slides.json. With `processes`, each process takes
    its share of the images (and of each slide's tiles) and process 0 writes the shared files.
    `on_tiles(done, total)` follows a slide's tiles."""
    processes = processes or Processes()
    names = unique_names(paths)
    failures, found, sizes, files, reports = [], {}, {}, {}, {}
    for index, (path, name) in enumerate(zip(paths, names)):
        slide = is_slide(path)
        if not slide and index % processes.world != processes.rank:
            continue
        try:
            if slide:
                with open_slide(path, mpp) as opened:
                    reports[name] = segment_slide(model, opened, name, folder, settings, skip_glass, processes,
                                                  on_tiles)
            else:
                pixels = open_image(path)
                instances, detection = segment_image(model, pixels, settings)
                result = AnnotatedImage(name, pixels, instances)
                write_exports(result, detection, folder, exports, settings.score_threshold)
                found[name], sizes[name] = result.instances, result.size
                # Relative to the output folder, as COCO tools resolve file names.
                files[name] = Path(os.path.relpath(path.absolute(), folder.absolute())).as_posix()
            problem = None
        except DonetError as exc:
            problem = str(exc)
            if not slide or processes.main:  # every process meets a slide's problem: count it once
                failures.append((index, path, problem))
        if on_image and (not slide or processes.main):  # a slide is reported once
            on_image(path, problem)
    # Every process learns what all found, in input order; process 0 writes the shared files.
    parts = processes.all_gather((found, sizes, files, failures))
    failures = [(path, problem) for _, path, problem in sorted(f for part in parts for f in part[3])]
    merged = [{name: part[k][name] for part in parts for name in part[k]} for k in range(3)]
    found, sizes, files = ({name: table[name] for name in names if name in table} for table in merged)
    if processes.main and (found or reports):
        write_text_atomic(folder / "settings.json", settings.model_dump_json(indent=2))
        if exports.coco and found:
            write_predictions(folder / "predictions.json", found, sizes, files)
        if reports:
            write_text_atomic(folder / "slides.json", json.dumps(reports, indent=2))
    return failures
