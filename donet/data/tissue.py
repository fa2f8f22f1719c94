"""Where a slide holds cells and where it is empty glass, from a thumbnail.

Glass is the bright mode of the smoothed thumbnail (above Otsu's threshold); anything darker
than the glass by more than its own noise (4 robust standard deviations, and at least 2% of full
scale) is kept. Faint, translucent cytoplasm is kept too, which a plain Otsu cut between
glass and nuclei would lose.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu


def tissue_mask(thumbnail: np.ndarray) -> np.ndarray:
    """True where the thumbnail (gray or colour, 8 or 16 bit) is darker than the glass."""
    gray = thumbnail.astype(np.float32)
    if gray.ndim == 3:
        gray = gray.mean(axis=-1)
    gray = ndimage.gaussian_filter(gray, 1.0)  # glass noise and JPEG ringing average out; cells do not
    full_scale = 65535.0 if thumbnail.dtype == np.uint16 else 255.0
    if gray.max() - gray.min() < 1:
        return np.zeros(gray.shape, dtype=bool)  # one flat colour: nothing on it
    glass = gray[gray > threshold_otsu(gray)]
    level = float(np.median(glass))
    noise = 1.4826 * float(np.median(np.abs(glass - level)))
    return gray < level - max(4 * noise, 0.02 * full_scale)


class TissueMap:
    """Answers, for a region of a level, whether it may hold cells. `downsample`: level-0
    pixels per thumbnail pixel. The mask is widened by `margin` thumbnail pixels, so a cell
    the thumbnail shows only in part still brings its tiles in."""

    def __init__(self, thumbnail: np.ndarray, downsample: float, margin: int = 2):
        mask = tissue_mask(thumbnail)
        self.mask = ndimage.binary_dilation(mask, iterations=margin) if mask.any() else mask
        self.downsample = downsample
        self.asked = self.kept = 0

    def touches(self, y: int, x: int, height: int, width: int, level_downsample: float = 1.0) -> bool:
        """Whether the region (in a level of `level_downsample`) touches anything but glass."""
        scale = level_downsample / self.downsample
        top, left = int(y * scale), int(x * scale)
        bottom, right = int(np.ceil((y + height) * scale)), int(np.ceil((x + width) * scale))
        return bool(self.mask[top:max(bottom, top + 1), left:max(right, left + 1)].any())

    def runs(self, y: int, x: int, height: int, width: int, level_downsample: float = 1.0) -> bool:
        """`touches`, counted in `asked` and `kept`: the tiles a slide's run asked about."""
        keep = self.touches(y, x, height, width, level_downsample)
        self.asked += 1
        self.kept += keep
        return keep

    @property
    def skipped_fraction(self) -> float:
        return 1 - self.kept / self.asked if self.asked else 0.0
