"""Synthetic generator throughput: images per second generated in memory, and generated and
written to disk (PNG + COCO JSON), gray and colour.

    python benchmarks/synth_throughput.py --out benchmarks/results/synth_throughput_cpu.json [--n 200] [--size 512 512]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from provenance import provenance  # benchmarks/ is on the path when run as a script

from donet.atomic import atomic_dir
from donet.data import SynthConfig, generate
from donet.io import write_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("HEIGHT", "WIDTH"))
    args = parser.parse_args()
    results = {**provenance(), "n": args.n, "size": list(args.size), "kinds": {}}
    for kind, color in (("gray", False), ("colour", True)):
        config = SynthConfig(size=tuple(args.size), color=color)
        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            in_memory = [generate(i, config, seed=0) for i in range(args.n)]
            generated = time.perf_counter() - start
            start = time.perf_counter()
            with atomic_dir(Path(scratch) / "out") as folder:
                write_dataset(folder, (generate(i, config, seed=0) for i in range(args.n)))
            total = time.perf_counter() - start
        cells = sum(len(s.cells) for s in in_memory)
        results["kinds"][kind] = {"cells": cells, "generate_images_per_second": round(args.n / generated, 1),
                                  "generate_and_write_images_per_second": round(args.n / total, 1)}
        print(f"{args.n} {kind} images {args.size[1]}x{args.size[0]}, {cells} cells: generate "
              f"{args.n / generated:.1f} img/s, generate + write {args.n / total:.1f} img/s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
