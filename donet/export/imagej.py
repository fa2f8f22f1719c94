"""ImageJ / Fiji ROI sets (.zip): one polygon ROI per cell and per nucleus."""

from __future__ import annotations

from pathlib import Path

import roifile

from ..atomic import atomic_path
from ..data.instances import AnnotatedImage, CellClass
from .polygons import mask_polygons


def write_roi_zip(path: str | Path, result: AnnotatedImage) -> int:
    """Returns the number of ROIs written (a multi-part mask gives one ROI per part)."""
    rois = []
    for inst in result.instances:
        kind = "cell" if inst.category is CellClass.CYTOPLASM else "nucleus"
        for part, polygon in enumerate(mask_polygons(inst.mask)):
            roi = roifile.ImagejRoi.frompoints(polygon)
            suffix = f"-{part + 1}" if part else ""
            parent = f"-of-cell-{inst.parent}" if inst.parent is not None else ""
            roi.name = f"{kind}-{inst.id:04d}{suffix}{parent}"
            rois.append(roi)
    with atomic_path(path) as tmp:
        tmp.unlink()  # roiwrite appends to an existing zip
        roifile.roiwrite(tmp, rois)
    return len(rois)
