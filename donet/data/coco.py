"""COCO instance JSON: reading (polygons or RLE) and writing (RLE, overlaps preserved).

The nucleus -> cell link travels in a non-standard annotation field, `parent_id` (the
annotation id of the cell); pycocotools and other COCO tools ignore it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from ..atomic import write_text_atomic
from ..errors import DonetError
from .dataset import Dataset
from .imageio import read_image, write_image
from .instances import AnnotatedImage, CellClass, Instance

# Category names (case-insensitive) understood without a user mapping.
DEFAULT_CATEGORY_NAMES: dict[str, CellClass] = {
    "cytoplasm": CellClass.CYTOPLASM,
    "cyto": CellClass.CYTOPLASM,
    "cell": CellClass.CYTOPLASM,
    "nucleus": CellClass.NUCLEUS,
    "nuclei": CellClass.NUCLEUS,
}


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DonetError(path, "no such COCO JSON file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DonetError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= data.keys():
        raise DonetError(path, "not a COCO instance file (needs 'images', 'annotations' and 'categories')")
    return data


def segmentation_rle(segmentation, height: int, width: int) -> dict:
    if isinstance(segmentation, list):  # polygons: one object may have several parts
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            raise ValueError("polygon with fewer than 3 points")
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segmentation, dict) and "counts" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(f"RLE size {segmentation['size']} differs from its image ({height}x{width})")
        if isinstance(segmentation["counts"], list):  # uncompressed RLE
            return mask_utils.frPyObjects(segmentation, height, width)
        counts = segmentation["counts"]
        return {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
    raise ValueError("segmentation is neither polygons nor RLE")


def read_coco(json_path: str | Path, image_root: str | Path | None = None,
              category_map: Mapping[str, CellClass | str] | None = None) -> Dataset:
    """Read a COCO instance file; `file_name`s resolve against `image_root` (default: the
    JSON's folder, then its `images/` subfolder). `category_map` maps category names to
    `cytoplasm` / `nucleus`; unmapped names are an error."""
    json_path = Path(json_path)
    data = _load_json(json_path)
    names = {k.lower(): CellClass[v.upper()] if isinstance(v, str) else CellClass(v)
             for k, v in (category_map or DEFAULT_CATEGORY_NAMES).items()}
    classes: dict[int, CellClass] = {}
    for category in data["categories"]:
        name = str(category.get("name", "")).lower()
        if name not in names:
            raise DonetError(json_path, f"unknown category '{category.get('name')}' (known: {sorted(names)}; "
                                        "map it with a category mapping)")
        classes[category["id"]] = names[name]
    images = {img["id"]: img for img in data["images"]}
    by_image: dict[int, list[dict]] = {image_id: [] for image_id in images}
    for ann in data["annotations"]:
        if ann.get("image_id") not in images:
            raise DonetError(json_path, f"annotation {ann.get('id')} refers to unknown image id {ann.get('image_id')}")
        if ann.get("category_id") not in classes:
            raise DonetError(json_path, f"annotation {ann.get('id')} has unknown category id {ann.get('category_id')}")
        by_image[ann["image_id"]].append(ann)
    roots = [Path(image_root)] if image_root is not None else [json_path.parent, json_path.parent / "images"]
    order = list(images)

    def locate(file_name: str) -> Path:
        for root in roots:
            if (root / file_name).is_file():
                return root / file_name
        raise DonetError(roots[0] / file_name, f"image listed in {json_path.name} not found")

    def load(index: int) -> AnnotatedImage:
        record = images[order[index]]
        image_path = locate(record["file_name"])
        pixels = read_image(image_path)
        height, width = pixels.shape[:2]
        if (record.get("height", height), record.get("width", width)) != (height, width):
            raise DonetError(image_path, f"image is {width}x{height} but {json_path.name} says "
                                         f"{record.get('width')}x{record.get('height')}")
        anns = by_image[order[index]]
        local_id = {ann["id"]: k + 1 for k, ann in enumerate(anns)}
        instances = []
        for ann in anns:
            try:
                rle = segmentation_rle(ann["segmentation"], height, width)
            except (ValueError, KeyError, TypeError) as exc:
                raise DonetError(json_path, f"annotation {ann.get('id')}: bad segmentation ({exc})") from None
            if mask_utils.area(rle) == 0:
                raise DonetError(json_path, f"annotation {ann.get('id')}: empty mask (zero area)")
            parent = ann.get("parent_id")
            if parent is not None and parent not in local_id:
                raise DonetError(json_path, f"annotation {ann['id']}: parent_id {parent} is not in the same image")
            instances.append(Instance(id=local_id[ann["id"]], category=classes[ann["category_id"]], rle=rle,
                                      parent=None if parent is None else local_id[parent],
                                      score=float(ann.get("score", 1.0))))
        return AnnotatedImage(name=Path(record["file_name"]).stem, image=pixels, instances=instances)

    return Dataset(json_path, [Path(images[i]["file_name"]).stem for i in order], load)


# pycocotools 2.0.9 and 2.0.10 copy a dataset's "info" in loadRes and fail without it.
INFO = {"description": "written by donet"}


def categories() -> list[dict]:
    return [{"id": int(c), "name": c.name.lower(), "supercategory": "cell"} for c in CellClass]


def rle_to_json(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode() if isinstance(counts, bytes) else counts}


def to_coco(samples: Iterable[AnnotatedImage], file_names: Iterable[str] | None = None) -> dict:
    """COCO instance dict of `samples` with RLE masks; ids count from 1 in sample order."""
    images, annotations = [], []
    file_names = iter(file_names) if file_names is not None else None
    for image_id, sample in enumerate(samples, start=1):
        height, width = sample.size
        file_name = next(file_names) if file_names is not None else f"{sample.name}.png"
        images.append({"id": image_id, "file_name": file_name, "height": int(height), "width": int(width)})
        first = len(annotations) + 1
        global_id = {inst.id: first + k for k, inst in enumerate(sample.instances)}
        for inst in sample.instances:
            ann = {"id": global_id[inst.id], "image_id": image_id, "category_id": int(inst.category),
                   "segmentation": rle_to_json(inst.rle), "area": inst.area, "bbox": list(inst.bbox),
                   "iscrowd": 0}
            if inst.parent is not None:
                ann["parent_id"] = global_id[inst.parent]
            if inst.score != 1.0:  # ground truth stays plain COCO; predictions carry scores
                ann["score"] = float(inst.score)
            annotations.append(ann)
    return {"info": INFO, "images": images, "annotations": annotations, "categories": categories()}


def write_coco(path: str | Path, samples: Iterable[AnnotatedImage], file_names: Iterable[str] | None = None) -> None:
    """Write the annotations only (images are the caller's: see `write_dataset`)."""
    write_text_atomic(path, json.dumps(to_coco(samples, file_names)))


def _masks_only(name: str, size: tuple[int, int], instances: list[Instance]) -> AnnotatedImage:
    """A sample without pixels, for writing annotations whose image is elsewhere."""
    return AnnotatedImage(name, np.empty((*size, 0), np.uint8), instances)


def write_predictions(path: str | Path, predictions: Mapping[str, list[Instance]],
                      sizes: Mapping[str, tuple[int, int]], file_names: Mapping[str, str] | None = None) -> None:
    """Scored instances per image name as a COCO JSON (RLE masks, `score` per annotation);
    `file_names`: each image's path as the JSON should record it (default `<name>.png`)."""
    write_coco(path, [_masks_only(name, sizes[name], instances) for name, instances in predictions.items()],
               None if file_names is None else [file_names[name] for name in predictions])


def write_dataset(folder: Path, samples: Iterable[AnnotatedImage], image_suffix: str = ".png") -> int:
    """Images under `folder/images/` and `folder/annotations.json`; returns the image count.
    Meant for a folder built under a temporary name (see `atomic.atomic_dir`)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    kept: list[AnnotatedImage] = []
    file_names: list[str] = []
    for sample in samples:
        file_name = f"images/{sample.name}{image_suffix}"
        write_image(folder / file_name, np.ascontiguousarray(sample.image))
        # Masks only: pixels are on disk, so the JSON writer need not hold every image.
        kept.append(_masks_only(sample.name, sample.size, sample.instances))
        file_names.append(file_name)
    write_coco(folder / "annotations.json", kept, file_names)
    return len(kept)
