"""`--diameter auto` against images at another magnification.

    python benchmarks/diameter_auto.py --out benchmarks/results/diameter_auto.json [--scales 0.5 0.7 1.4 2.0] [--sets test90 split]

test90, the 9 held-out train45 images of the split (every fifth; the shipped model saw
them in training) and, with `--sets composed`, images the cluster augmentor composes from
those 9 images' cells (a larger set to choose on, without test90) are rescaled by each
factor (images bilinear, masks nearest) and segmented by the shipped model (or `--model`)
without a diameter, with each image's own estimate ("auto": `Segmenter.segmented` image by
image, one segmenter for all), with the engine's
`diameter="auto"` over the set ("set": `segment_many`, one diameter for all, the median of
up to 16 images' estimates, spread over the set), and with the true median diameter of the
rescaled cells given by hand ("true"), the set's or each image's own ("own": what a perfect
per-image estimate would give). Reported: cytoplasm and nucleus mAP, and the median ratio of
the estimated to the true diameter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage.transform import rescale

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_model import holdout_split  # noqa: E402
from provenance import provenance  # noqa: E402

from donet.data import AnnotatedImage, ClusterAugmentor, Instance  # noqa: E402
from donet.data.stats import median_diameter  # noqa: E402
from donet.evaluation import evaluate  # noqa: E402
from donet.inference import Segmenter  # noqa: E402
from donet.io import open_dataset  # noqa: E402
from donet.modeling.weights import load_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DONET_DATA", REPO.parent / "shared" / "data")) / "isbi2014"


def rescaled(sample: AnnotatedImage, factor: float) -> AnnotatedImage:
    if factor == 1.0:
        return sample
    image = rescale(sample.image, factor, order=1, preserve_range=True, anti_aliasing=factor < 1,
                    channel_axis=-1 if sample.image.ndim == 3 else None).round().astype(sample.image.dtype)
    instances = []
    for instance in sample.instances:
        mask = rescale(instance.mask, factor, order=0, preserve_range=True, anti_aliasing=False).astype(bool)
        if mask.any():
            instances.append(Instance.from_mask(instance.id, instance.category, mask, instance.parent))
    return AnnotatedImage(sample.name, image, instances)


MODES = ("none", "auto", "set", "true", "own")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 0.7, 1.4, 2.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sets", nargs="+", choices=["test90", "split", "composed"], default=["test90", "split"],
                        help="test90, the train45 split (where settings are chosen), and images composed from the "
                             "split's held-out cells (the cluster augmentor, seed 0: more images to choose on)")
    parser.add_argument("--composed", type=int, default=45, metavar="N", help="how many composed images")
    parser.add_argument("--model", type=Path, help="default: the shipped model (which has seen the split)")
    parser.add_argument("--shrink-first", type=float, default=1.0, metavar="F",
                        help="rescale the images by F before each scale (0.72 then 2.0: small cells upscaled, as "
                             "test90's at 2.0)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    seen = " (seen in training)" if args.model is None else ""
    sets = {}
    if "test90" in args.sets:
        sets["test90"] = list(open_dataset(DATA / "isbi2014_test"))
    if {"split", "composed"} & set(args.sets):
        held_out = holdout_split(open_dataset(DATA / "isbi2014_train"))[1]
    if "split" in args.sets:
        sets[f"train45 held-out 9{seen}"] = held_out
    if "composed" in args.sets:
        compose, rng = ClusterAugmentor(held_out), np.random.default_rng(0)
        sets[f"{args.composed} composed from the held-out 9's cells{seen}"] = [
            compose(rng, f"composed_{k:03d}") for k in range(args.composed)]
    results = {**provenance(), "model": str(args.model or "shipped"), "model_cell_diameter": model.config.cell_diameter,
               "shrink_first": args.shrink_first}

    def segmenter(mode: str, truth: list[AnnotatedImage]) -> Segmenter:
        if mode in ("true", "own"):
            given = median_diameter(truth)
            if given is None:
                sys.exit(f"{truth[0].name}: no annotated cell to take the true diameter from")
        else:
            given = {"none": None, "auto": "auto", "set": "auto"}[mode]
        return Segmenter(model, device="cpu", score_threshold=0.0, diameter=given)

    for set_name, samples in sets.items():
        rows = {}
        for factor in args.scales:
            truth = [rescaled(rescaled(s, args.shrink_first), factor) for s in samples]
            true_diameter = median_diameter(truth)
            row = {"true_median_diameter": true_diameter}
            for mode in args.modes:
                started = time.perf_counter()
                if mode == "auto":  # image by image, each its own estimate
                    one = segmenter(mode, truth)
                    done = [one.segmented(s.image, s.name) for s in truth]
                elif mode == "own":  # image by image, each at its own diameter
                    done = [segmenter(mode, [s]).segmented(s.image, s.name) for s in truth]
                else:
                    done = list(segmenter(mode, truth).segment_many(truth))
                classes = evaluate(truth, {d.name: d.instances for d in done})["classes"]
                row[mode] = {"cytoplasm_map": round(100 * classes["cytoplasm"]["coco"]["ap"], 2),
                             "nucleus_map": round(100 * classes["nucleus"]["coco"]["ap"], 2),
                             "seconds": round(time.perf_counter() - started, 1)}
                if mode == "auto":
                    found = [d.diameter / median_diameter([s]) for d, s in zip(done, truth)
                             if d.diameter is not None and median_diameter([s])]
                    row[mode]["estimate_over_truth_median"] = round(float(np.median(found)), 3) if found else None
                if mode == "set":
                    set_estimate = done[0].diameter
                    row[mode]["estimate_over_truth"] = round(set_estimate / true_diameter, 3) if set_estimate else None
            rows[str(factor)] = row
            print(set_name, factor, json.dumps(row), flush=True)
        results[set_name] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
