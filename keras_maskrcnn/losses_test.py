import math

import numpy as np

from keras_maskrcnn import losses


def _value(loss, y_true, y_pred):
    return float(loss(np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32)))


def test_focal_loss_hand_computed():
    # Two anchors, two classes. Anchor 0 positive for class 0, anchor 1 negative, anchor 2 ignored.
    y_true = [[[1, 0, 1], [0, 0, 0], [1, 0, -1]]]
    y_pred = [[[0.8, 0.1], [0.3, 0.6], [0.01, 0.99]]]
    # positive entry: 0.25 * (1 - 0.8)^2 * -log(0.8); negatives: 0.75 * p^2 * -log(1 - p)
    expected = (0.25 * 0.2 ** 2 * -math.log(0.8)
                + 0.75 * 0.1 ** 2 * -math.log(0.9)
                + 0.75 * 0.3 ** 2 * -math.log(0.7)
                + 0.75 * 0.6 ** 2 * -math.log(0.4))
    assert math.isclose(_value(losses.focal(), y_true, y_pred), expected / 1, rel_tol=1e-5)


def test_focal_loss_without_positives_is_finite_and_normalised_by_one():
    y_true = [[[0, 0], [0, -1]]]
    y_pred = [[[0.5], [0.9]]]
    expected = 0.75 * 0.5 ** 2 * -math.log(0.5)
    assert math.isclose(_value(losses.focal(), y_true, y_pred), expected, rel_tol=1e-5)


def test_smooth_l1_hand_computed():
    # sigma 3: quadratic below 1/9, linear above; only positive anchors count, divided by their number.
    y_true = [[[0, 0, 0, 0, 1], [1, 1, 1, 1, 1], [5, 5, 5, 5, 0], [5, 5, 5, 5, -1]]]
    y_pred = [[[0.05, 0, 0, 0], [1, 1, 1, 2], [0, 0, 0, 0], [0, 0, 0, 0]]]
    expected = (0.5 * 9 * 0.05 ** 2 + (1 - 0.5 / 9)) / 2
    assert math.isclose(_value(losses.smooth_l1(), y_true, y_pred), expected, rel_tol=1e-5)


def test_smooth_l1_without_positives_is_zero():
    assert _value(losses.smooth_l1(), [[[1, 2, 3, 4, 0]]], [[[0, 0, 0, 0]]]) == 0.0


def test_mask_loss_uses_the_ground_truth_channel_and_skips_padding():
    size = 2
    y_pred = np.zeros((1, 3, size, size, 2), np.float32)
    y_pred[0, 0, :, :, 1] = 0.9   # RoI 0, class 1 channel
    y_pred[0, 0, :, :, 0] = 0.123  # other channel: must not count
    y_pred[0, 1, :, :, 0] = 0.2   # RoI 1, class 0
    y_pred[0, 2] = 0.5            # padding RoI: must not count
    y_true = np.zeros((1, 3, 1 + size * size), np.float32)
    y_true[0, 0] = [1, 1, 1, 0, 0]
    y_true[0, 1] = [0, 1, 0, 0, 0]
    y_true[0, 2, 0] = -1
    roi0 = (2 * -math.log(0.9) + 2 * -math.log(0.1)) / 4
    roi1 = (-math.log(0.2) + 3 * -math.log(0.8)) / 4
    assert math.isclose(_value(losses.mask_loss(), y_true, y_pred), (roi0 + roi1) / 2, rel_tol=1e-5)


def test_mask_loss_with_only_padding_is_zero():
    y_true = np.full((2, 4, 1 + 9), -1, np.float32)
    y_pred = np.full((2, 4, 3, 3, 5), 0.5, np.float32)
    assert _value(losses.mask_loss(), y_true, y_pred) == 0.0


def test_losses_round_trip_through_config():
    for loss in losses.training_losses().values():
        clone = type(loss).from_config(loss.get_config())
        assert clone.get_config() == loss.get_config()
