"""Training on several devices, tested on 2 virtual CPU devices.

One step on 2 devices (TensorFlow MirroredStrategy, JAX DataParallel) must give the loss and the
updated weights of one step on one device from the same weights and the same global batch of 2
images. Each run happens in a subprocess: virtual devices exist only if configured before the
backend starts, and must not leak into other tests.
"""

import csv
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_maskrcnn.bin import train
from keras_maskrcnn.models import load_model
from keras_maskrcnn.utils import distribution
from keras_maskrcnn.utils.distribution import check_backend, check_batch_size, configure_devices

# Two 64x64 images with different numbers of objects, so that each device's share of the batch
# has its own positive-anchor count: the losses must normalise by the global counts. The
# backbone is VGG16: few layers to compile, and no batch normalisation, whose batch statistics
# TensorFlow would compute per device (the FPN and heads have none either). SGD makes the update
# lr * gradient, with no optimizer state.
BATCH_AND_MODEL = textwrap.dedent("""
    from keras_maskrcnn import losses
    from keras_maskrcnn.models import backbone, training_model
    from keras_maskrcnn.utils.anchors import anchor_targets_bbox, anchors_for_shape

    SIZE, ROIS, CLASSES = 64, 2, 2

    def global_batch():
        images = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
        boxes = [np.array([[4, 6, 36, 38], [28, 24, 60, 58]], np.float64), np.array([[16, 16, 48, 48]], np.float64)]
        labels = [np.array([0, 1]), np.array([1])]
        rois = np.zeros((2, ROIS, 4), np.float32)
        masks = np.zeros((2, ROIS, 1 + 28 * 28), np.float32)
        masks[..., 0] = -1
        for i, (image_boxes, image_labels) in enumerate(zip(boxes, labels)):
            for x1, y1, x2, y2 in image_boxes.astype(int):
                images[i, y1:y2, x1:x2] += 1.0
            rois[i, :len(image_boxes)] = image_boxes
            masks[i, :len(image_boxes), 0] = image_labels
            masks[i, :len(image_boxes), 1 + 28 * 7:1 + 28 * 21] = 1.0
        regression, classification = anchor_targets_bbox(
            anchors_for_shape((SIZE, SIZE)), [dict(bboxes=b, labels=l) for b, l in zip(boxes, labels)],
            CLASSES, [(SIZE, SIZE)] * 2)
        targets = dict(regression=regression, classification=classification, masks=masks)
        return dict(image=images, rois=rois), targets, (classification >= 0).sum(axis=1).tolist()

    def build():
        keras.utils.set_random_seed(0)
        model = backbone("vgg16").maskrcnn(num_classes=CLASSES, freeze_bn=True, feature_size=32,
                                                 mask_feature_size=16)
        model = training_model(model)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=losses.training_losses())
        return model

    def one_step(model):
        return {k: v[0] for k, v in model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0).history.items()}
""")

_EQUIVALENCE_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import keras
    from keras_maskrcnn.utils.distribution import configure_devices, distribution_scope

    configure_devices(2)
""") + BATCH_AND_MODEL + textwrap.dedent("""
    x, y, positives = global_batch()
    single = build()
    initial = single.get_weights()
    single_logs = one_step(single)
    with distribution_scope(2):
        distributed = build()
        distributed.set_weights(initial)
        distributed_logs = one_step(distributed)
        if keras.backend.backend() == "tensorflow":
            devices = distributed.distribute_strategy.num_replicas_in_sync
            copies = [[np.asarray(t) for t in v.value.values] for v in distributed.weights]
            replica_difference = max(float(np.max(np.abs(c[0] - c[1]))) for c in copies)
        else:
            devices = len(keras.distribution.distribution().device_mesh.devices)
            replica_difference = 0.0
    after, after_distributed = single.get_weights(), distributed.get_weights()
    print(json.dumps(dict(
        devices=devices, positives=positives, single=single_logs, distributed=distributed_logs,
        max_update=max(float(np.max(np.abs(a - b))) for a, b in zip(after, initial)),
        max_difference=max(float(np.max(np.abs(a - b))) for a, b in zip(after, after_distributed)),
        close=all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(after, after_distributed)),
        replica_difference=replica_difference)))
""")


def _run(code, backend, *args, timeout=1200):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_step_on_two_devices_equals_a_step_on_one(backend):
    if backend == "jax":
        pytest.importorskip("jax", reason="the JAX variant needs jax installed")
    result = _run(_EQUIVALENCE_SCRIPT, backend)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(backend, json.dumps(report))
    assert report["devices"] == 2
    assert report["positives"][0] != report["positives"][1]
    for name, value in report["single"].items():
        assert report["distributed"][name] == pytest.approx(value, rel=1e-5), name
    assert report["max_update"] > 1e-3  # the step changes the weights, so equal weights mean equal updates
    assert report["close"], f"weights differ by up to {report['max_difference']}"
    assert report["replica_difference"] == 0.0


_DEVICE_COUNT_SCRIPT = textwrap.dedent("""
    import sys
    import keras
    from keras_maskrcnn.utils.distribution import configure_devices
    print(len(configure_devices(2)))
    keras.ops.ones(1)
    try:
        configure_devices(3)
    except ValueError as error:
        print(error)
""")


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_more_devices_than_exist_is_an_error_naming_both_numbers(backend):
    if backend == "jax":
        pytest.importorskip("jax", reason="the JAX variant needs jax installed")
    result = _run(_DEVICE_COUNT_SCRIPT, backend, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "2"
    assert lines[1].startswith("asked for 3 devices, but only 2 CPU devices are available")


def test_fewer_gpus_than_asked_for_is_an_error(monkeypatch):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("checks the TensorFlow device listing")
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    with pytest.raises(ValueError, match="asked for 2 devices, but only 1 GPU is available"):
        configure_devices(2)
    assert configure_devices(1) == [] and configure_devices(0) == []


def test_batch_size_and_backend_checks(monkeypatch):
    check_batch_size(4, 2)
    check_batch_size(3, 1)
    with pytest.raises(ValueError, match="batch size 3 must be a multiple of the number of devices 2"):
        check_batch_size(3, 2)
    monkeypatch.setattr(distribution.keras.backend, "backend", lambda: "torch")
    check_backend(1)
    with pytest.raises(ValueError, match="the torch backend is not supported"):
        check_backend(2)
    with pytest.raises(ValueError, match="torch backend is not supported"):
        distribution.distribution_scope(2)


def test_train_checks_multi_gpu_against_batch_size(small_shapes, capsys, no_model_building):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--multi-gpu", "2", "--batch-size", "3", "csv", small_shapes["train"], small_shapes["classes"]])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: maskrcnn-train")
    assert "--multi-gpu 2: the batch size 3 must be a multiple of the number of devices 2" in error


def test_maskrcnn_train_on_two_virtual_devices_evaluates_and_saves_a_snapshot(small_shapes):
    """Without a GPU, --multi-gpu 2 splits the CPU into 2 devices; evaluation and snapshots work."""
    snapshots = small_shapes["root"] / "snapshots-multi-gpu"
    script = os.path.join(os.path.dirname(sys.executable), "maskrcnn-train")
    args = ["--multi-gpu", "2", "--backbone", "vgg16", "--batch-size", "2", "--epochs", "1", "--steps", "1",
            "--lr", "1e-4", "--mask-rois", "2", "--max-detections", "5", "--feature-size", "32",
            "--mask-feature-size", "16", "--image-min-side", "64", "--image-max-side", "64",
            "--config", small_shapes["config"], "--tensorboard-dir", "", "--seed", "0", "--snapshot-path", str(snapshots),
            "csv", small_shapes["train"], small_shapes["classes"], "--val-annotations", small_shapes["val"]]
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([script, *args], env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(snapshots / "vgg16_csv.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and np.isfinite(float(rows[0]["loss"])) and 0.0 <= float(rows[0]["mAP"]) <= 1.0
    model = load_model(str(snapshots / "vgg16_csv_01.keras"), "vgg16")
    boxes, scores, labels, masks = model.predict_on_batch(np.zeros((1, 64, 64, 3), np.float32))[-4:]
    assert boxes.shape == (1, 5, 4) and masks.shape == (1, 5, 28, 28, 3)
