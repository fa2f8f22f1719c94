"""The `donet` command: a thin layer over the Python API."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from . import __version__
from .atomic import atomic_dir, write_text_atomic
from .data import ClusterAugmentor, SynthConfig, dataset_stats, generate
from .errors import DonetError
from .evaluation import (
    MAX_DETS,
    PAPER_SCORE_THRESHOLD,
    STANDARD_SCORE_THRESHOLD,
    TABLE_ROWS,
    evaluate,
    json_safe,
    model_predictions,
    table_rows,
)
from .evaluation.measurement_accuracy import MEASUREMENT_COLUMNS, measurement_rows
from .inference.settings import Exports, InferenceSettings
from .io import DataFormat, open_dataset, write_dataset
from .io.coco import read_predictions, relative_files, write_predictions

# torch and everything that needs it are imported inside the commands that run a model, so
# --help, --version and argument errors answer at once.
app = typer.Typer(help="DoNet: instance segmentation of overlapping, translucent cells.",
                  pretty_exceptions_enable=False, no_args_is_help=True, add_completion=False)


def _version(value: bool) -> None:
    if value:
        print(f"donet {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = False) -> None:
    """DoNet: instance segmentation of overlapping, translucent cells."""
data_app = typer.Typer(help="Inspect annotated datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
# Messages and tables carry file names and other programs' errors (gloo's start
# "[/path/pair.cc:561]"): printed as they are, never read as rich markup or :emoji: codes,
# each message on one line however long.
console = Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True)
tables = Console(markup=False, emoji=False)
DEFAULTS, EXPORTS = InferenceSettings(), Exports()  # option defaults are the settings' own


def say_error(problem: str) -> None:
    console.print(Text.assemble(("error:", "red"), " ", problem))


FormatOption = Annotated[Optional[DataFormat], typer.Option("--format", help="Dataset layout (default: detected).")]
ImagesOption = Annotated[Optional[Path], typer.Option(
    "--images", help="Image folder, or the ISBI2014 companion image .mat, when not found beside the annotations.")]


def progress_bar(enabled: bool = True) -> Progress:
    # Off when stderr is no terminal: a log gets the results, not a cleared progress line.
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=not (enabled and console.is_terminal))


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="New folder for images/ and annotations.json (COCO).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images.")] = 100,
    size: Annotated[tuple[int, int], typer.Option(help="Image height and width.")] = (512, 512),
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same dataset.")] = 0,
    cells: Annotated[tuple[int, int], typer.Option(help="Cells per image, low and high.")] = SynthConfig.cells,
    overlap: Annotated[tuple[float, float], typer.Option(
        help="Band of each new cell's area share under earlier cells (ISBI bands: 0 0.1, 0.1 0.2, ...).")
    ] = SynthConfig.overlap,
    translucency: Annotated[Optional[tuple[float, float]], typer.Option(
        help="Synthetic: light passing one cytoplasm layer, in (0, 1). With --from: exponent on the source "
             "cells' transmittance (1 keeps their look). Low and high.")] = None,
    clusters: Annotated[tuple[int, int], typer.Option(help="Clusters per image, low and high.")] = SynthConfig.clusters,
    nuclei: Annotated[bool, typer.Option(help="Draw nuclei.")] = SynthConfig.nuclei,
    mimics: Annotated[tuple[int, int], typer.Option(
        help="Nucleus look-alikes outside cells per image, low and high.")] = SynthConfig.mimics,
    debris: Annotated[tuple[int, int], typer.Option(help="Faint debris per image, low and high.")] = SynthConfig.debris,
    noise: Annotated[float, typer.Option(help="Gaussian noise (fraction of full scale).")] = SynthConfig.noise,
    blur: Annotated[float, typer.Option(help="Gaussian blur sigma in pixels.")] = SynthConfig.blur,
    color: Annotated[bool, typer.Option("--color/--gray", help="Pap-stain colour or grayscale.")] = False,
    source: Annotated[Optional[Path], typer.Option(
        "--from", help="Build clusters from the annotated cells of this dataset instead (cluster augmentor).")
    ] = None,
    source_format: FormatOption = None,
    images: ImagesOption = None,
) -> None:
    """Write a synthetic cytology dataset, procedural or composed from an annotated one's cells."""
    if source is None:
        try:
            config = SynthConfig(size=size, cells=cells, overlap=overlap, clusters=clusters, nuclei=nuclei,
                                 mimics=mimics, debris=debris, noise=noise, blur=blur, color=color,
                                 translucency=translucency or SynthConfig.translucency)
        except ValueError as exc:
            raise DonetError(None, f"bad option: {exc}") from None
        samples = (generate(i, config, seed) for i in range(n))
    else:
        try:
            augmentor = ClusterAugmentor(open_dataset(source, source_format, images), size=size, cells=cells,
                                         overlap=overlap, clusters=clusters, translucency=translucency or (0.8, 1.25))
        except ValueError as exc:
            raise DonetError(source, str(exc)) from None
        rng = np.random.default_rng(seed)
        samples = (augmentor(rng, name=f"cluster_{i:05d}") for i in range(n))
    with atomic_dir(out) as tmp, progress_bar() as bar:
        task = bar.add_task("generating", total=n)
        written = write_dataset(tmp, _advancing(samples, bar, task))
    console.print(f"wrote {written} images to {out}")


def _advancing(items, bar: Progress, task) -> Iterator:
    for item in items:
        yield item
        bar.advance(task)


@data_app.command("stats")
def stats(
    path: Annotated[Path, typer.Argument(help="COCO .json or folder, ISBI2014 folder, or ISBI2014 *_GT.mat.")],
    format: FormatOption = None,
    images: ImagesOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Images, instances per class, cells per image and overlap share of a dataset."""
    dataset = open_dataset(path, format, images)
    with progress_bar() as bar:
        task = bar.add_task("reading", total=len(dataset))
        figures = dataset_stats(dataset, progress=lambda: bar.advance(task))
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    table = Table(title=str(path), show_header=False)
    per_image = figures["cells_per_image"]
    rows = [
        ("images", figures["images"]),
        ("cytoplasm instances", figures["cytoplasm_instances"]),
        ("nucleus instances", f"{figures['nucleus_instances']} ({figures['nuclei_linked_to_a_cell']} linked to a cell)"),
        ("cell pixels under 2+ cells", f"{100 * figures['overlap_share']:.1f}%"),
        ("cells per image", f"{per_image['min']}-{per_image['max']} (median {per_image['median']:g})"),
        ("image sizes", ", ".join(figures["image_sizes"])),
        ("median cell diameter", "-" if figures["median_cell_diameter"] is None
         else f"{figures['median_cell_diameter']:.1f} px"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    tables.print(table)


def _data(path: Path | None, format: DataFormat | None, images: Path | None) -> dict | None:
    """A `training.DataSpec` from a dataset's options; None without the dataset."""
    if path is None:
        return None
    return {"path": str(path), "format": format, "images": None if images is None else str(images)}


def setting(name: str, **option):
    """The option of the inference setting `name`: its help is the setting's own description."""
    return typer.Option(help=InferenceSettings.model_fields[name].description, **option)


DeviceOption = Annotated[str, setting("device")]
PresetOption = Annotated[str, typer.Option(help="maskrcnn, drm, drm_crm or donet (the paper's ablation ladder).")]
SizeOption = Annotated[str, typer.Option(help="light (CPU: ResNet-18, 64-channel FPN, 512 px) or paper (R50-FPN, GPU).")]


@app.command("train")
def train_command(
    out: Annotated[Path, typer.Option(help="Run folder (must not exist, unless --resume).")],
    train: Annotated[Optional[Path], typer.Option(help="Training dataset (any supported layout).")] = None,
    val: Annotated[Optional[Path], typer.Option(help="Validation dataset: periodic segm AP, best checkpoint.")] = None,
    init: Annotated[Optional[str], typer.Option(
        help="Fine-tune: start from 'default' (the model that ships with donet) or a donet model file. Its "
             "architecture and pixel scale are kept; unset options follow the fine-tune schedule (200 iterations, "
             "AdamW 1e-4, crops at the model's scale).")] = None,
    preset: Annotated[Optional[str], typer.Option(
        help="maskrcnn, drm, drm_crm or donet (the paper's ablation ladder; default donet).")] = None,
    size: Annotated[Optional[str], typer.Option(
        help="light (CPU: ResNet-18, 64-channel FPN, 512 px; the default) or paper (R50-FPN, GPU).")] = None,
    iterations: Annotated[Optional[int], typer.Option(
        help="Training iterations (light: 2000; paper: 60000; fine-tuning: 200).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of weights, data order and augmentation.")] = 0,
    lr: Annotated[Optional[float], typer.Option(help="Base learning rate (light: 0.001 with AdamW; paper: 0.001 with SGD).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per step and process.")] = None,
    cluster_aug: Annotated[float, typer.Option(help="Probability of replacing a training image by a synthetic "
                                                    "cluster of its set's cells (0: off).")] = 0.0,
    brightness: Annotated[Optional[float], typer.Option(
        help="Brightness jitter: shift of up to this (images in [0, 1]; default 0.1, 0: the paper's).")] = None,
    contrast: Annotated[Optional[float], typer.Option(
        help="Contrast jitter: factor within 1 ± this (default 0.2, 0: the paper's).")] = None,
    eval_period: Annotated[Optional[int], typer.Option(help="Validate every N iterations (light: a quarter of the run).")] = None,
    checkpoint_period: Annotated[Optional[int], typer.Option(help="Checkpoint every N iterations.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="A config.json instead of the options above.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    device: DeviceOption = DEFAULTS.device,
    train_format: FormatOption = None,
    train_images: ImagesOption = None,
    val_format: Annotated[Optional[DataFormat], typer.Option(help="Validation dataset layout.")] = None,
    val_images: Annotated[Optional[Path], typer.Option(help="Validation images, when not beside the annotations.")] = None,
) -> None:
    """Train a preset; under torchrun --nproc_per_node N, with DDP."""
    from .training import TrainConfig, train as train_model

    if resume:
        run_config = None  # the run's own config.json
    elif config is not None:
        run_config = TrainConfig.load(config)
    elif train is None:
        raise DonetError(None, "give --train DATASET (or --config FILE)")
    else:
        run_config = TrainConfig.of(
            # A model file by its absolute path: config.json must resume from anywhere.
            init=init if init in (None, "default") else str(Path(init).absolute()), preset=preset, size=size,
            seed=seed, iterations=iterations, base_lr=lr, batch_size=batch_size,
            brightness=brightness, contrast=contrast, eval_period=eval_period, checkpoint_period=checkpoint_period,
            train=_data(train, train_format, train_images), val=_data(val, val_format, val_images),
            cluster_augmentation={"probability": cluster_aug} if cluster_aug else None)
    summary = train_model(run_config, out, resume=resume, console=console, device=device)
    validations = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                   if r["kind"] == "validation"]
    if validations:
        last = validations[-1]
        print_results({"classes": last["results"]}, f"validation at iteration {last['iteration']}")
    best = summary["best"]
    console.print(f"trained {out} to iteration {summary['iteration']}"
                  + (f" (resumed at iteration {summary['started']})" if summary["started"] else "")
                  + (f"; best validation segm AP {100 * best['segm_ap']:.2f} at iteration {best['iteration']}"
                     if best["iteration"] else ""))


def print_results(results: dict, title: str) -> None:
    table = Table(title=title)
    for column in ("metric", "cytoplasm", "nucleus", "average"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for row in table_rows(results):
        table.add_row(*row)
    tables.print(table)


def print_measurement_errors(accuracy: dict) -> None:
    table = Table(title=f"measurement error of matched cells (median |relative error|, score >= "
                        f"{accuracy['score_threshold']:g}, overlapped: >= {100 * accuracy['overlapped_from']:.0f}% "
                        "under other cells; flat truth: one label per pixel)")
    for column in MEASUREMENT_COLUMNS:
        table.add_column(column, justify="left" if column == "cells" else "right")
    for row in measurement_rows(accuracy):
        table.add_row(*row)
    tables.print(table)


@app.command("evaluate")
def evaluate_command(
    gt: Annotated[Path, typer.Option(help="Ground-truth dataset (any supported layout).")],
    predictions: Annotated[Optional[Path], typer.Argument(help="Predictions: COCO JSON with scores (donet predict).")] = None,
    model: Annotated[Optional[Path], typer.Option(
        help="Or a checkpoint to run on the ground-truth images (default, without a predictions file: the model "
             "that ships with donet).")] = None,
    device: DeviceOption = DEFAULTS.device,
    gt_format: FormatOption = None,
    gt_images: ImagesOption = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the results as JSON here.")] = None,
    save_predictions: Annotated[Optional[Path], typer.Option(help="With --model: keep its predictions (COCO JSON).")] = None,
    paper_threshold: Annotated[float, typer.Option(help="Score threshold of the paper and ISBI protocols.")] = \
        PAPER_SCORE_THRESHOLD,
    standard_threshold: Annotated[float, typer.Option(help="Score threshold of the standard protocol.")] = \
        STANDARD_SCORE_THRESHOLD,
    max_dets: Annotated[int, typer.Option(help="Detections per image for COCO AP.")] = MAX_DETS,
) -> None:
    """Score predictions (or a checkpoint) against ground truth with every protocol."""
    if predictions is not None and model is not None:
        raise DonetError(None, "give either a predictions file or --model, not both")
    truth = open_dataset(gt, gt_format, gt_images)
    if predictions is None:
        from .modeling.weights import load_model

        with progress_bar() as bar:
            task = bar.add_task("predicting", total=len(truth))
            found = model_predictions(load_model(model), truth, device, progress=lambda: bar.advance(task))
        if save_predictions is not None:
            write_predictions(save_predictions, found, {s.name: s.size for s in truth},
                              relative_files(truth, save_predictions.parent))
    else:
        found = read_predictions(predictions, truth)
    with progress_bar() as bar:
        bar.add_task("evaluating", total=None)
        results = evaluate(truth, found, paper_threshold, standard_threshold, max_dets)
    if out is not None:
        write_text_atomic(out, json.dumps(json_safe(results), indent=2))
    print_results(results, f"{gt} ({results['images']} images)")
    print_measurement_errors(results["measurements"])
    if results["images_without_predictions"]:
        console.print(f"note: {results['images_without_predictions']} ground-truth image(s) had no predictions "
                      "and count as predicted empty")


@app.command("cv")
def cv_command(
    data: Annotated[Path, typer.Argument(help="The annotated dataset to split into folds.")],
    out: Annotated[Path, typer.Option(help="Folder for the folds' runs and cv.json.")],
    folds: Annotated[int, typer.Option(help="Number of folds (the paper: 3 on CPS).")] = 3,
    preset: PresetOption = "donet",
    size: SizeOption = "light",
    iterations: Annotated[Optional[int], typer.Option(help="Training iterations per fold.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the folds and of each run.")] = 0,
    data_format: FormatOption = None,
    images: ImagesOption = None,
    resume: Annotated[bool, typer.Option(help="Keep finished folds and continue an interrupted one.")] = False,
    device: DeviceOption = DEFAULTS.device,
) -> None:
    """k-fold cross-validation: mean and standard deviation of every metric over folds."""
    from .cross_validation import cross_validate
    from .training import TrainConfig

    config = TrainConfig.of(preset=preset, size=size, seed=seed, iterations=iterations,
                            train=_data(data, data_format, images))
    try:
        summary = cross_validate(config, open_dataset(data, data_format, images), folds, out, resume=resume,
                                 device=device)
    except ValueError as exc:
        raise DonetError(data, str(exc)) from None
    table = Table(title=f"{folds}-fold cross-validation of {preset} ({size}) on {data}")
    for column in ("metric", "cytoplasm", "nucleus", "average"):
        table.add_column(column)
    stats = summary["summary"]
    for protocol, metric, label, percent in TABLE_ROWS:
        scale = 100 if percent else 1
        cells = [f"{scale * stats[c][protocol][metric]['mean']:.2f} ± {scale * stats[c][protocol][metric]['std']:.2f}"
                 for c in ("cytoplasm", "nucleus", "average")]
        table.add_row(label, *cells)
    tables.print(table)


@app.command("predict")
def predict_command(
    inputs: Annotated[list[str], typer.Argument(
        help="Image files, folders or glob patterns (PNG, TIFF, JPEG; whole slides: SVS, NDPI, MRXS, OME-TIFF...).")],
    out: Annotated[Path, typer.Option(help="New folder for the outputs.")],
    model: Annotated[Optional[Path], typer.Option(
        help="Checkpoint (.safetensors) from `donet train` or `donet demo` (default: the model that ships with "
             "donet, trained on ISBI 2014).")] = None,
    device: DeviceOption = DEFAULTS.device,
    diameter: Annotated[Optional[str], setting("diameter")] = None,
    score_threshold: Annotated[float, setting("score_threshold")] = DEFAULTS.score_threshold,
    mask_threshold: Annotated[float, setting("mask_threshold")] = DEFAULTS.mask_threshold,
    nucleus_mask_threshold: Annotated[float, setting("nucleus_mask_threshold")] = DEFAULTS.nucleus_mask_threshold,
    tile: Annotated[int, setting("tile")] = DEFAULTS.tile,
    overlap: Annotated[int, setting("overlap")] = DEFAULTS.overlap,
    batch_size: Annotated[Optional[int], setting("batch_size", show_default=False)] = None,
    precision: Annotated[str, setting("precision")] = DEFAULTS.precision,
    workers: Annotated[int, setting("workers")] = DEFAULTS.workers,
    coco: Annotated[bool, typer.Option(help="predictions.json: COCO, RLE masks, scores.")] = EXPORTS.coco,
    geojson: Annotated[bool, typer.Option(help="QuPath GeoJSON per image (cells with nucleusGeometry).")] = \
        EXPORTS.geojson,
    imagej: Annotated[bool, typer.Option(help="ImageJ/Fiji ROI zip per image.")] = EXPORTS.imagej,
    labels: Annotated[bool, typer.Option(help="Per-class label stacks (one plane per overlap layer), TIFF.")] = \
        EXPORTS.labels,
    overlay: Annotated[bool, typer.Option(help="Outline overlay PNG per image.")] = EXPORTS.overlay,
    heatmaps: Annotated[bool, typer.Option(help="Fig. 6 heatmaps and the Fig. 3 attention map (untiled images).")] = \
        EXPORTS.heatmaps,
    measure: Annotated[bool, typer.Option(
        help="measurements.csv (a row per cell: area, perimeter, N/C ratio, overlap...; whole cells, overlaps kept) "
             "and measurements_summary.csv; the values also go into the GeoJSON.")] = EXPORTS.measure,
    mpp: Annotated[Optional[float], setting("mpp")] = None,
    skip_glass: Annotated[bool, setting("skip_glass")] = DEFAULTS.skip_glass,
    focus: Annotated[str, setting("focus")] = DEFAULTS.focus,
    channel: Annotated[Optional[int], setting("channel")] = None,
) -> None:
    """Segment images; overlapping cells stay separate objects in every export.

    Whole slides (SVS, NDPI, MRXS, pyramidal or very large TIFF / OME-TIFF) are read lazily and
    written as NAME.geojson (QuPath) and NAME.parquet (one row per instance) in level-0
    coordinates, with slides.json. Under `torchrun --nproc_per_node N -m donet predict ...` the
    images and each slide's tiles are spread over the processes; the outputs are the same."""
    settings = InferenceSettings.of(score_threshold=score_threshold, mask_threshold=mask_threshold,
                                    nucleus_mask_threshold=nucleus_mask_threshold, tile=tile, overlap=overlap,
                                    diameter=diameter, mpp=mpp, skip_glass=skip_glass, device=device,
                                    batch_size=batch_size, precision=precision, workers=workers, focus=focus,
                                    channel=channel)
    from .distributed import Processes
    from .inference import InputReport, Segmenter, expand_inputs, segment_files
    from .modeling.weights import load_model

    paths = expand_inputs(inputs)
    processes = Processes.from_environment(settings.device)
    segmenter = Segmenter(load_model(model), settings, processes)  # refuses a bad setting before anything is written
    exports = Exports(coco=coco, geojson=geojson, imagej=imagej, labels=labels, overlay=overlay, heatmaps=heatmaps,
                      measure=measure)
    try:
        with processes.output_dir(out) as folder, progress_bar(enabled=processes.main) as bar:
            task = bar.add_task("segmenting", total=len(paths))
            tiles = bar.add_task("slide tiles", visible=False)
            estimating = bar.add_task("estimating the cell diameter", visible=False)

            def done(item: InputReport) -> None:
                if item.problem and len(paths) > 1:  # a lone image's problem is the command's one error line
                    say_error(item.problem)
                bar.advance(task)

            def following(task_id):
                def update(done: int, total: int) -> None:
                    bar.update(task_id, completed=done, total=total, visible=done < total)
                return update

            started = time.perf_counter()
            report = segment_files(segmenter, paths, folder, exports, on_input=done, on_tiles=following(tiles),
                                   on_estimate=following(estimating))
            seconds = time.perf_counter() - started
            failures = report.failures
            if len(failures) == len(paths):  # raising inside the block discards the folder
                if len(paths) == 1:
                    raise DonetError(None, failures[0].problem)
                raise DonetError(out, f"none of the {len(paths)} images could be segmented; nothing was written")
    finally:
        processes.close()
    if processes.main:
        segmented = [item for item in report.inputs if item.problem is None]
        console.print(f"segmented {len(segmented)} of {len(paths)} images into {out}: "
                      f"{sum(item.cells for item in segmented)} cells, {sum(item.nuclei for item in segmented)} "
                      f"nuclei, {seconds:.1f} s")
        images = [item for item in segmented if item.slide is None]
        if settings.diameter == "auto" and images:  # one diameter for the set; slides say their own below
            found = report.diameter
            console.print(f"cell diameter estimated at {found:.0f} px" if found is not None else
                          "cell diameter: no cell was confident enough to estimate it; segmented at the model's "
                          "scale")
        for item in report.inputs:
            if item.slide is not None:
                slide = item.slide
                tiles = f", {slide['tiles_run']} of {slide['tiles']} tiles run" if slide["tiles"] else ""
                console.print(f"{item.name}: level {slide['level']} ({slide['scale_from']}){tiles}, "
                              f"{slide['cells']} cells, {slide['nuclei']} nuclei, {slide['seconds']} s")
                if slide["warning"]:
                    console.print(f"warning: {item.name}: {slide['warning']}")
    if failures:
        raise typer.Exit(1)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="New folder for the demo's data, run, predictions and report.")] = Path(
        "donet-demo"),
    iterations: Annotated[int, typer.Option(help="Training iterations.")] = 400,
    images: Annotated[int, typer.Option(help="Synthetic training images.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the data and the run.")] = 0,
    device: DeviceOption = DEFAULTS.device,
) -> None:
    """The main job on built-in data: synthesize, train, predict, evaluate, report (no data or network needed)."""
    from .demo import run_demo

    report, results = run_demo(out, train_images=images, iterations=iterations, seed=seed, device=device,
                               console=console)
    print_results(results, "demo: held-out synthetic images")
    console.print(f"report: {report}")


def main() -> None:
    try:
        app()
    except DonetError as exc:
        say_error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
