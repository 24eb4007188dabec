import numpy as np

from keras_maskrcnn.utils.masks import paste_mask, paste_masks, roi_mask_targets


def _rectangle(shape, box):
    mask = np.zeros(shape, dtype=np.uint8)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = 1
    return mask


def test_rectangle_sampled_into_its_box_is_all_ones():
    # boxes of at least ~0.42 * size pixels: smaller ones lose their corner bins to bilinear fall-off
    for box in [(10, 20, 50, 40), (3, 4, 15, 30), (0, 0, 100, 80), (60, 60, 72, 72)]:
        mask = _rectangle((80, 100), box)
        target = roi_mask_targets(mask, np.array([box], dtype=np.float64), size=28)
        assert target.shape == (1, 28, 28) and target.dtype == np.uint8
        assert target.all(), box


def test_bool_mask_and_nonzero_values():
    mask = _rectangle((40, 40), (5, 5, 30, 30)) * 255
    a = roi_mask_targets(mask, [[0, 0, 40, 40]], size=14)
    b = roi_mask_targets(mask.astype(bool), [[0, 0, 40, 40]], size=14)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0, 1}


def test_sample_then_paste_round_trips_box_mask():
    box = (12, 7, 71, 53)
    mask = _rectangle((64, 96), box)
    target = roi_mask_targets(mask, [box], size=28)
    pasted = paste_mask(target[0].astype(np.float32), box, mask.shape)
    np.testing.assert_array_equal(pasted, mask)


def test_half_box_round_trip():
    box = (10, 10, 66, 50)
    mask = _rectangle((60, 80), (10, 10, 38, 50))
    target = roi_mask_targets(mask, [box], size=28)
    assert target[:, :, :14].all() and not target[:, :, 14:].any()
    pasted = paste_mask(target[0], box, mask.shape)
    np.testing.assert_array_equal(pasted, mask)


def test_roi_larger_than_object_and_outside_image():
    mask = _rectangle((50, 50), (0, 0, 50, 50))
    # roi covers the image and the same extent to the right of it: the right half reads 0
    target = roi_mask_targets(mask, [[0, 0, 100, 50]], size=28)
    assert target[:, :, :14].all() and not target[:, :, 14:].any()
    # roi entirely outside the image
    assert not roi_mask_targets(mask, [[60, 60, 90, 90]], size=28).any()


def test_boxes_at_borders():
    shape = (40, 60)
    for box in [(0, 0, 20, 15), (40, 25, 60, 40), (0, 10, 60, 30)]:
        mask = _rectangle(shape, box)
        target = roi_mask_targets(mask, [box], size=28)
        assert target.all()
        np.testing.assert_array_equal(paste_mask(target[0], box, shape), mask)
    # a box running past the image is clipped when pasted
    pasted = paste_mask(np.ones((28, 28)), (50, 30, 80, 60), shape)
    np.testing.assert_array_equal(pasted, _rectangle(shape, (50, 30, 60, 40)))


def test_sub_pixel_placement():
    # pixel centres 2.5 .. 5.5 lie in [2.2, 6.4): columns 2..5; only 2.5 lies in [1.6, 3.4)
    pasted = paste_mask(np.ones((28, 28)), (2.2, 1.6, 6.4, 3.4), (8, 8))
    np.testing.assert_array_equal(np.nonzero(pasted.any(axis=0))[0], [2, 3, 4, 5])
    np.testing.assert_array_equal(np.nonzero(pasted.any(axis=1))[0], [2])


def test_empty_and_degenerate_boxes_give_zeros():
    ones = np.ones((28, 28), dtype=np.float32)
    for box in [(5, 5, 5, 10), (5, 5, 10, 5), (9, 9, 3, 3), (100, 100, 120, 120), (2.6, 2.6, 3.4, 3.4),
                (np.nan, 0, 4, 4)]:
        assert not paste_mask(ones, box, (20, 20)).any(), box
    assert roi_mask_targets(np.ones((5, 5), np.uint8), np.zeros((0, 4))).shape == (0, 28, 28)


def test_threshold_and_paste_masks():
    box = (0, 0, 10, 10)
    half = np.full((28, 28), 0.4, dtype=np.float32)
    assert not paste_mask(half, box, (10, 10)).any()
    assert paste_mask(half, box, (10, 10), threshold=0.3).all()
    stacked = paste_masks(np.stack([np.ones((28, 28)), np.zeros((28, 28))]), [box, box], (12, 14))
    assert stacked.shape == (2, 12, 14) and stacked.dtype == np.uint8
    assert stacked[0].sum() == 100 and stacked[1].sum() == 0
    assert paste_masks(np.zeros((0, 28, 28)), np.zeros((0, 4)), (5, 6)).shape == (0, 5, 6)


def test_many_rois_vectorised():
    rng = np.random.default_rng(0)
    mask = (rng.random((200, 300)) > 0.5).astype(np.uint8)
    x1 = rng.uniform(0, 250, 500)
    y1 = rng.uniform(0, 150, 500)
    rois = np.stack([x1, y1, x1 + rng.uniform(1, 50, 500), y1 + rng.uniform(1, 50, 500)], axis=1)
    assert roi_mask_targets(mask, rois).shape == (500, 28, 28)
