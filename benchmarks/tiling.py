"""Whole-image prediction by tiles: time and peak memory against image size, and tiled vs
one-pass agreement.

    python benchmarks/tiling.py --out benchmarks/results/tiling_cpu.json [--sizes 2048 4096 8192] [--compare 4096]
    python benchmarks/tiling.py --model RUN/model.safetensors --out results.json   # another model

The model is the light DoNet that `donet demo` trains (its synthetic data, seed 0,
--demo-iterations 400: about 6 minutes on two cores), trained first into --work, unless
--model names one. --work (default: a temporary folder, removed at the end) holds that model
and the images; given again, its model is reused.

Each size is a synthetic gray image with the demo's cell sizes (radius 32-58 px), written
as an uncompressed TIFF and predicted in a fresh process (so its peak RSS is its own) with
tiles of 1024 and overlap 320; the TIFF is memory-mapped, so the image is never loaded
whole. `--compare N` also predicts the N x N image in one pass, with the proposal and detection
caps scaled by its area in tiles, and matches its cells with the tiled result (one-to-one,
IoU > 0.5). The figures, the command, commit, packages and machine go to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from provenance import provenance  # benchmarks/ is on the path when run as a script


def make_image(size: int, path: Path) -> int:
    from donet.data import SynthConfig, generate

    # Cell count scales with area so that density stays that of a 320x320 demo image with ~4 cells.
    cells = max(4, int(4 * (size / 320) ** 2 * 0.5))
    config = SynthConfig(size=(size, size), cells=(cells, cells), clusters=(max(1, cells // 5),) * 2,
                         cell_radius=(32 / size, 58 / size), mimics=(cells, cells))
    sample = generate(0, config, seed=0)
    tifffile.imwrite(path, sample.image)
    return len(sample.cells)


def demo_model(work: Path, iterations: int) -> Path:
    """The model `donet demo` trains, under work/demo (trained once; reused when already there)."""
    from donet.demo import run_demo

    model = work / "demo" / "run" / "model.safetensors"
    if not model.is_file():
        run_demo(work / "demo", iterations=iterations)
    return model


def peak_rss_mib() -> float:
    """This process's own peak resident memory. Not getrusage's ru_maxrss: on Linux a child
    inherits the parent's resident size at fork as its starting maximum, so it would report
    the memory the parent used to draw the image."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def child(model: str, image: str, tile: int, overlap: int, out: str, scale_caps: float) -> None:
    import torch

    from donet.inference import Segmenter
    from donet.io.images import open_image
    from donet.modeling.weights import load_model, read_checkpoint

    torch.set_num_threads(2)
    # One pass over a whole large image: proposal and detection caps grow with its area, so
    # that it is compared with what the tiles find, not with a cap.
    config = read_checkpoint(model)[1]
    network = load_model(model, **{name: int(getattr(config, name) * scale_caps) for name in (
        "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test", "detections_per_img")})
    pixels = open_image(Path(image))
    start = time.perf_counter()
    # One tile at a time, as the recorded figures were made (peak memory grows with the batch).
    instances = Segmenter(network, tile=tile, overlap=overlap, batch_size=1).segment(pixels).instances
    elapsed = time.perf_counter() - start
    peak = peak_rss_mib()
    Path(out).write_text(json.dumps({"seconds": elapsed, "peak_mib": peak, "instances": len(instances),
                                     "rles": [{"size": i.rle["size"], "counts": i.rle["counts"].decode(),
                                               "category": int(i.category)} for i in instances]}))


def run_child(model, image, tile, overlap, scale_caps=1.0) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        subprocess.run([sys.executable, __file__, "--child", model, str(image), str(tile), str(overlap), result.name,
                        str(scale_caps)], check=True)
        return json.loads(Path(result.name).read_text())


def agreement(a: list[dict], b: list[dict]) -> tuple[int, int, int]:
    """Cells matched one-to-one at IoU > 0.5, cells only in a, cells only in b."""
    from pycocotools import mask as mask_utils
    from scipy.optimize import linear_sum_assignment

    ra = [{"size": r["size"], "counts": r["counts"].encode()} for r in a if r["category"] == 1]
    rb = [{"size": r["size"], "counts": r["counts"].encode()} for r in b if r["category"] == 1]
    iou = np.asarray(mask_utils.iou(ra, rb, [0] * len(rb))).reshape(len(ra), len(rb))
    rows, cols = linear_sum_assignment(iou, maximize=True)
    matched = int((iou[rows, cols] > 0.5).sum())
    return matched, len(ra) - matched, len(rb) - matched


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:4], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], float(sys.argv[7]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--model", type=Path, help="default: train the demo's model into --work")
    parser.add_argument("--work", type=Path, help="folder for the demo's model and the images (default: temporary)")
    parser.add_argument("--demo-iterations", type=int, default=400)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=320)
    parser.add_argument("--compare", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        model = str(args.model or demo_model(work, args.demo_iterations))
        results = {**provenance(), "model": model if args.model else
                   f"light DoNet trained by `donet demo` (seed 0, {args.demo_iterations} iterations)",
                   "tile": args.tile, "overlap": args.overlap, "sizes": []}
        for size in args.sizes:
            path = work / f"{size}.tif"
            cells = make_image(size, path)
            result = run_child(model, path, args.tile, args.overlap)
            results["sizes"].append({"size": size, "cells_drawn": cells, "instances": result["instances"],
                                     "seconds": round(result["seconds"], 1), "peak_rss_mib": round(result["peak_mib"])})
            print(json.dumps(results["sizes"][-1]), flush=True)
            if args.compare == size:
                one_pass = run_child(model, path, size, 0, scale_caps=(size / args.tile) ** 2)
                matched, only_tiled, only_one_pass = agreement(result["rles"], one_pass["rles"])
                results["one_pass"] = {"size": size, "matched": matched, "only_tiled": only_tiled,
                                       "only_one_pass": only_one_pass, "seconds": round(one_pass["seconds"], 1),
                                       "peak_rss_mib": round(one_pass["peak_mib"])}
                print(json.dumps(results["one_pass"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}; python benchmarks/report.py puts it in the README")


if __name__ == "__main__":
    main()
