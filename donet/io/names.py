"""Names of images for people and output files, from their paths. Two files may share a
name (`x/a.png`, `y/a.png`): the names are numbered apart, and images are still told apart
by their paths wherever they are matched (see `coco.match_files`)."""

from __future__ import annotations

from pathlib import Path

from .images import TIFF_SUFFIXES


def output_name(path: Path) -> str:
    """A file's name less its suffix (`.ome.tif` whole)."""
    return path.stem.removesuffix(".ome") if path.suffix.lower() in TIFF_SUFFIXES else path.stem


def unique_names(paths: list[Path]) -> list[str]:
    """Output names (see `output_name`), numbered when repeated: `a`, `a_2`; a number is
    never one another file's own name takes (`a_2.png` keeps `a_2`)."""
    stems = [output_name(path) for path in paths]
    taken, names, seen = set(stems), [], set()
    for stem in stems:
        name, number = stem, 1
        while name in seen or (name != stem and name in taken):
            number += 1
            name = f"{stem}_{number}"
        seen.add(name)
        names.append(name)
    return names
