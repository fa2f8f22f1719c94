"""Side-by-side outlines on the same test90 images: ground truth, `maskrcnn`, `donet`.

    python benchmarks/ladder_overlays.py --runs runs/ladder --seed 0 --out docs/images/ladder_overlays.jpg

The images are the test90 images with the most cells (chosen from the annotations, not from
any result); detections scoring at least --score are drawn, each cell in its own colour,
nuclei in white.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from ablation_ladder import DATA, run_folder  # sibling script: same data and run layout
from PIL import Image, ImageDraw

from donet.data import CellClass
from donet.figures import overlay
from donet.inference import segment
from donet.io import open_dataset
from donet.modeling.weights import load_model


def labelled(picture: np.ndarray, text: str) -> np.ndarray:
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 8 + 7 * len(text), 18), fill=(0, 0, 0))
    draw.text((4, 3), text, fill=(255, 255, 255))
    return np.asarray(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="--out folder of ablation_ladder.py")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--presets", nargs="+", default=["maskrcnn", "donet"])
    parser.add_argument("--images", type=int, default=3, help="how many test images")
    parser.add_argument("--score", type=float, default=0.5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    test90 = open_dataset(DATA / "isbi2014_test")
    cells = [sum(i.category is CellClass.CYTOPLASM for i in sample.instances) for sample in test90]
    chosen = sorted(np.argsort(cells, kind="stable")[::-1][:args.images])
    models = {preset: load_model(run_folder(args.runs, preset, args.seed) / "model.safetensors")
              for preset in args.presets}
    rows = []
    for index in chosen:
        sample = test90[int(index)]
        row = [labelled(overlay(sample), f"{sample.name}: ground truth ({cells[index]} cells)")]
        for preset, model in models.items():
            result = segment(model, sample.image, sample.name, score_threshold=args.score)
            found = sum(i.category is CellClass.CYTOPLASM for i in result.instances)
            row.append(labelled(overlay(result), f"{preset}: {found} cells, score >= {args.score}"))
        rows.append(np.concatenate(row, axis=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out, quality=88)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
