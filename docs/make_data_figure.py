"""Regenerates docs/images/synthetic_vs_isbi.jpg: built-in synthetic images beside real
ISBI 2014 images and clusters the augmentor composed from ISBI 2014 train45 cells.

    python docs/make_data_figure.py   # reads $DONET_DATA (default ../shared/data)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from donet.data import ClusterAugmentor, SynthConfig, generate
from donet.io import read_isbi_png

REPO = Path(__file__).resolve().parents[1]
TILE = 256


def tile(pixels: np.ndarray) -> Image.Image:
    image = Image.fromarray(pixels).convert("RGB")
    return image.resize((TILE, TILE), Image.Resampling.LANCZOS)


def main() -> None:
    data = Path(os.environ.get("DONET_DATA", REPO.parent / "shared" / "data"))
    isbi = read_isbi_png(data / "isbi2014" / "isbi2014_train")
    augmentor = ClusterAugmentor(isbi, overlap=(0.2, 0.3))
    rng = np.random.default_rng(0)
    rows = [
        ("synthetic, gray (donet synth)", [generate(i, SynthConfig(), seed=0).image for i in (1, 2, 5, 7)]),
        ("real ISBI 2014 train45", [isbi[i].image for i in (0, 9, 20, 33)]),
        ("synthetic, Pap colour (--color)", [generate(i, SynthConfig(color=True), seed=0).image for i in (1, 2, 5, 7)]),
        ("cluster augmentor on train45 cells", [augmentor(rng).image for _ in range(4)]),
    ]
    label = 22
    figure = Image.new("RGB", (4 * TILE, len(rows) * (TILE + label)), "white")
    draw = ImageDraw.Draw(figure)
    for r, (title, images) in enumerate(rows):
        top = r * (TILE + label)
        draw.text((6, top + 5), title, fill="black")
        for c, pixels in enumerate(images):
            figure.paste(tile(pixels), (c * TILE, top + label))
    out = REPO / "docs" / "images" / "synthetic_vs_isbi.jpg"
    figure.save(out, quality=85)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
