"""Tiled prediction for pictures larger than the model's input: the grid of overlapping tiles, the
tiles themselves, tile detections mapped to the picture, and their merge across tiles.

A large picture (aerial, microscope) shrunk to the model's input size loses its small objects.
Cut into overlapping tiles predicted at their own resolution, it keeps them; an object cut by
a tile border is then found in two (or four) tiles, each with part of its mask, and
`merge_detections` joins those parts into one detection.

    grid = tile_grid(height, width, tile=1024, overlap=0.2)
    for tile_id, (tile_image, (x0, y0, x1, y1)) in enumerate(zip(cut(image, grid), grid)):
        ...  # predict; boxes + paste_offsets(grid)[tile_id]; masks via mask_to_picture_rle
    boxes, scores, labels, rles = merge_detections(boxes, scores, labels, rles, tile_ids)
"""

import numpy as np
from pycocotools import mask as mask_utils

from .. import defaults
from ..utils.eval import rle_areas

MIN_TILE = 32
"""The smallest tile: the largest stride of the feature levels the masks need (P3 to P5)."""


def _axis_starts(length, tile, step):
    """Start offsets of the tiles along one side: every `step` pixels, the last shifted back so
    that it ends at the edge; one start (0) when the side is not longer than the tile."""
    if length <= tile:
        return [0]
    count = -(-(length - tile) // step) + 1
    return [min(index * step, length - tile) for index in range(count)]


def tile_grid(height, width, tile, overlap=0.2, min_tile=MIN_TILE):
    """[(x0, y0, x1, y1), ...]: tiles covering a (height, width) picture, row by row.

    Tiles are `tile` x `tile` pixels (a side of the picture shorter than the tile gives tiles as
    long as that side); neighbours overlap by floor(tile * overlap) pixels, the last row and column
    more where they are shifted back to end at the picture's edge. A picture not larger than the
    tile is one tile, the whole picture.

    Args:
        height, width: the picture's size in pixels.
        tile: the side of a tile in pixels (an int >= min_tile).
        overlap: the fraction of a tile shared with its neighbour, in [0, 1).
        min_tile: the smallest tile allowed (the model's largest stride it needs).

    Returns:
        list of (x0, y0, x1, y1) int tuples, x1 and y1 exclusive.

    Raises:
        ValueError (one line): tile smaller than min_tile or not whole, overlap outside [0, 1),
        or a picture without pixels.
    """
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)):
        raise ValueError(f"tile must be a whole number of pixels, got {tile!r}")
    if tile < min_tile:
        raise ValueError(f"tile {tile} is smaller than {min_tile} pixels, the model's largest stride")
    if not isinstance(overlap, (int, float, np.number)) or not 0.0 <= float(overlap) < 1.0:
        raise ValueError(f"tile overlap must be a fraction in [0, 1), got {overlap!r}")
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise ValueError(f"cannot tile a picture of {height} x {width} pixels")
    tile = int(tile)
    step = tile - int(tile * float(overlap))  # >= 1 since overlap < 1
    return [(x0, y0, min(x0 + tile, width), min(y0 + tile, height))
            for y0 in _axis_starts(height, tile, step) for x0 in _axis_starts(width, tile, step)]


def cut(image, grid):
    """[tile image, ...]: the (y1 - y0, x1 - x0, ...) views of `image` (H, W, ...) for each
    (x0, y0, x1, y1) of `grid`; views share the picture's memory (copy before writing to them)."""
    height, width = image.shape[:2]
    for x0, y0, x1, y1 in grid:
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"tile {(x0, y0, x1, y1)} is outside the {width} x {height} picture")
    return [image[y0:y1, x0:x1] for x0, y0, x1, y1 in grid]


def paste_offsets(grid):
    """(T, 4) float32 [x0, y0, x0, y0] per tile: added to a tile's (N, 4) boxes [x1, y1, x2, y2]
    they give the boxes in the picture's pixels (`boxes + paste_offsets(grid)[tile_ids]`)."""
    grid = np.asarray(grid, dtype=np.float32).reshape(-1, 4)
    return np.concatenate([grid[:, :2], grid[:, :2]], axis=1)


def mask_to_picture_rle(mask, offset, picture_size):
    """The COCO RLE (dict of size [H, W] and compressed counts) of a tile's mask placed in the picture.

    Only the columns the mask occupies are expanded to the picture's height, so a small mask of a
    large picture costs little.

    Args:
        mask: (h, w) bool or 0/1 mask in the tile's pixels.
        offset: (x0, y0) of the tile in the picture.
        picture_size: (height, width) of the picture.
    """
    mask = np.asarray(mask)
    height, width = (int(side) for side in picture_size)
    x0, y0 = (int(value) for value in offset)
    rows, cols = mask.shape
    if x0 < 0 or y0 < 0 or x0 + cols > width or y0 + rows > height:
        raise ValueError(f"a {cols} x {rows} mask at {(x0, y0)} does not fit a {width} x {height} picture")
    used_columns = np.flatnonzero(mask.any(axis=0))
    if used_columns.size == 0:
        return _empty_rle(height, width)
    first, last = int(used_columns[0]), int(used_columns[-1]) + 1
    strip = np.zeros((height, last - first), dtype=np.uint8, order="F")
    strip[y0:y0 + rows] = mask[:, first:last] != 0
    counts = _uncompressed_counts(strip)
    before = (x0 + first) * height
    after = (width - x0 - last) * height
    counts[0] += before  # counts start with a run of zeros (possibly empty)
    if len(counts) % 2 == 1:  # ends with a run of zeros
        counts[-1] += after
    elif after:
        counts.append(after)
    return mask_utils.frPyObjects({"counts": counts, "size": [height, width]}, height, width)


def _empty_rle(height, width):
    return mask_utils.frPyObjects({"counts": [height * width], "size": [height, width]}, height, width)


def _uncompressed_counts(mask):
    """Run lengths of a (H, W) 0/1 mask in column-major order, starting with a run of zeros."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts.insert(0, 0)
    return counts


def _boxes_of(rles, fallback):
    """(N, 4) [x1, y1, x2, y2] of RLE masks (pycocotools toBbox); fallback rows for empty masks."""
    if not rles:
        return np.zeros((0, 4), dtype=np.float32)
    xywh = mask_utils.toBbox(rles).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    empty = xywh[:, 2] * xywh[:, 3] <= 0
    boxes[empty] = fallback[empty]
    return boxes


def _rectangle_rle(rectangle, height, width):
    x0, y0, x1, y1 = rectangle
    corner_and_size = np.array([[x0, y0, x1 - x0, y1 - y0]], dtype=np.float64)
    return mask_utils.frPyObjects(corner_and_size, height, width)[0]


def merge_detections(boxes, scores, labels, rles, tile_ids, iou_threshold=defaults.NMS_THRESHOLD,
                     max_detections=defaults.MAX_DETECTIONS, tiles=None):
    """(boxes (M, 4), scores (M,), labels (M,), rles [M]): tile detections merged across tiles.

    Greedily, from the highest score down, each detection not yet taken starts a group, and a
    same-class detection of a tile not yet in the group joins it when its mask overlaps the mask
    of a member by more than `iou_threshold`. The overlap is the intersection over the smaller
    mask, both masks counted only inside the region the two tiles share (with `tiles`; the
    whole picture without). Not IoU over the whole masks: the parts of an object cut by a tile
    border are seen by both tiles only in the shared strip, so a tile that sees a sliver of an
    object and one that sees all of it, or the parts of an object longer than a tile, have a
    small IoU while inside the shared strip they coincide. Members join one after another, so an
    object across three tiles joins too. Detections of the same tile never merge (the model's
    own NMS has separated them), nor do different classes. A group comes out with the union of
    its masks, the bounding box of that union, the highest score and its class; then the best
    `max_detections` groups are kept.

    Args:
        boxes: (N, 4) [x1, y1, x2, y2] in the picture's pixels.
        scores: (N,) scores.
        labels: (N,) class indices.
        rles: N COCO RLE dicts of masks of the whole picture (e.g. from mask_to_picture_rle).
        tile_ids: (N,) the tile each detection came from: ints, indices into `tiles` when given
            (the downscaled whole picture, when it is one more tile, gets its own id and the
            rectangle of the whole picture).
        iou_threshold: the intersection over the smaller mask above which two detections merge.
        max_detections: the most detections kept for the picture (None: all).
        tiles: optional (x0, y0, x1, y1) per tile id (a list, as tile_grid returns, or a dict).
            Recommended: without it the overlap is counted over the whole masks, and an object
            much longer than the tiles' overlap may stay in pieces.

    Returns:
        boxes (M, 4) float32, scores (M,) float32, labels (M,) of labels' dtype, rles list of M
        RLE dicts; sorted by score, highest first.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    tile_ids = np.asarray(tile_ids).reshape(-1)
    rles = list(rles)
    count = len(boxes)
    if not (len(scores) == len(labels) == len(rles) == len(tile_ids) == count):
        raise ValueError(f"merge_detections takes as many scores, labels, masks and tile ids as boxes "
                         f"({count}), got {len(scores)}, {len(labels)}, {len(rles)}, {len(tile_ids)}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")
    if count == 0:
        return boxes, scores, labels, []
    height, width = (int(side) for side in rles[0]["size"])
    if tiles is not None:
        try:
            rectangles = {int(tile): tuple(int(v) for v in tiles[int(tile)]) for tile in set(tile_ids.tolist())}
        except (IndexError, KeyError, TypeError, ValueError):
            raise ValueError(f"tiles must give (x0, y0, x1, y1) for every tile id "
                             f"({sorted(set(tile_ids.tolist()))})") from None

    areas = rle_areas(rles)
    area_cache = {}

    def area_inside(index, region):
        """Area of detection `index`'s mask inside the rectangle `region`."""
        key = (index, region)
        if key not in area_cache:
            inside = mask_utils.merge([rles[index], _rectangle_rle(region, height, width)], intersect=True)
            area_cache[key] = float(mask_utils.area(inside))
        return area_cache[key]

    def overlap(a, b):
        """Intersection over the smaller mask, inside the region tiles a and b share."""
        intersection = float(mask_utils.area(mask_utils.merge([rles[a], rles[b]], intersect=True)))
        if intersection <= 0:
            return 0.0
        if tiles is None:
            smaller = min(areas[a], areas[b])
        else:
            ra, rb = rectangles[int(tile_ids[a])], rectangles[int(tile_ids[b])]
            region = (max(ra[0], rb[0]), max(ra[1], rb[1]), min(ra[2], rb[2]), min(ra[3], rb[3]))
            smaller = min(area_inside(a, region), area_inside(b, region))
        return intersection / smaller if smaller > 0 else 0.0

    order = np.argsort(-scores, kind="stable")
    mask_boxes = _boxes_of(rles, boxes)
    taken = np.zeros(count, dtype=bool)
    out_boxes, out_scores, out_labels, out_rles = [], [], [], []
    for leader in order:
        if taken[leader]:
            continue
        taken[leader] = True
        members, group_tiles = [leader], {tile_ids[leader].item()}
        union, union_box = rles[leader], mask_boxes[leader].copy()
        grew = areas[leader] > 0
        while grew:
            grew = False
            candidates = order[~taken[order]
                               & (labels[order] == labels[leader])
                               & (areas[order] > 0)
                               & ~np.isin(tile_ids[order], list(group_tiles))
                               & (mask_boxes[order, 0] < union_box[2]) & (mask_boxes[order, 2] > union_box[0])
                               & (mask_boxes[order, 1] < union_box[3]) & (mask_boxes[order, 3] > union_box[1])]
            for j in candidates:  # in score order; a tile joined by a better detection stays out
                if tile_ids[j].item() in group_tiles:
                    continue
                if any(overlap(j, member) > iou_threshold for member in members):
                    taken[j] = True
                    members.append(j)
                    group_tiles.add(tile_ids[j].item())
                    union = mask_utils.merge([union, rles[j]], intersect=False)
                    union_box = _boxes_of([union], union_box[None])[0]
                    grew = True
        out_boxes.append(union_box if areas[leader] > 0 else boxes[leader])
        out_scores.append(scores[leader])
        out_labels.append(labels[leader])
        out_rles.append(union)
        if max_detections is not None and len(out_boxes) >= max_detections:
            break
    return (np.asarray(out_boxes, dtype=np.float32).reshape(-1, 4), np.asarray(out_scores, dtype=np.float32),
            np.asarray(out_labels, dtype=labels.dtype), out_rles)
