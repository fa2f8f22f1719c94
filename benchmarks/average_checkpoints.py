"""Checkpoint averaging, a training lever that costs no training: the weights of several
checkpoints of one run (for example those of its last learning-rate decay) averaged into one
donet model file, to be scored like any other (`default_model.py --evaluate`).

    python benchmarks/average_checkpoints.py --out runs/avg.safetensors \
        runs/split_seed1_kept/iter_0002900 runs/split_seed1_kept/iter_0003000 ...

BatchNorm's running statistics are averaged with the weights; its batch counters are the
last checkpoint's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from donet.modeling.weights import load_model, read_checkpoint, save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", type=Path, nargs="+", help="checkpoint folders (or model files) of one run")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    files = [c / "model.safetensors" if c.is_dir() else c for c in args.checkpoints]
    model = load_model(files[-1])
    states = [read_checkpoint(f)[0] for f in files]
    averaged = {name: torch.stack([s[name].float() for s in states]).mean(0).to(value.dtype)
                if value.is_floating_point() else value for name, value in model.state_dict().items()}
    model.load_state_dict(averaged)
    save_weights(model, args.out)
    print(f"{args.out}: the mean of {len(files)} checkpoints")


if __name__ == "__main__":
    main()
