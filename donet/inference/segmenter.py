"""The front door of inference: a `Segmenter` runs a model under `InferenceSettings` on one
image, on many (batched across images, read ahead in the background), or on a whole slide.

Every image goes through `tiling.segment_tiled` (an image within one tile is one tile), so
one path decides tiles, seams, ownership and nuclei's parents for all of them.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import cache
from itertools import chain, islice
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..data.instances import AnnotatedImage
from ..distributed import Processes
from ..errors import DonetError, ProcessLost
from ..io.images import open_image
from ..io.names import output_name
from ..io.planes import Planes
from ..modeling import DoNet, image_tensor
from .diameter import (
    AUTO_PASSES,
    AUTO_SAMPLE,
    AUTO_SETTLED,
    chosen_scale,
    estimate_scale,
    settings_scale,
    spread_sample,
    typical_diameter,
    within,
)
from .settings import InferenceSettings
from .tiling import instances, segment_tiled

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Segmented:
    """What became of one input of `Segmenter.segment_many` (its result, or the problem that
    stopped it, in one line) or of `Segmenter.segmented` (a result: a problem is raised), and
    the seconds it took. `detection` is the model's raw output for an image segmented as a
    single tile (the Fig. 6 heatmaps are drawn from it)."""

    name: str
    source: Path | None
    result: AnnotatedImage | None
    problem: str | None
    seconds: float
    detection: dict[str, torch.Tensor] | None = None
    # With diameter="auto", the typical cell diameter estimated: the image's own, or the set's
    # where the segmenter settled on one (`segment_many`, `settled_on`).
    diameter: float | None = None

    @property
    def instances(self):
        return self.result.instances


Input = np.ndarray | AnnotatedImage | str | Path


class Segmenter:
    """`model` under `settings` (or settings given as options, e.g. `score_threshold=0.3`),
    on the settings' device (the model is moved there and put in eval mode); under
    torchrun, `processes` shares slides' tiles."""

    def __init__(self, model: DoNet, settings: InferenceSettings | None = None,
                 processes: Processes | None = None, **options):
        if settings is not None and options:
            raise TypeError("give settings or options, not both")
        self.settings = settings if settings is not None else InferenceSettings.of(**options)
        self.processes = processes or Processes()
        self.device = self.processes.device(self.settings.device)
        self.settings = self.settings.on_device(self.device.type)
        if self.settings.precision != "fp32" and self.device.type != "cuda":
            raise DonetError(None, f"precision {self.settings.precision} needs a CUDA device")
        self.scale = settings_scale(model.config, self.settings.diameter)
        # With diameter="auto", the typical cell diameter `settled_on` a set of images found:
        # such a segmenter runs every image at the scale it chose (see `segment_many`).
        self.settled, self.set_diameter = self.settings.diameter != "auto", None
        self.model = model.eval().to(self.device)
        self.network = _for_inference(self.model) if self.device.type == "cpu" else self.model

    # -- the network -------------------------------------------------------------------

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray], scale: float | None = None) -> list[dict[str, torch.Tensor]]:
        """Raw detections (see `DoNet`) of numpy images of any size, gray or colour, each at
        the model's training scale times `scale` (default: this segmenter's, that of the
        settings' diameter or, once settled, the set's), in the images' own coordinates and on
        the model's device. On a GPU, images of one size go
        through the network together; on a small CPU, two at once, each alone (see
        `_side_by_side`)."""
        scale = self.scale if scale is None else scale
        shapes = [image.shape[:2] for image in images]
        if len(set(shapes)) > 1:  # one size at a time: the network's input size is set per size
            found = {}
            for shape in dict.fromkeys(shapes):
                chosen = [k for k, other in enumerate(shapes) if other == shape]
                found.update(zip(chosen, self.detect([images[k] for k in chosen], scale)))
            return [found[k] for k in range(len(images))]
        with self._input_size(shapes[0], scale):
            if self.device.type == "cpu":
                # A batch runs no faster than its images one by one on the CPU, so each image goes
                # alone (its numbers do not depend on the batch); where it pays, two at a time.
                if len(images) > 1 and _side_by_side():
                    return list(_image_threads().map(self._forward_alone, images))
                return [self._forward_alone(image) for image in images]
            return self._forward_together(images)

    def _forward_together(self, images: Sequence[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        """Images of one size through the network in one batch (on a GPU), in the settings'
        precision, with float32 outputs."""
        precision = PRECISIONS[self.settings.precision]
        with torch.autocast(self.device.type, dtype=precision) if precision else nullcontext():
            detections = self.network([image_tensor(image, self.device) for image in images])
        return [{k: v.float() if v.is_floating_point() else v for k, v in d.items()} for d in detections]

    def _forward_alone(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        with torch.inference_mode():  # per thread: the caller's mode does not reach a worker
            return self.network([image_tensor(image, self.device)])[0]

    @contextmanager
    def _input_size(self, size: tuple[int, int], scale: float):
        """Resize an image of `size` by the model's training scale (not to a fixed side), times
        `scale`: where that enlarges the cells, bicubically (see `InputTransform`)."""
        model = self.network
        saved = model.transform.min_size, model.transform.max_size, model.transform.enlarge_sharply
        model.transform.enlarge_sharply = scale > 1
        scale = scale * model.config.min_size / model.config.train_image_size
        model.transform.min_size = (max(1, round(min(size) * scale)),)
        model.transform.max_size = max(1, round(max(size) * scale))
        try:
            yield
        finally:
            model.transform.min_size, model.transform.max_size, model.transform.enlarge_sharply = saved

    # -- images ------------------------------------------------------------------------

    def segment(self, image: np.ndarray, name: str = "image",
                progress: Callable[[int, int], None] | None = None) -> AnnotatedImage:
        """Instances of one image (an array or a memory map): overlapping cells stay
        separate. `progress(done, total)` follows its tiles."""
        return self.segmented(image, name, progress).result

    def segmented(self, image: np.ndarray, name: str = "image",
                  progress: Callable[[int, int], None] | None = None) -> Segmented:
        """`segment`'s result as a `Segmented`, with the model's raw detection when the image
        was one tile (the Fig. 6 heatmaps and the Fig. 3 attention map are drawn from it) and,
        with `diameter="auto"`, the typical cell diameter: this image's own, or the set's on a
        segmenter `settled_on` one."""
        started = time.perf_counter()
        if self.settled:
            (result, detection), diameter = self._segment_at(image, name, self.scale, progress), self.set_diameter
        else:
            result, detection, diameter = self._at_its_cells_scale(image, name, progress)
        return Segmented(name, None, result, None, time.perf_counter() - started, detection, diameter)

    def _at_its_cells_scale(self, image, name, progress=None):
        """The image segmented from the settings' scale on, each pass at the scale the last one's
        confident cells asked for, until the estimate settles (or AUTO_PASSES): result,
        detection and diameter estimate. The result is the first pass's where the estimate's
        scale is within the tolerance of the settings', else the last pass's."""
        start = settings_scale(self.model.config, self.settings.diameter)  # also on a settled copy
        first = result, detection = self._segment_at(image, name, start, progress)
        scale, estimate = start, typical_diameter(result)
        for _ in range(AUTO_PASSES):
            if estimate is None:
                break
            wanted = estimate_scale(self.model.config, estimate)
            if within(wanted, scale, AUTO_SETTLED):
                break
            again, again_detection = self._segment_at(image, name, wanted, progress)
            found = typical_diameter(again)
            if found is None:
                break  # nothing confident at that scale: keep the last pass
            scale, result, detection, estimate = wanted, again, again_detection, found
        if chosen_scale(self.model.config, estimate, start) == start:
            result, detection = first
        return result, detection, estimate

    def settled_on(self, images: Sequence[Input], progress: Callable[[int, int], None] | None = None) -> Segmenter:
        """With `diameter="auto"`, a copy of this segmenter (sharing its network) at one diameter
        for a set of images at one magnification: `estimate_diameter` of up to AUTO_SAMPLE of
        them spread over the set (under torchrun every process must call; each estimates its
        share of `images`), at the scale it asks for where that is beyond the tolerance of the
        settings'. Otherwise, or when settled already, itself."""
        if self.settled:
            return self
        images = [images] if isinstance(images, (str, Path)) else images
        settled = copy.copy(self)  # the same model and network
        settled.set_diameter = self.estimate_diameter([images[i] for i in spread_sample(len(images))], progress)
        settled.scale = chosen_scale(self.model.config, settled.set_diameter, self.scale)
        settled.settled = True
        return settled

    def estimate_diameter(self, images: Sequence[Input],
                          progress: Callable[[int, int], None] | None = None) -> float | None:
        """The typical cell diameter of images at one magnification: the median of each image's
        own estimate (as `diameter="auto"` finds it), None where no cell is confident. Images
        that cannot be read are left out. Under torchrun the processes share the images and
        all get the same answer: call it on every process. `progress(done, total)` follows
        this process's share."""
        estimates, mine = [], [images[i] for i in range(self.processes.rank, len(images), self.processes.world)]
        for done, (name, _, pixels, problem, _) in enumerate(self._read_ahead(mine), 1):
            if problem is None:
                estimate = self._at_its_cells_scale(pixels, name)[2]
                estimates += [estimate] if estimate is not None else []
            if progress:
                progress(done, len(mine))
        estimates = [estimate for part in self.processes.all_gather(estimates) for estimate in part]
        return float(np.median(estimates)) if estimates else None

    def _segment_at(self, image, name, scale, progress=None, detection=None):
        first: list = []

        def detect(crops: list[np.ndarray], corners) -> list[dict[str, torch.Tensor]]:
            found = [detection] if detection is not None else self.detect(crops, scale)
            first.extend(found)
            return found

        found = segment_tiled(detect, image, self.settings, progress=progress)
        result = AnnotatedImage(name, image, instances(found, image.shape[:2]))
        return result, first[0] if len(first) == 1 else None

    def segment_many(self, inputs: Iterable[Input] | Sequence[Input],
                     names: Sequence[str] | None = None) -> Iterator[Segmented]:
        """`Segmented` for each input, in order: arrays, `AnnotatedImage`s (a dataset: their
        names are kept) or image files (a file that cannot be read gives its problem and the
        others go on). The next images are read in the background while the model runs, and
        images that are one tile of the same size are detected `batch_size` at a time (see
        `detect`).
        With `diameter="auto"` in the settings all images are segmented at one diameter, that
        of `settled_on` the inputs (an iterator's first AUTO_SAMPLE), made on this call (under
        torchrun every process must call, images or not) unless this segmenter is settled
        already."""
        inputs = [inputs] if isinstance(inputs, (str, Path)) else inputs
        if not self.settled:
            if isinstance(inputs, Sequence):
                return self.settled_on(inputs).segment_many(inputs, names)
            rest = iter(inputs)  # an iterator: its first items are kept to be segmented after the estimate
            sample = list(islice(rest, AUTO_SAMPLE))
            return self.settled_on(sample).segment_many(chain(sample, rest), names)
        read = self._read_ahead(inputs)
        if names is not None:
            read = ((names[index], *rest) for index, (_, *rest) in enumerate(read))
        return self._segment_batched(read)

    def _segment_batched(self, read) -> Iterator[Segmented]:
        pending: list[tuple[str, Path | None, np.ndarray, float]] = []
        for name, source, pixels, problem, seconds in read:
            if problem is not None:
                yield from self._run_batch(pending)
                pending = []
                yield Segmented(name, source, None, problem, seconds)
                continue
            if pending and (not self._one_tile(pixels) or pixels.shape[:2] != pending[0][2].shape[:2]
                            or len(pending) == self.settings.batch_size):
                yield from self._run_batch(pending)
                pending = []
            if self._one_tile(pixels):
                pending.append((name, source, pixels, seconds))
                continue
            started = time.perf_counter()
            result, _ = self._segment_at(pixels, name, self.scale)
            yield Segmented(name, source, result, None, seconds + time.perf_counter() - started,
                            diameter=self.set_diameter)
        yield from self._run_batch(pending)

    def _one_tile(self, pixels: np.ndarray) -> bool:
        return max(pixels.shape[:2]) <= self.settings.tile

    def _run_batch(self, batch: list[tuple[str, Path | None, np.ndarray, float]]) -> Iterator[Segmented]:
        if not batch:
            return
        started = time.perf_counter()
        detections = self.detect([pixels for _, _, pixels, _ in batch])
        shared = (time.perf_counter() - started) / len(batch)
        for (name, source, pixels, seconds), detection in zip(batch, detections):
            started = time.perf_counter()
            result, detection = self._segment_at(pixels, name, self.scale, detection=detection)
            yield Segmented(name, source, result, None, seconds + shared + time.perf_counter() - started, detection,
                            self.set_diameter)

    def _read_ahead(self, inputs) -> Iterator[tuple[str, Path | None, np.ndarray | None, str | None, float]]:
        """(name, source file, pixels or None, problem or None, seconds to read), in input
        order, read by `settings.workers` threads a few images ahead."""
        if isinstance(inputs, Sequence):
            items: Iterable = (lambda i=i: inputs[i] for i in range(len(inputs)))  # decoded in the workers
        else:
            items = (lambda item=item: item for item in inputs)
        if self.settings.workers == 0:
            yield from (_read(item, self.settings.planes) for item in items)
            return
        ahead = 2 * max(self.settings.batch_size, self.settings.workers)
        pool = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="donet-read")
        try:
            queue = []
            for item in items:
                queue.append(pool.submit(_read, item, self.settings.planes))
                if len(queue) > ahead:
                    yield queue.pop(0).result()
            for future in queue:
                yield future.result()
        finally:  # also when the caller stops early: reads not started are dropped
            pool.shutdown(cancel_futures=True)

    # -- whole slides ------------------------------------------------------------------

    def segment_slide(self, slide, progress: Callable[[int, int], None] | None = None,
                      estimating: Callable[[int, int], None] | None = None):
        """A `slides.SlideRun` over `slide` (a path or an open `io.slides.Slide`): iterate it for
        each cell with its nuclei, in level-0 coordinates, as they become final. `progress`
        follows its tiles, `estimating` the tiles of a `diameter="auto"` estimate."""
        from .slides import SlideRun

        return SlideRun(self, slide, progress, estimating)


# RoIAlign and NMS run on one thread whatever torch's thread count, so on a small CPU two
# images at once overlap one's heads with the other's convolutions (benchmarks/throughput.py,
# 2 cores). Each worker brings its own team of intra-op threads: on larger CPUs that would
# oversubscribe, unmeasured, so there images go one at a time.
IMAGES_AT_ONCE, MAX_THREADS_SIDE_BY_SIDE = 2, 4


def _side_by_side() -> bool:
    """Whether to run images two at a time: on a small CPU, and not from a worker (which would
    wait on itself)."""
    return (torch.get_num_threads() <= MAX_THREADS_SIDE_BY_SIDE
            and not threading.current_thread().name.startswith("donet-image"))


@cache
def _image_threads() -> ThreadPoolExecutor:
    """The workers that run images side by side on the CPU, one pool for the process."""
    return ThreadPoolExecutor(IMAGES_AT_ONCE, thread_name_prefix="donet-image")


if hasattr(os, "register_at_fork"):  # POSIX: a forked child inherits the pool without its threads
    os.register_at_fork(after_in_child=_image_threads.cache_clear)


def _for_inference(model: DoNet) -> DoNet:
    """A copy of `model` for the CPU that computes the same within float rounding (3e-5 on the
    shipped model's mask probabilities), faster: BatchNorm folded into the convolutions
    before it, and channels-last tensors, which oneDNN's convolutions run about a quarter
    faster (benchmarks/throughput.py). The model's own modules stay unfused, so a model
    validated during training goes on training."""
    network = copy.deepcopy(model)
    for module in network.modules():
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv, norm)
                module._modules[second] = torch.nn.Identity()
    return network.to(memory_format=torch.channels_last)


def _read(item: Callable[[], Input], planes: Planes) -> tuple[str, Path | None, np.ndarray | None, str | None, float]:
    started, value = time.perf_counter(), None
    try:
        value = item()
        if isinstance(value, AnnotatedImage):
            return value.name, None, np.asarray(value.image), None, time.perf_counter() - started
        if isinstance(value, (str, Path)):
            path = Path(value)
            return output_name(path), path, open_image(path, planes), None, time.perf_counter() - started
        return "image", None, np.asarray(value), None, time.perf_counter() - started
    except ProcessLost:
        raise  # torchrun is stopping this process: not a problem of this image
    except DonetError as exc:
        path = Path(value) if isinstance(value, (str, Path)) else exc.path
        return output_name(path) if path else "image", path, None, str(exc), time.perf_counter() - started


def segment(model: DoNet, image: np.ndarray, name: str = "image", **settings) -> AnnotatedImage:
    """Segment one numpy image: overlapping cells stay separate instances. `settings` are
    `InferenceSettings` fields, e.g. `score_threshold=0.3` or `diameter=60` (the cells'
    typical diameter in pixels, when it differs from the training images')."""
    return Segmenter(model, **settings).segment(image, name)
