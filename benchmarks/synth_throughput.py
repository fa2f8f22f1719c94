"""Synthetic generator throughput: images per second written to disk (PNG + COCO JSON).

    python benchmarks/synth_throughput.py [--n 200] [--size 512 512]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from donet.atomic import atomic_dir
from donet.data import SynthConfig, generate
from donet.io import write_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512))
    parser.add_argument("--color", action="store_true")
    args = parser.parse_args()
    config = SynthConfig(size=tuple(args.size), color=args.color)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        in_memory = [generate(i, config, seed=0) for i in range(args.n)]
        generated = time.perf_counter() - start
        start = time.perf_counter()
        with atomic_dir(Path(tmp) / "out") as folder:
            write_dataset(folder, (generate(i, config, seed=0) for i in range(args.n)))
        total = time.perf_counter() - start
    cells = sum(len(s.cells) for s in in_memory)
    kind = "colour" if args.color else "gray"
    print(f"{args.n} {kind} images {args.size[1]}x{args.size[0]}, {cells} cells: "
          f"generate {args.n / generated:.1f} img/s, generate + write {args.n / total:.1f} img/s")


if __name__ == "__main__":
    main()
