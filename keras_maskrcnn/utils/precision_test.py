import keras
import numpy as np
import pytest

from keras_maskrcnn import losses
from keras_maskrcnn.models import backbone, load_model, load_training_model, save_model, training_model
from keras_maskrcnn.models.maskrcnn_test import synthetic_batch
from keras_maskrcnn.utils import precision

SIZE = 64
NUM_CLASSES = 2
MIXED_CONVS = ("Conv1", "block_6_expand", "C5_reduced", "P3", "P7")
FLOAT32_LAYERS = ("anchors", "boxes", "clipped_boxes", "filtered_detections", "regression", "classification")


@pytest.fixture(scope="module")
def mixed_model():
    keras.utils.set_random_seed(5)
    return backbone("mobilenetv2").maskrcnn(num_classes=NUM_CLASSES, score_threshold=0.0, max_detections=5,
                                            feature_size=32, mask_feature_size=16, mixed_precision="mixed_bfloat16")


def _image(seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)


def _numpy(tensors):
    return [keras.ops.convert_to_numpy(t) for t in tensors]


def _runtime_dtype(model, layer_name):
    """dtype of the tensor `layer_name` really outputs when the model runs."""
    probe = keras.Model(model.inputs[0], model.get_layer(layer_name).output)
    return keras.backend.standardize_dtype(probe(_image()).dtype)


def test_resolve_policy(monkeypatch):
    assert precision.resolve_policy(None) is None
    assert precision.resolve_policy(False) is None
    assert precision.resolve_policy("mixed_float16") == "mixed_float16"
    assert precision.resolve_policy("mixed_bfloat16") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "gpu_visible", lambda: False)
    assert precision.resolve_policy(True) == precision.resolve_policy("auto") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "gpu_visible", lambda: True)
    assert precision.resolve_policy(True) == precision.resolve_policy("auto") == "mixed_float16"
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        precision.resolve_policy("float16")


def test_policy_scope_restores_the_global_policy_even_on_errors():
    before = keras.config.dtype_policy()
    with precision.policy_scope("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy() == before
    with pytest.raises(RuntimeError), precision.policy_scope("mixed_float16"):
        raise RuntimeError("building failed")
    assert keras.config.dtype_policy() == before
    with precision.policy_scope(None):
        assert keras.config.dtype_policy() == before


def test_mixed_model_computes_in_bfloat16_with_float32_outputs_and_weights(mixed_model):
    assert keras.config.dtype_policy().name == "float32"
    for name in MIXED_CONVS:
        layer = mixed_model.get_layer(name)
        assert (layer.compute_dtype, layer.variable_dtype, layer.kernel.dtype) == ("bfloat16", "float32", "float32")
    head = mixed_model.get_layer("classification_submodel").get_layer("pyramid_classification_0")
    assert head.compute_dtype == "bfloat16"
    masks = mixed_model.get_layer("masks")
    assert masks.roi_align.compute_dtype == "bfloat16"
    assert masks.mask_model.get_layer("roi_mask_0").compute_dtype == "bfloat16"
    assert masks.mask_model.get_layer("roi_mask").compute_dtype == "float32"
    for name in FLOAT32_LAYERS:
        assert mixed_model.get_layer(name).compute_dtype == "float32", name
    assert _runtime_dtype(mixed_model, "P3") == "bfloat16"

    regression, classification, boxes, scores, labels, mask_out = mixed_model.predict_on_batch(_image())
    assert [a.dtype for a in (regression, classification, boxes, scores, mask_out)] == [np.float32] * 5
    assert labels.dtype == np.int32
    assert boxes.shape == (1, 5, 4) and mask_out.shape == (1, 5, 28, 28, NUM_CLASSES)
    assert np.all(scores >= 0) and np.all((mask_out >= 0) & (mask_out <= 1))


def test_roi_align_keeps_box_coordinates_in_float32(mixed_model):
    # A P3 ramp whose value is the column index minus 37. bfloat16 boxes would be x1 = 300,
    # x2 = 412 instead of 301 and 413, shifting every pooled value by 1/8 (one eighth of a cell).
    roi_align = mixed_model.get_layer("masks").roi_align
    ramp = np.tile(np.arange(64, dtype=np.float32)[None, None, :, None] - 37, (1, 64, 1, 1))
    levels = [ramp] + [np.zeros((1, 64 // 2 ** i, 64 // 2 ** i, 1), np.float32) for i in range(1, 5)]
    box = np.array([[[301.0, 0.0, 413.0, 112.0]]], np.float32)
    pooled = roi_align([keras.ops.convert_to_tensor(x) for x in [box] + levels])
    assert keras.backend.standardize_dtype(pooled.dtype) == "bfloat16"
    row = keras.ops.convert_to_numpy(keras.ops.cast(pooled, "float32"))[0, 0, 0, :6, 0]
    np.testing.assert_allclose(row, 301.0 / 8 - 37 + np.arange(6), atol=0.04)


def test_training_model_shares_the_policy_and_its_losses_and_gradients_are_finite_float32(mixed_model):
    train = training_model(mixed_model)
    assert train.get_layer("roi_align").compute_dtype == "bfloat16"
    assert train.get_layer("P3") is mixed_model.get_layer("P3")
    assert [t.dtype for t in train.outputs] == ["float32"] * 3
    assert keras.config.dtype_policy().name == "float32"
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradients are taken with tf.GradientTape")
    import tensorflow as tf

    x, y = synthetic_batch(num_classes=NUM_CLASSES, max_rois=3)
    loss_functions = losses.training_losses()
    with tf.GradientTape() as tape:
        outputs = dict(zip(train.output_names, train(x, training=True)))
        values = {name: loss_functions[name](y[name], outputs[name]) for name in train.output_names}
        total = sum(values.values())
    for value in values.values():
        assert value.dtype == tf.float32 and np.isfinite(value.numpy())
    gradients = tape.gradient(total, train.trainable_variables)
    assert all(g is not None and g.dtype == tf.float32 and np.isfinite(g.numpy()).all() for g in gradients)


def test_mixed_float16_training_model_compiles_with_loss_scaling():
    model = backbone("mobilenetv2").maskrcnn(num_classes=NUM_CLASSES, max_detections=5,
                                             mixed_precision="mixed_float16", feature_size=32, mask_feature_size=16)
    train = training_model(model)
    train.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses.training_losses())
    assert isinstance(train.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("P3").compute_dtype == "float16"


def test_mixed_model_saves_and_loads_with_its_policy(mixed_model, tmp_path):
    path = str(tmp_path / "mixed.keras")
    mixed_model.save(path)
    reloaded = load_model(path, backbone_name="mobilenetv2")
    assert reloaded.get_layer("P3").compute_dtype == "bfloat16"
    assert reloaded.get_layer("masks").roi_align.compute_dtype == "bfloat16"
    assert reloaded.get_layer("filtered_detections").compute_dtype == "float32"
    for want, got in zip(_numpy(mixed_model(_image(1))), _numpy(reloaded(_image(1)))):
        np.testing.assert_array_equal(want, got)


def test_float32_snapshot_loads_converted_to_mixed(tmp_path):
    keras.utils.set_random_seed(6)
    model = backbone("mobilenetv2").maskrcnn(num_classes=NUM_CLASSES, score_threshold=0.0, max_detections=5,
                                             feature_size=32, mask_feature_size=16)
    train = training_model(model)
    train.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses.training_losses())
    train.optimizer.build(train.trainable_variables)
    path = str(tmp_path / "snapshot.keras")
    save_model(train, path, epoch=1, filter={"score_threshold": 0.0, "max_detections": 5})

    converted = load_model(path, backbone_name="mobilenetv2", mixed_precision="mixed_bfloat16")
    assert converted.get_layer("P3").compute_dtype == "bfloat16"
    mask_model = converted.get_layer("masks").mask_model
    assert mask_model.get_layer("roi_mask_0").compute_dtype == "bfloat16"
    assert mask_model.get_layer("roi_mask").compute_dtype == "float32"
    for name in FLOAT32_LAYERS:
        assert converted.get_layer(name).compute_dtype == "float32", name
    assert _runtime_dtype(converted, "P3") == "bfloat16"
    want, got = _numpy(model(_image(2))), _numpy(converted(_image(2)))
    assert [a.dtype for a in got] == [a.dtype for a in want]
    np.testing.assert_allclose(got[1], want[1], atol=0.02)
    assert not np.array_equal(got[1], want[1])

    resumed, metadata = load_training_model(path, "mobilenetv2", mixed_precision="mixed_float16")
    assert metadata["epoch"] == 1
    assert resumed.get_layer("P3").compute_dtype == "float16"
    assert isinstance(resumed.optimizer, keras.optimizers.LossScaleOptimizer)
    assert keras.config.dtype_policy().name == "float32"
