"""Mask threshold per class, chosen on the train45 split (never on test90).

    python benchmarks/mask_threshold.py --model runs/cpu_holdout/model.safetensors

The model must have been trained on the split's 36 images (`default_model.py --holdout`);
each threshold is scored (COCO segm mAP per class) on the 9 held-out images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from donet.data import open_dataset
from donet.evaluation import evaluate
from donet.inference import InferenceSettings, predict_dataset
from donet.weights import load_model

from default_model import DATA, holdout_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_model(args.model)
    _, held_out = holdout_split(open_dataset(DATA / "isbi2014_train"))
    rows = []
    for threshold in args.thresholds:
        settings = InferenceSettings(score_threshold=0.0, mask_threshold=threshold, device="cpu")
        classes = evaluate(held_out, predict_dataset(model, held_out, settings))["classes"]
        rows.append({"mask_threshold": threshold, **{f"{c} mAP": round(100 * classes[c]["coco"]["ap"], 2)
                                                      for c in ("cytoplasm", "nucleus")},
                     "nucleus AP75": round(100 * classes["nucleus"]["coco"]["ap75"], 2)})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
