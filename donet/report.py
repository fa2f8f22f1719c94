"""A self-contained HTML report: training curve, metrics table, overlays and heatmaps."""

from __future__ import annotations

import html
import json
from pathlib import Path

from .atomic import write_text_atomic
from .evaluation import table_rows
from .evaluation.measurement_accuracy import MEASUREMENT_COLUMNS, measurement_rows


def loss_curve_svg(metrics_path: Path, width: int = 640, height: int = 240) -> str:
    """Training loss against iteration as an inline SVG polyline (log-scaled loss)."""
    import math

    points = [(r["iteration"], r["loss"]) for r in map(json.loads, metrics_path.read_text().splitlines())
              if r.get("kind") == "train" and r.get("loss") is not None and r["loss"] > 0]
    if len(points) < 2:
        return "<p>(not enough logged steps for a curve)</p>"
    pad = 40
    xs = [p[0] for p in points]
    ys = [math.log10(p[1]) for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys) + 1e-9

    def scale(x, y):
        return (pad + (x - x0) / (x1 - x0) * (width - 2 * pad),
                height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad))

    line = " ".join(f"{sx:.1f},{sy:.1f}" for sx, sy in (scale(x, y) for x, y in zip(xs, ys)))
    return (f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
            f'<rect width="100%" height="100%" fill="white" stroke="#ccc"/>'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{line}"/>'
            f'<text x="{pad}" y="20" font-size="12">total loss (log scale): {points[0][1]:.2f} at iteration '
            f'{xs[0]} to {points[-1][1]:.2f} at iteration {xs[-1]}</text>'
            f'<text x="{width / 2 - 30}" y="{height - 8}" font-size="12">iteration</text></svg>')


def histogram_svg(values: list[float], label: str, bins: int = 20, width: int = 640, height: int = 200) -> str:
    """A histogram of `values` as an inline SVG, bars from 0 to the largest value."""
    if not values:
        return "<p>(nothing to show)</p>"
    high = max(values) or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(int(value / high * bins), bins - 1)] += 1
    pad, top = 40, max(counts)
    bar = (width - 2 * pad) / bins
    bars = "".join(f'<rect x="{pad + k * bar:.1f}" y="{height - pad - c / top * (height - 2 * pad):.1f}" '
                   f'width="{bar - 1:.1f}" height="{c / top * (height - 2 * pad):.1f}" fill="#1f77b4"/>'
                   for k, c in enumerate(counts))
    return (f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
            f'<rect width="100%" height="100%" fill="white" stroke="#ccc"/>{bars}'
            f'<text x="{pad}" y="20" font-size="12">{html.escape(label)}: {len(values)} cells, 0 to {high:.3g} '
            f'(tallest bar {top})</text></svg>')


def measurement_table_html(accuracy: dict) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in MEASUREMENT_COLUMNS) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in measurement_rows(accuracy))
    return f"<table>{head}{body}</table>"


def metrics_table_html(results: dict) -> str:
    head = "<tr><th>metric</th><th>cytoplasm</th><th>nucleus</th><th>average</th></tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in table_rows(results))
    return f"<table>{head}{body}</table>"


def write_report(path: Path, title: str, notes: list[str], metrics_path: Path, results: dict,
                 figures: list[dict[str, str]], nc_ratios: list[float] | None = None) -> None:
    """`figures`: per image, a caption, relative paths of its pictures (label -> path) and
    optionally the labels of pictures to show wide. `nc_ratios`: of the predicted cells
    with a nucleus, for their histogram."""
    rows = []
    for figure in figures:
        cells = "".join(f'<figure><img src="{html.escape(src)}" alt="{html.escape(label)}"'
                        f'{" class=wide" if label in figure.get("wide", ()) else ""}>'
                        f"<figcaption>{html.escape(label)}</figcaption></figure>"
                        for label, src in figure["images"].items())
        rows.append(f'<h3>{html.escape(figure["caption"])}</h3><div class="row">{cells}</div>')
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
td:first-child {{ text-align: left; }}
.row {{ display: flex; gap: 12px; flex-wrap: wrap; }} figure {{ margin: 0; }}
img {{ max-width: 420px; border: 1px solid #ddd; }} img.wide {{ max-width: 1000px; }} figcaption {{ font-size: 13px; color: #444; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{"".join(f"<p>{html.escape(note)}</p>" for note in notes)}
<h2>Training</h2>{loss_curve_svg(metrics_path)}
<h2>Metrics on the held-out images</h2>{metrics_table_html(results)}
<p>mAP, AP50, AP75: COCO segmentation AP (pycocotools, all detections). Paper protocol and
ISBI metrics: detections scoring at least {results["settings"]["paper_score_threshold"]};
standard protocol: at least {results["settings"]["standard_score_threshold"]}.</p>
<h2>Measurements</h2>{histogram_svg(nc_ratios or [], "N/C ratio of predicted cells with a nucleus")}
<p>How far the measurements of matched cells are from the truth (median absolute relative
error, detections scoring at least {results["measurements"]["score_threshold"]}; overlapped:
at least {100 * results["measurements"]["overlapped_from"]:.0f}% of the cell under others),
beside the truth flattened to one label per pixel (flat truth):</p>{measurement_table_html(results["measurements"])}
<h2>Predictions</h2>{"".join(rows)}
</body></html>
"""
    write_text_atomic(path, page)
