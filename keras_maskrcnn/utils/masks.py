"""Mask sampling into RoIs (training targets) and pasting back into images (predictions).

Coordinates are continuous image pixels: pixel i covers [i, i + 1), its centre is i + 0.5.
Boxes are (x1, y1, x2, y2). Both directions sample bilinearly at bin / pixel centres
(half-pixel aligned, like RoIAlign with aligned=True) and threshold the result.
"""

import numpy as np


def _bilinear(image, xs, ys, clamp):
    """Bilinear samples of a 2-D array at pixel-index coordinates xs, ys (same shape).

    With clamp=False samples outside the array read 0; with clamp=True the coordinates are
    clipped to the array (edge replication). Returns float32 of the shape of xs.
    """
    height, width = image.shape
    if clamp:
        xs = np.clip(xs, 0, width - 1)
        ys = np.clip(ys, 0, height - 1)
    x0 = np.floor(xs)
    y0 = np.floor(ys)
    wx = (xs - x0).astype(np.float32)
    wy = (ys - y0).astype(np.float32)
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)

    def read(y, x):
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        values = image[np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)].astype(np.float32)
        return np.where(inside, values, np.float32(0))

    top = read(y0, x0) * (1 - wx) + read(y0, x0 + 1) * wx
    bottom = read(y0 + 1, x0) * (1 - wx) + read(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


def roi_mask_targets(mask, rois, size=28):
    """Samples a full-image mask into RoIs.

    mask: (H, W) uint8 or bool, nonzero = foreground. rois: (K, 4) float x1, y1, x2, y2 in the
    mask's pixels. Each RoI is split into size x size bins; the mask is sampled bilinearly at
    every bin centre (outside the image reads 0) and thresholded at 0.5.
    Returns (K, size, size) uint8 of 0/1.
    """
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 4)
    binary = np.asarray(mask) != 0
    if rois.shape[0] == 0:
        return np.zeros((0, size, size), dtype=np.uint8)
    steps = (np.arange(size, dtype=np.float64) + 0.5) / size
    xs = rois[:, 0:1] + steps[None, :] * (rois[:, 2:3] - rois[:, 0:1]) - 0.5
    ys = rois[:, 1:2] + steps[None, :] * (rois[:, 3:4] - rois[:, 1:2]) - 0.5
    grid_x = np.broadcast_to(xs[:, None, :], (rois.shape[0], size, size))
    grid_y = np.broadcast_to(ys[:, :, None], (rois.shape[0], size, size))
    values = _bilinear(binary.view(np.uint8), grid_x, grid_y, clamp=False)
    return (values >= 0.5).astype(np.uint8)


def paste_mask_region(mask, box, image_shape, threshold=0.5):
    """The part of the image that `paste_mask` can set: (region (h, w) uint8 of 0/1, left, top).

    The region covers the image pixels whose centres lie inside the box (clipped to the image);
    outside it a pasted mask is 0. An empty or degenerate box gives a (0, 0) region at (0, 0).
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    mask = np.asarray(mask, dtype=np.float32)
    x1, y1, x2, y2 = (float(v) for v in box)
    empty = (np.zeros((0, 0), dtype=np.uint8), 0, 0)
    if not np.all(np.isfinite([x1, y1, x2, y2])) or x2 <= x1 or y2 <= y1 or mask.size == 0:
        return empty
    # pixels whose centre c = i + 0.5 satisfies x1 <= c < x2
    left = max(int(np.ceil(x1 - 0.5)), 0)
    right = min(int(np.ceil(x2 - 0.5)), width)
    top = max(int(np.ceil(y1 - 0.5)), 0)
    bottom = min(int(np.ceil(y2 - 0.5)), height)
    if right <= left or bottom <= top:
        return empty
    size_y, size_x = mask.shape
    us = (np.arange(left, right) + 0.5 - x1) / (x2 - x1) * size_x - 0.5
    vs = (np.arange(top, bottom) + 0.5 - y1) / (y2 - y1) * size_y - 0.5
    grid_u, grid_v = np.meshgrid(us, vs)
    values = _bilinear(mask, grid_u, grid_v, clamp=True)
    return (values >= threshold).astype(np.uint8), left, top


def paste_mask(mask, box, image_shape, threshold=0.5):
    """Pastes a (S, S) float mask predicted for `box` into an image.

    box: x1, y1, x2, y2 float in image pixels. image_shape: (H, W, ...). Every image pixel whose
    centre lies inside the box samples the mask bilinearly at
    u = (x + 0.5 - x1) / (x2 - x1) * S - 0.5 (same for v along y); the value is compared with
    `threshold` (>=). Empty or degenerate boxes give zeros. Returns (H, W) uint8 of 0/1.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    result = np.zeros((height, width), dtype=np.uint8)
    region, left, top = paste_mask_region(mask, box, image_shape, threshold)
    result[top:top + region.shape[0], left:left + region.shape[1]] = region
    return result


def paste_masks(masks, boxes, image_shape, threshold=0.5):
    """Pastes N (S, S) masks at boxes (N, 4) into images of `image_shape`: (N, H, W) uint8."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = int(image_shape[0]), int(image_shape[1])
    result = np.zeros((boxes.shape[0], height, width), dtype=np.uint8)
    for index, box in enumerate(boxes):
        result[index] = paste_mask(masks[index], box, (height, width), threshold)
    return result
