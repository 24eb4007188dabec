import keras
import numpy as np
import pytest

from keras_maskrcnn.layers import DetectionMasks, RoiAlign
from keras_maskrcnn.layers.detection_masks import default_buckets
from keras_maskrcnn.layers.testing import run_layer_test


def _mask_model(channels=4, num_classes=2):
    inputs = keras.Input((14, 14, channels))
    x = keras.layers.UpSampling2D(2)(inputs)
    outputs = keras.layers.Conv2D(num_classes, 1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="mask_submodel")


def _inputs(valid_counts, count=16, channels=4, seed=0):
    rng = np.random.default_rng(seed)
    batch = len(valid_counts)
    xy = rng.uniform(0, 200, (batch, count, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 120, (batch, count, 2))], axis=-1).astype(np.float32)
    scores = np.full((batch, count), -1.0, np.float32)
    for b, valid in enumerate(valid_counts):
        scores[b, :valid] = np.sort(rng.uniform(0.1, 1, valid))[::-1]
        boxes[b, valid:] = -1
    features = [rng.normal(size=(batch, -(-256 // s), -(-320 // s), channels)).astype(np.float32)
                for s in (8, 16, 32, 64, 128)]
    return boxes, scores, features


def test_default_buckets():
    assert default_buckets(100) == (0, 13, 25, 50, 100)
    assert default_buckets(1) == (0, 1)


@pytest.mark.parametrize("valid_counts, rows", [([0], 0), ([3], 4), ([2, 7], 8), ([16, 1], 16)])
def test_masks_cover_detections_and_rows_past_the_bucket_are_zero(valid_counts, rows):
    mask_model = _mask_model()
    layer = DetectionMasks(mask_model, buckets=[0, 4, 8])
    boxes, scores, features = _inputs(valid_counts)
    masks = keras.ops.convert_to_numpy(layer([boxes, scores] + features))
    assert masks.shape == (len(valid_counts), 16, 28, 28, 2)
    pooled = RoiAlign()([boxes] + features)
    flat = keras.ops.reshape(pooled, (-1, 14, 14, 4))
    expected = keras.ops.convert_to_numpy(mask_model(flat)).reshape(masks.shape)
    np.testing.assert_allclose(masks[:, :rows], expected[:, :rows], atol=1e-6)
    assert np.all(masks[:, rows:] == 0)


def test_config_round_trip_keeps_the_mask_model():
    boxes, scores, features = _inputs([3, 16])
    run_layer_test(DetectionMasks, dict(mask_model=_mask_model(), buckets=[0, 4]), [boxes, scores] + features,
                   expected_output_shape=(2, 16, 28, 28, 2), expected_output_dtype="float32",
                   expected_mixed_dtype="float32", atol=1e-5, rtol=1e-5, nested_keys=("mask_model",))
    layer = DetectionMasks(_mask_model(), buckets=[0, 4], mask_dtype="float16")
    clone = DetectionMasks.from_config(layer.get_config())
    assert clone.buckets == (0, 4) and clone.mask_dtype == "float16"
    assert clone.mask_model.output_shape == (None, 28, 28, 2)


@pytest.mark.parametrize("valid_counts", [[0], [3], [2, 7], [16, 1], [16, 16]])
@pytest.mark.parametrize("row_selection", ["slice", "all"])
def test_export_forms_give_the_outputs_of_the_switch(valid_counts, row_selection):
    """The forms without ops.switch (for converters) give the switch's outputs: the same masks on the
    bucket's rows, zeros after them, for no, few and all rows detected."""
    if row_selection == "slice" and keras.backend.backend() != "tensorflow":
        pytest.skip("a slice of dynamic length needs TensorFlow")
    mask_model = _mask_model()
    boxes, scores, features = _inputs(valid_counts)
    switch = DetectionMasks(mask_model, buckets=[0, 4, 8])
    form = DetectionMasks(mask_model, buckets=[0, 4, 8], row_selection=row_selection)
    assert DetectionMasks.from_config(form.get_config()).row_selection == row_selection
    expected = keras.ops.convert_to_numpy(switch([boxes, scores] + features))
    got = keras.ops.convert_to_numpy(form([boxes, scores] + features))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    rows = max([0] + [b for b in (0, 4, 8, 16) if b >= max(valid_counts)][:1])
    assert np.all(got[:, rows:] == 0) and (rows == 0 or np.any(got[:, :rows] != 0))


def test_row_selection_is_checked():
    with pytest.raises(ValueError, match="row_selection must be one of"):
        DetectionMasks(_mask_model(), row_selection="cond")


def _symbolic_model(roi_align):
    """boxes, scores, (image,) P3..P7 (4 channels) -> DetectionMasks' masks, as the prediction model wires it."""
    image, boxes, scores = keras.Input((None, None, 3)), keras.Input((16, 4)), keras.Input((16,))
    features = [keras.Input((None, None, 4)) for _ in range(5)]
    inputs = [boxes, scores] + ([image] if roi_align.takes_image else []) + features
    return keras.Model(inputs, DetectionMasks(_mask_model(), roi_align=roi_align, name="masks")(inputs))


def _unbuilt(model):
    # The check Keras's JAX trainer makes before a first predict: a layer left unbuilt makes it run the whole
    # model eagerly, op by op (a first predict of the tests' VGG16 model took 6.9 s instead of 1.6 s on JAX).
    return [layer.name for layer in model._flatten_layers() if not layer.built]


@pytest.mark.parametrize("sampling", ["aligned", "crop_and_resize"])
def test_roi_align_is_built_with_the_layer_also_when_a_saved_file_left_it_unbuilt(sampling, tmp_path):
    model = _symbolic_model(RoiAlign(sampling=sampling, name="roi_align"))
    assert _unbuilt(model) == []
    model.get_layer("masks").roi_align.built = False  # as saved before DetectionMasks built it
    path = str(tmp_path / "masks.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert _unbuilt(loaded) == [] and loaded.get_layer("masks").roi_align.sampling == sampling
