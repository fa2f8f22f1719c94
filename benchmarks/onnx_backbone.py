"""Would ONNX Runtime run the backbone + FPN faster than PyTorch on the CPU?

    pip install onnxruntime onnx onnxscript    # not dependencies of donet
    python benchmarks/onnx_backbone.py --out benchmarks/results/onnx_backbone_cpu.json

The shipped model's ResNet-18 + FPN (the part of the forward pass that dominates it), one
512 x 512 test90 image at a time: eager PyTorch as the engine runs it on the CPU (BatchNorm
folded, channels-last) and as the plain model, against the same module exported to ONNX
and run by ONNX Runtime (CPU provider, all graph optimisations, 2 threads). Outputs are
compared level by level.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
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
    for x in inputs[:2]:
        step(x)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for x in inputs:
            step(x)
        times.append((time.perf_counter() - started) / len(inputs))
    return statistics.median(times)


def main() -> None:
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model().eval()
    engine = Segmenter(model, device="cpu").network
    paths = sorted((DATA / "isbi2014_test" / "orig").glob("*.png"))[:args.images]
    # Normalised as the model's transform does it, batch of one.
    inputs = [model.transform.normalize(image_tensor(read_image(p)))[None].contiguous() for p in paths]
    names = list(model.backbone(inputs[0]).keys())
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = Path(scratch) / "backbone.onnx"
        torch.onnx.export(model.backbone, (inputs[0],), str(onnx_path), input_names=["image"], output_names=names,
                          dynamo=True)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            expected = model.backbone(inputs[0])
            got = session.run(None, {"image": inputs[0].numpy()})
            difference = max(float(np.abs(expected[n].numpy() - g).max()) for n, g in zip(names, got))
            results = {
                **provenance(), "images": len(inputs), "max_abs_difference_onnx_vs_eager": difference,
                "seconds_per_image": {
                    "eager, plain model": median_seconds(model.backbone, inputs, args.repeats),
                    "eager, engine's CPU copy (BatchNorm folded, channels-last)":
                        median_seconds(engine.backbone, inputs, args.repeats),
                    "onnxruntime": median_seconds(lambda x: session.run(None, {"image": x.numpy()}), inputs,
                                                  args.repeats),
                },
            }
    seconds = results["seconds_per_image"]
    results["onnxruntime_speedup_over_engine"] = seconds[
        "eager, engine's CPU copy (BatchNorm folded, channels-last)"] / seconds["onnxruntime"]
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
