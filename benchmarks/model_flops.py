"""Floating-point work of one inference pass, DoNet against Mask R-CNN, part by part.

    python benchmarks/model_flops.py --out benchmarks/results/model_flops.json

The same load as `throughput.py`'s ratios (`equal_load.py`): untrained light (512 px) and
paper (800 px) presets, one random image, `--detections` kept in all; and again at an
ISBI-like load. Counted by `torch.utils.flop_counter` (convolutions and matrix products;
RoIAlign, NMS and pasting are not floating-point work it counts). Time follows these counts
only where both models run at one rate and nothing uncounted costs time: the costs they share
uncounted pull the time ratio below the count ratio, and DoNet's extra work cannot take less
time than its count at the device's peak rate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

from equal_load import SIDES, untrained  # noqa: E402

# Where the work goes, by module path under the model (the first that matches). MRP's
# attention map is pasting and sigmoids, which the counter does not count.
PARTS = [("backbone + FPN", ("backbone",)), ("cell RPN", ("rpn",)),
         ("nucleus RPN", ("nucleus_rpn",)), ("cell box head", ("roi_heads.box_head", "roi_heads.box_predictor")),
         ("cell mask branch", ("roi_heads.",)),
         ("nucleus box head", ("nucleus_roi_heads.box_head", "nucleus_roi_heads.box_predictor")),
         ("nucleus mask branch", ("nucleus_roi_heads.",))]


def part_of(module: str) -> str | None:
    for part, prefixes in PARTS:
        if any(module.startswith(prefix) for prefix in prefixes):
            return part
    return None


def counted(preset: str, size: str, detections: int) -> dict:
    network = untrained(preset, size, detections)
    image = torch.rand(3, SIDES[size], SIDES[size])
    counter = FlopCounterMode(display=False, depth=None)
    with torch.no_grad(), counter:
        found = network([image])[0]
    flops = counter.get_flop_counts()
    total = sum(flops["Global"].values())
    # Leaf modules only, so nothing is counted twice; names drop the root's own. Work in no
    # leaf (none so far) is "outside any module".
    leaves = {name.split(".", 1)[1]: sum(ops.values()) for name, ops in flops.items()
              if name != "Global" and "." in name
              and not any(other.startswith(name + ".") for other in flops if other != name)}
    parts: dict[str, float] = {}
    for name, count in leaves.items():
        part = part_of(name) or "other"
        parts[part] = parts.get(part, 0) + count
    parts["outside any module"] = total - sum(leaves.values())
    return {"gflops": total / 1e9, "detections": len(found["boxes"]),
            "parts_gflops": {part: round(count / 1e9, 3) for part, count in parts.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--detections", type=int, nargs="+", default=[100, 20])
    args = parser.parse_args()
    results = {**provenance(), "loads": {}}
    for detections in args.detections:
        load = {}
        for size in SIDES:
            rows = {preset: counted(preset, size, detections) for preset in ("maskrcnn", "donet")}
            rows["donet_over_maskrcnn"] = rows["donet"]["gflops"] / rows["maskrcnn"]["gflops"]
            load[size] = rows
            print(detections, size, json.dumps(rows), flush=True)
        results["loads"][str(detections)] = load
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
