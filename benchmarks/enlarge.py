"""Bicubic against bilinear enlargement of images whose cells are smaller than the model's.

    python benchmarks/enlarge.py --out benchmarks/results/enlarge_split.json \
        --models runs/split_seed1/model.safetensors runs/split_seed1_kept/iter_0002900/model.safetensors

The train45 split's 9 held-out images, shrunk by each `--factors` (as diameter_auto.py does),
segmented at their true median cell diameter, so the model enlarges them back to its scale:
with the model's input transform as it is (bicubic, `InputTransform`) and with torchvision's
own resizing (bilinear). Use models that did not train on those images (`--holdout` runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_model import DATA, holdout_split  # noqa: E402
from diameter_auto import rescaled  # noqa: E402
from provenance import provenance  # noqa: E402

from donet.data.stats import median_diameter  # noqa: E402
from donet.evaluation import evaluate, model_predictions  # noqa: E402
from donet.io import open_dataset  # noqa: E402
from donet.modeling.transform import InputTransform  # noqa: E402
from donet.modeling.weights import load_model  # noqa: E402

MODES = ("bilinear", "bicubic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", type=Path, nargs="+", required=True)
    parser.add_argument("--factors", type=float, nargs="+", default=[0.5, 0.6, 0.7])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    held_out = holdout_split(open_dataset(DATA / "isbi2014_train"))[1]
    results = {**provenance(), "images": "train45 held-out 9 (every fifth image), shrunk, at the true diameter",
               "models": {}}
    for path in args.models:
        model, rows = load_model(path), {}
        for factor in args.factors:
            truth = [rescaled(s, factor) for s in held_out]
            diameter = median_diameter(truth)
            for mode in MODES:
                torchvisions = mock.patch.object(InputTransform, "resize", GeneralizedRCNNTransform.resize)
                with torchvisions if mode == "bilinear" else nullcontext():
                    classes = evaluate(truth, model_predictions(model, truth, "cpu", diameter=diameter))["classes"]
                rows.setdefault(str(factor), {})[mode] = {
                    "cytoplasm_map": classes["cytoplasm"]["coco"]["ap"], "nucleus_map": classes["nucleus"]["coco"]["ap"],
                    "cytoplasm_aji": classes["cytoplasm"]["paper"]["aji"]}
            print(path, factor, json.dumps(rows[str(factor)]), flush=True)
        results["models"][str(path)] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
