"""Each loss term of each ladder run, averaged over windows of iterations: are the rungs'
shared terms learned as fast, and is every module's own term still falling?

    python benchmarks/ladder_losses.py --runs runs/ladder --seed 0 --out benchmarks/results/ladder_losses.json
        [--windows 0 100 250 350 500 600]

Reads the `metrics.jsonl` that training writes (one line per logged iteration) and prints a
markdown table: one row per run and term, one column per window (a, b]; --out keeps the same
figures with the command, commit, packages and machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ablation_ladder import run_folder  # sibling script: its run layout
from provenance import provenance  # benchmarks/ is on the path when run as a script


def windowed(metrics: Path, windows: list[tuple[int, int]]) -> dict[str, list[float]]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [row for row in rows if row.get("kind") == "train"]
    terms = [key for key in rows[0] if key.startswith(("loss", "nucleus_loss"))]
    table = {}
    for term in terms:
        table[term] = [float(np.mean([row[term] for row in rows if low < row["iteration"] <= high and term in row]
                                     or [np.nan])) for low, high in windows]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="--out folder of ablation_ladder.py")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="result JSON")
    parser.add_argument("--presets", nargs="+", default=["maskrcnn", "drm", "drm_crm", "donet"])
    parser.add_argument("--windows", type=int, nargs="+", default=[0, 100, 250, 350, 500, 600],
                        help="pairs of iteration bounds: a1 b1 a2 b2 ...")
    args = parser.parse_args()
    windows = list(zip(args.windows[::2], args.windows[1::2]))
    print("| run | term | " + " | ".join(f"iterations {a + 1}-{b}" for a, b in windows) + " |")
    print("|---|---|" + "---|" * len(windows))
    terms = {}
    for preset in args.presets:
        metrics = run_folder(args.runs, preset, args.seed) / "metrics.jsonl"
        if not metrics.is_file():
            continue
        terms[preset] = windowed(metrics, windows)
        for term, values in terms[preset].items():
            print(f"| {preset} | {term} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**provenance(), "runs": str(args.runs), "seed": args.seed, "windows": windows,
                                        "terms": {p: {t: [round(v, 4) for v in values] for t, values in by_term.items()}
                                                  for p, by_term in terms.items()}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
