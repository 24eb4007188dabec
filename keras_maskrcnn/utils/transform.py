"""Random affine transforms (3x3 matrices) for augmentation, and boxes from masks.

Matrices act on homogeneous column vectors (x, y, 1) of continuous pixel coordinates. The
random generators build them about the origin with translations as fractions of the image
size; adjust_transform_for_image moves the origin to the image centre and scales translations.
"""

import numpy as np


def rotation(angle):
    """Rotation by `angle` radians about the origin; positive turns clockwise on screen (y down)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def translation(offset):
    """Translation by offset (tx, ty)."""
    return np.array([[1, 0, offset[0]], [0, 1, offset[1]], [0, 0, 1]], dtype=np.float64)


def shear(angle):
    """Horizontal shear: x += tan(angle) * y."""
    return np.array([[1, np.tan(angle), 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)


def scaling(factor):
    """Scaling by factor (sx, sy)."""
    return np.array([[factor[0], 0, 0], [0, factor[1], 0], [0, 0, 1]], dtype=np.float64)


def flip(flip_x=False, flip_y=False):
    """Mirror about the y axis (flip_x) and / or the x axis (flip_y)."""
    return scaling((-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0))


def change_transform_origin(transform, center):
    """The same transform expressed about `center` (x, y) instead of the origin."""
    center = np.asarray(center, dtype=np.float64)
    return translation(center) @ np.asarray(transform, dtype=np.float64) @ translation(-center)


def adjust_transform_for_image(transform, image_shape, relative_translation=True):
    """Makes a generator's transform concrete for an image of shape (H, W, ...).

    With relative_translation the translation column is multiplied by (W, H). The transform is
    then applied about the image centre (W / 2, H / 2).
    """
    height, width = float(image_shape[0]), float(image_shape[1])
    result = np.array(transform, dtype=np.float64)
    if relative_translation:
        result[0, 2] *= width
        result[1, 2] *= height
    return change_transform_origin(result, (width / 2.0, height / 2.0))


def transform_aabb(transform, boxes):
    """Axis-aligned boxes (N, 4) around the transformed corners of boxes (N, 4) x1, y1, x2, y2."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    corners = np.stack([
        np.stack([x1, x2, x1, x2], axis=1),
        np.stack([y1, y1, y2, y2], axis=1),
        np.ones((boxes.shape[0], 4)),
    ], axis=1)
    points = np.einsum("ij,njk->nik", np.asarray(transform, dtype=np.float64), corners)
    return np.stack([points[:, 0].min(1), points[:, 1].min(1), points[:, 0].max(1), points[:, 1].max(1)], axis=1)


def boxes_from_masks(masks):
    """Tight boxes (N, 4) float64 x1, y1, x2, y2 around the nonzero pixels of N (H, W) masks.

    A pixel (i, j) spans [j, j + 1) x [i, i + 1). Empty masks give (0, 0, 0, 0).
    """
    boxes = np.zeros((len(masks), 4), dtype=np.float64)
    for index, mask in enumerate(masks):
        cols = np.flatnonzero(np.any(mask, axis=0))
        if cols.size == 0:
            continue
        rows = np.flatnonzero(np.any(mask[:, cols[0]:cols[-1] + 1], axis=1))
        boxes[index] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


class RandomTransformGenerator:
    """Endless source of random 3x3 affine transforms.

    Ranges: rotation and shear angles in radians, translation (tx, ty) as fractions of the image
    size (see adjust_transform_for_image), scaling (sx, sy) factors, flip chances in [0, 1].
    The transform is translation @ rotation @ shear @ scaling @ flip (flip applied first).
    `sample(rng)` draws with a given numpy Generator; iterating uses the own `seed`ed stream.
    """

    def __init__(self, min_rotation=0.0, max_rotation=0.0, min_translation=(0.0, 0.0), max_translation=(0.0, 0.0),
                 min_shear=0.0, max_shear=0.0, min_scaling=(1.0, 1.0), max_scaling=(1.0, 1.0),
                 flip_x_chance=0.0, flip_y_chance=0.0, seed=None):
        self.min_rotation, self.max_rotation = float(min_rotation), float(max_rotation)
        self.min_translation = np.asarray(min_translation, dtype=np.float64)
        self.max_translation = np.asarray(max_translation, dtype=np.float64)
        self.min_shear, self.max_shear = float(min_shear), float(max_shear)
        self.min_scaling = np.asarray(min_scaling, dtype=np.float64)
        self.max_scaling = np.asarray(max_scaling, dtype=np.float64)
        self.flip_x_chance, self.flip_y_chance = float(flip_x_chance), float(flip_y_chance)
        if self.min_rotation > self.max_rotation or self.min_shear > self.max_shear:
            raise ValueError("a minimum rotation or shear exceeds its maximum")
        if np.any(self.min_translation > self.max_translation) or np.any(self.min_scaling > self.max_scaling):
            raise ValueError("a minimum translation or scaling exceeds its maximum")
        if np.any(self.min_scaling <= 0):
            raise ValueError("scaling factors must be positive")
        if not (0 <= self.flip_x_chance <= 1 and 0 <= self.flip_y_chance <= 1):
            raise ValueError("flip chances must lie in [0, 1]")
        self._rng = np.random.default_rng(seed)

    def sample(self, rng):
        """One random transform (3, 3) float64 drawn with `rng` (numpy Generator)."""
        return (
            translation(rng.uniform(self.min_translation, self.max_translation))
            @ rotation(rng.uniform(self.min_rotation, self.max_rotation))
            @ shear(rng.uniform(self.min_shear, self.max_shear))
            @ scaling(rng.uniform(self.min_scaling, self.max_scaling))
            @ flip(rng.uniform() < self.flip_x_chance, rng.uniform() < self.flip_y_chance)
        )

    def __iter__(self):
        return self

    def __next__(self):
        return self.sample(self._rng)


def random_transform_generator(**kwargs):
    """RandomTransformGenerator(**kwargs); everything is off (identity) unless asked for."""
    return RandomTransformGenerator(**kwargs)


def default_transform_generator(seed=None):
    """The training default: horizontal flip with chance 0.5, nothing else."""
    return RandomTransformGenerator(flip_x_chance=0.5, seed=seed)
