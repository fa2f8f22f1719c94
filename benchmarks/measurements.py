"""How accurate are the measurements of the shipped model's cells, against the truth and
against the best a one-label-per-pixel tool could do?

    python benchmarks/measurements.py --out benchmarks/results/measurements.json \
        --split-model runs/v2_holdout_3200_s0/model.safetensors

For test90 (unseen in training) and the 9 train45 images of the split (every fifth image),
scored with `--split-model`, trained on the other 36 (`default_model.py --holdout`), or
else with the model, which may have seen them (the shipped one was trained on all of
train45): cell area,
nucleus area and N/C ratio errors of ground-truth cells matched to a predicted cell (IoU >=
0.5, score >= 0.5), all matched cells and overlapped ones (>= 10% under other cells). Beside
them: the ground truth flattened to one label per pixel, and donet's own predictions
flattened the same way (what its output would measure if it were a label image).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_model import holdout_split  # noqa: E402
from provenance import provenance  # noqa: E402

from donet.data import AnnotatedImage  # noqa: E402
from donet.evaluation.measurement_accuracy import flatten, measurement_accuracy  # noqa: E402
from donet.evaluation import model_predictions  # noqa: E402
from donet.io import open_dataset  # noqa: E402
from donet.modeling.weights import load_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DONET_DATA", REPO.parent / "shared" / "data")) / "isbi2014"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="default: the shipped model")
    parser.add_argument("--split-model", type=Path, help="a model trained on the split's other 36 images")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    held_out = holdout_split(open_dataset(DATA / "isbi2014_train"))[1]
    sets = {"test90": (model, list(open_dataset(DATA / "isbi2014_test")))}
    if args.split_model:
        sets["train45 split, held-out 9 (model trained on the other 36)"] = (load_model(args.split_model), held_out)
    else:
        sets["train45 split, held-out 9 (seen in training by the model)"] = (model, held_out)
    results = {**provenance(), "model": str(args.model or "shipped"),
               "split_model": str(args.split_model) if args.split_model else None}
    for name, (set_model, truth) in sets.items():
        started = time.perf_counter()
        found = model_predictions(set_model, truth)
        flat_found = {s.name: flatten(AnnotatedImage(s.name, s.image, [i for i in found[s.name] if i.score >= 0.5]))
                      for s in truth}
        results[name] = {"donet": measurement_accuracy(truth, found),
                         "donet_flattened": measurement_accuracy(truth, flat_found)["predicted"],
                         "seconds": round(time.perf_counter() - started, 1)}
        print(name, json.dumps(results[name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
