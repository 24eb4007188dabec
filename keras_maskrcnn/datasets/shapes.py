"""Synthetic instance-segmentation dataset: circles, squares and triangles on noisy backgrounds.

Written as a CSV dataset (see keras_maskrcnn.preprocessing.csv_generator):

    OUTPUT_DIR/images/NNNNN.png          BGR images, size x size
    OUTPUT_DIR/masks/NNNNN_KK.png        one 0/255 mask per instance (its visible part)
    OUTPUT_DIR/annotations.csv           paths relative to OUTPUT_DIR
    OUTPUT_DIR/classes.csv               circle,0 / square,1 / triangle,2

Objects span 20-40 % of the image side (or min_object_size to max_object_size pixels when
given) and may overlap, but every instance keeps at least 70 % of its area visible. The output
depends only on the arguments.
"""

import csv
import os

import cv2
import numpy as np

CLASSES = ("circle", "square", "triangle")
MIN_EXTENT = 0.2
MAX_EXTENT = 0.4
MIN_VISIBLE = 0.7


def _draw_shape(shape, kind, center, extent):
    """(H, W) uint8 0/1 mask of one shape of `extent` pixels across, centred at `center`."""
    mask = np.zeros(shape, dtype=np.uint8)
    cx, cy = center
    half = extent / 2.0
    if kind == "circle":
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(half)), 1, thickness=-1)
    elif kind == "square":
        cv2.rectangle(mask, (int(round(cx - half)), int(round(cy - half))),
                      (int(round(cx + half)) - 1, int(round(cy + half)) - 1), 1, thickness=-1)
    else:
        points = np.array([[cx, cy - half], [cx + half, cy + half], [cx - half, cy + half]])
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask


def _colour(rng, background):
    """A random BGR colour at least 100 away (L2) from the background colour."""
    while True:
        colour = rng.integers(0, 256, size=3)
        if np.linalg.norm(colour - background) >= 100:
            return colour


def object_extents(size, min_object_size=None, max_object_size=None):
    """(smallest, largest) object extent in pixels for images of `size`: the given sizes, else
    MIN_EXTENT and MAX_EXTENT of the side; ValueError unless 1 <= smallest <= largest <= size - 2."""
    low = MIN_EXTENT * size if min_object_size is None else float(min_object_size)
    high = MAX_EXTENT * size if max_object_size is None else float(max_object_size)
    if min_object_size is not None and max_object_size is None:
        high = max(high, low)
    if max_object_size is not None and min_object_size is None:
        low = min(low, high)
    if not 1 <= low <= high <= size - 2:
        raise ValueError(f"object sizes {low:g} to {high:g} pixels do not fit {size} pixel images "
                         f"(need 1 <= min_object_size <= max_object_size <= {size - 2})")
    return low, high


def make_image(rng, size, min_objects=1, max_objects=4, min_object_size=None, max_object_size=None):
    """One synthetic image: (BGR uint8 (size, size, 3), labels list, masks list of 0/1 uint8).

    Objects are min_object_size to max_object_size pixels across (default 20-40 % of `size`)."""
    low, high = object_extents(size, min_object_size, max_object_size)
    default = min_object_size is None and max_object_size is None
    background = rng.integers(0, 256, size=3)
    noise = rng.normal(0.0, 12.0, size=(size, size, 3))
    image = np.clip(background[None, None, :] + noise, 0, 255).astype(np.uint8)
    count = int(rng.integers(min_objects, max_objects + 1))
    labels, masks, full_areas = [], [], []
    for _ in range(count):
        for _attempt in range(50):
            kind = int(rng.integers(len(CLASSES)))
            extent = rng.uniform(MIN_EXTENT, MAX_EXTENT) * size if default else rng.uniform(low, high)
            margin = extent / 2.0 + 1
            center = rng.uniform(margin, size - margin, size=2)
            mask = _draw_shape((size, size), CLASSES[kind], center, extent)
            if mask.any() and all(int((m & (1 - mask)).sum()) >= MIN_VISIBLE * a for m, a in zip(masks, full_areas)):
                break
        else:
            continue
        masks = [previous & (1 - mask) for previous in masks]
        colour = _colour(rng, background)
        shade = np.clip(colour[None, None, :] + rng.normal(0.0, 6.0, size=(size, size, 3)), 0, 255).astype(np.uint8)
        inside = mask.astype(bool)
        image[inside] = shade[inside]
        labels.append(kind)
        masks.append(mask)
        full_areas.append(int(mask.sum()))
    return image, labels, masks


def make_shapes_dataset(output_dir, images=200, size=128, seed=0, min_objects=1, max_objects=4,
                        min_object_size=None, max_object_size=None):
    """Writes the dataset (see the module docstring) and returns (annotations.csv, classes.csv).

    min_object_size, max_object_size: object extent range in pixels (default 20-40 % of `size`);
    one alone moves the other end of the default range only as far as needed."""
    if images < 1 or size < 16:
        raise ValueError(f"need at least 1 image of at least 16 pixels, got images={images}, size={size}")
    if not 0 <= min_objects <= max_objects:
        raise ValueError(f"need 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    object_extents(size, min_object_size, max_object_size)
    os.makedirs(os.path.join(output_dir, "images"), exist_ok=True)
    os.makedirs(os.path.join(output_dir, "masks"), exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(images):
        image, labels, masks = make_image(rng, size, min_objects, max_objects, min_object_size, max_object_size)
        image_file = f"images/{index:05d}.png"
        cv2.imwrite(os.path.join(output_dir, image_file), image)
        if not labels:
            rows.append([image_file, "", "", "", "", "", ""])
        for number, (label, mask) in enumerate(zip(labels, masks)):
            mask_file = f"masks/{index:05d}_{number:02d}.png"
            cv2.imwrite(os.path.join(output_dir, mask_file), mask * 255)
            ys, xs = np.nonzero(mask)
            rows.append([image_file, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, CLASSES[label], mask_file])
    annotations_file = os.path.join(output_dir, "annotations.csv")
    classes_file = os.path.join(output_dir, "classes.csv")
    with open(annotations_file, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    with open(classes_file, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([name, label] for label, name in enumerate(CLASSES))
    return annotations_file, classes_file
