"""The tables of benchmarks/README.md, generated from the result files in benchmarks/results/.

    python benchmarks/report.py           # rewrite every generated table of the README in place
    python benchmarks/report.py --check   # exit 1 if the README differs from what results/ gives

The README keeps its prose; each table of figures sits between `<!-- report:NAME -->` and
`<!-- /report:NAME -->` and is the output of `TABLES[NAME]` below, one small function per kind
of result, each naming the files it read with their commit and machine. `--check` also fails
when a result file is cited nowhere in the README or a marker names no table. Standard
library only: it runs without torch, in a fraction of a second (tests/test_benchmarks_report.py).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
BLOCK = re.compile(r"(<!-- report:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /report:(?P=name) -->)", re.DOTALL)


@cache
def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def short_commit(text: str) -> str:
    if match := re.fullmatch(r"([0-9a-f]{40})(.*)", text):
        return match[1][:7] + match[2]
    if match := re.search(r"added (?:to \S+ )?in ([0-9a-f]{40})", text):
        return f"not recorded (added in {match[1][:7]})"
    return text


def machine(data: dict) -> str:
    described = data.get("machine", "not recorded")
    if isinstance(described, str):
        return described
    text = f"{described.get('cpus')}-core {described.get('processor')}, Python {described.get('python')}"
    if "threads" in described:
        text += f", torch threads: {described['threads']}"
    if "gpu" in described:
        text += f", {described['gpu']}"
    return text


def source(*names: str) -> str:
    """The line under each table: the files it came from, with their commit and machine."""
    parts = [f"`results/{n}.json`: commit {short_commit(load(n).get('commit', 'not recorded'))}; {machine(load(n))}"
             for n in names]
    return "Source: " + parts[0] + "." if len(parts) == 1 else "Sources:\n\n" + "\n".join(f"- {p}" for p in parts)


def grid(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]) + "\n"


def table(header: list[str], rows: list[list], *names: str) -> str:
    return grid(header, rows) + "\n" + source(*names) + "\n"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def minutes(seconds: float | None) -> str:
    if not seconds:
        return "not recorded"
    return f"{int(seconds // 60)} min {round(seconds % 60)} s" if seconds < 3600 else f"{seconds / 60:.0f} min"


# ---- one function per kind of result --------------------------------------------------------------------


def index() -> str:
    """Every result file: the command that wrote it, its commit and machine."""
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        data = load(path.stem)
        rows.append([f"`{path.name}`", f"`{data.get('command', 'not recorded')}`",
                     short_commit(data.get("commit", "not recorded")), machine(data),
                     "recorded afterwards" if "provenance_note" in data else "when run"])
    return grid(["file", "command", "commit", "machine", "provenance"], rows)


def synth_throughput() -> str:
    data = load("synth_throughput_cpu")
    height, width = data["size"]
    rows = [[f"{kind}, {width}x{height}", v["generate_images_per_second"], v["generate_and_write_images_per_second"]]
            for kind, v in data["kinds"].items()]
    return table([f"{data['n']} images", "generated (img/s)", "generated + written, PNG + COCO JSON (img/s)"],
                 rows, "synth_throughput_cpu")


def evaluation_speed() -> str:
    data = load("evaluation_speed_cpu")
    return table(["images", "ground-truth instances", "evaluate(), every protocol (s)"],
                 [[data["images"], data["ground_truth_instances"], data["evaluate_seconds"]]], "evaluation_speed_cpu")


def demo() -> str:
    data = load("demo_cpu")
    rows = [[run["training"], minutes(run["wall_seconds"]), run["cytoplasm_map"], run["nucleus_map"]]
            for run in data["runs"]]
    return table(["training", "wall", "held-out cytoplasm mAP", "nucleus mAP"], rows, "demo_cpu")


def throughput(result: str = "throughput_cpu") -> str:
    data = load(result)
    bare, e2e = data["bare_images_per_second"], data["end_to_end_images_per_second"]
    over_bare, over_resnet = data["end_to_end_cost_over_bare"], data["end_to_end_cost_over_resnet18"]
    slides, ratios = data["slides"], data["donet_over_maskrcnn"]
    rows = [[f"bare forward pass ({key})", value if isinstance(value, str) else f"{value:.2f} images/s"]
            for key, value in bare.items()]
    rows.append(["untrained torchvision ResNet-18, 512 x 512, batch 1",
                 f"{data['resnet18_images_per_second']:.2f} images/s"])
    if "resnet18_two_streams_images_per_second" in data:
        rows.append(["the same, two images at once in two threads",
                     f"{data['resnet18_two_streams_images_per_second']:.2f} images/s"])
    rows += [[f"`segment_files` end to end ({key})",
              f"{value:.2f} images/s: {over_bare[key]:.2f}x the bare pass's cost, {over_resnet[key]:.2f}x ResNet-18's"]
             for key, value in e2e.items()]
    alternating = data.get("end_to_end_cost_over_resnet18_alternating")
    if alternating:
        for key, median in alternating["median"].items():
            low, high = (f(r[key] for r in alternating["rounds"]) for f in (min, max))
            rows.append([f"end to end over ResNet-18, {len(alternating['rounds'])} alternating rounds ({key})",
                         f"median {median:.2f}x, rounds {low:.2f}-{high:.2f}x"])
    rows.append(["bare forward pass on 1024 px tiles, batch 16",
                 f"{slides['bare 1024 tiles per second, batch 16']:.2f} tiles/s"])
    rows += [[f"8192 x 8192 mosaic of test90 images, {name} (`--no-skip-glass`)",
              (f"{v['tiles']} tiles in {v['seconds']:.0f} s: {v['tiles_per_second']:.2f} tiles/s, "
               f"{v['ratio_to_bare']:.2f}x the bare pass")]
             for name, v in slides.items() if isinstance(v, dict)]
    rows += ratio_rows(ratios)
    return table([f"{data['device']}, {data['images']} test90 images", "figure"], rows, result)


def ratio_rows(ratios: dict) -> list[list[str]]:
    """DoNet over Mask R-CNN per preset: timed once each (older files) or in alternating rounds."""
    rows = []
    for size, v in ratios.items():
        if "rounds" in v:
            per_round = [t["donet"] / t["maskrcnn"] for t in v["rounds"]]
            donet, maskrcnn = (statistics.median(t[k] for t in v["rounds"]) for k in ("donet", "maskrcnn"))
            figure = (f"median {v['donet_over_maskrcnn']:.2f}x over {len(per_round)} alternating rounds "
                      f"({min(per_round):.2f}-{max(per_round):.2f}x); each model's median {donet:.3f} / {maskrcnn:.3f} s")
        else:
            figure = f"{v['donet']:.3f} / {v['maskrcnn']:.3f} s: {v['donet_over_maskrcnn']:.2f}x"
        rows.append([f"DoNet over Mask R-CNN, untrained, 100 detections, {size} preset", figure])
    return rows


def donet_over_maskrcnn() -> str:
    """throughput.py --only-ratios."""
    data = load("donet_over_maskrcnn_cpu")
    return table([data["device"], "figure"], ratio_rows(data["donet_over_maskrcnn"]), "donet_over_maskrcnn_cpu")


def onnx_backbone() -> str:
    data = load("onnx_backbone_cpu")
    rows = [[name, f"{seconds:.3f}"] for name, seconds in data["seconds_per_image"].items()]
    rows.append(["ONNX Runtime's speed-up over the engine's copy", f"{data['onnxruntime_speedup_over_engine']:.2f}x"])
    rows.append(["largest difference, ONNX vs eager outputs", f"{data['max_abs_difference_onnx_vs_eager']:.1e}"])
    return table([f"ResNet-18 + FPN, {data['images']} test90 images", "seconds per image"], rows, "onnx_backbone_cpu")


def compile_cpu() -> str:
    data = load("compile_cpu")
    seconds, compiling, difference = (data[k] for k in ("seconds_per_image", "compile_seconds",
                                                        "max_abs_difference_vs_eager"))
    rows = []
    for name, value in seconds.items():
        if isinstance(value, str):  # the compile failed: why
            rows.append([name, value, "", ""])
            continue
        key = name.removesuffix(", compiled")
        rows.append([name, f"{value:.3f}", f"{compiling[key]:.0f}" if key in compiling else "",
                     f"{difference[key]:.1e}" if key in difference else ""])
    rows += [[f"{name}: speed-up over eager, each round", ", ".join(f"{v:.2f}x" for v in values), "", ""]
             for name, values in data.get("speedup_over_eager_per_round", {}).items()]
    rows.append(["whole network compiled: graph breaks", str(data.get("whole_network_graph_breaks", "")), "", ""])
    rows += [[f"- {' '.join(reason.replace('|', '/').split())}", str(count), "", ""]
             for reason, count in data.get("graph_break_reasons", {}).items()]
    return table([f"engine's CPU copy, {data['images']} test90 images, one at a time", "seconds per image",
                  "compile seconds", "largest difference vs eager"], rows, "compile_cpu")


def stage_profile() -> str:
    data = load("stage_profile_cpu")
    forward = data["forward_seconds_per_image"]
    rows = [[name, f"{seconds * 1000:.1f}", f"{100 * seconds / forward:.0f}%"]
            for name, seconds in data["stage_seconds_per_image"].items()]
    rows.append(["whole forward pass", f"{forward * 1000:.1f}", "100%"])
    return table([f"{data['images']} test90 images, engine's CPU copy", "ms per image", "share"], rows,
                 "stage_profile_cpu")


def measurements() -> str:
    data = load("measurements")
    rows = []
    for set_name, result in data.items():
        if not isinstance(result, dict) or "donet" not in result:
            continue
        variants = {"donet": result["donet"]["predicted"], "flattened truth": result["donet"]["flattened_truth"],
                    "donet flattened": result["donet_flattened"]}
        for subset in ("overlapped", "all"):
            for label, errors in variants.items():
                e = errors[subset]
                rows.append([set_name, label, subset, e["cells"], f"{100 * e['cell_area']:.1f}%",
                             f"{100 * e['nucleus_area']:.1f}%", f"{100 * e['nc_ratio']:.1f}%"])
    return table(["set", "cells of", "matched cells", "n", "cell area", "nucleus area", "N/C ratio"], rows,
                 "measurements")


def nucleus_annotation() -> str:
    data = load("nucleus_annotation")
    rows = []
    for set_name, result in data.items():
        if not isinstance(result, dict) or "matched" not in result:
            continue
        rows.append([set_name, result["matched"]] + [
            f"{result[k]['median']:.3f} ({result[k]['q10']:.2f}-{result[k]['q90']:.2f})"
            for k in ("predicted_over_true", "image_drawn_over_true")])
    return table(["set", "matched nuclei", "predicted / true area", "image-drawn / true area"], rows,
                 "nucleus_annotation")


def diameter_auto(name: str = "diameter_auto") -> str:
    data = load(name)
    sets = {set_name: scales for set_name, scales in data.items() if isinstance(scales, dict)
            and all(isinstance(row, dict) and "true_median_diameter" in row for row in scales.values())}
    modes = [mode for mode in ("none", "auto", "set", "true", "own")
             if all(mode in row for scales in sets.values() for row in scales.values())]
    labels = {"none": "no diameter", "auto": "`auto`, per image", "set": "one for the set", "true": "true diameter",
              "own": "each image's true diameter"}
    rows = []
    for set_name, scales in sets.items():
        for scale, row in scales.items():
            rows.append([f"{set_name}, {scale} (cells {row['true_median_diameter']:.0f} px)"] + [
                f"{row[mode]['cytoplasm_map']:.2f} / {row[mode]['nucleus_map']:.2f}" for mode in modes]
                + ([f"{row['auto']['estimate_over_truth_median']:.2f}"] if "auto" in modes else [])
                + ([f"{row['set']['estimate_over_truth']:.2f}"] if "set" in modes else []))
    return table(["set, scale"] + [labels[m] for m in modes] + (["per-image estimate / truth"] if "auto" in modes else [])
                 + (["set's estimate / truth"] if "set" in modes else []), rows, name)


def diameter_step(name: str) -> str:
    """Each image's own --diameter auto estimate, with plain and stretched steps."""
    data = load(name)
    own = all("own" in row for scales in data["runs"].values() for row in scales.values())
    rows = []
    for model, scales in data["runs"].items():
        for scale, row in scales.items():
            steps = sorted((k for k in row if k not in ("true_median_diameter", "own")), key=float)
            assert len(steps) == 2, f"{name}: {model} {scale} has steps {steps}, not plain and stretched"
            plain, stretched = (row[step] for step in steps)
            rows.append([model.removeprefix("runs/").removesuffix("/model.safetensors"), f"{scale}x", *(
                f"{plain[k]:.2f} / {stretched[k]:.2f} ({stretched[k] - plain[k]:+.2f})"
                for k in ("cytoplasm_map", "nucleus_map")),
                f"{plain['estimate_over_truth_median']:.2f} / {stretched['estimate_over_truth_median']:.2f}"]
                + ([f"{row['own']['cytoplasm_map']:.2f} / {row['own']['nucleus_map']:.2f}"] if own else []))
    return table(["split model", "images shrunk by", "mAP cyto, plain / stretched steps", "mAP nuc",
                  "estimate / truth (median)"] + (["each image's true diameter"] if own else []), rows, name)


def focus_stacks() -> str:
    data = load("focus_stacks")
    rows = [[name, "-" if v["mean_abs_error_vs_sharp"] is None else f"{v['mean_abs_error_vs_sharp']:.2f}",
             f"{v['cyto_map']:.2f}", f"{v['nuc_map']:.2f}"] for name, v in data["inputs"].items()]
    return table([f"input ({data['stack']})", "mean absolute error vs sharp (gray levels)", "mAP cyto", "mAP nuc"],
                 rows, "focus_stacks")


def finetune_shift(name: str = "finetune_shift") -> str:
    data = load(name)
    columns = ["cyto_map", "nuc_map", "cyto_f1_at_0.9", "cyto_aji_at_0.9", "cyto_f1_at_0.5", "cyto_aji_at_0.5"]
    rows = [[arm, *(f"{v[c]:.2f}" for c in columns), v.get("iterations", "-"), f"{v['minutes']:.1f}"]
            for arm, v in data["arms"].items()]
    return table([f"model ({data['frames']})", "mAP cyto", "mAP nuc", "F1 cyto @0.9", "AJI cyto @0.9",
                  "F1 cyto @0.5", "AJI cyto @0.5", "iterations", "training minutes"], rows, name)


def model_speed() -> str:
    data = load("model_speed_cpu")
    seconds = data["seconds"]
    base = seconds["maskrcnn"]
    detections = list(base["inference"])
    rows = []
    for preset, row in seconds.items():
        cells = [preset, f"{row['train_step']:.3f}", f"{row['train_step'] / base['train_step']:.2f}x"]
        for k in detections:
            cells += [f"{row['inference'][k]:.3f}", f"{row['inference'][k] / base['inference'][k]:.2f}x"]
        rows.append(cells)
    header = ["preset", "train step (s)", "ratio"] + [h for k in detections for h in (f"inference, {k} det. (s)", "ratio")]
    return table(header, rows, "model_speed_cpu")


def checkpoint_average() -> str:
    """average_checkpoints.py's models against the run's own checkpoints, on the split."""
    data = load("checkpoint_average_split_seed1")
    rows = [[label, pct(r["cytoplasm_map"]), pct(r["nucleus_map"]), pct(r["cytoplasm_aji"]), pct(r["cytoplasm_f1"])]
            for label, r in data["rows"].items()]
    return table(["seed 1 of the margin recipe, train45 split", "mAP cyto", "mAP nuc", "AJI cyto", "F1 cyto"],
                 rows, "checkpoint_average_split_seed1")


def enlarge() -> str:
    """enlarge.py: split scores with bilinear and bicubic test-time enlargement, per model and factor."""
    data = load("enlarge_split")
    rows = []
    for model, factors in data["models"].items():
        for factor, modes in factors.items():
            old, new = modes["bilinear"], modes["bicubic"]
            rows.append([model.removeprefix("runs/"), f"{float(factor):g}x"]
                        + [f"{pct(old[k])} / {pct(new[k])} ({100 * (new[k] - old[k]):+.2f})"
                           for k in ("cytoplasm_map", "nucleus_map", "cytoplasm_aji")])
    return table(["model (train45 split, seed 1 of the margin recipe)", "images shrunk by",
                  "mAP cyto, bilinear / bicubic", "mAP nuc", "AJI cyto"], rows, "enlarge_split")


def model_flops() -> str:
    """model_flops.py: GFLOPs of one inference pass by part, DoNet against Mask R-CNN."""
    data = load("model_flops")
    parts = list(dict.fromkeys(part for load_ in data["loads"].values() for size in load_.values()
                               for preset in ("maskrcnn", "donet") for part in size[preset]["parts_gflops"]
                               if part != "outside any module"))
    rows = []
    for detections, load_ in data["loads"].items():
        for size, presets in load_.items():
            for preset in ("maskrcnn", "donet"):
                row = presets[preset]
                rows.append([f"{size}, {detections} det.", preset, f"{row['gflops']:.1f}"]
                            + [f"{row['parts_gflops'][p]:.1f}" if p in row["parts_gflops"] else "-" for p in parts]
                            + [f"{presets['donet_over_maskrcnn']:.2f}x" if preset == "donet" else ""])
    return table(["preset, load", "model", "GFLOPs"] + parts + ["DoNet / Mask R-CNN"], rows, "model_flops")


def tiling() -> str:
    data = load("tiling_cpu")
    rows = [[f"{r['size']}x{r['size']}", r["cells_drawn"], r["instances"], f"{r['seconds']:.1f}",
             f"{r['peak_rss_mib']:.0f}"] for r in data["sizes"]]
    text = grid(["image", "cells drawn", "instances found (cells + nuclei)", "seconds", "peak RSS (MiB)"], rows)
    if one := data.get("one_pass"):
        text += "\n" + grid([f"{one['size']}x{one['size']}, tiled vs one pass", "value"], [
            ["cells matched one-to-one (IoU > 0.5)", one["matched"]], ["cells found only tiled", one["only_tiled"]],
            ["cells found only in one pass", one["only_one_pass"]], ["one pass: seconds", f"{one['seconds']:.1f}"],
            ["one pass: peak RSS (MiB)", f"{one['peak_rss_mib']:.0f}"]])
    return text + "\n" + source("tiling_cpu") + "\n"


def slides() -> str:
    rows = [[r["size"], r["processes"], f"{r['wall_s']:.1f}", r["peak_rss_mib"], f"{r['tiles_run']} / {r['tiles']}",
             r["cells"], r["file_mb"]] for r in load("slides")["runs"]]
    return table(["side", "processes", "wall (s)", "peak RSS (MiB)", "tiles run / all", "cells", "file (MB)"], rows,
                 "slides")


# Evaluation files (`donet evaluate`, default_model.py): a row per file, columns (class, protocol, metric).
EVALUATION_COLUMNS = {
    "mAP cyto": ("cytoplasm", "coco", "ap"), "mAP nuc": ("nucleus", "coco", "ap"),
    "AP75 nuc": ("nucleus", "coco", "ap75"), "F1 cyto": ("cytoplasm", "paper", "f1"),
    "AJI cyto": ("cytoplasm", "paper", "aji"), "Dice cyto": ("cytoplasm", "paper", "dice"),
    "AJI+ cyto": ("cytoplasm", "standard", "aji_plus"), "PQ cyto": ("cytoplasm", "standard", "pq")}


def evaluations(rows: dict[str, str], columns: list[str], training: bool = False) -> str:
    body = []
    for label, name in rows.items():
        classes = load(name)["classes"]
        seconds = load(name).get("training_seconds_all_sessions") or load(name).get("training_seconds_this_session")
        cells = [label] + ([minutes(seconds)] if training else [])
        body.append(cells + [pct(classes[c][p][m]) for c, p, m in (EVALUATION_COLUMNS[col] for col in columns)])
    return table(["run"] + (["training"] if training else []) + columns, body, *rows.values())


def default_recipe_test90() -> str:
    return evaluations({
        "maskrcnn": "default_recipe_maskrcnn_h200_seed0", "drm (CPU, float32)": "default_recipe_drm_cpu_seed0",
        "drm_crm (CPU, float32)": "default_recipe_drm_crm_cpu_seed0",
        "donet_no_attention (control: both stacks, M = 1)": "default_recipe_donet_no_attention_h200_seed0",
        "donet (shipped)": "default_recipe_donet_h200_seed0"}, list(EVALUATION_COLUMNS), training=True)


def shipped_test90() -> str:
    return evaluations({"donet, shipped float16": "default_model_test90",
                        "maskrcnn, float16": "maskrcnn_fp16_test90"}, list(EVALUATION_COLUMNS))


def holdout_levers() -> str:
    return evaluations({
        "recipe as shipped": "default_recipe_holdout_donet_h200_seed0",
        "attention from the sampled positive proposals instead of the ground-truth cells":
            "default_recipe_holdout_sampled_attention_h200_seed0",
        "nucleus masks 28 px instead of 56 px": "default_recipe_holdout_nucleus_roi14_h200_seed0",
        "recipe as shipped, trained on the CPU (float32), mask threshold 0.5": "cpu_holdout_split"},
        ["mAP cyto", "mAP nuc", "AP75 nuc", "AJI cyto"], training=True)


def inference_levers() -> str:
    settings = load("inference_levers_cpu_holdout")["settings"]
    rows = [[s["mask_threshold"], s["scale"], f"{s['cytoplasm mAP']:.2f}", f"{s['nucleus mAP']:.2f}",
             f"{s['nucleus AP75']:.2f}", s["seconds"]]
            for s in sorted(settings, key=lambda s: (s["scale"], s["mask_threshold"]))]
    return table(["mask threshold", "scale", "mAP cyto", "mAP nuc", "AP75 nuc", "seconds"], rows,
                 "inference_levers_cpu_holdout")


def schedule_curve() -> str:
    return evaluations({
        "1600 iterations, H200 (mixed precision; nuclei at mask threshold 0.5)": "default_recipe_holdout_donet_h200_seed0",
        "1600 iterations, CPU (float32; nuclei at mask threshold 0.5)": "cpu_holdout_split",
        "3200 iterations, CPU (float32)": "v2_holdout_3200_cpu_seed0"},
        ["mAP cyto", "mAP nuc", "AP75 nuc", "AJI cyto", "F1 cyto"], training=True)


def versions_test90() -> str:
    return evaluations({
        "v3: v2's recipe with mask_box_margin=0.1, CPU, float32 (final weights)": "v3_ship_3200_cpu_seed0",
        "v3 as shipped, float16": "v3_shipped_test90",
        "maskrcnn: v3's recipe, CPU, float32 (final weights)": "v3_maskrcnn_3200_cpu_seed0",
        "v2: 3200 iterations, CPU, float32 (final weights)": "v2_ship_3200_cpu_seed0",
        "v2 as shipped, float16": "v2_shipped_test90",
        "v1 as shipped, float16 (1600 iterations, H200)": "default_model_test90",
        "maskrcnn, float16 (1600 iterations, H200)": "maskrcnn_fp16_test90"}, list(EVALUATION_COLUMNS))


def crowding() -> str:
    data = load("crowding_holdout")
    bins = list(data["levers"][0]["recall_by_clump_size"])
    rows = [[lever["lever"], f"{lever['cytoplasm mAP']:.2f}", f"{lever['nucleus mAP']:.2f}",
             f"{lever['cytoplasm AJI']:.2f}"]
            + [pct(lever["recall_by_clump_size"][b]["recall"]) for b in bins]
            + [pct(lever["clipped"]["clipped"])] for lever in data["levers"]]
    truth = data["truth_clipped"]
    rows.append(["ground truth", "", "", ""] + [str(data["levers"][0]["recall_by_clump_size"][b]["cells"]) + " cells"
                                               for b in bins] + [pct(truth["clipped"])])
    return table(["lever", "mAP cyto", "mAP nuc", "AJI cyto"] + [f"recall, overlapping {b}" for b in bins]
                 + ["masks cut straight"], rows, "crowding_holdout")


def split_levers() -> str:
    """Training levers at the chosen length (3200 iterations) on the train45 split, each with
    its crowding figures (benchmarks/crowding.py on the same model)."""
    runs = {"recipe of v2 (seed 0)": ("v2_holdout_3200_cpu_seed0", "crowding_holdout"),
            "mask_box_margin=0.1": ("v2_holdout_margin_3200_cpu_seed0", "crowding_holdout_margin"),
            "mask_box_margin=0.1, seed 1": ("v2_holdout_margin_3200_cpu_seed1", "crowding_holdout_margin_seed1")}
    body = []
    for label, (run, crowding) in runs.items():
        result, trained = load(run)["classes"], load(crowding)["levers"][0]
        recall = trained["recall_by_clump_size"]["4+"]["recall"]
        body.append([label, minutes(load(run).get("training_seconds_all_sessions")),
                     pct(result["cytoplasm"]["coco"]["ap"]), pct(result["nucleus"]["coco"]["ap"]),
                     pct(result["cytoplasm"]["paper"]["aji"]), pct(result["cytoplasm"]["paper"]["f1"]),
                     pct(recall), pct(trained["clipped"]["clipped"])])
    return table(["lever", "training", "mAP cyto", "mAP nuc", "AJI cyto", "F1 cyto",
                  "recall, overlapping 4+", "masks cut straight"], body,
                 *(name for pair in runs.values() for name in pair))


LADDER_COLUMNS = [("coco", "ap", "mAP"), ("paper", "dice", "Dice"), ("paper", "f1", "F1"), ("paper", "aji", "AJI")]


def spread(values: list[float]) -> str:
    values = [100 * v for v in values]
    return f"{values[0]:.2f}" if len(values) == 1 else f"{statistics.mean(values):.2f} ± {statistics.pstdev(values):.2f}"


def ladder(name: str) -> str:
    """ablation_ladder.py's ladder.json: a row per rung, mean ± std over its seeds (as its ladder.md)."""
    data = load(name)
    header = ["preset"] + [f"{label} {c}" for _, _, label in LADDER_COLUMNS for c in ("cyto", "nuc", "avg")]
    header += ["mAP cyto per seed", "training per seed (s)"]
    rows = []
    for preset, runs in data.items():
        if not isinstance(runs, list):
            continue
        cells = [preset] + [spread([r["classes"][c][p][m] for r in runs])
                            for p, m, _ in LADDER_COLUMNS for c in ("cytoplasm", "nucleus", "average")]
        cells.append(", ".join(pct(r["classes"]["cytoplasm"]["coco"]["ap"]) for r in runs))
        cells.append(", ".join(f"{r.get('training_seconds_this_session', r.get('training_seconds')):.0f}" for r in runs))
        rows.append(cells)
    return table(header, rows, name)


def ladder_background() -> str:
    data = load("ladder_light_600it_seed0_background")
    rows = []
    for model, by_score in data["cytoplasm_detections"].items():
        cells = [model]
        for score in ("0.9", "0.5"):
            d = by_score[score]
            borders = f" ({d['outside_touching_two_borders']} touching two image borders)" \
                if "outside_touching_two_borders" in d else ""
            cells += [d["detections"], f"{d['outside']}{borders}"]
        rows.append(cells)
    after = data["after_jitter_seed0_0.5"]
    rows += [[f"{model}, seed 0, with the jitter", "", "", d["detections"], d["outside"]] for model, d in after.items()]
    train = data["train45_donet_0.5"]
    rows.append(["donet (first run) on train45", "", "", train["detections"], train["outside"]])
    return table(["model (test90 unless said)", "cytoplasm detections, score >= 0.9", "of which outside",
                  "score >= 0.5", "of which outside"], rows, "ladder_light_600it_seed0_background")


def ladder_losses() -> str:
    data = load("ladder_losses_600it_jitter_seed0")
    header = ["run", "term"] + [f"iterations {a + 1}-{b}" for a, b in data["windows"]]
    rows = [[run, term] + [f"{v:.3f}" for v in values]
            for run, terms in data["terms"].items() for term, values in terms.items()]
    return table(header, rows, "ladder_losses_600it_jitter_seed0")


def cluster_aug() -> str:
    runs = {"donet": load("ladder_light_600it_jitter")["donet"][0],
            "donet w/ cluster augmentor": load("ladder_light_600it_jitter_donet_clusteraug")["donet"][0]}
    columns = ["mAP cyto", "mAP nuc", "F1 cyto", "AJI cyto"]
    rows = [[label] + [pct(r["classes"][c][p][m]) for c, p, m in (EVALUATION_COLUMNS[col] for col in columns)]
            + [pct(r["classes"]["nucleus"]["paper"]["aji"]), f"{r['training_seconds_this_session']:.0f}"]
            for label, r in runs.items()]
    return table(["test90, seed 0"] + columns + ["AJI nuc", "training (s)"], rows,
                 "ladder_light_600it_jitter", "ladder_light_600it_jitter_donet_clusteraug")


TABLES: dict[str, Callable[[], str]] = {
    "index": index, "synth_throughput": synth_throughput, "evaluation_speed": evaluation_speed, "demo": demo,
    "throughput": throughput, "throughput_cpu_s9": lambda: throughput("throughput_cpu_s9"), "onnx_backbone": onnx_backbone, "compile_cpu": compile_cpu, "stage_profile": stage_profile,
    "measurements": measurements,
    "diameter_auto": diameter_auto, "focus_stacks": focus_stacks, "finetune_shift": finetune_shift, "finetune_shift_v2": lambda: finetune_shift("finetune_shift_v2"),
    "finetune_shift_v3": lambda: finetune_shift("finetune_shift_v3"),
    "finetune_shift_1024": lambda: finetune_shift("finetune_shift_1024"),
    "finetune_shift_1024_frozen": lambda: finetune_shift("finetune_shift_1024_frozen"),
    "finetune_shift_1024_window": lambda: finetune_shift("finetune_shift_1024_window"),
    "finetune_shift_1024_fresh": lambda: finetune_shift("finetune_shift_1024_fresh"),
    "finetune_split": lambda: finetune_shift("finetune_split"), "model_speed": model_speed, "tiling": tiling,
    "slides": slides, "default_recipe_test90": default_recipe_test90, "shipped_test90": shipped_test90,
    "holdout_levers": holdout_levers, "inference_levers": inference_levers,
    "ladder_first": lambda: ladder("ladder_light_600it_seed0"), "ladder_background": ladder_background,
    "ladder_jitter": lambda: ladder("ladder_light_600it_jitter"), "ladder_losses": ladder_losses,
    "cluster_aug": cluster_aug, "schedule_curve": schedule_curve, "versions_test90": versions_test90, "crowding": crowding, "split_levers": split_levers,
    "model_flops": model_flops, "checkpoint_average": checkpoint_average, "enlarge": enlarge, "donet_over_maskrcnn": donet_over_maskrcnn,
    "nucleus_annotation": nucleus_annotation, "diameter_auto_split_set": lambda: diameter_auto("diameter_auto_split_set"),
    "diameter_auto_test90_v2": lambda: diameter_auto("diameter_auto_test90_v2"),
    "diameter_auto_test90_v3": lambda: diameter_auto("diameter_auto_test90_v3"),
    "diameter_auto_test90_spread": lambda: diameter_auto("diameter_auto_test90_spread"),
    "diameter_auto_split_band": lambda: diameter_auto("diameter_auto_split_band"),
    "diameter_auto_split_shrunk": lambda: diameter_auto("diameter_auto_split_shrunk"),
    "diameter_auto_split_settled": lambda: diameter_auto("diameter_auto_split_settled"),
    "diameter_auto_split_settled_shrunk": lambda: diameter_auto("diameter_auto_split_settled_shrunk"),
    "diameter_own_split_seed1": lambda: diameter_auto("diameter_own_split_seed1"),
    "diameter_own_test90": lambda: diameter_auto("diameter_own_test90"),
    "diameter_step_split": lambda: diameter_step("diameter_step_split"),
    "diameter_step_split_more": lambda: diameter_step("diameter_step_split_more"),
    "diameter_step_composed": lambda: diameter_step("diameter_step_composed"),
    "diameter_auto_test90_step": lambda: diameter_auto("diameter_auto_test90_step"),
    "diameter_composed_none_set": lambda: diameter_auto("diameter_composed_none_set"),
    "diameter_q75_split": lambda: diameter_auto("diameter_q75_split"),
    "diameter_nucleus_split": lambda: diameter_auto("diameter_nucleus_split"),
    "diameter_auto_split_neighbours": lambda: diameter_auto("diameter_auto_split_neighbours"),
    "diameter_nucleus_composed": lambda: diameter_auto("diameter_nucleus_composed"),
    "diameter_auto_test90_nucleus": lambda: diameter_auto("diameter_auto_test90_nucleus"),
    "diameter_auto_test90_nucleus_per_image": lambda: diameter_auto("diameter_auto_test90_nucleus_per_image"),
    "diameter_auto_test90_nucleus_large": lambda: diameter_auto("diameter_auto_test90_nucleus_large"),
    "diameter_auto_test90_settled": lambda: diameter_auto("diameter_auto_test90_settled"),
    "diameter_auto_split_margin": lambda: diameter_auto("diameter_auto_split_margin"),
    "diameter_auto_test90_bicubic": lambda: diameter_auto("diameter_auto_test90_bicubic"),
    "diameter_auto_test90_bicubic_per_image": lambda: diameter_auto("diameter_auto_test90_bicubic_per_image"),
    "diameter_auto_split_seed1_bicubic": lambda: diameter_auto("diameter_auto_split_seed1_bicubic"),
}


def render(text: str) -> tuple[str, list[str]]:
    """The README with every block regenerated, and what is wrong with it beyond staleness."""
    problems = []
    names = [m["name"] for m in BLOCK.finditer(text)]
    problems += [f"marker report:{n} names no table" for n in names if n not in TABLES]
    problems += [f"table {n} has no marker in the README" for n in TABLES if n not in names]
    problems += [f"marker report:{n} appears twice" for n in set(names) if names.count(n) > 1]
    rendered = BLOCK.sub(lambda m: m[1] + (TABLES[m["name"]]() if m["name"] in TABLES else m["body"]) + m[4], text)
    outside_index = BLOCK.sub(lambda m: "" if m["name"] == "index" else m[0], rendered)
    problems += [f"results/{p.name} is cited nowhere in the README outside the index"
                 for p in sorted(RESULTS.iterdir())
                 if p.suffix in (".json", ".md") and not re.search(re.escape(p.stem) + r"(?!\w)", outside_index)]
    return rendered, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the README is stale")
    args = parser.parse_args()
    text = README.read_text()
    rendered, problems = render(text)
    for problem in problems:
        print(f"benchmarks/README.md: {problem}", file=sys.stderr)
    if args.check:
        if rendered != text:
            stale = [m["name"] for m, r in zip(BLOCK.finditer(text), BLOCK.finditer(rendered)) if m[0] != r[0]]
            print(f"benchmarks/README.md is stale ({', '.join(stale)}): run python benchmarks/report.py",
                  file=sys.stderr)
            return 1
        return 1 if problems else 0
    if rendered != text:
        README.write_text(rendered)
        print("rewrote benchmarks/README.md")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
