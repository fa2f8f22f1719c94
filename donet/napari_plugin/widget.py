"""The "Segment overlapping cells" widget: runs a DoNet model on an image layer in a worker
thread and adds the cells and nuclei as Shapes layers (overlaps visible, one colour per cell).
"Train from these layers" closes the loop: the corrected cells and nuclei layers of every
segmented image become a COCO training set, the current model is fine-tuned on it, and the
new model is selected."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer

from ..atomic import atomic_dir, ensure_new_dir, write_text_atomic
from ..data.instances import AnnotatedImage, CellClass
from ..errors import DonetError
from ..inference import InferenceSettings
from ..io.coco import write_dataset
from ..io.names import unique_names
from .layers import LAYER_NAMES, instance_layers, layer_instances

DEFAULTS = InferenceSettings()
MAX_PIXELS = 8192 * 8192  # beyond this, segment a visible region or use `donet predict` on the slide
# Under the folder picked for a fine-tuned model: the corrected layers, and `donet train`'s run.
TRAINING_SET, RUN = "training_set", "run"


class SegmentWidget(Container):
    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.image = ComboBox(label="image", choices=self._image_layers)
        self.model_file = FileEdit(label="model", mode="r", filter="*.safetensors",
                                   tooltip="A checkpoint from `donet train`; empty: the model that ships with donet")
        devices = get_args(InferenceSettings.model_fields["device"].annotation)
        self.device = ComboBox(label="device", choices=list(devices), value=DEFAULTS.device)
        self.score = FloatSpinBox(label="score threshold", min=0.0, max=1.0, step=0.05,
                                  value=DEFAULTS.score_threshold)
        self.diameter = FloatSpinBox(label="cell diameter (px)", min=0.0, max=5000.0, step=5.0, value=0.0,
                                     tooltip="Typical cell diameter in this image; 0: as in the training images")
        self.auto_diameter = CheckBox(text="estimate the cell diameter",
                                      tooltip="Segment once, then again at the scale the confident cells ask for")
        self.visible_only = CheckBox(text="visible region only")
        self.maps = CheckBox(text="add intersection / complement / attention maps")
        self.run_button = PushButton(text="Segment")
        self.iterations = SpinBox(label="fine-tune iterations", min=0, max=100_000, value=0,
                                  tooltip="0: the fine-tune schedule's")
        self.tune_folder = FileEdit(label="new model folder", mode="d",
                                    tooltip=f"A new or empty folder: the corrected layers go to {TRAINING_SET}/, "
                                            f"the fine-tuned model to {RUN}/model.safetensors")
        self.train_button = PushButton(text="Train from these layers",
                                       tooltip="Fine-tune the model on every image's corrected cells and nuclei "
                                               "layers, then segment with the new model")
        self.progress = ProgressBar(value=0, min=0, max=1, visible=False)
        self.status = Label(value="")
        self.extend([self.image, self.model_file, self.device, self.score, self.diameter, self.auto_diameter,
                     self.visible_only,
                     self.maps, self.run_button, self.iterations, self.tune_folder, self.train_button,
                     self.progress, self.status])
        self.run_button.changed.connect(self.run)
        self.train_button.changed.connect(self.train_from_layers)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda _: self.image.reset_choices())
        self._models: dict[tuple[str, str], object] = {}
        self._count = (0, 1, "")  # done, total and a status line, set from the worker thread
        self._timer = QTimer()
        self._timer.timeout.connect(self._show_progress)
        self.worker = None

    def _image_layers(self, _=None) -> list:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, napari.layers.Image)]

    def _region(self, layer) -> tuple[np.ndarray, tuple[int, int]]:
        """The pixels to segment (level 0 of a multiscale image) and their corner in the image."""
        data = _level0(layer)
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
            self._report(str(exc))
            return
        self.status.value = f"segmenting {layer.name} ({pixels.shape[1]} x {pixels.shape[0]} px)"
        self._start(thread_worker(self._segment)(pixels, self._model_path(), settings),
                    lambda result: self._add_layers(layer, pixels, offset, settings, *result))

    def _model_path(self) -> str | None:
        """The model file chosen; None: the model that ships with donet."""
        return str(self.model_file.value) if str(self.model_file.value) not in ("", ".") else None

    def _start(self, worker, on_returned, total: int = 1) -> None:
        """Run `worker` with the buttons off and the progress bar following `_count`."""
        self.run_button.enabled = self.train_button.enabled = False
        self.progress.visible, self._count = True, (0, total, "")
        self._timer.start(100)
        self.worker = worker
        worker.returned.connect(on_returned)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._done)
        worker.start()

    def _segment(self, pixels: np.ndarray, model_path: str | None, settings: InferenceSettings):
        from ..inference import Segmenter
        from ..modeling.weights import load_model

        key = (model_path or "", settings.device)
        if key not in self._models:
            self._models[key] = load_model(model_path and Path(model_path))
        done = Segmenter(self._models[key], settings).segmented(
            pixels, "image", progress=lambda done, total: setattr(self, "_count", (done, total, "")))
        return done.instances, done.detection, done.result.measurements(), done.diameter

    def _show_progress(self) -> None:
        done, total, note = self._count
        self.progress.max, self.progress.value = total, done
        if note:
            self.status.value = note

    def _add_layers(self, layer, pixels, offset, settings, instances, detection, measured, diameter) -> None:
        shape = _level0(layer).shape[:2]
        placement = {"translate": tuple(layer.translate[-2:]), "scale": tuple(layer.scale[-2:])}
        region = [int(v) for v in (*offset, offset[0] + pixels.shape[0], offset[1] + pixels.shape[1])]  # segmented
        for data, meta, kind in instance_layers(instances, shape, f"{layer.name} ", offset, **placement,
                                                image_file=_image_file(layer), measured=measured):
            meta["metadata"]["region"] = region
            self.viewer._add_layer_from_data(data, meta, kind)
        if self.maps.value and detection is not None:
            from ..inference import probability_maps

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
        if settings.diameter == "auto":  # what it found, to type in as the diameter next time
            self.status.value += (f" (cell diameter {diameter:.0f} px)" if diameter is not None
                                  else " (no cell confident enough to estimate the diameter)")

    # -- human in the loop: the corrected layers fine-tune the model --------------------------

    def train_from_layers(self) -> None:
        """Write every image's corrected cells and nuclei layers as a COCO training set under the
        folder picked, and fine-tune the current model on it in a worker thread."""
        from ..training import TrainConfig

        try:
            folder = self._new_model_folder()
            samples, files = training_samples(self._annotated_images())
            config = TrainConfig.of(init=self._model_path() or "default",
                                    train={"path": str(folder / TRAINING_SET)}, iterations=self.iterations.value or None)
        except DonetError as exc:
            self._report(str(exc))
            return
        self.status.value = (f"fine-tuning for {config.iterations} iterations on {len(samples)} image(s): "
                             f"{', '.join(s.name for s in samples)}")
        self._start(thread_worker(self._fine_tune)(config, folder, samples, files, self.device.value), self._trained,
                    total=config.iterations)

    def _new_model_folder(self) -> Path:
        value = str(self.tune_folder.value)
        if value in ("", "."):
            raise DonetError(None, "pick a new folder for the fine-tuned model")
        return ensure_new_dir(Path(value).expanduser().absolute())

    def _annotated_images(self) -> list[tuple]:
        """Each image layer with its cells and nuclei layers, where its cells layer holds a cell."""
        layers = {layer.name: layer for layer in self.viewer.layers}
        pairs = [(image, _shapes_of(name, layers)) for name, image in self._image_layers()]
        pairs = [(image, shapes) for image, shapes in pairs if shapes and len(shapes[0].data)]
        if not pairs:
            raise DonetError(None, "no cells layers to train from: segment an image and correct its "
                                   "'<image> cells' and '<image> nuclei' layers first")
        return pairs

    def _fine_tune(self, config, folder: Path, samples: list[AnnotatedImage], files: dict, device: str) -> Path:
        """The worker: training set, fine-tuning on `device`, and the image files named in the model card."""
        from ..training import train

        with atomic_dir(folder / TRAINING_SET) as tmp:
            write_dataset(tmp, samples, image_suffix=".tif")  # any integer dtype, gray or colour

        def step(iteration: int, record: dict) -> None:
            self._count = (iteration, config.iterations,
                           f"fine-tuning: iteration {iteration}/{config.iterations}, loss {record['loss']:.3f}")

        train(config, folder / RUN, on_step=step, device=device)
        card = folder / RUN / "model_card.json"
        write_text_atomic(card, json.dumps({**json.loads(card.read_text()), "image_files": files}, indent=2))
        return folder / RUN / "model.safetensors"

    def _trained(self, model: Path) -> None:
        self.model_file.value = model
        self.status.value = f"fine-tuned model selected: {model}"

    def _report(self, message: str) -> None:
        self.status.value = message
        show_error(message)

    def _failed(self, exc: Exception) -> None:
        self._report(f"error: {exc}")

    def _done(self) -> None:
        self._timer.stop()
        self.progress.visible = False
        self.run_button.enabled = self.train_button.enabled = True


def _level0(layer):
    """An image layer's full-resolution pixels (level 0 of a multiscale image), not yet read."""
    data = layer.data[0] if layer.multiscale else layer.data
    if data.ndim - int(layer.rgb) != 2:
        raise DonetError(None, f"{layer.name}: 2D images only (this one has {data.ndim - int(layer.rgb)} dimensions)")
    return data


def _image_file(layer) -> str | None:
    """The file napari opened an image layer from; not the COCO file the reader found the image
    beside (the reader names the image file in its Shapes layers' metadata)."""
    path = layer.source.path
    return path if path and not path.lower().endswith(".json") else None


def _shapes_of(image_name: str, layers: dict) -> list:
    """An image layer's cells layer and nuclei layer (if any), named "<image> cells" and
    "<image> nuclei" as `_add_layers` names them, or as the reader names a COCO file's ("cells"
    beside "image", "<name> cells" beside "<name> image"). Empty without a cells layer."""
    for prefix in (f"{image_name} ", *([image_name.removesuffix("image")] if image_name.endswith("image") else [])):
        cells, nuclei = (layers.get(prefix + LAYER_NAMES[c]) for c in (CellClass.CYTOPLASM, CellClass.NUCLEUS))
        if isinstance(cells, napari.layers.Shapes):
            return [cells, *([nuclei] if isinstance(nuclei, napari.layers.Shapes) else [])]
    return []


def training_samples(annotated: list[tuple]) -> tuple[list[AnnotatedImage], dict[str, str | None]]:
    """Each (image layer, its Shapes layers) as a training image named after its layer, and
    the file each image came from."""
    names = unique_names([Path(re.sub(r"[^\w-]+", "_", image.name)) for image, _ in annotated])
    samples = [training_sample(image, shapes, name) for (image, shapes), name in zip(annotated, names)]
    files = {name: next(filter(None, (s.metadata.get("image_file") for s in shapes)), _image_file(image))
             for (image, shapes), name in zip(annotated, names)}
    return samples, files


def training_sample(image, shapes: list, name: str) -> AnnotatedImage:
    """The region the widget segmented (the whole image for layers from elsewhere), with the
    instances of the Shapes layers as the COCO writer makes them (`layers.layer_instances`).
    Cells outside the region were never segmented nor corrected: cropping leaves them out
    rather than teaching them as background."""
    data = _level0(image)
    drawn_on = next(filter(None, (s.metadata.get("image_shape") for s in shapes)), data.shape[:2])
    if tuple(drawn_on) != data.shape[:2]:
        raise DonetError(None, f"{shapes[0].name} belongs to a {drawn_on[1]} x {drawn_on[0]} px image, "
                               f"not to {image.name} ({data.shape[1]} x {data.shape[0]} px)")
    top, left, bottom, right = next(filter(None, (s.metadata.get("region") for s in shapes)), (0, 0, *data.shape[:2]))
    if (bottom - top) * (right - left) > MAX_PIXELS or np.issubdtype(data.dtype, np.floating):
        raise DonetError(None, f"{image.name}: only 8- or 16-bit images up to {MAX_PIXELS} pixels can be trained on")
    pixels = np.asarray(data[top:bottom, left:right])
    layers = [([np.asarray(p)[:, -2:] - (top, left) for p in polygons], meta, kind)
              for polygons, meta, kind in (s.as_layer_data_tuple() for s in shapes)]
    return AnnotatedImage(name, pixels, layer_instances(layers, pixels.shape[:2]))
