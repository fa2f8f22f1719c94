"""Evaluation time for 810 ISBI-sized images with about 10 instances each (every protocol).

    python benchmarks/evaluation_speed.py --out benchmarks/results/evaluation_speed_cpu.json [--images 810]

Ground truth: synthetic 512x512 images (4-6 cells, their nuclei); predictions: every
instance shifted a few pixels with a random score, plus two false positives per image.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from provenance import provenance  # benchmarks/ is on the path when run as a script

from donet.data import Instance, SynthConfig, generate
from donet.evaluation import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--images", type=int, default=810)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    config = SynthConfig(cells=(4, 6), mimics=(0, 0), debris=(0, 0))
    truth, predictions = [], {}
    for index in range(args.images):
        sample = generate(index, config, seed=0)
        truth.append(sample)
        predicted = []
        for inst in sample.instances:
            mask = np.roll(inst.mask, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
            predicted.append(Instance.from_mask(len(predicted) + 1, inst.category, mask, score=float(rng.random())))
        for _ in range(2):
            mask = np.zeros(sample.size, bool)
            y, x = rng.integers(0, 480, 2)
            mask[y:y + 30, x:x + 30] = True
            predicted.append(Instance.from_mask(len(predicted) + 1, predicted[0].category, mask, score=0.95))
        predictions[sample.name] = predicted
    instances = sum(len(s.instances) for s in truth)
    start = time.perf_counter()
    results = evaluate(truth, predictions)
    elapsed = time.perf_counter() - start
    print(f"{args.images} images, {instances} ground-truth instances "
          f"({instances / args.images:.1f} per image): evaluate() took {elapsed:.1f} s; "
          f"cytoplasm mAP {100 * results['classes']['cytoplasm']['coco']['ap']:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**provenance(), "images": args.images, "ground_truth_instances": instances,
                                    "evaluate_seconds": round(elapsed, 2)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
