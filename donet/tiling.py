"""Whole-image segmentation tile by tile, with flat memory and no duplicates at seams.

Tiles overlap by `overlap` pixels. Each tile owns the part of the image nearer to its own
centre than to its neighbours' (the seams run through the middle of each overlap), and
keeps the detections whose box centre it owns and that its edges do not cut: a cell
narrower than the overlap is seen whole by the tile that owns its centre. Detections whose centre
falls within `seam_margin` of a seam are claimed by both neighbours, so none is lost; such
pairs are reduced one-to-one (each detection pairs with at most one from the other tile,
best IoU first, above 0.5), so two different overlapping cells are never fused, which
intersection-over-smaller merging would do.

Masks are kept as small crops plus offsets while tiles are processed and encoded straight
into whole-image RLE, so memory grows with the number of cells, not with the image area.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.models.detection.roi_heads import paste_masks_in_image

from .data.instances import CellClass, Instance, encode_at
from .data.nuclei import assign_parents


@dataclass
class Piece:
    """A detection as a crop of its mask and the crop's top-left corner in the image."""

    y: int
    x: int
    mask: np.ndarray
    category: CellClass
    score: float
    tile: int
    on_seam: bool = False

    @property
    def centre(self) -> tuple[float, float]:
        return self.y + self.mask.shape[0] / 2, self.x + self.mask.shape[1] / 2


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def seams(starts: list[int], tile: int) -> list[float]:
    """Where ownership passes from each tile to the next: the middle of their overlap."""
    return [(starts[i + 1] + starts[i] + tile) / 2 for i in range(len(starts) - 1)]


def _owner(value: float, boundaries: list[float]) -> int:
    return int(np.searchsorted(boundaries, value, side="right"))


def segment_tiled(detect: Callable[[list[np.ndarray], list[tuple[int, int]]], list[dict[str, torch.Tensor]]],
                  image: np.ndarray, tile: int, overlap: int, score_threshold: float, mask_threshold: float,
                  batch_size: int = 1, seam_margin: float = 8.0,
                  progress: Callable[[int, int], None] | None = None) -> list[Instance]:
    """Instances of `image` (array or memory map, read a tile at a time) from `detect`,
    which maps up to `batch_size` crops and their top-left corners (y, x) to detections in
    each crop's coordinates (see `DoNet`; a model ignores the corners). An image within one
    tile is one tile. The settings' defaults are `inference.InferenceSettings`'."""
    if overlap >= tile:
        raise ValueError("overlap must be smaller than the tile")
    height, width = image.shape[:2]
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    row_seams, col_seams = seams(rows, tile), seams(cols, tile)
    cells = [(r, c) for r in range(len(rows)) for c in range(len(cols))]
    pieces: list[Piece] = []
    for start in range(0, len(cells), batch_size):
        batch = cells[start:start + batch_size]
        corners = [(rows[r], cols[c]) for r, c in batch]
        crops = [np.asarray(image[y0:y0 + tile, x0:x0 + tile]) for y0, x0 in corners]
        for (r, c), (y0, x0), crop, detection in zip(batch, corners, crops, detect(crops, corners)):
            index = r * len(cols) + c
            pieces += _claimed(detection, crop.shape[:2], y0, x0, index, (r, c), row_seams, col_seams,
                               score_threshold, mask_threshold, seam_margin, (height, width))
            if progress:
                progress(index + 1, len(cells))
    pieces = _without_seam_duplicates(pieces, (height, width))
    return _instances(pieces, (height, width))


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


def _claimed(detection, size, y0, x0, index, cell, row_seams, col_seams, score_threshold, mask_threshold,
             margin, image_size) -> list[Piece]:
    keep = detection["scores"] >= score_threshold
    boxes = detection["boxes"][keep]
    if len(boxes) == 0:
        return []
    labels, scores, probs = detection["labels"][keep], detection["scores"][keep], detection["mask_probs"][keep]
    centres_y = (boxes[:, 1] + boxes[:, 3]).cpu().numpy() / 2 + y0
    centres_x = (boxes[:, 0] + boxes[:, 2]).cpu().numpy() / 2 + x0
    cut = _cut_by_tile_edge(boxes.cpu().numpy(), size, (y0, x0), image_size)
    claimed, on_seam = [], []
    for k, (cy, cx) in enumerate(zip(centres_y, centres_x)):
        if cut[k]:
            continue  # seen in part only: a neighbour whose overlap holds it sees it whole
        # Owned with a margin: a centre near a seam is claimed by the tiles on both sides.
        owners_y = {_owner(cy - margin, row_seams), _owner(cy + margin, row_seams)}
        owners_x = {_owner(cx - margin, col_seams), _owner(cx + margin, col_seams)}
        if cell[0] in owners_y and cell[1] in owners_x:
            claimed.append(k)
            on_seam.append(len(owners_y) > 1 or len(owners_x) > 1)
    pieces = []
    for k, seam in zip(claimed, on_seam):
        top, left, mask = paste_local(probs[k], boxes[k], mask_threshold)
        # Clip to the tile, then to the mask's own extent.
        mask = mask[max(0, -top):size[0] - top, max(0, -left):size[1] - left]
        top, left = max(top, 0), max(left, 0)
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            continue
        crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        pieces.append(Piece(y0 + top + int(ys.min()), x0 + left + int(xs.min()), crop, CellClass(int(labels[k])),
                            float(scores[k]), index, seam))
    return pieces


def paste_local(prob: torch.Tensor, box: torch.Tensor, threshold: float) -> tuple[int, int, np.ndarray]:
    """Paste an RoI mask (M x M probabilities) into a small canvas around its box; returns the canvas' corner
    and the thresholded mask. Pasting at small coordinates makes the result the same
    wherever the box lies (a tile or the whole image): float32 box arithmetic at large
    coordinates would round differently."""
    left, top = int(torch.floor(box[0])) - 2, int(torch.floor(box[1])) - 2
    local = box - torch.tensor([left, top, left, top], dtype=box.dtype, device=box.device)
    height, width = int(torch.ceil(local[3])) + 3, int(torch.ceil(local[2])) + 3
    pasted = paste_masks_in_image(prob[None, None], local[None], (height, width), padding=1)[0, 0]
    return top, left, (pasted >= threshold).cpu().numpy()


def _without_seam_duplicates(pieces: list[Piece], size: tuple[int, int]) -> list[Piece]:
    """Drop the weaker of each cross-tile duplicate pair: best IoU first, and a detection
    pairs with at most one detection of each other tile (a cell claimed at a corner has up
    to four copies, one per tile; two different cells never pair with the same copy)."""
    seam_pieces = [i for i, p in enumerate(pieces) if p.on_seam]
    if len(seam_pieces) < 2:
        return pieces
    rles = [encode_at(pieces[i].mask, pieces[i].y, pieces[i].x, size) for i in seam_pieces]
    iou = np.asarray(mask_utils.iou(rles, rles, [0] * len(rles))).reshape(len(rles), len(rles))
    candidates = [(iou[a, b], a, b) for a in range(len(rles)) for b in range(a + 1, len(rles))
                  if iou[a, b] > 0.5 and pieces[seam_pieces[a]].tile != pieces[seam_pieces[b]].tile
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


def _instances(pieces: list[Piece], size: tuple[int, int]) -> list[Instance]:
    """Cells then nuclei, nuclei linked to cells by the data layer's rule within their window."""
    cells = [p for p in pieces if p.category is CellClass.CYTOPLASM]
    nuclei = [p for p in pieces if p.category is CellClass.NUCLEUS]
    instances = [Instance(i + 1, CellClass.CYTOPLASM, encode_at(p.mask, p.y, p.x, size), score=p.score)
                 for i, p in enumerate(cells)]
    for nucleus in nuclei:
        instances.append(Instance(len(instances) + 1, CellClass.NUCLEUS, encode_at(nucleus.mask, nucleus.y, nucleus.x, size),
                                  parent=_parent(nucleus, cells), score=nucleus.score))
    return instances


def _parent(nucleus: Piece, cells: list[Piece]) -> int | None:
    """The parent rule of `data.nuclei`, evaluated in the window of the nucleus and the
    cells that touch it (the rule only depends on pixels under the nucleus)."""
    h, w = nucleus.mask.shape
    window = np.zeros((0, h, w), dtype=bool)
    touching = []
    for number, cell in enumerate(cells, start=1):
        top, left = max(cell.y, nucleus.y), max(cell.x, nucleus.x)
        bottom = min(cell.y + cell.mask.shape[0], nucleus.y + h)
        right = min(cell.x + cell.mask.shape[1], nucleus.x + w)
        if top >= bottom or left >= right:
            continue
        placed = np.zeros((1, h, w), dtype=bool)
        placed[0, top - nucleus.y:bottom - nucleus.y, left - nucleus.x:right - nucleus.x] = \
            cell.mask[top - cell.y:bottom - cell.y, left - cell.x:right - cell.x]
        window = np.concatenate([window, placed])
        touching.append(number)
    choice = assign_parents([nucleus.mask], window)[0]
    return None if choice is None else touching[choice]
