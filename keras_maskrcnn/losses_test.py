import math

import numpy as np
import pytest

from keras_maskrcnn import losses
from keras_maskrcnn.utils.anchors import anchor_targets_bbox, anchors_for_shape, dense_targets


def _value(loss, y_true, y_pred):
    return float(loss(np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32)))


def test_focal_loss_hand_computed():
    # Three anchors, two classes. Anchor 0 positive for class 0, anchor 1 negative, anchor 2 ignored.
    y_true = [[0, -1, -2]]
    y_pred = [[[0.8, 0.1], [0.3, 0.6], [0.01, 0.99]]]
    # positive entry: 0.25 * (1 - 0.8)^2 * -log(0.8); negatives: 0.75 * p^2 * -log(1 - p)
    expected = (0.25 * 0.2 ** 2 * -math.log(0.8)
                + 0.75 * 0.1 ** 2 * -math.log(0.9)
                + 0.75 * 0.3 ** 2 * -math.log(0.7)
                + 0.75 * 0.6 ** 2 * -math.log(0.4))
    assert math.isclose(_value(losses.focal(), y_true, y_pred), expected / 1, rel_tol=1e-5)


def test_focal_loss_without_positives_is_finite_and_normalised_by_one():
    y_true = [[-1, -2]]
    y_pred = [[[0.5], [0.9]]]
    expected = 0.75 * 0.5 ** 2 * -math.log(0.5)
    assert math.isclose(_value(losses.focal(), y_true, y_pred), expected, rel_tol=1e-5)


def test_smooth_l1_hand_computed():
    # sigma 3: quadratic below 1/9, linear above; only positive anchors count, divided by their number.
    nan = float("nan")
    y_true = [[[0, 0, 0, 0], [1, 1, 1, 1], [nan] * 4, [nan] * 4]]
    y_pred = [[[0.05, 0, 0, 0], [1, 1, 1, 2], [0, 0, 0, 0], [0, 0, 0, 0]]]
    expected = (0.5 * 9 * 0.05 ** 2 + (1 - 0.5 / 9)) / 2
    assert math.isclose(_value(losses.smooth_l1(), y_true, y_pred), expected, rel_tol=1e-5)


def test_smooth_l1_without_positives_is_zero():
    value = _value(losses.smooth_l1(), [[[float("nan")] * 4]], [[[1, 2, 3, 4]]])
    assert value == 0.0


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


def _dense_focal(regression_state, labels, probabilities, alpha=0.25, gamma=2.0):
    """keras-retinanet's focal loss on its dense layout (one-hot labels, state -1/0/1), in numpy."""
    p = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    weight = np.where(labels == 1, alpha, 1 - alpha) * np.where(labels == 1, 1 - p, p) ** gamma
    entropy = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    counted = (regression_state != -1)[..., None]
    return (weight * entropy * counted).sum() / max(1.0, (regression_state == 1).sum())


def _dense_smooth_l1(deltas, state, predicted, sigma=3.0):
    """keras-retinanet's smooth L1 on its dense layout (deltas, state last), in numpy."""
    diff = np.abs(predicted.astype(np.float64) - deltas)
    loss = np.where(diff < 1 / sigma ** 2, 0.5 * sigma ** 2 * diff ** 2, diff - 0.5 / sigma ** 2)
    return (loss * (state == 1)[..., None]).sum() / max(1.0, (state == 1).sum())


@pytest.mark.parametrize("num_classes", [3, 200])
def test_compact_targets_give_the_dense_layouts_losses(num_classes):
    # Real anchor targets of two 128x160 images (one with a crowd region, one without objects),
    # compact as the generator makes them, against numpy losses on keras-retinanet's dense layout.
    anchors = anchors_for_shape((128, 160))
    annotations = [{"bboxes": np.array([[10, 12, 70, 90], [80, 20, 150, 60]]), "labels": np.array([2, num_classes - 1]),
                    "ignore_bboxes": np.array([[0, 100, 60, 128]])},
                   {"bboxes": np.zeros((0, 4)), "labels": np.zeros((0,))}]
    regression, classification = anchor_targets_bbox(anchors, annotations, num_classes, [(128, 150), (100, 160)])
    dense_regression, dense_classification = dense_targets(regression, classification, num_classes)
    assert classification.dtype == (np.int8 if num_classes < 128 else np.int16)
    assert (classification >= 0).sum() > 2 and (classification == -2).any()
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0, 1, (2, anchors.shape[0], num_classes)).astype(np.float32)
    deltas = rng.normal(0, 1, (2, anchors.shape[0], 4)).astype(np.float32)
    state = dense_regression[..., 4]
    focal = float(losses.focal()(classification, probabilities))
    smooth = float(losses.smooth_l1()(regression, deltas))
    np.testing.assert_allclose(focal, _dense_focal(state, dense_classification[..., :-1], probabilities), rtol=1e-5)
    np.testing.assert_allclose(smooth, _dense_smooth_l1(dense_regression[..., :4], state, deltas), rtol=1e-5)
    dense_bytes = dense_regression.nbytes + dense_classification.nbytes
    # per anchor: (5 + num_classes + 1) float32 against 4 float32 and one int8 / int16
    assert dense_bytes / (regression.nbytes + classification.nbytes) == (6 + num_classes) * 4 / (16 + classification.itemsize)


def test_losses_round_trip_through_config():
    for loss in losses.training_losses().values():
        clone = type(loss).from_config(loss.get_config())
        assert clone.get_config() == loss.get_config()
