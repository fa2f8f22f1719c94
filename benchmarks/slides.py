"""Whole slides: wall time, peak memory and tiles run vs skipped as slides grow, at one cell density.

    python benchmarks/slides.py --out runs/slides --results benchmarks/results/slides.json
        [--sizes 8192 16384 32768 65536] [--processes 1 2]

Writes synthetic JPEG pyramidal OME-TIFFs (0.25 um/px, tile by tile) holding `donet synth`
clusters at the same density as the issue's 16384 x 16384 slide with two clusters, then runs
`donet predict` on each (shipped model, CPU) as its own process, one or several (torchrun),
and records wall time, peak resident memory (of the largest process) and tiles.
The slides and predictions stay under --out (slides already there are reused); the figures,
with the command, commit, packages and machine, go to --results (default OUT/results.json),
and a table to stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from provenance import provenance  # benchmarks/ is on the path when run as a script

from donet.data.synthetic_slide import SyntheticSlide, write_pyramid

CLUSTERS_PER_MEGAPIXEL = 2 / (16384 * 16384 / 1e6)


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of the largest child process."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return time.perf_counter() - started, peak_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384, 32768, 65536])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--results", type=Path, help="result JSON (default: OUT/results.json)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        path = args.out / f"slide{size}.ome.tif"
        if not path.exists():
            started = time.perf_counter()
            write_pyramid(path, SyntheticSlide.scattered(size, size, CLUSTERS_PER_MEGAPIXEL, seed=size))
            print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f} s")
        for processes in args.processes:
            out = args.out / f"predict{size}_{processes}"
            launcher = ([sys.executable, "-m", "donet"] if processes == 1 else
                        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                         "-m", "donet"])
            # Each measurement in a fresh process of its own: ru_maxrss of children is a maximum so far.
            wall, peak = json.loads(subprocess.run(
                [sys.executable, __file__, "--measure", json.dumps(
                    # One tile at a time, as the recorded figures were made (peak memory grows with it).
                    [*launcher, "predict", str(path), "--out", str(out), "--device", "cpu", "--batch-size", "1"])],
                capture_output=True, text=True, check=True).stdout)
            report = json.loads((out / "slides.json").read_text())[path.name.removesuffix(".ome.tif")]
            results.append({"size": size, "processes": processes, "wall_s": round(wall, 1),
                            "peak_rss_mib": round(peak), "tiles": report["tiles"], "tiles_run": report["tiles_run"],
                            "cells": report["cells"], "nuclei": report["nuclei"], "file_mb": round(
                                path.stat().st_size / 1e6)})
            print(json.dumps(results[-1]), flush=True)
    target = args.results or args.out / "results.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({**provenance(), "runs": results}, indent=2) + "\n")
    print("| side | processes | wall s | peak RSS MiB | tiles run / all | cells |")
    for r in results:
        print(f"| {r['size']} | {r['processes']} | {r['wall_s']} | {r['peak_rss_mib']} | "
              f"{r['tiles_run']} / {r['tiles']} | {r['cells']} |")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(run(json.loads(sys.argv[2]))))
    else:
        main()
