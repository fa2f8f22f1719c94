"""Are nuclei drawn alike in train45 and test90? Nucleus areas against the truth in each set,
beside the nucleus the image itself draws.

    python benchmarks/nucleus_annotation.py --model runs/v2_holdout_3200_s0/model.safetensors \
        --out benchmarks/results/nucleus_annotation.json

With a model trained on the 36 training images of the train45 split (`default_model.py
--holdout`), for the 9 held-out images and for test90, neither seen by it: each predicted
nucleus (score >= 0.5) matched one to one to a true one (mask IoU >= 0.5), the median and
10th/90th percentiles of predicted area / true area, and the same for the image's own
nucleus: Otsu's threshold of the gray levels within the predicted nucleus grown by 4 px, the
dark component under the prediction, holes filled. If the image-drawn nucleus keeps the
same ratio to the truth in both sets while the model's does not, the model reads the
images differently; if both ratios move together, the annotations were drawn differently.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from default_model import DATA, holdout_split
from provenance import provenance  # benchmarks/ is on the path when run as a script
from scipy import ndimage
from skimage.filters import threshold_otsu

from donet.data import CellClass
from donet.evaluation.matching import Pairs, optimal_matches
from donet.evaluation import model_predictions
from donet.io import open_dataset
from donet.modeling.weights import load_model

GROW = 4  # pixels around the predicted nucleus where the image's threshold is found


def image_nucleus(gray: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The dark blob under `predicted` as the image's gray levels draw it."""
    region = ndimage.binary_dilation(predicted, iterations=GROW)
    dark = region & (gray <= threshold_otsu(gray[region]))
    labels, _ = ndimage.label(dark)
    under = np.bincount(labels[predicted & (labels > 0)])
    if under.size < 2:
        return predicted
    return ndimage.binary_fill_holes(labels == under[1:].argmax() + 1)


def ratios(truth, found) -> dict:
    model, image = [], []
    for sample in truth:
        gray = sample.image.astype(np.float32)
        gray = gray.mean(axis=-1) if gray.ndim == 3 else gray
        true = [i for i in sample.instances if i.category is CellClass.NUCLEUS]
        predicted = [i for i in found[sample.name] if i.category is CellClass.NUCLEUS and i.score >= 0.5]
        pairs = Pairs.of([p.rle for p in predicted], [t.rle for t in true])
        for p, t in optimal_matches(np.where(pairs.iou >= 0.5, pairs.iou, 0), 0.5 - 1e-9):
            model.append(predicted[p].area / true[t].area)
            image.append(image_nucleus(gray, predicted[p].mask).sum() / true[t].area)

    def summary(values):
        return {"median": float(np.median(values)), "q10": float(np.quantile(values, 0.1)),
                "q90": float(np.quantile(values, 0.9))}

    return {"matched": len(model), "predicted_over_true": summary(model), "image_drawn_over_true": summary(image)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="trained on the train45 split's 36 images")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    sets = {"train45 split, held-out 9": holdout_split(open_dataset(DATA / "isbi2014_train"))[1],
            "test90": list(open_dataset(DATA / "isbi2014_test"))}
    results = {**provenance(), "model": str(args.model)}
    for name, truth in sets.items():
        started = time.perf_counter()
        results[name] = {**ratios(truth, model_predictions(model, truth, "cpu")),
                         "seconds": round(time.perf_counter() - started, 1)}
        print(name, json.dumps(results[name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
