"""One row per instance, as a Parquet table written in row groups as instances arrive, for
analysis in pandas or Arrow (`pandas.read_parquet`) with overlaps kept: each row holds its own
mask, as COCO RLE over its bounding box."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pycocotools import mask as mask_utils

from ..atomic import atomic_path
from ..data.measurements import CELL_COLUMNS, MICRON_COLUMNS
from ..errors import DonetError

ROW_GROUP = 20_000
# With `donet predict --measure`, the measurements (`data.measurements`; a nucleus leaves the
# cell-only ones empty); otherwise empty.
MEASURED = [c for c in CELL_COLUMNS if c != "area"] + [name for name, _ in MICRON_COLUMNS.values()]


SCHEMA = pa.schema([
    ("id", pa.int64()), ("class", pa.dictionary(pa.int8(), pa.string())), ("parent", pa.int64()),
    ("score", pa.float32()), ("x", pa.int64()), ("y", pa.int64()), ("width", pa.int64()),
    ("height", pa.int64()), ("area", pa.int64()),
    # COCO compressed RLE of the mask within its box (x, y, width, height): decode with
    # pycocotools.mask.decode({"size": [height, width], "counts": rle}).
    ("rle", pa.string()),
    *((column, pa.int64() if column in ("nuclei", "nucleus_area", "overlapping_cells") else pa.float64())
      for column in MEASURED),
])


def table_row(number: int, category: str, parent: int | None, score: float, x: int, y: int,
              mask: np.ndarray, measured: dict | None = None) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"id": number, "class": category, "parent": parent, "score": score, "x": x, "y": y,
            "width": mask.shape[1], "height": mask.shape[0], "area": int(mask.sum()),
            "rle": rle["counts"].decode("ascii"), **{c: (measured or {}).get(c) for c in MEASURED}}


class TableWriter:
    def __init__(self, writer):
        self.writer, self.rows, self.count = writer, [], 0

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.writer.schema))
            self.rows = []


@contextmanager
def open_table(path: str | Path) -> Iterator[TableWriter]:
    """Write instance rows to a Parquet file a row group at a time; the file appears only
    when the block succeeds."""
    with atomic_path(path) as tmp:
        writer = pq.ParquetWriter(tmp, SCHEMA)
        table = TableWriter(writer)
        try:
            yield table
            table.flush()
        finally:
            writer.close()


def read_table(path: str | Path) -> list[dict]:
    """The rows of an instance table, each with its `mask` decoded (within its box at x, y)."""
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise DonetError(path, f"not a readable Parquet table ({exc})") from None
    for row in rows:
        rle = {"size": [row["height"], row["width"]], "counts": row["rle"].encode("ascii")}
        row["mask"] = mask_utils.decode(rle).astype(bool)
    return rows
