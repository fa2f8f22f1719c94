"""Label images for tools that need them, without losing overlaps: one plane per overlap layer.

Instances are placed in the first plane where they overlap nothing, so a pixel under k cells
appears in k planes and every instance keeps its whole mask; label values are instance ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from ..atomic import atomic_path
from ..data.instances import AnnotatedImage, CellClass, Instance
from ..errors import DonetError


def label_stack(result: AnnotatedImage, category: CellClass) -> np.ndarray:
    """(layers, H, W) labels of `category`'s instances (at least one, empty, plane)."""
    instances = result.of_class(category)
    dtype = np.uint16 if max((i.id for i in instances), default=0) < 65536 else np.uint32
    planes = [np.zeros(result.size, dtype=dtype)]
    for inst in instances:
        mask = inst.mask
        for plane in planes:
            if not plane[mask].any():
                break
        else:
            plane = np.zeros(result.size, dtype=dtype)
            planes.append(plane)
        plane[mask] = inst.id
    return np.stack(planes)


def write_label_stack(path: str | Path, result: AnnotatedImage, category: CellClass) -> int:
    stack = label_stack(result, category)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, stack, imagej=stack.dtype == np.uint16, metadata={"axes": "ZYX"}
                         if stack.dtype == np.uint16 else None)
    return len(stack)


def read_label_stack(path: str | Path, category: CellClass) -> list[Instance]:
    """The instances of a label stack (a 2-D label image is a stack of one plane): one per
    label value, its mask the union of its pixels over the planes, so overlaps come back."""
    try:
        stack = tifffile.imread(path)
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise DonetError(path, f"not a readable label stack ({exc.__class__.__name__}: {exc})") from None
    stack = stack[None] if stack.ndim == 2 else stack
    if stack.ndim != 3 or not np.issubdtype(stack.dtype, np.integer):
        raise DonetError(path, f"not a label stack (shape {stack.shape}, {stack.dtype})")
    ids = np.unique(stack)
    return [Instance.from_mask(int(i), category, (stack == i).any(axis=0)) for i in ids[ids > 0]]
