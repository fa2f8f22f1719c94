"""Cells lost where they crowd, measured on the train45 split (never on test90): recall by
clump size and the share of cell masks cut straight by their box, with inference-time levers
aimed at each.

    python benchmarks/crowding.py --model runs/v2_holdout_3200_s0/model.safetensors \
        --out benchmarks/results/crowding_holdout.json

The model must have been trained on the split's 36 images (`default_model.py --holdout`).
Levers are model fields set at load time, for clumps: more proposals and detections kept, a
looser box NMS. The lever for cut masks, `mask_box_margin`, is learnt with the weights: it is
measured by training with it (`default_model.py --holdout --set mask_box_margin=0.1`) and
running this on that model. Each is scored on the 9 held-out images (COCO segm mAP per class, cytoplasm AJI of the paper's
protocol, `donet.evaluation.failure_modes`); the ground truth's own share of straight-cut
masks is the floor (a few annotated cells have a straight side).
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
from donet.evaluation.failure_modes import clipped_share, recall_by_clump_size
from donet.io import open_dataset
from donet.modeling.weights import load_model

LEVERS = {
    "as trained": {},
    "more proposals and detections": {"rpn_pre_nms_top_n_test": 2000, "rpn_post_nms_top_n_test": 1000,
                                      "detections_per_img": 500},
    "box NMS 0.6": {"box_nms_thresh": 0.6},
    "box NMS 0.7": {"box_nms_thresh": 0.7},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--levers", nargs="+", choices=list(LEVERS), default=list(LEVERS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, held_out = holdout_split(open_dataset(DATA / "isbi2014_train"))
    model_config = load_model(args.model).config
    results = {**provenance(), "model": str(args.model), "evaluated_on": "train45 held-out 9 (every fifth image)",
               "mask_box_margin": model_config.mask_box_margin,
               "truth_clipped": clipped_share(held_out, 0.0), "levers": []}
    for name in args.levers:
        started = time.perf_counter()
        found = model_predictions(load_model(args.model, **LEVERS[name]), held_out, "cpu")
        classes = evaluate(held_out, found)["classes"]
        results["levers"].append({
            "lever": name, "fields": LEVERS[name],
            **{f"{c} mAP": round(100 * classes[c]["coco"]["ap"], 2) for c in ("cytoplasm", "nucleus")},
            "cytoplasm AJI": round(100 * classes["cytoplasm"]["paper"]["aji"], 2),
            "recall_by_clump_size": recall_by_clump_size(held_out, found),
            "clipped": clipped_share(found),
            "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(results["levers"][-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
