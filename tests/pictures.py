"""Reading the pictures donet draws back into numbers, for the tests that check them by content."""

import numpy as np

from donet.figures import colormap, distinct_colour


def ring(mask: np.ndarray, thickness: int = 2) -> np.ndarray:
    """A mask's pixels within `thickness` 4-connected steps of its outside (the image's edge
    counts as outside): where an outline of that thickness lies, found without erosion."""
    padded, (height, width) = np.pad(mask, thickness), mask.shape
    inner = np.ones_like(mask)
    for dy in range(-thickness, thickness + 1):
        for dx in range(abs(dy) - thickness, thickness - abs(dy) + 1):
            inner &= padded[thickness + dy:thickness + dy + height, thickness + dx:thickness + dx + width]
    return mask & ~inner


def decode_colours(picture: np.ndarray, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Values back from viridis colours (`figures.colormap` over [low, high]): the nearest of
    1001 levels, each distinct colour of the picture matched once."""
    levels = np.linspace(low, high, 1001)
    palette = colormap(levels, low, high).astype(int)
    codes = (picture[..., 0].astype(np.int64) << 16) | (picture[..., 1].astype(np.int64) << 8) | picture[..., 2]
    unique, inverse = np.unique(codes.ravel(), return_inverse=True)
    colours = np.stack([unique >> 16, (unique >> 8) & 255, unique & 255], axis=-1)
    nearest = ((colours[:, None, :] - palette) ** 2).sum(axis=-1).argmin(axis=-1)
    return levels[nearest][inverse].reshape(picture.shape[:2])


def check_overlay(picture: np.ndarray, image: np.ndarray, masks: list[np.ndarray], is_cell: list[bool]) -> None:
    """`picture` is `image` with each instance's 2-pixel outline drawn over it in instance order:
    cells each in their own colour (`figures.distinct_colour` of their index), nuclei in white.
    A 16-bit gray image is contrast-stretched for display: there only its grayness is checked."""
    rings = [ring(m) for m in masks]
    drawn = np.any(rings, axis=0) if rings else np.zeros(picture.shape[:2], bool)
    if image.ndim == 3:
        assert (picture[~drawn] == image[~drawn]).all()
    elif image.dtype == np.uint8:
        assert (picture[~drawn] == image[~drawn][:, None]).all()
    else:
        assert (picture[~drawn] == picture[~drawn][:, :1]).all()
    for k, (own, cell) in enumerate(zip(rings, is_cell)):
        visible = own & ~np.any(rings[k + 1:], axis=0) if k + 1 < len(rings) else own
        assert (picture[visible] == (distinct_colour(k) if cell else (255, 255, 255))).all(), k
