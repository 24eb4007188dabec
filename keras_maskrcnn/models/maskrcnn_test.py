import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_maskrcnn import losses
from keras_maskrcnn.models import BACKBONES, backbone, build_training_state, load_model, save_model, training_model
from keras_maskrcnn.utils.anchors import anchor_targets_bbox, anchors_for_shape

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(1)
    return backbone("mobilenetv2").maskrcnn(num_classes=NUM_CLASSES, score_threshold=0.0, max_detections=20)


def _image(height=96, width=128, seed=0):
    return np.random.default_rng(seed).uniform(-100, 100, (1, height, width, 3)).astype(np.float32)


def test_resnet50_prediction_outputs_have_documented_shapes_and_padding():
    model = backbone("resnet50").maskrcnn(num_classes=NUM_CLASSES)
    outputs = model.predict_on_batch(_image(100, 140))
    regression, classification, boxes, scores, labels, masks = outputs
    num_anchors = anchors_for_shape((100, 140)).shape[0]
    assert regression.shape == (1, num_anchors, 4)
    assert classification.shape == (1, num_anchors, NUM_CLASSES)
    assert boxes.shape == (1, 100, 4) and boxes.dtype == np.float32
    assert scores.shape == (1, 100) and scores.dtype == np.float32
    assert labels.shape == (1, 100) and labels.dtype == np.int32
    assert masks.shape == (1, 100, 28, 28, NUM_CLASSES) and masks.dtype == np.float32
    # Untrained: every score is near the 0.01 prior, under the 0.05 threshold, so all rows are padding.
    assert np.all(scores == -1) and np.all(labels == -1) and np.all(boxes == -1)


def test_detections_are_sorted_inside_the_image_and_masks_are_probabilities(small_model):
    boxes, scores, labels, masks = small_model.predict_on_batch(_image())[-4:]
    assert boxes.shape == (1, 20, 4) and masks.shape == (1, 20, 28, 28, NUM_CLASSES)
    assert np.all(scores[0] >= 0) and np.all(np.diff(scores[0]) <= 0)
    assert np.all((labels >= 0) & (labels < NUM_CLASSES))
    assert np.all(boxes[..., 0::2] >= 0) and np.all(boxes[..., 0::2] <= 128)
    assert np.all(boxes[..., 1::2] >= 0) and np.all(boxes[..., 1::2] <= 96)
    assert np.all((masks >= 0) & (masks <= 1))


def test_mask_dtype_option():
    model = backbone("mobilenetv2").maskrcnn(num_classes=2, mask_dtype="float16", max_detections=5)
    assert model.predict_on_batch(_image(64, 64))[-1].dtype == np.float16


def test_feature_sizes_set_the_widths_of_fpn_heads_and_mask_head():
    model = backbone("mobilenetv2").maskrcnn(num_classes=2, feature_size=64, mask_feature_size=32, max_detections=5)
    assert all(model.get_layer(level).output.shape[-1] == 64 for level in ("P3", "P4", "P5", "P6", "P7"))
    head = model.get_layer("masks").mask_model
    assert head.get_layer("roi_mask_0").kernel.shape == (3, 3, 64, 32)
    assert head.get_layer("roi_mask_deconv").kernel.shape == (2, 2, 32, 32)
    assert model.get_layer("classification_submodel").get_layer("pyramid_classification_0").kernel.shape == (3, 3, 64, 64)
    outputs = training_model(model).predict_on_batch([_image(64, 64), np.array([[[8, 8, 40, 40]]], np.float32)])
    assert outputs[-1].shape == (1, 1, 28, 28, 2)


def synthetic_batch(height=96, width=128, num_classes=NUM_CLASSES, max_rois=4):
    image = np.zeros((1, height, width, 3), np.float32)
    bboxes = np.array([[10, 12, 60, 80], [70, 20, 120, 70]], np.float64)
    labels = np.array([0, num_classes - 1])
    image[0, 12:80, 10:60] = [80, -40, 10]
    image[0, 20:70, 70:120] = [-60, 90, -30]
    regression, classification = anchor_targets_bbox(
        anchors_for_shape((height, width)), [{"bboxes": bboxes, "labels": labels}], num_classes, [(height, width)])
    rois = np.zeros((1, max_rois, 4), np.float32)
    rois[0, :2] = bboxes
    masks = np.zeros((1, max_rois, 1 + 28 * 28), np.float32)
    masks[0, :, 0] = -1
    masks[0, :2, 0] = labels
    square = np.zeros((28, 28), np.float32)
    square[7:21, 7:21] = 1
    masks[0, :2, 1:] = square.ravel()
    return {"image": image, "rois": rois}, {"regression": regression, "classification": classification, "masks": masks}


def test_twenty_training_steps_halve_the_loss_and_empty_images_train_finitely():
    keras.utils.set_random_seed(2)
    model = backbone("mobilenetv2").maskrcnn(num_classes=NUM_CLASSES)
    train = training_model(model)
    assert [t.name for t in train.inputs] == ["image", "rois"]
    assert train.output_names == ["regression", "classification", "masks"]
    train.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses.training_losses())
    build_training_state(train)
    assert train.optimizer.built and train.optimizer.iterations.numpy() == 0
    traces = []
    call = train.call
    train.call = lambda *args, **kwargs: traces.append(1) or call(*args, **kwargs)
    x, y = synthetic_batch()
    history = [train.train_on_batch(x, y, return_dict=True) for _ in range(20)]
    # The step is traced once: without build_training_state TensorFlow traces it again, as the first
    # trace creates the loss trackers and the optimizer's variables.
    assert len(traces) == 1
    first, last = history[0]["loss"], history[-1]["loss"]
    assert np.isfinite([h["loss"] for h in history]).all()
    assert last <= 0.5 * first, f"loss went from {first} to {last}"

    # An image without annotations: all anchors negative, every RoI padding.
    height, width = x["image"].shape[1:3]
    regression, classification = anchor_targets_bbox(
        anchors_for_shape((height, width)), [{"bboxes": np.zeros((0, 4)), "labels": np.zeros(0)}],
        NUM_CLASSES, [(height, width)])
    masks = np.zeros_like(y["masks"])
    masks[..., 0] = -1
    logs = train.train_on_batch(
        {"image": _image(height, width), "rois": np.zeros_like(x["rois"])},
        {"regression": regression, "classification": classification, "masks": masks}, return_dict=True)
    assert np.isfinite(list(logs.values())).all()
    assert logs["masks_loss"] == 0.0 and logs["regression_loss"] == 0.0


_RELOAD_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    from keras_maskrcnn.models import load_model
    model = load_model(sys.argv[1], backbone_name="mobilenetv2")
    outputs = model.predict_on_batch(np.load(sys.argv[2]))
    np.savez(sys.argv[3], *outputs)
""")


def _reload_in_subprocess(tmp_path, model_path, image):
    np.save(tmp_path / "image.npy", image)
    script = tmp_path / "reload.py"
    script.write_text(_RELOAD_SCRIPT)
    subprocess.run([sys.executable, str(script), str(model_path), str(tmp_path / "image.npy"),
                    str(tmp_path / "out.npz")], check=True, env=dict(os.environ))
    with np.load(tmp_path / "out.npz") as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def test_saved_prediction_model_reloads_in_a_fresh_process_with_identical_outputs(small_model, tmp_path):
    image = _image(seed=3)
    expected = small_model.predict_on_batch(image)
    path = tmp_path / "model.keras"
    small_model.save(path)
    reloaded = _reload_in_subprocess(tmp_path, path, image)
    assert len(reloaded) == 6
    for want, got in zip(expected, reloaded):
        np.testing.assert_array_equal(want, got)


def test_training_snapshot_loads_as_the_prediction_model(small_model, tmp_path):
    train = training_model(small_model)
    train.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses.training_losses())
    path = tmp_path / "snapshot.keras"
    save_model(train, str(path), anchor_params=None,
               filter={"score_threshold": 0.0, "max_detections": 20}, backbone="mobilenetv2")
    image = _image(seed=4)
    expected = small_model.predict_on_batch(image)
    reloaded = _reload_in_subprocess(tmp_path, path, image)
    for want, got in zip(expected, reloaded):
        np.testing.assert_array_equal(want, got)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="resnet50.*mobilenetv2"):
        backbone("resnet18")
    assert "efficientnetb0" in BACKBONES


def test_load_model_errors_name_the_path(tmp_path):
    missing = tmp_path / "nothing.keras"
    with pytest.raises(ValueError, match="nothing.keras.*does not exist"):
        load_model(str(missing))
    junk = tmp_path / "junk.keras"
    junk.write_text(json.dumps({"not": "a model"}))
    with pytest.raises(ValueError, match="junk.keras.*is not a Keras model file"):
        load_model(str(junk))


def test_model_builds_predicts_and_trains_on_the_jax_backend():
    """Also one training step: XLA on CPU crashed (segmentation fault) computing the gradient of
    RoiAlign's multiply-and-sum form; on JAX the layer uses einsums instead. VGG16 with narrow heads:
    the fewest layers to compile (37 s against 64 s for MobileNetV2 with the default widths)."""
    pytest.importorskip("jax")
    code = textwrap.dedent("""
        import numpy as np, keras
        assert keras.backend.backend() == "jax"
        from keras_maskrcnn import losses
        from keras_maskrcnn.models import backbone, build_training_state, training_model
        from keras_maskrcnn.utils.anchors import anchor_targets_bbox, anchors_for_shape
        model = backbone("vgg16").maskrcnn(num_classes=2, score_threshold=0.0, max_detections=7, feature_size=32,
                                           mask_feature_size=16)
        boxes, scores, labels, masks = model.predict_on_batch(np.zeros((1, 64, 96, 3), np.float32))[-4:]
        assert boxes.shape == (1, 7, 4) and scores.shape == (1, 7) and labels.shape == (1, 7)
        assert masks.shape == (1, 7, 28, 28, 2)
        train = training_model(model)
        assert train.output_names == ["regression", "classification", "masks"]
        train.compile(loss=losses.training_losses(), optimizer=keras.optimizers.SGD(1e-5))
        build_training_state(train)
        box = np.array([[4.0, 6.0, 36.0, 38.0]])
        regression, classification = anchor_targets_bbox(
            anchors_for_shape((64, 96)), [dict(bboxes=box, labels=np.array([1]))], 2, [(64, 96)])
        rois = np.zeros((1, 2, 4), np.float32)
        rois[0, 0] = box[0]
        mask_targets = np.zeros((1, 2, 1 + 28 * 28), np.float32)
        mask_targets[0, :, 0] = [1, -1]
        mask_targets[0, 0, 1 + 28 * 7:1 + 28 * 21] = 1.0
        logs = train.train_on_batch(dict(image=np.ones((1, 64, 96, 3), np.float32), rois=rois),
                                    dict(regression=regression, classification=classification, masks=mask_targets),
                                    return_dict=True)
        assert all(np.isfinite(v) for v in logs.values()) and logs["masks_loss"] > 0, logs
        print("jax ok")
    """)
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "jax ok" in result.stdout
