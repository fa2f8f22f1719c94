"""Reading and writing microscopy images: PNG, JPEG, TIFF (and OME-TIFF stacks, see `planes`);
gray or colour; 8- or 16-bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from ..atomic import atomic_path
from ..errors import DonetError
from .planes import Planes, select

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")  # .btf, .tf8: BigTIFF, which PIL cannot read
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", *TIFF_SUFFIXES, ".bmp")
MAX_PIXELS = 2 ** 31  # beyond this a single plane no longer fits the RLE size fields


def read_image(path: str | Path, planes: Planes = Planes()) -> np.ndarray:
    """Pixels as (H, W) or (H, W, C) uint8/uint16, raising DonetError on anything unreadable.
    A TIFF with focal planes, time points or channels gives the `planes` chosen."""
    path = Path(path)
    if not path.is_file():
        raise DonetError(path, "no such image file")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                axes, pixels = tif.series[0].axes, tif.series[0].asarray()
            if len(axes) == 3 and axes[0] in "QIS" and pixels.shape[0] in (1, 3, 4) and planes.channel is None:
                pixels = np.moveaxis(pixels, 0, -1)  # pages of a channel-first RGB TIFF
            elif set(axes) - set("YXS") or planes.channel is not None:
                pixels = select(pixels, axes, planes)  # stacks: see `planes`; other pages: the first
        else:
            with Image.open(path) as im:
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    pixels = np.asarray(im, dtype=np.int64).clip(0, 65535).astype(np.uint16)
                elif im.mode in ("1", "L", "RGB"):
                    pixels = np.asarray(im)
                else:
                    pixels = np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, IndexError, tifffile.TiffFileError) as exc:
        raise DonetError(path, f"not a readable image ({exc.__class__.__name__}: {exc})") from None
    if planes.channel is not None and pixels.ndim == 3:  # a colour image's channel
        if planes.channel >= pixels.shape[-1]:
            raise DonetError(path, f"channel {planes.channel} does not exist (the image has {pixels.shape[-1]})")
        pixels = pixels[..., planes.channel]
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3 and pixels.shape[-1] == 4:
        pixels = pixels[..., :3]  # alpha carries no stain information
    if pixels.ndim not in (2, 3) or pixels.size == 0:
        raise DonetError(path, f"unsupported image shape {pixels.shape}")
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    if pixels.dtype not in (np.uint8, np.uint16):
        if np.issubdtype(pixels.dtype, np.floating):
            raise DonetError(path, f"floating-point images are not supported (dtype {pixels.dtype})")
        pixels = pixels.clip(0, 65535).astype(np.uint16)
    return pixels


def open_image(path: Path, planes: Planes = Planes()) -> np.ndarray:
    """Pixels; a large uncompressed TIFF is memory-mapped so tiles are read as needed.
    `planes`: which focal plane, time and channel of a stack."""
    if path.suffix.lower() in TIFF_SUFFIXES and path.is_file() and planes.channel is None:
        try:
            pixels = tifffile.memmap(path, mode="r")
            # Only what the model reads as stored: native 8- or 16-bit, gray or colour.
            if (pixels.dtype in (np.uint8, np.uint16) and pixels.dtype.isnative
                    and (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] in (3, 4)))):
                return pixels
        except (ValueError, tifffile.TiffFileError, OSError):
            pass  # compressed or unusual layout: read it whole
    pixels = read_image(path, planes)
    if pixels.shape[0] * pixels.shape[1] > MAX_PIXELS:
        raise DonetError(path, f"image of {pixels.shape[1]}x{pixels.shape[0]} pixels is too large")
    return pixels


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A binary mask image as bool; any non-zero pixel is foreground."""
    pixels = read_image(path)
    if pixels.ndim == 3:
        pixels = pixels.max(axis=-1)
    if shape is not None and pixels.shape != tuple(shape):
        raise DonetError(path, f"mask size {pixels.shape[1]}x{pixels.shape[0]} differs from its image "
                               f"({shape[1]}x{shape[0]})")
    return pixels > 0


def write_image(path: str | Path, pixels: np.ndarray) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in TIFF_SUFFIXES:
            tifffile.imwrite(tmp, pixels, bigtiff=path.suffix.lower() in (".btf", ".tf8"))
        else:
            Image.fromarray(pixels).save(tmp, format=Image.registered_extensions()[path.suffix.lower()])
