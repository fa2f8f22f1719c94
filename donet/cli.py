"""The `donet` command: a thin layer over the Python API."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .atomic import atomic_dir
from .data import ClusterAugmentor, DataFormat, SynthConfig, dataset_stats, generate, open_dataset, write_dataset
from .errors import DonetError

app = typer.Typer(help="DoNet: instance segmentation of overlapping, translucent cells.",
                  pretty_exceptions_enable=False, no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Inspect annotated datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)

FormatOption = Annotated[Optional[DataFormat], typer.Option("--format", help="Dataset layout (default: detected).")]
ImagesOption = Annotated[Optional[Path], typer.Option(
    "--images", help="Image folder, or the ISBI2014 companion image .mat, when not found beside the annotations.")]


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True)


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
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    Console().print(table)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's outputs.")] = Path("donet-demo"),
    n: Annotated[int, typer.Option("--n", min=1, help="Synthetic images to generate.")] = 20,
) -> None:
    """The main job on built-in data: generate the synthetic dataset and describe it."""
    synth(out, n=n)
    stats(out)


def main() -> None:
    try:
        app()
    except DonetError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
