import numpy as np
import pytest

from keras_maskrcnn.utils.anchors import (
    BACKGROUND,
    IGNORE,
    AnchorParameters,
    anchor_targets_bbox,
    anchors_for_shape,
    bbox_transform,
    class_target_dtype,
    compute_overlap,
    dense_targets,
    generate_anchors,
    shift,
)
from keras_maskrcnn.utils.config import anchor_parameters_from_file


def test_generate_anchors_closed_form():
    anchors = generate_anchors(32, ratios=[0.5, 1.0, 2.0], scales=[1.0, 2.0])
    # ratio-major, scale-minor; area (32 * scale)^2, height / width = ratio.
    w_half = 32 / np.sqrt(0.5) / 2
    expected = np.array([
        [-w_half, -w_half * 0.5, w_half, w_half * 0.5],
        [-2 * w_half, -w_half, 2 * w_half, w_half],
        [-16, -16, 16, 16],
        [-32, -32, 32, 32],
        [-w_half / 2, -w_half, w_half / 2, w_half],
        [-w_half, -2 * w_half, w_half, 2 * w_half],
    ])
    np.testing.assert_allclose(anchors, expected, rtol=1e-12)
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    np.testing.assert_allclose(widths * heights, [32 ** 2, 64 ** 2] * 3)
    np.testing.assert_allclose(heights / widths, np.repeat([0.5, 1.0, 2.0], 2))


def test_shift_places_anchor_centres_at_cell_centres():
    base = np.array([[-1.0, -2.0, 1.0, 2.0]])
    shifted = shift((2, 3), 8, base)
    centres = np.stack([(shifted[:, 0] + shifted[:, 2]) / 2, (shifted[:, 1] + shifted[:, 3]) / 2], axis=1)
    np.testing.assert_allclose(centres, [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]])


def test_anchors_for_shape_count_and_first_anchor():
    anchors = anchors_for_shape((100, 130))
    per_level = [int(np.ceil(100 / s) * np.ceil(130 / s)) * 9 for s in (8, 16, 32, 64, 128)]
    assert anchors.shape == (sum(per_level), 4)
    assert anchors.dtype == np.float32
    # First anchor: P3, cell (0, 0), ratio 0.5, scale 1: centred on (4, 4), area 32^2.
    w = 32 / np.sqrt(0.5)
    np.testing.assert_allclose(anchors[0], [4 - w / 2, 4 - w / 4, 4 + w / 2, 4 + w / 4], rtol=1e-6)


def test_compute_overlap_closed_form():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], dtype=float)
    b = np.array([[0, 0, 10, 10], [0, 0, 5, 5], [20, 20, 30, 30]], dtype=float)
    np.testing.assert_allclose(compute_overlap(a, b), [[1.0, 0.25, 0.0], [25 / 175, 0.0, 0.0]])


def test_bbox_transform_closed_form():
    anchors = np.array([[0, 0, 10, 20]], dtype=float)
    gt = np.array([[1, 2, 12, 18]], dtype=float)
    np.testing.assert_allclose(bbox_transform(anchors, gt), [[0.1 / 0.2, 0.1 / 0.2, 0.2 / 0.2, -0.1 / 0.2]], rtol=1e-6)


def test_anchor_targets_positive_ignore_negative_outside_and_crowd():
    anchors = np.array([
        [0, 0, 10, 10],    # equal to the gt box: positive
        [0, 0, 10, 8.5],   # IoU 0.85 -> positive
        [0, 0, 10, 4.5],   # IoU 0.45 -> ignored
        [0, 0, 10, 3],     # IoU 0.3 -> negative
        [50, 50, 60, 60],  # inside the crowd region -> ignored
        [95, 0, 125, 10],  # centre x = 110 >= width 100 -> ignored
    ], dtype=np.float32)
    annotations = [{"bboxes": np.array([[0, 0, 10, 10]]), "labels": np.array([1]),
                    "ignore_bboxes": np.array([[40, 40, 80, 80]])}]
    regression, classification = anchor_targets_bbox(anchors, annotations, 3, [(100, 100)])
    assert classification.dtype == np.int8 and regression.shape == (1, 6, 4)
    np.testing.assert_array_equal(classification[0], [1, 1, IGNORE, BACKGROUND, IGNORE, IGNORE])
    np.testing.assert_allclose(regression[0, 0], 0)
    np.testing.assert_allclose(regression[0, 1], [0, 0, 0, 1.5 / 8.5 / 0.2], rtol=1e-6)
    assert np.isnan(regression[0, 2:]).all()
    dense_regression, dense_classification = dense_targets(regression, classification, 3)
    np.testing.assert_array_equal(dense_regression[0, :, 4], [1, 1, -1, 0, -1, -1])
    np.testing.assert_array_equal(dense_classification[0, :, -1], [1, 1, -1, 0, -1, -1])
    np.testing.assert_array_equal(dense_classification[0, :2, :3], [[0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(dense_classification[0, 2:, :3], 0)


def test_anchor_targets_without_annotations_are_all_negative():
    anchors = anchors_for_shape((64, 64))
    regression, classification = anchor_targets_bbox(
        anchors, [{"bboxes": np.zeros((0, 4)), "labels": np.zeros((0,))}], 2, [(64, 64)])
    assert set(np.unique(classification[0])) == {BACKGROUND, IGNORE}
    assert np.isnan(regression).all()


def test_positive_anchor_centred_outside_the_image_is_ignored():
    # The anchor equals the box but its centre (x 105) lies beyond the unpadded width 100.
    anchors = np.array([[90, 0, 120, 10], [0, 0, 10, 10]], dtype=np.float32)
    annotations = [{"bboxes": np.array([[90, 0, 120, 10], [0, 0, 10, 10]]), "labels": np.array([0, 1])}]
    regression, classification = anchor_targets_bbox(anchors, annotations, 2, [(100, 100)])
    np.testing.assert_array_equal(classification[0], [IGNORE, 1])
    assert np.isnan(regression[0, 0]).all() and np.isfinite(regression[0, 1]).all()


def test_class_target_dtype_grows_with_the_class_count():
    assert class_target_dtype(127) == np.int8 and class_target_dtype(128) == np.int16
    assert class_target_dtype(40000) == np.int32


def test_anchor_parameters_from_ini(tmp_path):
    path = tmp_path / "config.ini"
    path.write_text("[anchor_parameters]\nsizes = 32 64 128 256 512\nstrides = 8 16 32 64 128\n"
                    "ratios = 0.5 1 2 3\nscales = 1 1.2 1.6\n")
    params = anchor_parameters_from_file(str(path))
    assert params.num_anchors() == 12
    np.testing.assert_allclose(params.ratios, [0.5, 1, 2, 3])
    assert AnchorParameters.from_config(params.get_config()) == params


def test_bad_ini_names_the_file(tmp_path):
    path = tmp_path / "bad.ini"
    path.write_text("[anchor_parameters]\nsizes = 32 64\n")
    with pytest.raises(ValueError, match="bad.ini.*lacks strides"):
        anchor_parameters_from_file(str(path))
    with pytest.raises(ValueError, match="does not exist"):
        anchor_parameters_from_file(str(tmp_path / "missing.ini"))
