"""Training-step and inference time of each preset against `maskrcnn` with the same backbone.

    python benchmarks/model_speed.py --out benchmarks/results/model_speed_cpu.json [--repeats 5] [--size light]
        [--image 512] [--threads 2] [--detections 20 100]

Training: batch of 2 synthetic images, SGD step, median of --repeats after 2 warm-up steps.
Inference: one image; every model keeps exactly K detections (`equal_load.py`) so that
presets are compared at the same load: the mask branch's cost grows with K.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from equal_load import keeping  # benchmarks/ is on the path when run as a script
from provenance import provenance

from donet.data import SynthConfig, generate
from donet.modeling import LADDER, build_model, image_tensor, training_target


def median_time(step, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--size", default="light", choices=["light", "paper"])
    parser.add_argument("--image", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--detections", type=int, nargs="+", default=[20, 100])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = SynthConfig(size=(args.image, args.image))
    samples = [generate(i, config, seed=0) for i in range(2)]
    images = [image_tensor(s.image) for s in samples]
    targets = [training_target(s) for s in samples]
    rows = {}
    for preset in LADDER:
        torch.manual_seed(0)
        model = build_model(preset, args.size, min_size=args.image, max_size=args.image)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

        def train_step():
            loss = sum(model(images, targets).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        model.train()
        row = {"train": median_time(train_step, args.repeats)}
        model.eval()
        for k in args.detections:
            keeping(model, k)
            with torch.no_grad():
                row[k] = median_time(lambda: model(images[:1]), args.repeats)
        rows[preset] = row
        print(preset, {key: round(value, 3) for key, value in row.items()}, flush=True)

    base = rows["maskrcnn"]
    header = "| preset | train step (s) | ratio | " + " | ".join(
        f"inference, {k} det. (s) | ratio" for k in args.detections) + " |"
    print(f"\n{args.size} preset, {args.image}x{args.image}, {args.threads} threads, median of {args.repeats}\n")
    print(header)
    print("|" + "---|" * (3 + 2 * len(args.detections)))
    for preset, row in rows.items():
        cells = [f"{row['train']:.3f}", f"{row['train'] / base['train']:.2f}x"]
        for k in args.detections:
            cells += [f"{row[k]:.3f}", f"{row[k] / base[k]:.2f}x"]
        print(f"| {preset} | " + " | ".join(cells) + " |")
    seconds = {preset: {"train_step": round(row["train"], 4),
                        "inference": {str(k): round(row[k], 4) for k in args.detections}} for preset, row in rows.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**provenance(), "size": args.size, "image": args.image, "threads": args.threads,
                                    "repeats": args.repeats, "seconds": seconds}, indent=2) + "\n")


if __name__ == "__main__":
    main()
