"""Inference-time levers for mask precision, measured on the train45 split (never on test90):
the mask threshold (the same for cells and nuclei here), and the scale the model sees the
image at.

    python benchmarks/inference_levers.py --model runs/cpu_holdout/model.safetensors \
        --out benchmarks/results/inference_levers_cpu_holdout.json [--thresholds 0.3 0.4 ...] [--scales 1.0 1.25 ...]

The model must have been trained on the split's 36 images (`default_model.py --holdout`);
every setting is scored (COCO segm mAP per class, AP75 for nuclei) on the 9 held-out images.
A scale s is `--diameter cell_diameter / s`: the image is enlarged s times. Each setting is
printed as it is scored; --out gets them all with the command, commit, packages and machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from default_model import DATA, holdout_split
from provenance import provenance  # benchmarks/ is on the path when run as a script

from donet.evaluation import evaluate, model_predictions
from donet.io import open_dataset
from donet.modeling.weights import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.25, 1.5])
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_model(args.model)
    _, held_out = holdout_split(open_dataset(DATA / "isbi2014_train"))
    settings = [(t, 1.0) for t in args.thresholds] + [(0.5, s) for s in args.scales if s != 1.0]
    results = {**provenance(), "model": str(args.model), "settings": []}
    for threshold, scale in settings:
        started = time.perf_counter()
        found = model_predictions(model, held_out, "cpu", mask_threshold=threshold, nucleus_mask_threshold=threshold,
                                  diameter=model.config.cell_diameter / scale)
        classes = evaluate(held_out, found)["classes"]
        results["settings"].append({
            "mask_threshold": threshold, "scale": scale,
            **{f"{c} mAP": round(100 * classes[c]["coco"]["ap"], 2) for c in ("cytoplasm", "nucleus")},
            "nucleus AP75": round(100 * classes["nucleus"]["coco"]["ap75"], 2),
            "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(results["settings"][-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
