"""Where DoNet's forward pass spends its time, stage by stage, as the engine runs it on the CPU.

    python benchmarks/stage_profile.py --out benchmarks/results/stage_profile_cpu.json [--images 20] [--threads 2]

The shipped model (or `--model`) in the engine's CPU copy (BatchNorm folded, channels-last),
on test90 images ($DONET_DATA/isbi2014/isbi2014_test/orig, 512 x 512), one at a time, after
one warm-up image. Each stage is a module timed by forward hooks: the transform, ResNet,
FPN, then per stack the RPN (of it the head's convolutions) and the RoI heads (of them box
RoIAlign, the box head and predictor, mask RoIAlign, H_i's convolutions and predictor, DRM
and CRM's Fusion Unit). MRP's attention map and the re-weighting of the features are the
time between the cell stack's end and the nucleus RPN's start. Seconds are per image.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import torch
from provenance import provenance  # benchmarks/ is on the path when run as a script

from donet.inference import InferenceSettings, Segmenter
from donet.io.images import read_image
from donet.modeling import image_tensor
from donet.modeling.weights import load_model

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DONET_DATA", REPO.parent / "shared" / "data")) / "isbi2014"


def stages(model) -> dict[str, torch.nn.Module]:
    """The timed modules by name; a stack's parts are named after it."""
    named = {"transform": model.transform, "ResNet": model.backbone.body, "FPN": model.backbone.fpn}
    stacks = [("cell", model.rpn, model.roi_heads)]
    if model.nucleus_rpn is not None:
        stacks.append(("nucleus", model.nucleus_rpn, model.nucleus_roi_heads))
    for stack, rpn, heads in stacks:
        named |= {f"{stack} RPN": rpn, f"{stack} RPN: head convolutions": rpn.head,
                  f"{stack} RoI heads": heads, f"{stack} RoI heads: box RoIAlign": heads.box_roi_pool,
                  f"{stack} RoI heads: box head": heads.box_head,
                  f"{stack} RoI heads: box predictor": heads.box_predictor,
                  f"{stack} RoI heads: mask RoIAlign": heads.mask_roi_pool,
                  f"{stack} RoI heads: H_i convolutions": heads.mask_head.convs,
                  f"{stack} RoI heads: H_i predictor": heads.mask_head.predictor}
        if heads.drm is not None:
            named[f"{stack} RoI heads: DRM"] = heads.drm
        if heads.fusion is not None:
            named[f"{stack} RoI heads: CRM Fusion Unit"] = heads.fusion
    return named


class StageClock:
    """Sums each stage's seconds over the forward passes it sees (a module called twice in
    one pass, as H_i is with CRM, counts twice)."""

    def __init__(self, model):
        self.seconds, self.started, self.marks = defaultdict(float), {}, {}
        for name, module in stages(model).items():
            module.register_forward_pre_hook(self._start(name))
            module.register_forward_hook(self._stop(name))

    def _start(self, name):
        def hook(module, inputs):
            self.started[name] = time.perf_counter()
            if name == "nucleus RPN" and "cell RoI heads" in self.marks:
                self.seconds["MRP attention map and re-weighting"] += self.started[name] - self.marks["cell RoI heads"]
        return hook

    def _stop(self, name):
        def hook(module, inputs, outputs):
            self.marks[name] = time.perf_counter()
            self.seconds[name] += self.marks[name] - self.started[name]
        return hook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="a donet model file (default: the shipped model)")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = Segmenter(load_model(args.model), InferenceSettings(device="cpu")).network  # what the engine runs
    paths = sorted((DATA / "isbi2014_test" / "orig").glob("*.png"))[:args.images + 1]
    tensors = [image_tensor(read_image(p)) for p in paths]
    with torch.inference_mode():
        model([tensors[0]])  # warm-up, before the clock is attached
        clock = StageClock(model)
        started = time.perf_counter()
        for tensor in tensors[1:]:
            model([tensor])
        total = time.perf_counter() - started
    images = len(tensors) - 1
    order = list(stages(model))
    if "nucleus RPN" in order:
        order.insert(order.index("nucleus RPN"), "MRP attention map and re-weighting")
    per_image = {name: clock.seconds[name] / images for name in order}
    results = {**provenance(), "model": str(args.model or "shipped"), "images": images,
               "forward_seconds_per_image": total / images, "stage_seconds_per_image": per_image,
               "stage_share_of_forward": {name: seconds / (total / images) for name, seconds in per_image.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps({"forward": total / images, "stages": per_image}, indent=2))


if __name__ == "__main__":
    main()
