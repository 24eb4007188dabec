"""Model files written by an earlier version of keras_maskrcnn (testdata/tiny_*.keras: a five-conv
backbone, feature sizes 8, two classes) load and predict what they predicted when they were saved
(testdata/tiny_predictions.npz). testdata/make_tiny_models.py wrote them."""

import os

import numpy as np
import pytest

from keras_maskrcnn.models import load_model
from keras_maskrcnn.utils.anchors import AnchorParameters

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")
OUTPUTS = ("boxes", "scores", "labels", "masks")


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(os.path.join(TESTDATA, "tiny_predictions.npz")))


def _check(outputs, expected, key):
    for name, value in zip(OUTPUTS, outputs[-4:]):
        want = expected[f"{key}_{name}"]
        assert value.shape == want.shape and value.dtype == want.dtype, name
        np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-5, err_msg=f"{key} {name}")


@pytest.mark.parametrize("key", ["prediction", "legacy", "snapshot"])
def test_saved_model_predicts_as_when_saved(expected, key):
    """A prediction model as saved, keras-maskrcnn 0.2's architecture (crop_and_resize RoIAlign, clip
    margin 1) as saved, and a training snapshot turned into the prediction model by its metadata
    (anchors, class_specific_filter False, 7 detections)."""
    model = load_model(os.path.join(TESTDATA, f"tiny_{key}.keras"))
    _check(model.predict_on_batch(expected["image"]), expected, key)


def test_saved_model_takes_new_filter_settings(expected):
    """Settings given to load_model override the file's: the snapshot's 7 detections become 3, the
    first 3 of the same detections."""
    model = load_model(os.path.join(TESTDATA, "tiny_snapshot.keras"), max_detections=3)
    boxes, scores, labels, _ = model.predict_on_batch(expected["image"])[-4:]
    np.testing.assert_allclose(scores, expected["snapshot_scores"][:, :3], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(labels, expected["snapshot_labels"][:, :3])
    assert model.get_layer("anchors").anchor_params == AnchorParameters(sizes=(16, 32, 64, 128, 256))
