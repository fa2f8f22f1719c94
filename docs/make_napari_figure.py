"""The README's napari screenshot: the plugin's widget runs the shipped model on the test90
image with the most overlapping cell pairs, and the real viewer draws the result.

    xvfb-run -a -s "-screen 0 1400x1000x24" env QT_QPA_PLATFORM=xcb python docs/make_napari_figure.py

(A screen with OpenGL is needed: offscreen Qt has none. Xvfb and Mesa give one.)
"""

import os
from pathlib import Path

import napari
import numpy as np
from PIL import Image
from qtpy.QtWidgets import QApplication

from donet.data import CellClass
from donet.io import open_dataset
from donet.napari_plugin.widget import SegmentWidget

DATA = Path(os.environ.get("DONET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def overlapping_pairs(sample) -> int:
    masks = sample.masks(CellClass.CYTOPLASM).reshape(len(sample.cells), -1).astype(np.int32)
    shared = masks @ masks.T
    return int((np.triu(shared, 1) > 0).sum())


def main() -> None:
    test90 = open_dataset(DATA / "isbi2014" / "isbi2014_test")
    sample = max((test90[i] for i in range(len(test90))), key=overlapping_pairs)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 900)
    image = viewer.add_image(sample.image, name=sample.name)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment overlapping cells")
    widget.image.value = image
    widget.device.value = "cpu"
    widget.run()
    while not widget.run_button.enabled:
        QApplication.processEvents()
    viewer.layers[f"{sample.name} nuclei"].visible = True
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    out = Path(__file__).parent / "images" / "napari.png"
    Image.fromarray(shot[..., :3]).save(out, optimize=True)
    print(f"{out}: {sample.name}, {widget.status.value}")
    viewer.close()


if __name__ == "__main__":
    main()
