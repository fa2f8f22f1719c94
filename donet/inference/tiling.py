"""Whole-image segmentation tile by tile, with flat memory and no duplicates at seams.

Tiles overlap by `overlap` pixels. Each tile owns the part of the image nearer to its own
centre than to its neighbours' (the seams run through the middle of each overlap), and
keeps the detections whose box centre it owns and that its edges do not cut: a cell
narrower than the overlap is seen whole by the tile that owns its centre. Detections whose centre
falls within `seam_margin` of a seam are claimed by both neighbours, so none is lost; such
pairs are reduced one-to-one (each detection pairs with at most one from the other tile,
best IoU first, above 0.5), so two different overlapping cells are never fused, which
intersection-over-smaller merging would do.

Rows of tiles are processed in order and a detection is final once the row after its own
has been seen (nuclei one row later, when the cells they may belong to are final), so only
a few rows of small mask crops are ever held: memory does not grow with the image. Tiles
can be skipped (empty glass) and spread over processes; the result depends on neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from pycocotools import mask as mask_utils

from ..data.instances import CellClass, Instance, encode_at
from ..data.nuclei import assign_parents
from ..distributed import Processes
from .paste import paste_thresholded
from .settings import InferenceSettings

Detect = Callable[[list[np.ndarray], list[tuple[int, int]]], list[dict[str, torch.Tensor]]]


@dataclass
class Piece:
    """A detection as a crop of its mask and the crop's top-left corner in the image."""

    y: int
    x: int
    mask: np.ndarray
    category: CellClass
    score: float
    tile: tuple[int, int]  # (row, column) of the tile that found it
    on_seam: bool = False


@dataclass
class Found:
    """A final detection: its number (1, 2, ... in the order found) and its parent cell's."""

    number: int
    piece: Piece
    parent: int | None = None


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def seams(starts: list[int], tile: int) -> list[float]:
    """Where ownership passes from each tile to the next: the middle of their overlap."""
    return [(starts[i + 1] + starts[i] + tile) / 2 for i in range(len(starts) - 1)]


@dataclass(frozen=True)
class Grid:
    """The tiles of an image of `height` x `width`: tile (r, c) has corner (rows[r], cols[c])."""

    height: int
    width: int
    tile: int
    overlap: int

    def __post_init__(self):
        if self.overlap >= self.tile:
            raise ValueError("overlap must be smaller than the tile")

    @classmethod
    def over(cls, shape: tuple[int, ...], settings: InferenceSettings) -> Grid:
        """The settings' tiles over an image of `shape` (H, W[, C])."""
        return cls(shape[0], shape[1], settings.tile, settings.overlap)

    @property
    def span(self) -> tuple[int, int]:
        """A tile's height and width (the image's, where it is smaller than a tile)."""
        return min(self.tile, self.height), min(self.tile, self.width)

    @cached_property
    def rows(self) -> list[int]:
        return tile_starts(self.height, self.tile, self.overlap)

    @cached_property
    def cols(self) -> list[int]:
        return tile_starts(self.width, self.tile, self.overlap)

    @cached_property
    def _seams(self) -> tuple[list[float], list[float]]:
        return seams(self.rows, self.tile), seams(self.cols, self.tile)

    def owner(self, y: float, x: float) -> tuple[int, int]:
        """The tile that owns the point (y, x)."""
        row_seams, col_seams = self._seams
        return (int(np.searchsorted(row_seams, y, side="right")), int(np.searchsorted(col_seams, x, side="right")))


def segment_tiled(detect: Detect, image, settings: InferenceSettings, *, seam_margin: float = 8.0,
                  runs: Callable[[int, int, int, int], bool] | None = None, share: Processes | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Iterator[Found]:
    """Final detections of `image` (anything sliced as an (H, W[, C]) array and read a tile at
    a time: an array, a memory map, a slide level), in tile-row order, from `detect`, which
    maps up to `settings.batch_size` crops and their top-left corners (y, x) to detections in
    each crop's coordinates (see `DoNet`; a model ignores the corners), with the settings'
    tiles, score and mask thresholds. `runs(y, x, h, w)` says whether a tile is worth running
    (default: all). With `share`, this process runs its part of the tiles and all processes
    yield the same detections. Each cell is followed by its nuclei."""
    tile, batch_size = settings.tile, settings.batch_size
    grid = Grid.over(image.shape, settings)
    rows, cols = grid.rows, grid.cols
    wanted = [[c for c in range(len(cols)) if runs is None or runs(rows[r], cols[c], *grid.span)]
              for r in range(len(rows))]
    total, done, turn = sum(map(len, wanted)), 0, 0
    batches: list[list[list[int]]] = []  # per row, this process's batches of columns
    for columns in wanted:
        # Turns go round the processes over the whole image, so short rows spread too.
        mine = [c for i, c in enumerate(columns) if share is None or (turn + i) % share.world == share.rank]
        turn += len(columns)
        batches.append([mine[start:start + batch_size] for start in range(0, len(mine), batch_size)])
    crops_of = _read_ahead(image, [[(rows[r], cols[c]) for c in batch] for r, row in enumerate(batches)
                                   for batch in row], tile)
    stitcher = Stitcher(grid)
    # Closed on the way out, also when detecting fails: a read still running is waited for
    # before the caller may close the slide it reads.
    with closing(crops_of):
        for r, columns in enumerate(wanted):
            pieces: list[Piece] = []
            for batch in batches[r]:
                corners, crops = next(crops_of)
                for c, crop, detection in zip(batch, crops, detect(crops, corners)):
                    pieces += _claimed(detection, grid, (r, c), crop.shape[:2], settings.score_threshold,
                                       settings.mask_thresholds, seam_margin)
            if share is not None and share.world > 1:
                pieces = sorted((p for part in share.all_gather(pieces) for p in part), key=lambda p: p.tile)
            done += len(columns)
            if progress and columns:
                progress(done, total)
            yield from stitcher.add_row(r, pieces)
    yield from stitcher.finish()


def _read_ahead(image, batches: list[list[tuple[int, int]]], tile: int) -> Iterator[tuple[list, list[np.ndarray]]]:
    """Each batch of corners with its crops of `image`, the next batch read on a thread while
    the caller detects this one: a slide's tiles are decoded, and a memory-mapped file's pages
    read, as the crops are taken (copied), which would otherwise leave the model (a GPU above
    all) waiting. A read that fails raises here."""

    def read(corners):
        return [np.array(image[y0:y0 + tile, x0:x0 + tile]) for y0, x0 in corners]

    if len(batches) <= 1:  # one batch (an image of one tile): nothing to read ahead of
        yield from ((corners, read(corners)) for corners in batches)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="donet-tiles") as pool:
        ahead = pool.submit(read, batches[0])
        for k, corners in enumerate(batches):
            crops = ahead.result()
            if k + 1 < len(batches):
                ahead = pool.submit(read, batches[k + 1])
            yield corners, crops


def _cut_by_tile_edge(boxes: np.ndarray, size, origin, image_size, tolerance: float = 1.0) -> np.ndarray:
    """Boxes touching a crop edge that lies inside the image (not on its border)."""
    (h, w), (y0, x0), (height, width) = size, origin, image_size
    cut = np.zeros(len(boxes), dtype=bool)
    if x0 > 0:
        cut |= boxes[:, 0] <= tolerance
    if y0 > 0:
        cut |= boxes[:, 1] <= tolerance
    if x0 + w < width:
        cut |= boxes[:, 2] >= w - tolerance
    if y0 + h < height:
        cut |= boxes[:, 3] >= h - tolerance
    return cut


def _claimed(detection, grid: Grid, cell: tuple[int, int], size, score_threshold,
             thresholds: Mapping[CellClass, float], margin) -> list[Piece]:
    keep = detection["scores"] >= score_threshold
    boxes = detection["boxes"][keep]
    if len(boxes) == 0:
        return []
    y0, x0 = grid.rows[cell[0]], grid.cols[cell[1]]
    labels, scores = detection["labels"][keep].cpu().numpy(), detection["scores"][keep].cpu().numpy()
    corners = boxes.cpu().numpy()
    centres_y = (corners[:, 1] + corners[:, 3]) / 2 + y0
    centres_x = (corners[:, 0] + corners[:, 2]) / 2 + x0
    cut = _cut_by_tile_edge(corners, size, (y0, x0), (grid.height, grid.width))
    chosen, on_seam = [], []
    for k, (cy, cx) in enumerate(zip(centres_y, centres_x)):
        if cut[k]:
            continue  # seen in part only: a neighbour whose overlap holds it sees it whole
        # Owned with a margin: a centre near a seam is claimed by the tiles on both sides.
        owners = {grid.owner(cy + dy, cx + dx) for dy in (-margin, margin) for dx in (-margin, margin)}
        if cell in owners:
            chosen.append(k)
            on_seam.append(len(owners) > 1)
    if not chosen:
        return []
    categories = [CellClass(int(labels[k])) for k in chosen]
    index = torch.as_tensor(chosen, device=boxes.device)
    pasted = paste_thresholded(detection["mask_probs"][keep][index], detection["mask_boxes"][keep][index],
                               torch.tensor([thresholds[c] for c in categories]))
    pieces = []
    for k, category, seam, (top, left, mask) in zip(chosen, categories, on_seam, pasted):
        # Clip to the tile, then to the mask's own extent.
        mask = mask[max(0, -top):size[0] - top, max(0, -left):size[1] - left]
        top, left = max(top, 0), max(left, 0)
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            continue
        crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        pieces.append(Piece(y0 + top + int(ys.min()), x0 + left + int(xs.min()), crop, category,
                            float(scores[k]), cell, seam))
    return pieces


class Stitcher:
    """Takes the claimed pieces of each row of tiles in order and gives back final detections
    in batches that each hold a cell together with its nuclei. A row's cells are final once
    the next row's duplicates are removed, its nuclei a row later (when every cell they may
    lie in is final), and a cell goes out with its nuclei a row after that: cells and nuclei
    are narrower than a tile's stride, so a few rows are held at most."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.pending: list[Piece] = []  # the last row's survivors, not yet compared with the next row
        self.cells: dict[int, list[Found]] = {}  # final cells by row, until they go out
        self.nuclei: dict[int, list[Piece]] = {}  # final nuclei by row, until their parents are known
        self.children: dict[int, list[Found]] = {}  # nuclei by parent number, until the parent goes out
        self.count = 0

    def add_row(self, row: int, pieces: list[Piece]) -> list[Found]:
        survivors = _without_seam_duplicates(self.pending, pieces, (self.grid.height, self.grid.width))
        self._finalize(row - 1, [p for p in survivors if p.tile[0] < row])
        self.pending = [p for p in survivors if p.tile[0] == row]
        return self._resolve(row - 2) + self._release(row - 3)

    def finish(self) -> list[Found]:
        last = len(self.grid.rows) - 1
        self._finalize(last, self.pending)
        self.pending = []
        orphans = [f for row in (last - 1, last) for f in self._resolve(row)]
        return orphans + [f for row in (last - 2, last - 1, last) for f in self._release(row)]

    def _finalize(self, row: int, pieces: list[Piece]) -> None:
        self.cells[row] = []
        for piece in pieces:
            if piece.category is CellClass.CYTOPLASM:
                self.count += 1
                self.cells[row].append(Found(self.count, piece))
        self.nuclei[row] = [p for p in pieces if p.category is CellClass.NUCLEUS]

    def _resolve(self, row: int) -> list[Found]:
        """Number the nuclei of `row` and link them to their cells; returns those with no cell."""
        near = [cell for r in (row - 1, row, row + 1) for cell in self.cells.get(r, [])]
        orphans = []
        for nucleus in self.nuclei.pop(row, []):
            self.count += 1
            found = Found(self.count, nucleus, _parent(nucleus, near))
            if found.parent is None:
                orphans.append(found)
            else:
                self.children.setdefault(found.parent, []).append(found)
        return orphans

    def _release(self, row: int) -> list[Found]:
        """The cells of `row`, each followed by its nuclei (all known by now)."""
        out = []
        for cell in self.cells.pop(row, []):
            out += [cell, *self.children.pop(cell.number, [])]
        return out


def _without_seam_duplicates(earlier: list[Piece], new: list[Piece], size: tuple[int, int]) -> list[Piece]:
    """`earlier` + `new` less the weaker of each cross-tile duplicate pair that involves a new
    piece: best IoU first, and a detection pairs with at most one detection of each other tile
    (a cell claimed at a corner has up to four copies, one per tile; two different cells
    never pair with the same copy)."""
    pieces = earlier + new
    seam_pieces = [i for i, p in enumerate(pieces) if p.on_seam]
    if len(seam_pieces) < 2 or not new:
        return pieces
    rles = [encode_at(pieces[i].mask, pieces[i].y, pieces[i].x, size) for i in seam_pieces]
    iou = np.asarray(mask_utils.iou(rles, rles, [0] * len(rles))).reshape(len(rles), len(rles))
    is_new = [i >= len(earlier) for i in seam_pieces]
    candidates = [(iou[a, b], a, b) for a in range(len(rles)) for b in range(a + 1, len(rles))
                  if iou[a, b] > 0.5 and (is_new[a] or is_new[b])
                  and pieces[seam_pieces[a]].tile != pieces[seam_pieces[b]].tile
                  and pieces[seam_pieces[a]].category == pieces[seam_pieces[b]].category]
    paired, dropped = set(), set()
    for _, a, b in sorted(candidates, reverse=True):
        first, second = pieces[seam_pieces[a]], pieces[seam_pieces[b]]
        if a in dropped or b in dropped or (a, second.tile) in paired or (b, first.tile) in paired:
            continue
        paired |= {(a, second.tile), (b, first.tile)}
        dropped.add(b if first.score >= second.score else a)
    dropped = {seam_pieces[i] for i in dropped}
    return [p for i, p in enumerate(pieces) if i not in dropped]


def instances(found: Iterator[Found], size: tuple[int, int]) -> list[Instance]:
    """Whole-image instances (RLE over the full image) of final detections, by number."""
    return [Instance(f.number, f.piece.category, encode_at(f.piece.mask, f.piece.y, f.piece.x, size),
                     parent=f.parent, score=f.piece.score) for f in sorted(found, key=lambda f: f.number)]


def _parent(nucleus: Piece, cells: list[Found]) -> int | None:
    """The parent rule of `data.nuclei`, evaluated in the window of the nucleus and the
    cells that touch it (the rule only depends on pixels under the nucleus)."""
    h, w = nucleus.mask.shape
    window = np.zeros((0, h, w), dtype=bool)
    touching = []
    for found in cells:
        cell = found.piece
        top, left = max(cell.y, nucleus.y), max(cell.x, nucleus.x)
        bottom = min(cell.y + cell.mask.shape[0], nucleus.y + h)
        right = min(cell.x + cell.mask.shape[1], nucleus.x + w)
        if top >= bottom or left >= right:
            continue
        placed = np.zeros((1, h, w), dtype=bool)
        placed[0, top - nucleus.y:bottom - nucleus.y, left - nucleus.x:right - nucleus.x] = \
            cell.mask[top - cell.y:bottom - cell.y, left - cell.x:right - cell.x]
        window = np.concatenate([window, placed])
        touching.append(found.number)
    choice = assign_parents([nucleus.mask], window)[0]
    return None if choice is None else touching[choice]
