"""COCO instance JSON: reading (polygons or RLE) and writing (RLE, overlaps preserved).

The nucleus -> cell link travels in a non-standard annotation field, `parent_id` (the
annotation id of the cell); pycocotools and other COCO tools ignore it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from ..atomic import write_text_atomic
from ..data.dataset import Dataset
from ..data.instances import AnnotatedImage, CellClass, Instance
from ..errors import DonetError
from .images import read_image, write_image
from .names import unique_names

# Category names (case-insensitive) understood without a user mapping.
DEFAULT_CATEGORY_NAMES: dict[str, CellClass] = {
    "cytoplasm": CellClass.CYTOPLASM,
    "cyto": CellClass.CYTOPLASM,
    "cell": CellClass.CYTOPLASM,
    "nucleus": CellClass.NUCLEUS,
    "nuclei": CellClass.NUCLEUS,
}


def _load_json(path: Path, what: str = "COCO JSON file") -> dict:
    if not path.is_file():
        raise DonetError(path, f"no such {what}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DonetError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not {"images", "annotations"} <= data.keys():
        raise DonetError(path, "not a COCO instance file (needs 'images' and 'annotations')")
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


def _classes(data: dict, json_path: Path, category_map: Mapping[str, CellClass | str] | None) -> dict[int, CellClass]:
    """Category id -> class, by category name; a file without categories uses donet's ids."""
    if "categories" not in data:
        return {int(c): c for c in CellClass}
    names = {k.lower(): CellClass[v.upper()] if isinstance(v, str) else CellClass(v)
             for k, v in (category_map or DEFAULT_CATEGORY_NAMES).items()}
    classes = {}
    for category in data["categories"]:
        name = str(category.get("name", "")).lower()
        if name not in names:
            raise DonetError(json_path, f"unknown category '{category.get('name')}' (known: {sorted(names)}; "
                                        "map it with a category mapping)")
        classes[category["id"]] = names[name]
    return classes


def _repeated(values: list[str]) -> str:
    return next(v for i, v in enumerate(values) if v in values[:i])


class _Coco:
    """A parsed COCO file: its image records, and each image's instances on demand."""

    def __init__(self, json_path: Path, category_map=None, what: str = "COCO JSON file"):
        self.path = json_path
        data = _load_json(json_path, what)
        self.classes = _classes(data, json_path, category_map)
        for record in data["images"]:
            if not isinstance(record, dict) or "id" not in record or "file_name" not in record:
                raise DonetError(json_path, f"image record {str(record)[:80]} has no 'id' or 'file_name'")
        self.images = {img["id"]: img for img in data["images"]}
        if len(self.images) < len(data["images"]):
            raise DonetError(json_path, "two image records share an id")
        names = [img["file_name"] for img in data["images"]]
        if len(set(names)) < len(names):
            raise DonetError(json_path, f"two image records name the same file ({_repeated(names)})")
        self.by_image: dict[int, list[dict]] = {image_id: [] for image_id in self.images}
        for ann in data["annotations"]:
            if not isinstance(ann, dict) or "id" not in ann:
                raise DonetError(json_path, f"annotation {str(ann)[:80]} has no 'id'")
            if ann.get("image_id") not in self.images:
                raise DonetError(json_path, f"annotation {ann.get('id')} refers to unknown image id "
                                            f"{ann.get('image_id')}")
            if ann.get("category_id") not in self.classes:
                raise DonetError(json_path, f"annotation {ann.get('id')} has unknown category id "
                                            f"{ann.get('category_id')}")
            self.by_image[ann["image_id"]].append(ann)
        self.order = list(self.images)
        # Names for people and output files; images are told apart by their paths.
        self.names = unique_names([Path(self.images[i]["file_name"]) for i in self.order])

    def size(self, index: int) -> tuple[int, int]:
        record = self.images[self.order[index]]
        try:
            return int(record["height"]), int(record["width"])
        except (KeyError, TypeError, ValueError):
            raise DonetError(self.path, f"image {record.get('file_name')} has no height and width") from None

    def instances(self, index: int, size: tuple[int, int]) -> list[Instance]:
        anns = self.by_image[self.order[index]]
        local_id = {ann["id"]: k + 1 for k, ann in enumerate(anns)}
        instances = []
        for ann in anns:
            try:
                rle = segmentation_rle(ann["segmentation"], *size)
            except (ValueError, KeyError, TypeError) as exc:
                raise DonetError(self.path, f"annotation {ann.get('id')}: bad segmentation ({exc})") from None
            if mask_utils.area(rle) == 0:
                raise DonetError(self.path, f"annotation {ann.get('id')}: empty mask (zero area)")
            parent = ann.get("parent_id")
            if parent is not None and parent not in local_id:
                raise DonetError(self.path, f"annotation {ann['id']}: parent_id {parent} is not in the same image")
            instances.append(Instance(id=local_id[ann["id"]], category=self.classes[ann["category_id"]], rle=rle,
                                      parent=None if parent is None else local_id[parent],
                                      score=float(ann.get("score", 1.0))))
        return instances


def read_coco(json_path: str | Path, image_root: str | Path | None = None,
              category_map: Mapping[str, CellClass | str] | None = None, pixels: bool = True) -> Dataset:
    """Read a COCO instance file; `file_name`s resolve against `image_root` (default: the
    JSON's folder, then its `images/` subfolder). `category_map` maps category names to
    `cytoplasm` / `nucleus`; unmapped names are an error. Without `pixels`, images are not
    read (annotations-only records) and an image file that is missing is no error."""
    coco = _Coco(Path(json_path), category_map)
    roots = [Path(image_root)] if image_root is not None else [coco.path.parent, coco.path.parent / "images"]

    def locate(record: dict) -> Path | None:
        return next((root / record["file_name"] for root in roots if (root / record["file_name"]).is_file()), None)

    files = [locate(coco.images[i]) for i in coco.order]

    def load(index: int) -> AnnotatedImage:
        record = coco.images[coco.order[index]]
        if not pixels:
            size = coco.size(index)
            return AnnotatedImage.without_pixels(coco.names[index], size, coco.instances(index, size))
        if files[index] is None:
            raise DonetError(roots[0] / record["file_name"], f"image listed in {coco.path.name} not found")
        image = read_image(files[index])
        size = image.shape[:2]
        if (record.get("height", size[0]), record.get("width", size[1])) != size:
            raise DonetError(files[index], f"image is {size[1]}x{size[0]} but {coco.path.name} says "
                                           f"{record.get('width')}x{record.get('height')}")
        return AnnotatedImage(coco.names[index], image, coco.instances(index, size))

    return Dataset(coco.path, coco.names, load, files)


def read_predictions(path: str | Path, truth: Dataset | None = None) -> dict[str, list[Instance]]:
    """Scored instances per image from a COCO JSON written by donet (or any COCO file with
    `score`s): keyed by `file_name`, or, given the ground `truth`, by the names of its
    images, matched by their files (see `match_files`)."""
    coco = _Coco(Path(path), what="predictions file")
    found = {coco.images[i]["file_name"]: coco.instances(k, coco.size(k)) for k, i in enumerate(coco.order)}
    if truth is None:
        return found
    names = match_files(list(found), coco.path.parent, truth)
    return {names[file_name]: instances for file_name, instances in found.items()}


def match_files(file_names: list[str], folder: Path, truth: Dataset) -> dict[str, str]:
    """The ground-truth image of each predicted `file_name` (relative to `folder`): the same
    file; else the one ground-truth file whose path ends with `file_name` (less any leading
    `..`: an output folder moved elsewhere); else, for ground truth without files (pixels in
    a .mat), the image of that name. Two images that merely share a name are never merged:
    an ambiguous or unknown file_name is an error."""
    by_file: dict[Path, str] = {}
    for file, name in zip(truth.files, truth.names):
        if file is not None and by_file.setdefault(file.resolve(), name) != name:
            raise DonetError(file, f"the ground truth lists this image twice ({by_file[file.resolve()]}, {name})")
    pathless = {name for f, name in zip(truth.files, truth.names) if f is None}
    matched: dict[str, str] = {}
    predicted_as: dict[str, str] = {}
    for file_name in file_names:
        name = by_file.get((folder / file_name).resolve())
        if name is None:
            parts = tuple(part for part in Path(file_name).parts if part not in ("..", "."))
            tails = [n for f, n in by_file.items() if parts and f.parts[-len(parts):] == parts]
            if len(tails) > 1:
                raise DonetError(folder / file_name, f"predicted image matches {len(tails)} ground-truth images "
                                                     f"({', '.join(sorted(tails)[:3])}); name it by its path")
            name = tails[0] if tails else Path(file_name).with_suffix("").as_posix()
            if not tails and name not in pathless:
                raise DonetError(folder / file_name, "predicted image is not in the ground truth")
        if name in predicted_as:
            raise DonetError(folder / file_name, f"predicted image is the same ground-truth image as "
                                                 f"{predicted_as[name]}")
        predicted_as[name] = file_name
        matched[file_name] = name
    return matched


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


def write_predictions(path: str | Path, predictions: Mapping[str, list[Instance]],
                      sizes: Mapping[str, tuple[int, int]], file_names: Mapping[str, str] | None = None) -> None:
    """Scored instances per image name as a COCO JSON (RLE masks, `score` per annotation);
    `file_names`: each image's path as the JSON should record it (default `<name>.png`)."""
    write_coco(path, [AnnotatedImage.without_pixels(name, sizes[name], instances) for name, instances in predictions.items()],
               None if file_names is None else [file_names[name] for name in predictions])


def relative_files(dataset: Dataset, folder: Path) -> dict[str, str]:
    """Each image's file relative to `folder` (a predictions file's), as COCO tools resolve
    `file_name`s; `<name>.png` for an image without a file."""
    return {name: relative_file(file, folder) if file is not None else f"{name}.png"
            for name, file in zip(dataset.names, dataset.files)}


def relative_file(file: Path, folder: Path) -> str:
    """`file` as a COCO `file_name` in a JSON written to `folder`: relative to it, with `/`."""
    return Path(os.path.relpath(Path(file).absolute(), Path(folder).absolute())).as_posix()


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
        kept.append(AnnotatedImage.without_pixels(sample.name, sample.size, sample.instances))
        file_names.append(file_name)
    write_coco(folder / "annotations.json", kept, file_names)
    return len(kept)
