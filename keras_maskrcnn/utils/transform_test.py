import numpy as np
import pytest

from keras_maskrcnn.utils.image import apply_transform_to_mask
from keras_maskrcnn.utils.transform import (
    adjust_transform_for_image,
    boxes_from_masks,
    default_transform_generator,
    flip,
    random_transform_generator,
    rotation,
    transform_aabb,
)


def blob_masks(shape=(60, 80)):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    disc = ((xx - 20) ** 2 + (yy - 25) ** 2 <= 12 ** 2).astype(np.uint8)
    bar = ((xx >= 40) & (xx < 75) & (yy >= 5) & (yy < 15)).astype(np.uint8)
    edge = ((xx < 6) & (yy >= 50)).astype(np.uint8)
    return [disc, bar, edge]


def test_boxes_from_masks():
    masks = blob_masks()
    boxes = boxes_from_masks(masks + [np.zeros((60, 80), np.uint8)])
    np.testing.assert_array_equal(boxes, [[8, 13, 33, 38], [40, 5, 75, 15], [0, 50, 6, 60], [0, 0, 0, 0]])


def test_pure_flips_keep_area_and_masks_inside_boxes():
    masks = blob_masks()
    for flip_x, flip_y in [(True, False), (False, True), (True, True)]:
        matrix = adjust_transform_for_image(flip(flip_x, flip_y), masks[0].shape)
        flipped = [apply_transform_to_mask(matrix, m) for m in masks]
        boxes = boxes_from_masks(flipped)
        np.testing.assert_allclose(boxes, transform_aabb(matrix, boxes_from_masks(masks)))
        for mask, original, (x1, y1, x2, y2) in zip(flipped, masks, boxes.astype(int)):
            assert mask.sum() == original.sum()
            assert mask[y1:y2, x1:x2].sum() == mask.sum()


def test_random_transforms_keep_masks_inside_recomputed_boxes():
    generator = random_transform_generator(min_rotation=-0.6, max_rotation=0.6, min_translation=(-0.2, -0.2),
                                           max_translation=(0.2, 0.2), min_shear=-0.3, max_shear=0.3,
                                           min_scaling=(0.8, 0.8), max_scaling=(1.2, 1.2), flip_x_chance=0.5,
                                           flip_y_chance=0.5, seed=0)
    masks = blob_masks()
    for _ in range(20):
        matrix = adjust_transform_for_image(next(generator), masks[0].shape)
        warped = [apply_transform_to_mask(matrix, m) for m in masks]
        for mask, (x1, y1, x2, y2) in zip(warped, boxes_from_masks(warped).astype(int)):
            assert mask[y1:y2, x1:x2].sum() == mask.sum()
            # tight: every side of the box touches the mask
            if mask.any():
                assert mask[y1:y2, x1].any() and mask[y1:y2, x2 - 1].any()
                assert mask[y1, x1:x2].any() and mask[y2 - 1, x1:x2].any()


def test_rotation_preserves_area_approximately():
    masks = blob_masks()
    matrix = adjust_transform_for_image(rotation(0.3), masks[0].shape)
    rotated = apply_transform_to_mask(matrix, masks[0])
    assert abs(int(rotated.sum()) - int(masks[0].sum())) < 0.05 * masks[0].sum()


def test_relative_translation():
    shift = np.array([[1, 0, 0.25], [0, 1, -0.5], [0, 0, 1]])
    absolute = adjust_transform_for_image(shift, (40, 100))
    np.testing.assert_allclose(absolute @ [10, 30, 1], [35, 10, 1])
    np.testing.assert_allclose(adjust_transform_for_image(shift, (40, 100), False) @ [10, 30, 1], [10.25, 29.5, 1])


def test_generators_seeded_and_default_flips_only():
    a = [next(random_transform_generator(min_rotation=-1, max_rotation=1, seed=4)) for _ in range(3)]
    b = [next(random_transform_generator(min_rotation=-1, max_rotation=1, seed=4)) for _ in range(3)]
    np.testing.assert_array_equal(a, b)
    identity = random_transform_generator(seed=0)
    np.testing.assert_array_equal(next(identity), np.eye(3))
    default = default_transform_generator(seed=0)
    seen = {tuple(np.round(next(default), 6).ravel()) for _ in range(50)}
    assert seen == {tuple(np.eye(3).ravel()), tuple(flip(True, False).ravel())}


def test_generator_validation():
    with pytest.raises(ValueError):
        random_transform_generator(min_rotation=1, max_rotation=0)
    with pytest.raises(ValueError):
        random_transform_generator(min_scaling=(0, 1), max_scaling=(1, 1))
    with pytest.raises(ValueError):
        random_transform_generator(flip_x_chance=2)
