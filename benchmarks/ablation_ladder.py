"""The paper's ablation ladder on real ISBI 2014 data, at CPU scale, in one command.

    python benchmarks/ablation_ladder.py --out runs/ladder [--iterations 2000] [--seeds 0 1 2] [--cluster-aug 0.5]

Trains `maskrcnn`, `drm`, `drm_crm` and `donet` (light preset; identical budget, data,
augmentation and seed) on $DONET_DATA/isbi2014/isbi2014_train (train45), evaluates each
final checkpoint on isbi2014_test (test90, for reporting only: nothing is chosen on it) with
every metric of `donet evaluate`, and writes `ladder.md` (Table 3/4 layout) and
`ladder.json` under --out. Interrupted, it resumes: finished runs are kept, a stopped run
continues from its last checkpoint. Run it in the background; each rung takes a while on
two cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from provenance import provenance  # benchmarks/ is on the path when run as a script

from donet.atomic import write_text_atomic
from donet.evaluation import evaluate_model, json_safe
from donet.io import open_dataset
from donet.modeling import LADDER, SIZES
from donet.modeling.weights import load_model
from donet.training import ClusterAugmentation, DataSpec, TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DONET_DATA", REPO.parent / "shared" / "data")) / "isbi2014"
COLUMNS = [("coco", "ap", "mAP"), ("paper", "dice", "Dice"), ("paper", "f1", "F1"), ("paper", "aji", "AJI")]


def run_folder(out: Path, preset: str, seed: int) -> Path:
    """Where the ladder under `out` keeps one rung's run (read by ladder_losses / ladder_overlays)."""
    return out / f"{preset}_seed{seed}"


def run_one(out: Path, preset: str, seed: int, iterations: int, cluster_aug: float) -> dict:
    result_path = out / "evaluation.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    config = TrainConfig(
        preset=preset, seed=seed, train=DataSpec(path=str(DATA / "isbi2014_train")),
        cluster_augmentation=ClusterAugmentation(probability=cluster_aug) if cluster_aug else None,
        size="light", iterations=iterations, checkpoint_period=50)
    started = time.perf_counter()
    train(config, out, resume=(out / "config.json").is_file())
    seconds = time.perf_counter() - started
    test90 = open_dataset(DATA / "isbi2014_test")
    results = evaluate_model(load_model(out / "model.safetensors"), test90)
    results["training_seconds_this_session"] = round(seconds, 1)
    results.update(provenance())
    write_text_atomic(result_path, json.dumps(json_safe(results), indent=2))
    return results


def cell(values: list[float | None]) -> str:
    values = [100 * v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def table(results: dict[str, list[dict]], seeds: list[int], iterations: int, cluster_aug: float) -> str:
    schedule = TrainConfig(train=DataSpec(path="-"), size="light", iterations=iterations)
    sizes = [round(scale * SIZES["light"]["min_size"]) for scale in schedule.train_scales]
    augmentation = (f"horizontal flips, shorter side drawn from {sizes}, brightness "
                    f"±{schedule.brightness}, contrast ±{schedule.contrast:.0%}"
                    + (f", cluster augmentor p={cluster_aug}" if cluster_aug else ""))
    lines = [f"Light preset, {iterations} iterations, batch {schedule.batch_size}, {schedule.optimizer} "
             f"lr {schedule.base_lr}, train45 -> test90, seeds {seeds}; augmentation: {augmentation} "
             "(mean ± std over seeds where several).", ""]
    header = "| preset | " + " | ".join(f"{label} cyto | {label} nuc | {label} avg" for _, _, label in COLUMNS) + " |"
    lines += [header, "|---|" + "---|" * (3 * len(COLUMNS))]
    for preset, runs in results.items():
        cells = []
        for protocol, metric, _ in COLUMNS:
            for class_name in ("cytoplasm", "nucleus", "average"):
                cells.append(cell([r["classes"][class_name][protocol][metric] for r in runs]))
        lines.append(f"| {preset} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--presets", nargs="+", default=list(LADDER))
    parser.add_argument("--cluster-aug", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for preset in args.presets:
            run = run_folder(args.out, preset, seed)
            results.setdefault(preset, []).append(run_one(run, preset, seed, args.iterations, args.cluster_aug))
            write_text_atomic(args.out / "ladder.md", table(results, args.seeds, args.iterations, args.cluster_aug))
            write_text_atomic(args.out / "ladder.json", json.dumps(json_safe({**provenance(), **results}), indent=2))
            print(table(results, args.seeds, args.iterations, args.cluster_aug), flush=True)


if __name__ == "__main__":
    main()
