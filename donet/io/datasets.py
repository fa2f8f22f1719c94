"""Opening a dataset in any supported layout, detected from the path or named explicitly."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from ..data.dataset import Dataset
from ..errors import DonetError
from .coco import read_coco
from .isbi2014 import is_layout_a, read_isbi_mat, read_isbi_png


class DataFormat(str, Enum):
    COCO = "coco"
    ISBI_PNG = "isbi-png"  # ISBI 2014 layout A: per-cell PNG masks
    ISBI_MAT = "isbi-mat"  # ISBI 2014 layout B: the challenge's *_GT.mat


def detect_format(path: Path) -> DataFormat:
    if path.is_file() and path.suffix.lower() == ".json":
        return DataFormat.COCO
    if path.is_file() and path.suffix.lower() == ".mat":
        return DataFormat.ISBI_MAT
    if path.is_dir():
        if is_layout_a(path):
            return DataFormat.ISBI_PNG
        if (path / "annotations.json").is_file():
            return DataFormat.COCO
    if not path.exists():
        raise DonetError(path, "no such file or folder")
    raise DonetError(path, "unrecognised dataset layout (expected a COCO .json or a folder holding "
                           "annotations.json, an ISBI2014 folder with orig/ and gt/, or an ISBI2014 *_GT.mat); "
                           "name it with --format")


def open_dataset(path: str | Path, format: DataFormat | None = None, images: str | Path | None = None,
                 category_map: dict | None = None) -> Dataset:
    """`images`: the image folder (COCO, ISBI .mat) or the companion image .mat (ISBI .mat)."""
    path = Path(path)
    format = DataFormat(format) if format is not None else detect_format(path)
    if format is DataFormat.COCO:
        json_path = path / "annotations.json" if path.is_dir() else path
        return read_coco(json_path, image_root=images, category_map=category_map)
    if format is DataFormat.ISBI_PNG:
        return read_isbi_png(path)
    return read_isbi_mat(path, images)
