"""Pictures of the shipped model on test90: the images with the most overlap, and its worst images.

    python benchmarks/default_model_figures.py --compare runs/gpu/maskrcnn_fp16.safetensors --out docs/images

`default_model_overlap.jpg`: the three test90 images whose cells overlap most (share of cell
pixels under two or more cells, from the annotations alone), ground truth beside the shipped
model (and the --compare checkpoint). `default_model_failures.jpg`: the three test90 images
where the shipped model matches the fewest annotated cells (one-to-one, IoU > 0.5), for the model card's
failure cases. Detections scoring at least --score are drawn, each cell in its own colour.

--compare is any checkpoint; the figures in docs/images use runs/gpu/maskrcnn_fp16.safetensors,
the float16 copy of the Mask R-CNN run that `benchmarks/gpu_runs.sh runs/gpu` writes (its
float32 weights: runs/gpu/maskrcnn/model.safetensors, from `python benchmarks/default_model.py
--out runs/gpu/maskrcnn --preset maskrcnn`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from default_model import (
    DATA,  # sibling scripts: the recipe's data, the labelled panels
)
from ladder_overlays import labelled
from PIL import Image
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from donet.data import CellClass
from donet.data.decomposition import coverage
from donet.figures import overlay
from donet.inference import segment
from donet.io import open_dataset
from donet.modeling.weights import load_model


def overlap_share(sample) -> float:
    count = coverage(sample.masks(CellClass.CYTOPLASM))
    return float((count >= 2).sum() / max((count >= 1).sum(), 1))


def matched(sample, result) -> int:
    truth, found = sample.of_class(CellClass.CYTOPLASM), result.of_class(CellClass.CYTOPLASM)
    if not truth or not found:
        return 0
    ious = np.asarray(mask_utils.iou([i.rle for i in found], [i.rle for i in truth], [0] * len(truth)))
    rows, cols = linear_sum_assignment(-ious)  # one-to-one: heavily overlapping cells can share a match
    return int((ious[rows, cols] > 0.5).sum())


def panel(samples, models: dict, score: float, path: Path) -> None:
    rows = []
    for sample in samples:
        cells = len(sample.cells)
        row = [labelled(overlay(sample), f"{sample.name}: ground truth ({cells} cells)")]
        for name, model in models.items():
            result = segment(model, sample.image, sample.name, score_threshold=score)
            row.append(labelled(overlay(result), f"{name}: {len(result.cells)} cells, {matched(sample, result)} "
                                                 f"of {cells} matched"))
        rows.append(np.concatenate(row, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, quality=88)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", type=Path,
                        help="another checkpoint to show beside the shipped model (runs/gpu/maskrcnn_fp16.safetensors)")
    parser.add_argument("--score", type=float, default=0.5)
    parser.add_argument("--out", type=Path, required=True, help="folder for the two pictures")
    args = parser.parse_args()
    torch.set_num_threads(2)
    test90 = open_dataset(DATA / "isbi2014_test")
    samples = [test90[i] for i in range(len(test90))]
    models = {"donet (shipped)": load_model()}
    if args.compare:
        models[args.compare.stem] = load_model(args.compare)
    args.out.mkdir(parents=True, exist_ok=True)
    most_overlap = sorted(samples, key=overlap_share, reverse=True)[:3]
    panel(most_overlap, models, args.score, args.out / "default_model_overlap.jpg")
    shipped = models["donet (shipped)"]
    misses = [len(s.cells) - matched(s, segment(shipped, s.image, s.name, score_threshold=args.score))
              for s in samples]
    worst = [samples[i] for i in np.argsort(misses, kind="stable")[::-1][:3]]
    panel(worst, {"donet (shipped)": shipped}, args.score, args.out / "default_model_failures.jpg")


if __name__ == "__main__":
    main()
