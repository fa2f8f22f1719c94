"""Does fine-tuning adapt the shipped model to images unlike ISBI 2014, and in what time?

    python benchmarks/finetune_shift.py --work runs/finetune_shift --out benchmarks/results/finetune_shift.json

A shifted domain made from train45: 2x2 mosaics of its images (1024 x 1024), rescaled by 0.8
(cells about 108 px across instead of 135), blurred, tinted like a Papanicolaou stain
(colour instead of gray), with sensor noise and unannotated debris; 11 frames, seeded. Four
frames are the annotated images a lab would correct; the other seven are scored. Compared:

- the shipped model as it is;
- the shipped model fine-tuned on the 4 frames (`donet train --init default`, the fine-tune
  schedule as it stands: every option at its default);
- a model trained from scratch on the same 4 frames for as many iterations (the light
  recipe otherwise).

Reported for each: cytoplasm and nucleus mAP, F1 and AJI (paper protocol) at the paper's
score threshold (0.9) and at 0.5, and minutes of `donet train` (a fresh process, start-up
included) on this machine. The shipped model
was trained on all of train45, so the frames' cells were seen in training, unshifted: the
comparison measures adaptation to the shift, not accuracy on new cells. For new cells,
`--frames split --model runs/v2_holdout_3200_s0/model.safetensors` shifts the 9 held-out
images of the train45 split one by one (512 px; 4 tuned on, 5 scored) and starts from the
split model, which has not seen them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.transform import rescale

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_model import holdout_split  # noqa: E402
from provenance import provenance  # noqa: E402

from donet.atomic import atomic_dir  # noqa: E402
from donet.data import AnnotatedImage, Instance  # noqa: E402
from donet.data.instances import encode_mask  # noqa: E402
from donet.evaluation import evaluate_model  # noqa: E402
from donet.io import open_dataset, write_dataset  # noqa: E402
from donet.modeling.weights import load_model  # noqa: E402
from donet.training import TrainConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DONET_DATA", REPO.parent / "shared" / "data")) / "isbi2014"
SCALE, TUNED = 0.8, 4
ARMS = ("fine-tuned", "from scratch")


def mosaic(samples: list[AnnotatedImage], name: str) -> AnnotatedImage:
    """Four 512 x 512 images side by side, their instances moved with them."""
    side = samples[0].size[0]
    image = np.zeros((2 * side, 2 * side), np.uint8)
    instances = []
    for k, sample in enumerate(samples):
        y, x = side * (k // 2), side * (k % 2)
        image[y:y + side, x:x + side] = sample.image if sample.image.ndim == 2 else sample.image.mean(-1)
        first = len(instances)
        for inst in sample.instances:
            mask = np.zeros(image.shape, bool)
            mask[y:y + side, x:x + side] = inst.mask
            parent = None if inst.parent is None else first + inst.parent
            instances.append(Instance(first + inst.id, inst.category, encode_mask(mask), parent))
    return AnnotatedImage(name, image, instances)


def shift(sample: AnnotatedImage, rng: np.random.Generator, scale: float = SCALE) -> AnnotatedImage:
    """The frame rescaled, blurred, Pap-tinted, noisy and with debris; masks rescaled alike."""
    gray = rescale(sample.image.astype(np.float32) / 255, scale, anti_aliasing=scale < 1)
    gray = ndimage.gaussian_filter(gray, 1.2)
    for _ in range(int(rng.integers(20, 40))):  # debris: small dark specks, not cells
        cy, cx = rng.uniform(0, gray.shape[0]), rng.uniform(0, gray.shape[1])
        radius = rng.uniform(2, 7)
        rows, cols = np.ogrid[:gray.shape[0], :gray.shape[1]]
        gray[(rows - cy) ** 2 + (cols - cx) ** 2 < radius ** 2] *= rng.uniform(0.3, 0.6)
    dark = np.array([60, 35, 110]) + rng.normal(0, 10, 3)  # hematoxylin-blue nuclei
    light = np.array([245, 215, 225]) + rng.normal(0, 5, 3)  # eosin-pink background
    colour = dark + (light - dark) * gray[..., None]
    colour += rng.normal(0, 6, colour.shape)
    pixels = colour.clip(0, 255).astype(np.uint8)
    instances = []
    for inst in sample.instances:
        mask = rescale(inst.mask.astype(np.float32), scale, order=1) > 0.5
        if mask.any():
            instances.append(Instance(inst.id, inst.category, encode_mask(mask), inst.parent))
    ids = {i.id for i in instances}
    for inst in instances:  # a nucleus whose cell vanished in rescaling stands alone
        if inst.parent is not None and inst.parent not in ids:
            inst.parent = None
    return AnnotatedImage(sample.name, pixels, instances)


def scores(model, frames: list[AnnotatedImage]) -> dict:
    figures = {}
    for threshold in (0.9, 0.5):
        results = evaluate_model(model, frames, device="cpu", paper_score_threshold=threshold)["classes"]
        if threshold == 0.9:
            figures |= {"cyto_map": results["cytoplasm"]["coco"]["ap"], "nuc_map": results["nucleus"]["coco"]["ap"]}
        figures |= {f"cyto_f1_at_{threshold}": results["cytoplasm"]["paper"]["f1"],
                    f"cyto_aji_at_{threshold}": results["cytoplasm"]["paper"]["aji"],
                    f"nuc_f1_at_{threshold}": results["nucleus"]["paper"]["f1"]}
    return {k: round(100 * v, 2) for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the frames and the two runs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, help="the model to start from (default: the shipped one)")
    parser.add_argument("--frames", choices=["mosaics", "split"], default="mosaics",
                        help="2x2 mosaics of all train45, or the split's 9 held-out images one by one")
    parser.add_argument("--frame-scale", type=float, default=SCALE,
                        help="the shift's rescaling (1.0: mosaics stay 1024 x 1024, the fine-tune schedule's time bar)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    train45 = list(open_dataset(DATA / "isbi2014_train"))
    if args.frames == "split":
        frames = [shift(sample, rng, args.frame_scale) for sample in holdout_split(train45)[1]]
        described = f"the train45 split's {len(frames)} held-out images, shifted ({frames[0].size[1]} px)"
    else:
        frames = [shift(mosaic(train45[4 * k:4 * k + 4], f"frame{k:02d}"), rng, args.frame_scale)
                  for k in range(len(train45) // 4)]
        described = f"{len(frames)} shifted 2x2 mosaics of train45 ({frames[0].size[1]} px)"
    tuned_on, scored = frames[:TUNED], frames[TUNED:]
    # A --work folder is resumed only with the frames it was made for.
    made_for = {"frames": args.frames, "frame_scale": args.frame_scale, "seed": args.seed}
    if not (args.work / "tune").is_dir():
        with atomic_dir(args.work / "tune") as folder:
            write_dataset(folder, tuned_on)
        (args.work / "frames.json").write_text(json.dumps(made_for))
    elif not (args.work / "frames.json").is_file() or json.loads((args.work / "frames.json").read_text()) != made_for:
        raise SystemExit(f"{args.work} holds other frames than {made_for}: give another --work")
    results = {**provenance(), "frames": f"{described}, {TUNED} tuned on, {len(scored)} scored",
               "frame_scale": args.frame_scale,
               "model": str(args.model or "shipped"), "seed": args.seed, "arms": {}}
    start = "shipped" if args.model is None else "starting model"
    results["arms"][start] = {**scores(load_model(args.model), scored), "minutes": 0.0}
    print(start, results["arms"][start], flush=True)
    finetune = TrainConfig.of(init=str(args.model or "default"), train={"path": str(args.work / "tune")},
                              seed=args.seed)
    scratch = TrainConfig.of(train={"path": str(args.work / "tune")}, iterations=finetune.iterations, seed=args.seed)
    configs = {"fine-tuned": finetune, "from scratch": scratch}
    for arm in args.arms:
        config, run = configs[arm], args.work / arm.replace(" ", "_")
        config.save(args.work / f"{run.name}.json")
        given = ["--resume"] if (run / "config.json").is_file() else ["--config", str(args.work / f"{run.name}.json")]
        started = time.perf_counter()
        # `donet train` in a fresh process, as a user runs it: start-up included, and nothing
        # left behind by the scoring above.
        subprocess.run([sys.executable, "-m", "donet", "train", "--out", str(run), *given], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        minutes = (time.perf_counter() - started) / 60
        results["arms"][arm] = {**scores(load_model(run / "model.safetensors"), scored), "minutes": round(minutes, 1),
                                "iterations": config.iterations}
        print(arm, results["arms"][arm], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
