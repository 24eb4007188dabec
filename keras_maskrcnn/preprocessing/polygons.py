"""Polygons to masks, as COCO rasterises them: the one rasterisation every data set format uses.

A polygon is a flat list [x1, y1, x2, y2, ...] in picture pixels: x to the right, y down, (0, 0) the
top-left corner of the top-left pixel, so a pixel (row r, column c) covers [c, c + 1) x [r, r + 1).
An object is one or more polygons; its mask is their union, rasterised by pycocotools exactly as
`COCO.annToMask` rasterises a polygon segmentation, so one object gives the same mask whichever tool
exported it and masks match what COCO evaluation measures. Rectangles and circles are turned into
polygons first (`rectangle_to_polygon`, `circle_to_polygon`).

Points outside the picture are allowed by pycocotools (the mask is the polygon's part inside the
picture); `clip_polygon` warns about them and gives the clipped points, for the object's box.
"""

import math
import warnings

import numpy as np
from pycocotools import mask as mask_utils

from .bad_images import AnnotationWarning

CIRCLE_TOLERANCE = 0.1
"""The most a circle's polygon strays from the circle, in pixels (the gap between arc and chord)."""

CIRCLE_MIN_VERTICES = 16
"""The fewest vertices of a circle's polygon."""

CLIP_TOLERANCE = 1.0
"""Points up to this many pixels outside the picture are clipped without a warning (tools often
put border points half a pixel out)."""


class PolygonClippedWarning(AnnotationWarning):
    """A polygon had points outside its picture; the message names the annotation."""


def check_polygon(flat, where):
    """The polygon as a flat float64 array (2 K,) after checking it.

    Args:
        flat: [x1, y1, x2, y2, ...] numbers (pixels, or normalised coordinates for formats that use them).
        where: the annotation, for messages (file and line, or file and shape index).

    Returns:
        (2 K,) float64 array, K >= 3 points.

    Raises:
        ValueError naming `where` if the polygon holds something that is not a number, an odd
        number of coordinates, fewer than 3 points, or a NaN or infinite coordinate.
    """
    try:
        values = np.asarray(flat, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: polygon coordinates must be numbers, got {flat!r}") from None
    if values.size % 2:
        raise ValueError(f"{where}: polygon has an odd number of coordinates ({values.size}); "
                         f"expected x1 y1 x2 y2 ... pairs")
    if values.size < 6:
        raise ValueError(f"{where}: polygon has {values.size // 2} point(s); a polygon needs at least 3")
    if not np.isfinite(values).all():
        raise ValueError(f"{where}: polygon has a coordinate that is not a finite number: "
                         f"{values[~np.isfinite(values)][0]}")
    return values


def clip_polygon(flat, height, width, where, tolerance=CLIP_TOLERANCE):
    """The polygon's points clipped to the (height, width) picture: (2 K,) float64; warns
    (PolygonClippedWarning naming `where`) if any point lay more than `tolerance` pixels outside
    [0, width] x [0, height] (points closer than that are clipped without a word).

    Args:
        flat: [x1, y1, x2, y2, ...] in pixels.
        height, width: the picture's size in pixels.
        where: the annotation, for the warning.
        tolerance: pixels a point may lie outside the picture without a warning.

    Returns:
        (2 K,) float64 array of clipped coordinates.
    """
    values = np.asarray(flat, dtype=np.float64).reshape(-1)
    clipped = values.copy()
    clipped[0::2] = np.clip(clipped[0::2], 0.0, float(width))
    clipped[1::2] = np.clip(clipped[1::2], 0.0, float(height))
    outside = int(np.count_nonzero((np.abs(clipped - values) > tolerance).reshape(-1, 2).any(axis=1)))
    if outside:
        warnings.warn(f"{where}: {outside} point(s) of the polygon lie outside the {width}x{height} picture; "
                      f"clipped to it", PolygonClippedWarning, stacklevel=2)
    return clipped


def polygon_box(polygons):
    """[x1, y1, x2, y2] float64 (4,): the extent of one or more flat polygons (pixels)."""
    points = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons])
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def polygons_to_mask(polygons, height, width):
    """(height, width) uint8 0/1 mask: the union of flat polygons rasterised by pycocotools.

    Args:
        polygons: list of flat [x1, y1, x2, y2, ...] lists or arrays in pixels, each of at least
            3 points (check them with check_polygon); an empty list gives an empty mask.
        height, width: the picture's size.

    Returns:
        (height, width) uint8 array of 0 and 1, equal to pycocotools' `COCO.annToMask` of an
        annotation whose segmentation is `polygons`.
    """
    height, width = int(height), int(width)
    polygons = [[float(v) for v in np.asarray(p, dtype=np.float64).reshape(-1)] for p in polygons]
    if not polygons:
        return np.zeros((height, width), dtype=np.uint8)
    for polygon in polygons:
        if len(polygon) < 6 or len(polygon) % 2:  # frPyObjects reads 4 numbers as a box
            raise ValueError(f"a polygon needs at least 3 (x, y) points, got {len(polygon)} numbers")
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return np.ascontiguousarray(mask_utils.decode(rle), dtype=np.uint8)


def rectangle_to_polygon(x1, y1, x2, y2):
    """[x1, y1, x2, y1, x2, y2, x1, y2] (8,) float64: the rectangle between two opposite corners
    (in any order), clockwise from its top-left corner, in pixels."""
    left, right = sorted((float(x1), float(x2)))
    top, bottom = sorted((float(y1), float(y2)))
    return np.array([left, top, right, top, right, bottom, left, bottom], dtype=np.float64)


def circle_vertices(radius, tolerance=CIRCLE_TOLERANCE, least=CIRCLE_MIN_VERTICES):
    """How many vertices a circle of `radius` pixels needs so that no chord strays more than
    `tolerance` pixels from the arc (at least `least`)."""
    if radius <= tolerance:
        return least
    # a chord of angle 2 pi / n lies radius * (1 - cos(pi / n)) inside its arc
    return max(least, int(math.ceil(math.pi / math.acos(1.0 - tolerance / radius))))


def circle_to_polygon(cx, cy, radius, tolerance=CIRCLE_TOLERANCE):
    """(2 N,) float64 flat polygon of a circle: N vertices on the circle of centre (cx, cy) and
    `radius` pixels, N from circle_vertices (no chord more than `tolerance` pixels inside the arc)."""
    count = circle_vertices(float(radius), tolerance)
    angles = np.arange(count) * (2.0 * math.pi / count)
    points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
    return points.reshape(-1).astype(np.float64)
