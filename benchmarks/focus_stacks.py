"""Focal stacks: how close do the middle plane and `--focus edf` come to the sharp image?

    python benchmarks/focus_stacks.py --out benchmarks/results/focus_stacks.json

ISBI 2014 images are already extended-depth-of-field fusions, so each of the 9 held-out
images of the train45 split (every fifth image) is made into a 5-plane focal stack: a smooth
random depth map (seeded) says which plane is in focus at each pixel, and a plane is blurred
by a Gaussian of sigma `--sigma` px (1.5 by default) per plane of distance from it. The stack is written as an
OME-TIFF (ZYX) and read back by `donet.io.images.read_image` with the middle plane and with
`edf`. Reported: mean absolute error against the sharp image (gray levels), and the shipped
model's cytoplasm / nucleus mAP on the sharp image, the middle plane and the fusion (the
shipped model was trained on all of train45: these images were seen in training, so the
figures compare the three inputs, not the model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_model import holdout_split  # noqa: E402
from provenance import provenance  # noqa: E402

from donet.data import AnnotatedImage  # noqa: E402
from donet.evaluation import evaluate, model_predictions  # noqa: E402
from donet.io import open_dataset  # noqa: E402
from donet.io.images import read_image  # noqa: E402
from donet.io.planes import Planes  # noqa: E402
from donet.modeling.weights import load_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DONET_DATA", REPO.parent / "shared" / "data")) / "isbi2014"
PLANES = 5


def focal_stack(image: np.ndarray, rng: np.random.Generator, sigma_per_plane: float) -> np.ndarray:
    """(PLANES, H, W) uint8: plane k is sharp where the depth map is k, blurred away from it."""
    depth = ndimage.gaussian_filter(rng.normal(size=image.shape), sigma=min(image.shape) / 6)
    depth = (depth - depth.min()) / max(np.ptp(depth), 1e-9) * (PLANES - 1)
    sigmas = np.arange(PLANES) * sigma_per_plane  # blur at 0, 1, 2... planes from focus
    blurred = np.stack([image.astype(np.float32) if s == 0 else ndimage.gaussian_filter(image.astype(np.float32), s)
                        for s in sigmas])
    planes = []
    for k in range(PLANES):
        distance = np.abs(depth - k)  # in planes; interpolate between the two nearest blurs
        low = np.floor(distance).astype(int).clip(0, PLANES - 2)
        fraction = distance - low
        rows, cols = np.indices(image.shape)
        plane = blurred[low, rows, cols] * (1 - fraction) + blurred[low + 1, rows, cols] * fraction
        planes.append(plane.round().clip(0, 255).astype(np.uint8))
    return np.stack(planes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigma", type=float, default=1.5, help="blur (Gaussian sigma, px) per plane from focus")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    truth = holdout_split(open_dataset(DATA / "isbi2014_train"))[1]
    inputs: dict[str, list[AnnotatedImage]] = {"sharp": [], "middle plane": [], "edf": []}
    errors: dict[str, list[float]] = {"middle plane": [], "edf": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for sample in truth:
            gray = sample.image if sample.image.ndim == 2 else sample.image.mean(axis=-1).astype(np.uint8)
            path = Path(folder) / f"{sample.name}.ome.tif"
            tifffile.imwrite(path, focal_stack(gray, rng, args.sigma), metadata={"axes": "ZYX"})
            inputs["sharp"].append(AnnotatedImage(sample.name, gray, sample.instances))
            for label, planes in (("middle plane", Planes()), ("edf", Planes("edf"))):
                pixels = read_image(path, planes)
                errors[label].append(float(np.abs(pixels.astype(np.float32) - gray).mean()))
                inputs[label].append(AnnotatedImage(sample.name, pixels, sample.instances))
    fusion_seconds = time.perf_counter() - started
    model = load_model()
    results = {**provenance(), "images": "train45 held-out 9 (every fifth image), gray, seen in training",
               "stack": f"{PLANES} planes, Gaussian sigma {args.sigma:g} px per plane from focus, seed {args.seed}",
               "seconds_to_build_and_read": round(fusion_seconds, 1), "inputs": {}}
    for label, samples in inputs.items():
        scores = evaluate(samples, model_predictions(model, samples))["classes"]
        results["inputs"][label] = {
            "mean_abs_error_vs_sharp": None if label == "sharp" else round(float(np.mean(errors[label])), 3),
            "cyto_map": round(100 * scores["cytoplasm"]["coco"]["ap"], 2),
            "nuc_map": round(100 * scores["nucleus"]["coco"]["ap"], 2)}
        print(label, results["inputs"][label], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
