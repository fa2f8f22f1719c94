"""Whole-slide images read lazily, a region at a time, at any level of their pyramid.

Tiled TIFF, OME-TIFF and SVS are read through tifffile's zarr store (JPEG and JPEG 2000
tiles decoded by imagecodecs); NDPI, MRXS, DICOM WSI and the other vendor formats through
OpenSlide. Only the regions asked for are decoded, whatever the slide's size or compression;
a region that cannot be decoded is one error naming the slide, level and region.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile

from ..errors import DonetError
from .images import TIFF_SUFFIXES as IMAGE_TIFF_SUFFIXES
from .planes import Planes, arrange

TIFF_SUFFIXES = (*IMAGE_TIFF_SUFFIXES, ".svs")
OPENSLIDE_SUFFIXES = (".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".dcm")
SLIDE_PIXELS = 2 ** 28  # a flat TIFF larger than this (16384 x 16384) is read as a slide too
_MICRONS = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


def is_slide(path: Path) -> bool:
    """Whether `path` is read as a whole slide: a vendor format, a pyramid, or a TIFF too large
    to decode whole."""
    suffix = path.suffix.lower()
    if suffix in OPENSLIDE_SUFFIXES or suffix == ".svs":
        return True
    if suffix not in TIFF_SUFFIXES or not path.is_file():
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            height, width = _plane_shape(series.axes, series.shape)
            return len(series.levels) > 1 or height * width > SLIDE_PIXELS
    except (tifffile.TiffFileError, OSError, ValueError, IndexError):
        return False  # reported as unreadable when read as an image


class Level:
    """One pyramid level as an (H, W, 3) or (H, W) uint8/uint16 array that decodes only the
    regions sliced from it. `downsample`: level-0 pixels per pixel of this level; `where`:
    (slide path, level number), for errors."""

    def __init__(self, shape: tuple[int, ...], downsample: float, read, dtype=np.uint8,
                 where: tuple[Path, int] | None = None):
        self.shape, self.downsample, self._read, self.dtype = shape, downsample, read, np.dtype(dtype)
        self.where = where

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole level (viewers materialise the smallest level as a thumbnail)."""
        pixels = self[:, :]
        return pixels if dtype is None else pixels.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        rows, cols = key[:2] if isinstance(key, tuple) else (key, slice(None))
        y0, y1, step_y = rows.indices(self.shape[0])
        x0, x1, step_x = cols.indices(self.shape[1])
        if y1 <= y0 or x1 <= x0:
            return np.zeros((0, 0, *self.shape[2:]), dtype=self.dtype)
        try:
            region = self._read(y0, x0, y1 - y0, x1 - x0)
        except Exception as exc:  # decoders (imagecodecs, OpenSlide, zarr) raise their own kinds
            path, number = self.where or (None, 0)
            raise DonetError(path, f"cannot read level {number}, region x={x0} y={y0} {x1 - x0}x{y1 - y0} "
                                   f"({exc.__class__.__name__}: {exc})") from None
        return region[::step_y, ::step_x]


class Slide:
    """A whole-slide image: `levels` from full resolution down, `mpp` (microns per level-0
    pixel, None when the file does not say). Use as a context manager, or `close()`."""

    def __init__(self, path: Path, levels: list[Level], mpp: float | None, closer):
        self.path, self.levels, self.mpp, self._closer = path, levels, mpp, closer
        self.taken: dict = {}  # which focal plane, time and channel were taken, where there was a choice

    def close(self) -> None:
        self._closer()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def level_for(self, downsample: float) -> int:
        """The coarsest level no coarser than `downsample` (level-0 pixels per pixel wanted):
        the rest of the way is resampled, so no detail is invented by upsampling a level."""
        fits = [i for i, level in enumerate(self.levels) if level.downsample <= downsample * 1.01]
        return max(fits, key=lambda i: self.levels[i].downsample) if fits else 0

    def thumbnail(self, max_side: int = 2048) -> tuple[np.ndarray, float]:
        """A small view of the whole slide and its downsample from level 0, read from the
        smallest level (block by block with a stride where the slide has no small level)."""
        index = min(range(len(self.levels)), key=lambda i: max(self.levels[i].shape[:2]))
        level = self.levels[index]
        step = max(1, int(np.ceil(max(level.shape[:2]) / max_side)))
        block = step * 1024
        rows = []
        for y in range(0, level.shape[0], block):
            rows.append(np.concatenate([level[y:y + block:step, x:x + block:step]
                                        for x in range(0, level.shape[1], block)], axis=1))
        return np.concatenate(rows, axis=0), level.downsample * step


def open_slide(path: str | Path, mpp: float | None = None,
               reader: Literal["auto", "tifffile", "openslide"] = "auto", planes: Planes = Planes()) -> Slide:
    """Open a slide lazily; `mpp` overrides (or supplies) its microns per level-0 pixel.
    `reader` "auto" reads TIFF-family files with tifffile, the rest with OpenSlide (whose
    slides are RGB, one focal plane). `planes`: which focal plane, time and channel."""
    path = Path(path)
    if not path.is_file():
        raise DonetError(path, "no such slide file")
    if reader == "openslide" or (reader == "auto" and path.suffix.lower() in OPENSLIDE_SUFFIXES):
        slide = _open_openslide(path, planes)
    elif reader == "tifffile":
        slide = _open_tiff(path, planes)
    else:
        try:
            slide = _open_tiff(path, planes)
        except DonetError as problem:  # a vendor's TIFF dialect (Ventana, Philips...) OpenSlide may know
            if planes != Planes():
                raise  # OpenSlide has no focal planes or channels to choose from
            try:
                slide = _open_openslide(path)
            except DonetError:
                raise problem from None
    if mpp is not None:
        slide.mpp = mpp
    return slide


def _plane_shape(axes: str, shape: tuple[int, ...]) -> tuple[int, int]:
    return shape[axes.index("Y")], shape[axes.index("X")]


def _open_tiff(path: Path, planes: Planes) -> Slide:
    import zarr

    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        raise DonetError(path, f"not a readable TIFF slide ({exc.__class__.__name__}: {exc})") from None
    try:
        series = tif.series[0]
        if not (np.issubdtype(series.dtype, np.unsignedinteger) and series.dtype.itemsize <= 2):
            raise NotImplementedError(f"{series.dtype} pixels (only 8- and 16-bit unsigned are read)")
        planes.index(series.axes, series.shape, series.dtype)  # a channel the file lacks: say so now
        full_height = _plane_shape(series.axes, series.shape)[0]
        levels = []
        for number, level in enumerate(series.levels):
            array = zarr.open(series.aszarr(level=number), mode="r")
            height, width = _plane_shape(level.axes, level.shape)
            levels.append(Level(_layout(level.axes, level.shape, array.dtype, planes), full_height / height,
                                _tiff_reader(array, level.axes, planes),
                                array.dtype if array.dtype == np.uint8 else np.uint16, (path, number)))
        slide = Slide(path, levels, _tiff_mpp(tif), tif.close)
        slide.taken = planes.describe(series.axes, series.shape, series.dtype)
        return slide
    except Exception as exc:  # tifffile and zarr raise many kinds on layouts they do not support
        tif.close()
        raise DonetError(path, f"unsupported TIFF slide layout ({exc.__class__.__name__}: {exc})") from None


def _layout(axes: str, shape: tuple[int, ...], dtype, planes: Planes) -> tuple[int, ...]:
    """The (H, W[, 3]) shape a level is read as."""
    height, width = _plane_shape(axes, shape)
    return (height, width, 3) if planes.colour_axis(axes, shape, dtype) else (height, width)


def _tiff_reader(array, axes: str, planes: Planes):
    """Region reader for a zarr array with tifffile's axes, taking the `planes` chosen."""
    index, kept = planes.index(axes, array.shape, array.dtype)

    def read(y: int, x: int, h: int, w: int) -> np.ndarray:
        region = [slice(y, y + h) if a == "Y" else slice(x, x + w) if a == "X" else i for a, i in zip(axes, index)]
        return _as_pixels(arrange(np.asarray(array[tuple(region)]), kept))

    return read


def _as_pixels(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype not in (np.uint8, np.uint16):
        pixels = pixels.clip(0, 65535).astype(np.uint16)
    return pixels


def _tiff_mpp(tif: tifffile.TiffFile) -> float | None:
    """Microns per pixel from OME metadata, an SVS description, or resolution tags in cm or inch."""
    if tif.is_ome and tif.ome_metadata:
        pixels = next((e for e in ElementTree.fromstring(tif.ome_metadata).iter() if e.tag.endswith("Pixels")), None)
        if pixels is not None and pixels.get("PhysicalSizeX"):
            return float(pixels.get("PhysicalSizeX")) * _MICRONS.get(pixels.get("PhysicalSizeXUnit", "µm"), 1.0)
    page = tif.pages[0]
    found = re.search(r"MPP\s*=\s*([0-9.]+)", page.description or "")
    if found:
        return float(found.group(1))
    resolution, unit = page.tags.get("XResolution"), page.tags.get("ResolutionUnit")
    if resolution is None or unit is None or unit.value not in (2, 3):
        return None
    numerator, denominator = resolution.value
    if numerator == 0:
        return None
    return plausible_mpp((25400.0 if unit.value == 2 else 10000.0) * denominator / numerator)


def plausible_mpp(mpp: float) -> float | None:
    """`mpp`, or None where it is no microscope's: a screen or print default (72, 96, 150,
    300 dpi... as written by generic TIFF tools, which OpenSlide passes on as ~352.8 um/px)
    or anything outside 0.01-50 um per pixel."""
    dpi = 25400.0 / mpp if mpp > 0 else 0.0
    if not 0.01 <= mpp <= 50 or any(abs(dpi - default) < 0.01 * default for default in (72, 96, 150, 300, 600)):
        return None
    return mpp


def _open_openslide(path: Path, planes: Planes = Planes()) -> Slide:
    """OpenSlide's slides are RGB, one focal plane: `planes` can only pick a colour channel."""
    if planes.channel is not None and planes.channel >= 3:
        raise DonetError(path, f"channel {planes.channel} does not exist (the slide is RGB: 0-2)")
    try:
        import openslide
    except ImportError:
        raise DonetError(path, "reading this format needs OpenSlide: pip install openslide-python openslide-bin") \
            from None
    try:
        handle = openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError, ValueError) as exc:
        raise DonetError(path, f"OpenSlide cannot read it ({exc})") from None
    mpp = handle.properties.get(openslide.PROPERTY_NAME_MPP_X)
    shape = (lambda h, w: (h, w, 3)) if planes.channel is None else (lambda h, w: (h, w))
    levels = [Level(shape(height, width), handle.level_downsamples[i], _openslide_reader(handle, i, planes.channel),
                    np.uint8, (path, i)) for i, (width, height) in enumerate(handle.level_dimensions)]
    try:
        mpp = plausible_mpp(float(mpp)) if mpp else None
    except ValueError:
        mpp = None  # a property that is no number
    slide = Slide(path, levels, mpp, handle.close)
    slide.taken = {} if planes.channel is None else {"channel": planes.channel}
    return slide


def _openslide_reader(handle, index: int, channel: int | None):
    downsample = handle.level_downsamples[index]

    def read(y: int, x: int, h: int, w: int) -> np.ndarray:
        region = np.asarray(handle.read_region((round(x * downsample), round(y * downsample)), index, (w, h)))
        # Transparent where the scanner saw nothing: glass-white.
        alpha = region[..., 3:4].astype(np.uint16)
        rgb = ((region[..., :3] * alpha + 255 * (255 - alpha)) // 255).astype(np.uint8)
        return rgb if channel is None else rgb[..., channel]

    return read
