"""Inference throughput: the bare model against everything around it, on CPU or CUDA.

    python benchmarks/throughput.py --out benchmarks/results/throughput_cpu.json [--device cpu] [--images 40]
    python benchmarks/throughput.py --out benchmarks/results/throughput_cuda.json --device cuda --images 90

Shipped model, test90 images ($DONET_DATA/isbi2014/isbi2014_test/orig, 512 x 512), start-up
excluded (the model is loaded and warmed first), one process:

- bare: the plain model's forward pass alone on preloaded tensors, batch 1, 2 and 16;
  also channels-last, and on CUDA bf16/fp16 autocast, `torch.compile`, and the backbone + FPN
  replayed as CUDA graphs (`torch.compile(mode="reduce-overhead")`);
- resnet18: an untrained torchvision ResNet-18 classifier at 512 x 512, batch 1 (a yardstick
  for the forward pass itself); on the CPU also two images at once in two threads, as the
  engine runs a batch there;
- end to end: `segment_files` (what `donet predict` runs: reading PNGs, tiling, pasting,
  RLE, predictions.json) at batch 1, 2 (the default) and 16, and its ratio to the bare
  forward pass; and its cost over ResNet-18's timed in alternation, `--rounds` times on 16
  images, since the machine's speed drifts between minutes;
- slides: an 8192 x 8192 uncompressed TIFF mosaic of test90 images (tiles of 1024) and the
  same mosaic as a JPEG pyramid (`--no-skip-glass`: every tile run), tiles per second, and
  the ratio to the bare batched forward pass on 1024 x 1024 tiles;
- ratios: untrained light and paper presets, DoNet over Mask R-CNN, both keeping 100
  detections (score threshold 0) so the mask branches carry the same load, timed in
  alternating rounds (`--only-ratios`: these alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tifffile
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from equal_load import SIDES, untrained  # noqa: E402
from provenance import provenance  # noqa: E402

from donet.data.synthetic_slide import SyntheticSlide, write_pyramid  # noqa: E402
from donet.inference import Exports, InferenceSettings, Segmenter, segment_files  # noqa: E402
from donet.inference.tiling import Grid  # noqa: E402
from donet.io.images import read_image  # noqa: E402
from donet.modeling import image_tensor  # noqa: E402
from donet.modeling.weights import load_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DONET_DATA", REPO.parent / "shared" / "data")) / "isbi2014"


def timed(step, repeats: int, device: torch.device) -> float:
    """Median seconds of `step` after one warm-up call."""
    step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bare_rate(model, tensors: list[torch.Tensor], batch: int, device, repeats: int, autocast=None) -> float:
    """Images per second of the forward pass alone over `tensors`, `batch` at a time, each at
    its own size (as the engine runs tiles: the model's training scale is 512 px here)."""
    batches = [tensors[i:i + batch] for i in range(0, len(tensors), batch)]
    saved = model.transform.min_size, model.transform.max_size
    model.transform.min_size, model.transform.max_size = (min(tensors[0].shape[-2:]),), max(tensors[0].shape[-2:])

    def run():
        with torch.no_grad(), torch.autocast("cuda", dtype=autocast, enabled=autocast is not None):
            for images in batches:
                model(images)

    try:
        return len(tensors) / timed(run, repeats, device)
    finally:
        model.transform.min_size, model.transform.max_size = saved


def mosaic(images: list[np.ndarray], side: int) -> np.ndarray:
    tiles = side // images[0].shape[0]
    rows = [np.concatenate([images[(r * tiles + c) % len(images)] for c in range(tiles)], axis=1)
            for r in range(tiles)]
    return np.concatenate(rows, axis=0)


def donet_over_maskrcnn(device: torch.device, repeats: int, rounds: int) -> dict:
    """DoNet's forward pass over Mask R-CNN's, untrained, at the same load of 100 detections
    (score threshold 0; DoNet half per stack), light and paper presets. Each round times both
    (median of `repeats`), since the machine's speed drifts; the ratio is the rounds' median."""
    ratios = {}
    for size, side in SIDES.items():
        networks = {preset: untrained(preset, size, 100, device) for preset in ("maskrcnn", "donet")}
        image = torch.rand(3, side, side, device=device)
        times = []
        for _ in range(rounds):
            with torch.no_grad():
                times.append({preset: timed(lambda: network([image]), repeats, device)
                              for preset, network in networks.items()})
        ratios[size] = {"rounds": times,
                        "donet_over_maskrcnn": statistics.median(t["donet"] / t["maskrcnn"] for t in times)}
        print(json.dumps({size: ratios[size]}), flush=True)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds: ResNet-18 against the engine, Mask R-CNN against DoNet")
    parser.add_argument("--slide-side", type=int, default=8192)
    parser.add_argument("--only-ratios", action="store_true", help="time DoNet over Mask R-CNN alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    results: dict = {**provenance(), "device": str(device)}
    if args.only_ratios:
        results["donet_over_maskrcnn"] = donet_over_maskrcnn(device, args.repeats, args.rounds)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        return
    paths = sorted((DATA / "isbi2014_test" / "orig").glob("*.png"))[:args.images]
    pixels = [read_image(p) for p in paths]
    model = load_model().to(device).eval()
    tensors = [image_tensor(image).to(device) for image in pixels]
    results["images"] = len(paths)

    # The forward pass alone, at the engine's input size (512 px images stay 512 px here).
    bare = {f"batch {b}": bare_rate(model, tensors, b, device, args.repeats) for b in (1, 2, 16)}
    model.to(memory_format=torch.channels_last)
    bare["batch 16, channels-last"] = bare_rate(model, tensors, 16, device, args.repeats)
    model.to(memory_format=torch.contiguous_format)
    if cuda:
        for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            bare[f"batch 16, {name}"] = bare_rate(model, tensors, 16, device, args.repeats, dtype)
        compiled = torch.compile(model)
        bare["batch 16, torch.compile"] = bare_rate(compiled, tensors, 16, device, args.repeats)
        # CUDA graphs where shapes are fixed: the backbone and FPN (the heads' RoI counts vary).
        backbone = model.backbone
        try:
            model.backbone = torch.compile(backbone, mode="reduce-overhead")
            bare["batch 16, backbone in CUDA graphs"] = bare_rate(model, tensors, 16, device, args.repeats)
        except Exception as exc:  # a measurement, not a feature: record why it could not run
            bare["batch 16, backbone in CUDA graphs"] = f"failed: {str(exc).splitlines()[0][:200]}"
        finally:
            model.backbone = backbone
    results["bare_images_per_second"] = bare
    resnet = torchvision.models.resnet18().to(device).eval()
    batch = torch.stack(tensors[:1])
    with torch.no_grad():
        results["resnet18_images_per_second"] = 1 / timed(lambda: resnet(batch), 5 * args.repeats, device)
    if not cuda:
        # The yardstick run as the engine runs images on the CPU: two at once in two threads.
        def resnet_alone(count):
            with torch.no_grad():
                for _ in range(count):
                    resnet(batch)

        with ThreadPoolExecutor(2) as pool:
            seconds = timed(lambda: list(pool.map(resnet_alone, [5, 5])), args.repeats, device)
        results["resnet18_two_streams_images_per_second"] = 10 / seconds
    print(json.dumps({"bare": bare, "resnet18": results["resnet18_images_per_second"]}), flush=True)

    # End to end, as `donet predict` runs it (files read, pasted, encoded, written).
    end_to_end = {}
    with tempfile.TemporaryDirectory() as scratch:
        for batch_size in (1, 2, 16):
            settings = InferenceSettings(device=device.type, batch_size=batch_size)
            runner = Segmenter(model, settings)
            seconds = []
            for repeat in range(args.repeats):
                out = Path(scratch) / f"e2e_{batch_size}_{repeat}"
                out.mkdir()
                started = time.perf_counter()
                segment_files(runner, paths, out, Exports())
                if cuda:
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - started)
            end_to_end[f"batch {batch_size}"] = len(paths) / statistics.median(seconds)
        results["end_to_end_images_per_second"] = end_to_end
        results["end_to_end_cost_over_bare"] = {k: bare[k] / v for k, v in end_to_end.items()}
        results["end_to_end_cost_over_resnet18"] = {k: results["resnet18_images_per_second"] / v
                                                   for k, v in end_to_end.items()}
        print(json.dumps({"end_to_end": end_to_end}), flush=True)

        # The bar's ratio in alternation: this machine's speed drifts by up to a quarter from
        # one minute to the next, so each round times ResNet-18 and then the engine on the
        # first 16 images, and the ratio is the median over the rounds.
        runners = {b: Segmenter(model, InferenceSettings(device=device.type, batch_size=b)) for b in (1, 2)}
        rounds = []
        for round_index in range(args.rounds):
            with torch.no_grad():
                resnet_seconds = timed(lambda: resnet(batch), 10, device)
            ratios = {}
            for batch_size, runner in runners.items():
                out = Path(scratch) / f"alternating_{round_index}_{batch_size}"
                out.mkdir()
                started = time.perf_counter()
                segment_files(runner, paths[:16], out, Exports())
                if cuda:
                    torch.cuda.synchronize()
                ratios[f"batch {batch_size}"] = (time.perf_counter() - started) / len(paths[:16]) / resnet_seconds
            rounds.append(ratios)
        results["end_to_end_cost_over_resnet18_alternating"] = {
            "rounds": rounds, "median": {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}}
        print(json.dumps({"alternating": rounds}), flush=True)

        # Slides: a flat TIFF mosaic (tiled as one image) and a JPEG pyramid (read as a slide).
        side = args.slide_side
        flat = Path(scratch) / "mosaic.tif"
        tifffile.imwrite(flat, mosaic(pixels, side))
        pyramid = Path(scratch) / "mosaic.ome.tif"
        fields = side // 512
        rgb = [np.stack([image] * 3, axis=-1) if image.ndim == 2 else image for image in pixels]
        write_pyramid(pyramid, SyntheticSlide(side, side, [((r * 512, c * 512), rgb[(r * fields + c) % len(rgb)])
                                                           for r in range(fields) for c in range(fields)]))
        tile_tensors = [image_tensor(mosaic(pixels, 1024)).to(device)] * 16
        tile_rate = bare_rate(model, tile_tensors, 16, device, 1)
        slides = {"bare 1024 tiles per second, batch 16": tile_rate}
        for name, path in (("flat TIFF", flat), ("JPEG pyramid", pyramid)):
            settings = InferenceSettings(device=device.type, batch_size=16, skip_glass=False)
            out = Path(scratch) / f"slide_{name.replace(' ', '_')}"
            out.mkdir()
            started = time.perf_counter()
            segment_files(Segmenter(model, settings), [path], out, Exports())
            seconds = time.perf_counter() - started
            grid = Grid(side, side, settings.tile, settings.overlap)
            count = len(grid.rows) * len(grid.cols)
            slides[name] = {"seconds": seconds, "tiles": count, "tiles_per_second": count / seconds,
                            "ratio_to_bare": count / seconds / tile_rate}
        results["slides"] = slides
        print(json.dumps({"slides": slides}), flush=True)

    results["donet_over_maskrcnn"] = donet_over_maskrcnn(device, args.repeats, args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
