"""Readers for the ISBI 2014 overlapping cervical cytology challenge data, in both layouts.

Layout A (per-cell PNGs):  ROOT/orig/<name>NNN.png, ROOT/gt/Cyto/imN/*.png (one mask per
cell), ROOT/gt/Nucleus/<name>NNN.png (all nuclei of the image in one mask).
Layout B (the challenge's files): `*_GT.mat` with `<split>_Cytoplasm` and `<split>_Nuclei`,
images from the companion `.mat` (`ISBI_Train` / `ISBI_Test90`) or from an image folder.
Both give the same instances: cells in annotation order, then nuclei as connected
components linked to their cells (see `nuclei.py`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import scipy.io

from ..data.dataset import Dataset
from ..data.instances import AnnotatedImage, CellClass, Instance
from ..data.nuclei import assign_parents, split_nuclei
from ..errors import DonetError
from .images import IMAGE_SUFFIXES, read_image, read_mask


def _trailing_number(path: Path) -> int | None:
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _by_number(files: list[Path], folder: Path) -> dict[int, Path]:
    numbered: dict[int, Path] = {}
    for path in files:
        number = _trailing_number(path)
        if number is None:
            raise DonetError(path, "file name does not end in an image number")
        if number in numbered:
            raise DonetError(path, f"image number {number} also used by {numbered[number].name}")
        numbered[number] = path
    return numbered


def build_sample(name: str, image: np.ndarray, cell_masks: list[np.ndarray], nuclei_mask: np.ndarray | None,
                 where: list[Path | str]) -> AnnotatedImage:
    """Instances of one image from per-cell masks and an all-nuclei mask.

    `where` names the file each cell mask came from (for error messages), the nuclei's last.
    """
    height, width = image.shape[:2]
    for mask, origin in zip(cell_masks, where):
        if mask.shape != (height, width):
            raise DonetError(origin, f"mask size {mask.shape[1]}x{mask.shape[0]} differs from its image "
                                     f"({width}x{height})")
        if not mask.any():
            raise DonetError(origin, "empty cell mask (zero area)")
    if nuclei_mask is not None and nuclei_mask.shape != (height, width):
        raise DonetError(where[-1], f"nuclei mask size {nuclei_mask.shape[1]}x{nuclei_mask.shape[0]} differs "
                                    f"from its image ({width}x{height})")
    cells = np.stack(cell_masks) if cell_masks else np.zeros((0, height, width), dtype=bool)
    instances = [Instance.from_mask(i + 1, CellClass.CYTOPLASM, mask) for i, mask in enumerate(cells)]
    nuclei = split_nuclei(nuclei_mask) if nuclei_mask is not None else []
    for nucleus, parent in zip(nuclei, assign_parents(nuclei, cells)):
        instances.append(Instance.from_mask(len(instances) + 1, CellClass.NUCLEUS, nucleus,
                                            parent=None if parent is None else parent + 1))
    return AnnotatedImage(name=name, image=image, instances=instances)


def is_layout_a(path: Path) -> bool:
    return (path / "orig").is_dir() and (path / "gt" / "Cyto").is_dir()


def read_isbi_png(root: str | Path) -> Dataset:
    """Layout A: per-cell PNG masks (see the module doc)."""
    root = Path(root)
    if not is_layout_a(root):
        raise DonetError(root, "not an ISBI2014 per-cell PNG folder (needs orig/ and gt/Cyto/)")
    images = _by_number(_image_files(root / "orig"), root / "orig")
    nucleus_dir = root / "gt" / "Nucleus"
    nucleus_files = _by_number(_image_files(nucleus_dir), nucleus_dir) if nucleus_dir.is_dir() else {}
    numbers = sorted(images)

    def load(index: int) -> AnnotatedImage:
        number = numbers[index]
        image_path = images[number]
        image = read_image(image_path)
        cell_dir = root / "gt" / "Cyto" / f"im{number}"
        if not cell_dir.is_dir():
            raise DonetError(cell_dir, f"missing cell masks for image {image_path.name}")
        cell_files = _image_files(cell_dir)
        cell_masks = [read_mask(path) for path in cell_files]
        nuclei_path = nucleus_files.get(number)
        nuclei_mask = read_mask(nuclei_path) if nuclei_path else None
        return build_sample(image_path.stem, image, cell_masks, nuclei_mask, [*cell_files, nuclei_path or cell_dir])

    return Dataset(root, [images[n].stem for n in numbers], load, [images[n] for n in numbers])


def _loadmat(path: Path) -> dict:
    if not path.is_file():
        raise DonetError(path, "no such .mat file")
    try:
        return scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several unrelated types for damaged files
        raise DonetError(path, f"not a readable MATLAB file ({exc.__class__.__name__}: {exc})") from None


def _key_ending(contents: dict, suffix: str, path: Path) -> str:
    keys = [k for k in contents if not k.startswith("__") and k.endswith(suffix)]
    if len(keys) != 1:
        raise DonetError(path, f"expected one variable ending in '{suffix}', found {keys or 'none'}")
    return keys[0]


def _companion_images(gt_path: Path) -> Path | None:
    candidate = gt_path.with_name(re.sub(r"_GT$", "", gt_path.stem, flags=re.IGNORECASE) + ".mat")
    return candidate if candidate != gt_path and candidate.is_file() else None


def read_isbi_mat(gt_path: str | Path, images: str | Path | None = None) -> Dataset:
    """Layout B: the challenge's `*_GT.mat`, with images from `images` (companion `.mat` or
    folder), or from the companion `.mat` beside the ground truth when `images` is None."""
    gt_path = Path(gt_path)
    ground_truth = _loadmat(gt_path)
    cytoplasm = ground_truth[_key_ending(ground_truth, "_Cytoplasm", gt_path)].ravel()
    nuclei = ground_truth[_key_ending(ground_truth, "_Nuclei", gt_path)].ravel()
    if len(cytoplasm) != len(nuclei):
        raise DonetError(gt_path, f"{len(cytoplasm)} cytoplasm entries but {len(nuclei)} nuclei entries")
    count = len(cytoplasm)
    images = Path(images) if images is not None else _companion_images(gt_path)
    if images is None:
        raise DonetError(gt_path, "images not found: give the companion image .mat (e.g. isbi_train.mat) "
                                  "or an image folder with --images")

    if images.is_dir():
        files = _by_number(_image_files(images), images)
        if sorted(files) != list(range(1, count + 1)):
            raise DonetError(images, f"expected images numbered 1..{count} to match {gt_path.name}, "
                                     f"found {len(files)} numbered files")
        names = [files[i + 1].stem for i in range(count)]
        paths = [files[i + 1] for i in range(count)]

        def image_at(index: int) -> tuple[np.ndarray, Path]:
            return read_image(files[index + 1]), files[index + 1]
    else:
        contents = _loadmat(images)
        stack = contents[_image_key(contents, images)].ravel()
        if len(stack) != count:
            raise DonetError(images, f"{len(stack)} images but {gt_path.name} annotates {count}")
        prefix = images.stem.lower()
        names = [f"{prefix}_im{i + 1:03d}" for i in range(count)]
        paths = None  # pixels inside a .mat: predictions are matched by name

        def image_at(index: int) -> tuple[np.ndarray, Path]:
            pixels = np.asarray(stack[index])
            if pixels.ndim not in (2, 3) or pixels.size == 0:
                raise DonetError(images, f"entry {index + 1} is not an image (shape {pixels.shape})")
            return pixels, images

    def load(index: int) -> AnnotatedImage:
        image, origin = image_at(index)
        cells = [np.asarray(m) > 0 for m in np.asarray(cytoplasm[index]).ravel()]
        where = [f"{gt_path} (image {index + 1}, cell {k + 1})" for k in range(len(cells))]
        return build_sample(names[index], image, cells, np.asarray(nuclei[index]) > 0,
                            [*where, f"{gt_path} (image {index + 1}, nuclei)"])

    return Dataset(gt_path, names, load, paths)


def _image_key(contents: dict, path: Path) -> str:
    keys = [k for k in contents if not k.startswith("__") and k.upper().startswith("ISBI")]
    if len(keys) != 1:
        raise DonetError(path, f"expected one image variable such as ISBI_Train, found {keys or 'none'}")
    return keys[0]
