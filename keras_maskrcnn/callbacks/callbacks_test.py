"""Tests of the Evaluate and CocoEval callbacks inside a real keras fit."""

import csv
import importlib.util
import json
import os

import keras
import numpy as np
import pytest

from keras_maskrcnn.callbacks.coco import CocoEval
from keras_maskrcnn.callbacks.eval import Evaluate, TrainingCurves
from keras_maskrcnn.evaluation.average_precision_test import EmptyModel, GroundTruthModel, StubGenerator, shape_scenes

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def _fit(callbacks, epochs=2):
    """Fits a tiny dense model for `epochs` epochs of one step; returns the History."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    data = np.zeros((4, 3), np.float32)
    return model.fit(data, np.zeros((4, 1), np.float32), batch_size=4, epochs=epochs,
                     callbacks=callbacks, verbose=0)


def test_evaluate_callback_logs_map_and_prints_per_class(tmp_path, capsys):
    generator = StubGenerator(shape_scenes())
    evaluate = Evaluate(generator, prediction_model=GroundTruthModel(generator))
    history = _fit([evaluate])
    assert history.history["mAP"] == [pytest.approx(1.0)] * 2
    output = capsys.readouterr().out
    assert "4 instances of class square with average precision: 1.0000" in output
    assert "3 instances of class circle with average precision: 1.0000" in output
    assert "mAP: 1.0000" in output


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="the tensorboard package is not installed")
def test_evaluate_callback_writes_map_to_tensorboard(tmp_path):
    generator = StubGenerator(shape_scenes())
    tensorboard = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "logs"))
    evaluate = Evaluate(generator, prediction_model=GroundTruthModel(generator),
                        tensorboard=tensorboard, verbose=0, tensorboard_images=2)
    history = _fit([evaluate, tensorboard], epochs=1)
    assert history.history["mAP"] == [pytest.approx(1.0)]
    import tensorflow as tf

    tags, images = set(), {}
    for directory, _, files in os.walk(tmp_path / "logs" / "validation"):
        for name in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
                for value in event.summary.value:
                    tags.add(value.tag)
                    if value.tag.startswith("validation_pictures/"):
                        images[value.tag] = tf.io.decode_png(tf.make_ndarray(value.tensor)[2]).shape
    assert {"mAP", "segm_AP", "segm_AP50"} <= tags
    # the first two pictures (60x80 and 72x64), enlarged to 320 px wide, truth beside predictions
    assert images == {"validation_pictures/0": (4 * 60 + 22, 8 * 80 + 4, 3),
                      "validation_pictures/1": (5 * 72 + 22, 10 * 64 + 4, 3)}


@pytest.mark.skipif(HAS_TENSORBOARD, reason="the tensorboard package is installed")
def test_evaluate_callback_without_tensorboard_package_warns(tmp_path):
    generator = StubGenerator(shape_scenes())
    tensorboard = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "logs"))
    evaluate = Evaluate(generator, prediction_model=GroundTruthModel(generator),
                        tensorboard=tensorboard, verbose=0)
    with pytest.warns(UserWarning, match="tensorboard package"):
        history = _fit([evaluate], epochs=1)
    assert history.history["mAP"] == [pytest.approx(1.0)]


def test_evaluate_callback_logs_coco_mask_ap_to_the_csv_log_and_draws_training_curves(tmp_path):
    generator = StubGenerator(shape_scenes())
    log = tmp_path / "log.csv"
    evaluate = Evaluate(generator, prediction_model=GroundTruthModel(generator), verbose=0,
                        save_path=str(tmp_path / "evaluation"))
    curves = TrainingCurves(str(log))
    _fit([evaluate, keras.callbacks.CSVLogger(str(log)), curves], epochs=2)
    with open(log) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert all(float(row["segm_AP50"]) == pytest.approx(1.0) for row in rows)
    assert all(0.95 < float(row["segm_AP"]) <= 1.0 for row in rows)
    assert curves.written == str(tmp_path / "training_curves.png")
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["settings"] == {"epoch": 2}


def test_evaluate_callback_weighted_average_and_quiet(tmp_path, capsys):
    scenes = shape_scenes()
    generator = StubGenerator(scenes)

    def drop_circles(boxes, masks):
        # circles (label 1) get an empty mask: square AP 1 (4 instances), circle AP 0 (3)
        return boxes, [m if box_index % 2 == 0 else m * 0 for box_index, m in enumerate(masks)]

    model = GroundTruthModel(generator, transform=drop_circles)
    plain = Evaluate(generator, prediction_model=model, verbose=0)
    weighted = Evaluate(generator, prediction_model=model, weighted_average=True, verbose=0)
    _fit([plain, weighted], epochs=1)
    assert plain.mean_ap == pytest.approx(0.5)
    assert weighted.mean_ap == pytest.approx(4 / 7)
    assert capsys.readouterr().out == ""


def test_evaluate_callback_defaults_to_the_fitted_model():
    generator = StubGenerator(shape_scenes())
    evaluate = Evaluate(generator, verbose=0)
    evaluate.set_model(EmptyModel(generator.num_classes()))
    logs = {}
    evaluate.on_epoch_end(0, logs)
    assert logs["mAP"] == 0.0


def test_coco_eval_callback_logs_named_stats(tmp_path):
    generator = StubGenerator(shape_scenes())
    coco_eval = CocoEval(generator, prediction_model=GroundTruthModel(generator), verbose=0)
    history = _fit([coco_eval], epochs=1)
    for prefix in ("segm", "bbox"):
        for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs",
                     "ARm", "ARl"):
            assert f"{prefix}_{name}" in history.history
    assert history.history["segm_AP50"] == [pytest.approx(1.0)]
    assert history.history["mAP"] == history.history["segm_AP"]
    assert len(coco_eval.stats["segm"]) == 12


def test_callbacks_refuse_to_run_a_training_model():
    generator = StubGenerator(shape_scenes())
    image = keras.Input((None, None, 3), name="image")
    rois = keras.Input((None, 4), name="rois")
    training = keras.Model([image, rois], [keras.layers.GlobalAveragePooling2D()(image), rois])
    for callback in (Evaluate(generator, verbose=0), CocoEval(generator)):
        callback.set_model(training)
        with pytest.raises(ValueError, match="prediction_model="):
            callback.on_epoch_end(0, {})


class _Generator:
    """Has what BadImageMonitor reads: size() and a bad_images record."""

    def __init__(self, size):
        from keras_maskrcnn.preprocessing.bad_images import BadImages

        self._size = size
        self.bad_images = BadImages()

    def size(self):
        return self._size


def test_bad_image_monitor_logs_each_epochs_skips_and_stops_past_the_limit(capsys):
    from keras_maskrcnn.callbacks.bad_images import BadImageMonitor
    from keras_maskrcnn.preprocessing.bad_images import TooManyBadImagesError

    generator = _Generator(100)
    generator.bad_images.add("left-out.png", "a.csv:3: image file 'left-out.png' does not exist")
    monitor = BadImageMonitor(generator, max_bad_images=2)

    class Breaking(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                generator.bad_images.add("b.png", "a.csv:5: image file 'b.png' could not be read: truncated", True)
                generator.bad_images.add("b.png", "a.csv:5: image file 'b.png' could not be read: truncated", True)
            if epoch == 2:
                generator.bad_images.add("c.png", "a.csv:9: image file 'c.png' could not be read: truncated", True)

    history = _fit([Breaking(), monitor], epochs=2)
    assert history.history["skipped_images"] == [0, 2]
    output = capsys.readouterr().out
    assert "Epoch 1: skipped" not in output
    assert ("Epoch 2: skipped 2 unreadable images (each replaced in its batch by another image):\n"
            "  a.csv:5: image file 'b.png' could not be read: truncated (2 times)\n") in output
    with pytest.raises(TooManyBadImagesError) as error:
        _fit([Breaking(), BadImageMonitor(generator, max_bad_images=2, total=101)], epochs=3)
    assert str(error.value) == (
        "3 of 101 images cannot be read, more than --max-bad-images 2 allows; fix or remove them "
        "(or raise --max-bad-images):\n"
        "  a.csv:3: image file 'left-out.png' does not exist\n"
        "  a.csv:5: image file 'b.png' could not be read: truncated\n"
        "  a.csv:9: image file 'c.png' could not be read: truncated")
