"""Names of images for people and output files, from their paths. Two files may share a
name (`x/a.png`, `y/a.png`): the names are numbered apart, and images are still told apart
by their paths wherever they are matched (see `coco.match_files`)."""

from __future__ import annotations

from pathlib import Path


def output_name(path: Path) -> str:
    """A file's name less its suffix (`.ome.tif` whole)."""
    return path.stem.removesuffix(".ome") if path.suffix.lower() in (".tif", ".tiff") else path.stem


def unique_names(paths: list[Path]) -> list[str]:
    """Output names (see `output_name`), numbered when repeated: `a`, `a_2`."""
    names, seen = [], {}
    for path in paths:
        stem = output_name(path)
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(stem if count == 0 else f"{stem}_{count + 1}")
    return names
