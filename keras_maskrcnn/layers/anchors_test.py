import keras
import numpy as np

from keras_maskrcnn.layers import Anchors, ClipBoxes, RegressBoxes, UpsampleLike
from keras_maskrcnn.layers.testing import run_layer_test
from keras_maskrcnn.utils.anchors import AnchorParameters, anchors_for_shape, bbox_transform, feature_shapes


def _features(image_shape, strides, batch=2):
    return [np.zeros((batch, h, w, 1), np.float32) for h, w in feature_shapes(image_shape, strides)]


def test_anchors_layer_equals_numpy_anchors():
    for image_shape in [(64, 64), (97, 131), (200, 120)]:
        out = keras.ops.convert_to_numpy(Anchors()(_features(image_shape, (8, 16, 32, 64, 128))))
        expected = anchors_for_shape(image_shape)
        assert out.shape == (2,) + expected.shape
        np.testing.assert_allclose(out[0], expected, atol=1e-4)
        np.testing.assert_allclose(out[1], expected, atol=1e-4)


def test_anchors_layer_with_custom_parameters_round_trips_config():
    params = AnchorParameters(ratios=[0.5, 1, 2, 3], scales=[1, 1.2, 1.6])
    layer = Anchors(params)
    run_layer_test(Anchors, dict(anchor_params=params), _features((90, 70), params.strides, batch=1),
                   expected_output_shape=(1, anchors_for_shape((90, 70), params).shape[0], 4),
                   expected_output_dtype="float32", expected_mixed_dtype="float32")
    clone = Anchors.from_config(layer.get_config())
    assert clone.anchor_params == params
    out = keras.ops.convert_to_numpy(clone(_features((90, 70), params.strides, batch=1)))
    np.testing.assert_allclose(out[0], anchors_for_shape((90, 70), params), atol=1e-4)


def test_regress_boxes_inverts_bbox_transform():
    rng = np.random.default_rng(0)
    anchors = anchors_for_shape((64, 96))[:50].astype(np.float64)
    gt = anchors + rng.normal(0, 5, anchors.shape)
    deltas = bbox_transform(anchors, gt)
    boxes = RegressBoxes()([anchors[None].astype(np.float32), deltas[None]])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(boxes)[0], gt, atol=1e-3)


def test_clip_boxes_to_image():
    image = np.zeros((1, 40, 60, 3), np.float32)
    boxes = np.array([[[-5, -3, 70, 50], [10, 10, 20, 20]]], np.float32)
    out = keras.ops.convert_to_numpy(ClipBoxes()([image, boxes]))
    np.testing.assert_array_equal(out[0], [[0, 0, 60, 40], [10, 10, 20, 20]])


def test_upsample_like_is_nearest_neighbour():
    source = np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1)
    target = np.zeros((1, 3, 5, 1), np.float32)
    out = keras.ops.convert_to_numpy(UpsampleLike()([source, target]))[0, :, :, 0]
    np.testing.assert_array_equal(out, [[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]])
