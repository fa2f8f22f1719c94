"""Would `torch.compile` (inductor) make the CPU forward pass faster?

    python benchmarks/compile_cpu.py --out benchmarks/results/compile_cpu.json

The engine's CPU copy of the shipped model (BatchNorm folded, channels-last; what `donet
predict --device cpu` runs), one 512 x 512 test90 image at a time, eager against:

- its ResNet-18 + FPN compiled by inductor (static shapes: every image here is 512 x 512);
- the whole network compiled, where the heads' varying RoI counts break the graph.

Per image: the backbone + FPN alone and the whole forward pass, medians of `--repeats`
passes over the images after two warm-up images, compilation time apart. Outputs are
compared with eager: the FPN levels, and the detections' boxes and mask probabilities.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

from donet.inference import Segmenter  # noqa: E402
from donet.io.images import read_image  # noqa: E402
from donet.modeling import image_tensor  # noqa: E402
from donet.modeling.weights import load_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DONET_DATA", REPO.parent / "shared" / "data")) / "isbi2014"


def median_seconds(step, inputs, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for x in inputs:
            step(x)
        times.append((time.perf_counter() - started) / len(inputs))
    return statistics.median(times)


def warmed(step, inputs) -> float:
    """Seconds of the first two calls (compilation, for a compiled module)."""
    started = time.perf_counter()
    for x in inputs[:2]:
        step(x)
    return time.perf_counter() - started


def largest_difference(first: dict, second: dict) -> float:
    """Over every output tensor; infinite where their shapes differ (another number of detections)."""
    worst = 0.0
    for name, tensor in first.items():
        if tensor.shape != second[name].shape:
            return float("inf")
        if tensor.numel():
            worst = max(worst, float((tensor.float() - second[name].float()).abs().max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    network = Segmenter(load_model(), device="cpu").network
    paths = sorted((DATA / "isbi2014_test" / "orig").glob("*.png"))[:args.images]
    images = [image_tensor(read_image(p)) for p in paths]
    # The backbone's input as the model's transform hands it over: normalised, a batch of one.
    normalised = [network.transform.normalize(x)[None] for x in images]
    whole = lambda x: network([x])[0]  # noqa: E731
    results: dict = {**provenance(), "images": len(images), "seconds_per_image": {}, "compile_seconds": {},
                     "max_abs_difference_vs_eager": {}}
    seconds, compiling, difference = (results[k] for k in ("seconds_per_image", "compile_seconds",
                                                           "max_abs_difference_vs_eager"))
    with torch.inference_mode():
        warmed(network.backbone, normalised)
        warmed(whole, images)
        expected_levels, expected = network.backbone(normalised[0]), whole(images[0])
        seconds["backbone + FPN, eager"] = median_seconds(network.backbone, normalised, args.repeats)
        seconds["whole network, eager"] = median_seconds(whole, images, args.repeats)

        eager_backbone = network.backbone
        try:
            network.backbone = torch.compile(eager_backbone, dynamic=False)
            compiling["backbone + FPN"] = warmed(network.backbone, normalised)
            difference["backbone + FPN"] = largest_difference(expected_levels, network.backbone(normalised[0]))
            seconds["backbone + FPN, compiled"] = median_seconds(network.backbone, normalised, args.repeats)
            warmed(whole, images)
            difference["whole network, backbone compiled"] = largest_difference(expected, whole(images[0]))
            seconds["whole network, backbone compiled"] = median_seconds(whole, images, args.repeats)
        except Exception as exc:  # a measurement, not a feature: record why it could not run
            seconds["whole network, backbone compiled"] = f"failed: {str(exc).splitlines()[0][:200]}"
        finally:
            network.backbone = eager_backbone
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()  # count the whole network's breaks alone
        try:
            compiled = torch.compile(network)
            entire = lambda x: compiled([x])[0]  # noqa: E731
            compiling["whole network"] = warmed(entire, images)
            difference["whole network"] = largest_difference(expected, entire(images[0]))
            seconds["whole network, compiled"] = median_seconds(entire, images, args.repeats)
            # Between its graph breaks the network ran eagerly; the reasons say where.
            breaks = torch._dynamo.utils.counters["graph_break"]
            results["whole_network_graph_breaks"] = sum(breaks.values())
            results["graph_break_reasons"] = {reason[:160]: count for reason, count in breaks.most_common(5)}
        except Exception as exc:
            seconds["whole network, compiled"] = f"failed: {str(exc).splitlines()[0][:200]}"
    eager = seconds["whole network, eager"]
    results["speedup_over_eager"] = {name: eager / value for name, value in seconds.items()
                                     if name.startswith("whole network") and isinstance(value, float)}
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
