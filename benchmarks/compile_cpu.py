"""Would `torch.compile` (inductor) make the CPU forward pass faster?

    python benchmarks/compile_cpu.py --out benchmarks/results/compile_cpu.json

The engine's CPU copy of the shipped model (BatchNorm folded, channels-last; what `donet
predict --device cpu` runs), one 512 x 512 test90 image at a time, eager against:

- its ResNet-18 + FPN compiled by inductor (static shapes: every image here is 512 x 512);
- the whole network compiled, where the heads' varying RoI counts break the graph.

Per image: the backbone + FPN alone and the whole forward pass. The machine's speed drifts
over minutes, so each of `--rounds` rounds times every variant once over the images, and
the medians of the rounds are reported, with the whole pass's speed-up in each round.
Compiling (inductor's cache off, as a first run pays it) is timed apart, over two warm-up
images. Outputs are compared with eager: the FPN levels, and the detections' boxes and mask
probabilities.
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
from torch._inductor import config as inductor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

from donet.inference import Segmenter  # noqa: E402
from donet.io.images import read_image  # noqa: E402
from donet.modeling import image_tensor  # noqa: E402
from donet.modeling.weights import load_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DONET_DATA", REPO.parent / "shared" / "data")) / "isbi2014"


def seconds_per_image(step, inputs) -> float:
    started = time.perf_counter()
    for x in inputs:
        step(x)
    return (time.perf_counter() - started) / len(inputs)


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
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inductor.fx_graph_cache = False  # compile seconds as a first run pays them
    network = Segmenter(load_model(), device="cpu").network
    paths = sorted((DATA / "isbi2014_test" / "orig").glob("*.png"))[:args.images]
    images = [image_tensor(read_image(p)) for p in paths]
    # The backbone's input as the model's transform hands it over: normalised, a batch of one.
    normalised = [network.transform.normalize(x)[None] for x in images]
    results: dict = {**provenance(), "images": len(images), "seconds_per_image": {}, "compile_seconds": {},
                     "max_abs_difference_vs_eager": {}}
    seconds, compiling, difference = (results[k] for k in ("seconds_per_image", "compile_seconds",
                                                           "max_abs_difference_vs_eager"))
    eager_backbone = network.backbone

    def with_backbone(backbone):
        def step(x):
            network.backbone = backbone
            return network([x])[0]
        return step

    variants = {"backbone + FPN, eager": (eager_backbone, normalised),
                "whole network, eager": (with_backbone(eager_backbone), images)}
    with torch.inference_mode():
        for step, inputs in variants.values():
            warmed(step, inputs)
        expected_levels, expected = eager_backbone(normalised[0]), with_backbone(eager_backbone)(images[0])
        try:
            backbone = torch.compile(eager_backbone, dynamic=False)
            compiling["backbone + FPN"] = warmed(backbone, normalised)
            difference["backbone + FPN"] = largest_difference(expected_levels, backbone(normalised[0]))
            difference["whole network, backbone compiled"] = largest_difference(
                expected, with_backbone(backbone)(images[0]))
            variants["backbone + FPN, compiled"] = (backbone, normalised)
            variants["whole network, backbone compiled"] = (with_backbone(backbone), images)
        except Exception as exc:  # a measurement, not a feature: record why it could not run
            seconds["backbone + FPN, compiled"] = f"failed: {str(exc).splitlines()[0][:200]}"
        network.backbone = eager_backbone
        torch._dynamo.utils.counters.clear()  # count the whole network's breaks alone
        try:
            compiled = torch.compile(network)

            def entire(x):
                network.backbone = eager_backbone  # the rounds swap it
                return compiled([x])[0]

            compiling["whole network"] = warmed(entire, images)
            difference["whole network"] = largest_difference(expected, entire(images[0]))
            variants["whole network, compiled"] = (entire, images)
            # Between its graph breaks the network ran eagerly; the reasons say where.
            breaks = torch._dynamo.utils.counters["graph_break"]
            results["whole_network_graph_breaks"] = sum(breaks.values())
            results["graph_break_reasons"] = {reason[:160]: count for reason, count in breaks.most_common(5)}
        except Exception as exc:
            seconds["whole network, compiled"] = f"failed: {str(exc).splitlines()[0][:200]}"
        # The machine's speed drifts over minutes: every variant once a round, medians of the rounds.
        rounds = [{name: seconds_per_image(step, inputs) for name, (step, inputs) in variants.items()}
                  for _ in range(args.rounds)]
    for name in variants:
        seconds[name] = statistics.median(r[name] for r in rounds)
    results["speedup_over_eager_per_round"] = {
        name: [round(r["whole network, eager"] / r[name], 3) for r in rounds]
        for name in variants if name.startswith("whole network") and name != "whole network, eager"}
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
