"""The one-command demo: synthetic data -> training -> prediction -> evaluation -> HTML report.

Needs no data and no network. The budget is sized to finish in a few minutes on two CPU
cores, so the model is far from converged: the report shows the pipeline end to end, not
what DoNet reaches with a real training budget (see benchmarks/README.md for that).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from rich.console import Console
from rich.text import Text

from .atomic import atomic_dir, write_text_atomic
from .data import SynthConfig, generate
from .evaluation import evaluate_model, json_safe
from .figures import overlay, save_png
from .inference import Exports, InferenceSettings, Segmenter, segment_files
from .io import open_dataset, write_dataset
from .modeling.weights import load_model
from .report import write_report
from .training import DataSpec, TrainConfig, train

IMAGE_SIZE = 320
SYNTH = SynthConfig(size=(IMAGE_SIZE, IMAGE_SIZE), cells=(2, 6), cell_radius=(0.1, 0.18), overlap=(0.1, 0.3))


def demo_config(train_path: Path, iterations: int, seed: int) -> TrainConfig:
    return TrainConfig(
        preset="donet", size="light", seed=seed, train=DataSpec(path=str(train_path)),
        model={"min_size": IMAGE_SIZE, "max_size": 2 * IMAGE_SIZE, "anchor_sizes": (16, 32, 64, 128, 256)},
        iterations=iterations, optimizer="adamw", base_lr=1e-3, weight_decay=1e-4,
        warmup_iterations=min(50, iterations // 5), lr_steps=(int(iterations * 0.8),),
        train_scales=(0.9, 1.1, 1.0), vertical_flip=True, clip_grad_norm=10.0,
        checkpoint_period=max(iterations // 4, 1), log_period=5,
    )


def run_demo(out: Path, train_images: int = 32, val_images: int = 6, iterations: int = 400, seed: int = 0,
             device: str = "auto", console: Console | None = None) -> tuple[Path, dict]:
    """Everything under `out` (which must not exist), on `device`; returns the report's path
    and the held-out images' scores."""
    console = console or Console(stderr=True)

    def step(number: int, doing: str) -> None:
        console.print(Text.assemble((f"{number}/5", "bold"), " ", doing))

    with atomic_dir(out) as folder:
        step(1, f"generating {train_images} training and {val_images} held-out "
                f"synthetic images ({IMAGE_SIZE}x{IMAGE_SIZE})")
        for name, count, offset in (("train", train_images, 0), ("val", val_images, 10_000)):
            with atomic_dir(folder / "data" / name) as target:
                write_dataset(target, (generate(offset + i, SYNTH, seed) for i in range(count)))

        step(2, f"training the light DoNet preset from scratch, {iterations} iterations")
        torch.manual_seed(seed)
        summary = train(demo_config(folder / "data" / "train", iterations, seed), folder / "run", console=console,
                        device=device)

        step(3, "predicting the held-out images")
        model = load_model(folder / "run" / "model.safetensors")
        val_dir = folder / "data" / "val" / "images"
        paths = sorted(val_dir.glob("*.png"))
        (folder / "predictions").mkdir()
        report = segment_files(Segmenter(model, InferenceSettings(device=device)), paths, folder / "predictions",
                               Exports(geojson=True, overlay=True, heatmaps=True, measure=True))
        if report.failures:
            raise RuntimeError(f"prediction failed: {report.failures[0].problem}")

        step(4, "evaluating against the ground truth")
        truth = open_dataset(folder / "data" / "val")
        results = evaluate_model(model, truth, device, paper_score_threshold=0.5)
        write_text_atomic(folder / "evaluation.json", json.dumps(json_safe(results), indent=2))

        step(5, "writing the report")
        figures = []
        for sample in list(truth)[:4]:
            save_png(folder / "predictions" / f"{sample.name}_truth.png", overlay(sample))
            figures.append({"caption": sample.name, "images": {
                "ground truth": f"predictions/{sample.name}_truth.png",
                "prediction (score >= 0.5)": f"predictions/{sample.name}_overlay.png",
                "intersection / complement / recombined (Fig. 6)": f"predictions/{sample.name}_heatmaps.png",
                "MRP attention map (Fig. 3)": f"predictions/{sample.name}_attention.png",
            }, "wide": ["intersection / complement / recombined (Fig. 6)"]})
        notes = [
            f"Built-in synthetic data, seed {seed}: {train_images} training images, {val_images} held out.",
            f"Light DoNet preset (ResNet-18 FPN-64) trained from scratch for {summary['iteration']} iterations "
            "on the CPU with AdamW: a demonstration budget, far from convergence. These figures are not "
            "comparable with the paper's (R50-FPN, 60k iterations, GPU, real data).",
            "The paper-protocol and ISBI metrics here use a score threshold of 0.5 (the official 0.9 suits "
            "converged models).",
        ]
        with open(folder / "predictions" / "measurements.csv") as handle:
            ratios = [float(row["nc_ratio"]) for row in csv.DictReader(handle)
                      if row["class"] == "cell" and row["nuclei"] != "0"]
        write_report(folder / "report.html", "donet demo", notes, folder / "run" / "metrics.jsonl", results, figures,
                     ratios)
    return out / "report.html", results
