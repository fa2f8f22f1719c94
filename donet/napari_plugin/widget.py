"""The "Segment overlapping cells" widget: runs a DoNet model on an image layer in a worker
thread and adds the cells and nuclei as Shapes layers (overlaps visible, one colour per cell)."""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, ProgressBar, PushButton
from napari.qt.threading import thread_worker
from qtpy.QtCore import QTimer

from ..errors import DonetError
from ..inference import InferenceSettings
from .layers import instance_layers

DEFAULTS = InferenceSettings()
MAX_PIXELS = 8192 * 8192  # beyond this, segment a visible region or use `donet predict` on the slide


class SegmentWidget(Container):
    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.image = ComboBox(label="image", choices=self._image_layers)
        self.model_file = FileEdit(label="model", mode="r", filter="*.safetensors",
                                   tooltip="A checkpoint from `donet train`; empty: the model that ships with donet")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value=DEFAULTS.device)
        self.score = FloatSpinBox(label="score threshold", min=0.0, max=1.0, step=0.05,
                                  value=DEFAULTS.score_threshold)
        self.diameter = FloatSpinBox(label="cell diameter (px)", min=0.0, max=5000.0, step=5.0, value=0.0,
                                     tooltip="Typical cell diameter in this image; 0: as in the training images")
        self.auto_diameter = CheckBox(text="estimate the cell diameter",
                                      tooltip="Segment once, then again at the scale the confident cells ask for")
        self.visible_only = CheckBox(text="visible region only")
        self.maps = CheckBox(text="add intersection / complement / attention maps")
        self.run_button = PushButton(text="Segment")
        self.progress = ProgressBar(value=0, min=0, max=1, visible=False)
        self.status = Label(value="")
        self.extend([self.image, self.model_file, self.device, self.score, self.diameter, self.auto_diameter,
                     self.visible_only,
                     self.maps, self.run_button, self.progress, self.status])
        self.run_button.changed.connect(self.run)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda _: self.image.reset_choices())
        self._models: dict[tuple[str, str], object] = {}
        self._tiles = (0, 1)
        self._timer = QTimer()
        self._timer.timeout.connect(self._show_progress)
        self.worker = None

    def _image_layers(self, _=None) -> list:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, napari.layers.Image)]

    def _region(self, layer) -> tuple[np.ndarray, tuple[int, int]]:
        """The pixels to segment (level 0 of a multiscale image) and their corner in the image."""
        data = layer.data[0] if layer.multiscale else layer.data
        if data.ndim - int(layer.rgb) != 2:
            raise DonetError(None, f"{layer.name}: 2D images only (this one has {data.ndim - int(layer.rgb)} dimensions)")
        top, left, bottom, right = 0, 0, *data.shape[:2]
        if self.visible_only.value:
            corners = np.asarray(layer.corner_pixels)[:, -2:]
            factor = np.asarray(layer.downsample_factors[layer.data_level][-2:]) if layer.multiscale else 1
            (top, left), (bottom, right) = (corners * factor).astype(int)
            bottom, right = min(bottom + 1, data.shape[0]), min(right + 1, data.shape[1])
        if (bottom - top) * (right - left) > MAX_PIXELS:
            raise DonetError(None, "region too large for the viewer: tick 'visible region only' and zoom in, "
                                   "or run `donet predict` on the file")
        return np.asarray(data[top:bottom, left:right]), (top, left)

    def run(self) -> None:
        layer = self.image.value
        if layer is None:
            self.status.value = "open an image first"
            return
        try:
            settings = InferenceSettings.of(score_threshold=self.score.value, device=self.device.value,
                                            diameter="auto" if self.auto_diameter.value else self.diameter.value or None)
            pixels, offset = self._region(layer)
        except DonetError as exc:
            self.status.value = str(exc)
            return
        model_path = str(self.model_file.value) if str(self.model_file.value) not in ("", ".") else None
        self.run_button.enabled = False
        self.status.value = f"segmenting {layer.name} ({pixels.shape[1]} x {pixels.shape[0]} px)"
        self.progress.visible, self._tiles = True, (0, 1)
        self._timer.start(100)
        self.worker = thread_worker(self._segment)(pixels, model_path, settings)
        self.worker.returned.connect(lambda result: self._add_layers(layer, pixels, offset, settings, *result))
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(self._done)
        self.worker.start()

    def _segment(self, pixels: np.ndarray, model_path: str | None, settings: InferenceSettings):
        from ..inference.segmenter import Segmenter
        from ..modeling.weights import load_model

        key = (model_path or "", settings.device)
        if key not in self._models:
            self._models[key] = load_model(model_path and Path(model_path))
        result, detection, _ = Segmenter(self._models[key], settings).segment_with_detection(
            pixels, "image", progress=lambda done, total: setattr(self, "_tiles", (done, total)))
        return result.instances, detection, result.measurements()

    def _show_progress(self) -> None:
        done, total = self._tiles
        self.progress.max, self.progress.value = total, done

    def _add_layers(self, layer, pixels, offset, settings, instances, detection, measured) -> None:
        shape = (layer.data[0] if layer.multiscale else layer.data).shape[:2]
        placement = {"translate": tuple(layer.translate[-2:]), "scale": tuple(layer.scale[-2:])}
        for data, meta, kind in instance_layers(instances, shape, f"{layer.name} ", offset, **placement,
                                                measured=measured):
            self.viewer._add_layer_from_data(data, meta, kind)
        if self.maps.value and detection is not None:
            from ..inference.segmenter import probability_maps

            maps = probability_maps(detection, pixels.shape[:2], settings.score_threshold)
            if "attention" in detection:
                attention = detection["attention"].cpu().numpy()
                maps["attention"] = attention.reshape(-1, *attention.shape[-2:]).max(axis=0)
            for name, values in maps.items():
                zoom = np.asarray(pixels.shape[:2]) / np.asarray(values.shape[-2:])
                self.viewer.add_image(values, name=f"{layer.name} {name}", colormap="magma", blending="additive",
                                      opacity=0.6, scale=tuple(zoom * placement["scale"]),
                                      translate=tuple(np.asarray(placement["translate"]) + np.asarray(offset)
                                                      * placement["scale"]))
        cells = sum(i.category.name == "CYTOPLASM" for i in instances)
        self.status.value = f"{layer.name}: {cells} cells, {len(instances) - cells} nuclei"

    def _failed(self, exc: Exception) -> None:
        self.status.value = f"error: {exc}"

    def _done(self) -> None:
        self._timer.stop()
        self.progress.visible = False
        self.run_button.enabled = True
