"""A lazily loaded, indexable collection of annotated images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .instances import AnnotatedImage


class Dataset(Sequence[AnnotatedImage]):
    """Names are known up front; pixels and masks are read only when an item is asked for,
    so a large dataset costs no memory until it is used."""

    def __init__(self, source: str | Path, names: Sequence[str], load: Callable[[int], AnnotatedImage],
                 files: Sequence[Path | None] | None = None):
        self.source = Path(source)
        self.names = list(names)
        # Each image's file where it has one (absolute): predictions are matched to images by it.
        self.files = [None if f is None else Path(f).absolute() for f in files] if files else [None] * len(self.names)
        self._load = load

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> AnnotatedImage:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self._load(index % len(self))

    def __repr__(self) -> str:
        return f"Dataset({str(self.source)!r}, {len(self)} images)"


def from_samples(source: str | Path, samples: Sequence[AnnotatedImage]) -> Dataset:
    samples = list(samples)
    return Dataset(source, [s.name for s in samples], samples.__getitem__)
