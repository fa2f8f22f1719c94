"""ImageJ / Fiji ROI sets (.zip): one polygon ROI per cell and per nucleus, named
`cell-0007`, `nucleus-0012-of-cell-7` (a part of a multi-part mask: `cell-0007-2`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import roifile

from ..atomic import atomic_path
from ..data.instances import AnnotatedImage, CellClass
from ..errors import DonetError
from .polygons import Outline, mask_polygons


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


def read_roi_zip(path: str | Path) -> list[Outline]:
    """An ImageJ / Fiji ROI set as outlines: ROIs named `nucleus-...` (as donet writes them)
    are nuclei, the rest cells; `...-of-cell-N` links a nucleus to cell N."""
    try:
        rois = roifile.roiread(str(path))
    except (OSError, ValueError) as exc:
        raise DonetError(path, f"not a readable ImageJ ROI set ({exc})") from None
    outlines = []
    for number, roi in enumerate(rois if isinstance(rois, list) else [rois], start=1):
        name = roi.name or ""
        polygon = np.asarray(roi.coordinates(), dtype=float)
        if len(polygon) < 3:
            continue
        parts = name.split("-")
        own = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else number
        parent = int(name.rsplit("-of-cell-", 1)[1]) if "-of-cell-" in name else None
        category = CellClass.NUCLEUS if name.startswith("nucle") else CellClass.CYTOPLASM
        outlines.append(Outline(own, category, polygon, 1.0, parent))
    return outlines
