"""The tools on old `.h5` files (written by tests/legacy_h5_writer.py): maskrcnn-convert, maskrcnn-train
--weights, maskrcnn-predict and maskrcnn-evaluate, and load_model on JAX."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

from keras_maskrcnn import models
from keras_maskrcnn.bin import convert, evaluate, predict, train
from keras_maskrcnn.models import load_model, read_metadata
from keras_maskrcnn.models.legacy import legacy_maskrcnn
from keras_maskrcnn.models.legacy_resnet import legacy_resnet_features
from tests.legacy_h5_writer import write_legacy_h5

SMALL = ["--image-min-side", "64", "--image-max-side", "64", "--tensorboard-dir", "", "--no-evaluation",
         "--batch-size", "1", "--steps", "2", "--epochs", "1", "--mask-rois", "2", "--max-detections", "5",
         "--seed", "0"]

CHECK = """
import sys
import keras
import numpy as np
from keras_maskrcnn.models import load_model
from keras_maskrcnn.utils.compare import compare_detections, describe
expected = np.load(sys.argv[2])
outputs = load_model(sys.argv[1]).predict_on_batch(expected["image"])
report = compare_detections([expected[k] for k in ("boxes", "scores", "labels", "masks")], outputs[-4:],
                            score_tol=1e-5, box_tol=1e-3, mask_tol=1e-4)
print(describe(report))
assert report["count"] > 0 and report["same"], report
print("same outputs on", keras.backend.backend())
"""


def _run_check(path, expected, backend):
    env = dict(os.environ, KERAS_BACKEND=backend)
    result = subprocess.run([sys.executable, "-c", CHECK, path, expected], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"same outputs on {backend}" in result.stdout


def test_convert_writes_a_keras_file_that_opens_in_a_fresh_process(legacy_h5, tmp_path, capsys):
    output = str(tmp_path / "converted" / "model.keras")
    classes = tmp_path / "classes.csv"
    classes.write_text("cat,0\ndog,1\nbird,2\n")
    assert convert.main([legacy_h5["maskrcnn"]["tf-keras"], output, "--classes", str(classes)]) == 0
    assert "3 classes, with masks" in capsys.readouterr().out
    metadata = read_metadata(output)
    assert metadata["classes"] == ["cat", "dog", "bird"]
    assert metadata["backbone"] == "resnet50"
    assert metadata["filter"]["max_detections"] == 100
    # A fresh process on the other backend: the converted old architecture runs on JAX as on TensorFlow.
    _run_check(output, legacy_h5["expected"], "jax" if importlib.util.find_spec("jax") else "tensorflow")


def test_convert_refuses_what_it_cannot_convert(legacy_h5, tmp_path, capsys):
    with pytest.raises(SystemExit):
        convert.main([legacy_h5["maskrcnn"]["tf-keras"], str(tmp_path / "out.h5")])
    assert "must end in .keras" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert.main([legacy_h5["maskrcnn"]["tf-keras"], str(tmp_path / "out.keras"), "--backbone", "resnet152"])
    assert "holds a resnet50 backbone, not 'resnet152'" in capsys.readouterr().err
    classes = tmp_path / "two.csv"
    classes.write_text("a,0\nb,1\n")
    with pytest.raises(SystemExit):
        convert.main([legacy_h5["maskrcnn"]["tf-keras"], str(tmp_path / "out.keras"), "--classes", str(classes)])
    assert "names 2 classes, the model predicts 3" in capsys.readouterr().err


@pytest.fixture(scope="module")
def two_classes(small_shapes, tmp_path_factory):
    """The shapes training set without its triangles: 2 classes (circle, square)."""
    root = tmp_path_factory.mktemp("two_classes")
    folder = os.path.dirname(small_shapes["train"])
    rows = [row for row in csv.reader(open(small_shapes["train"])) if row[5] != "triangle"]
    annotations = root / "annotations.csv"
    with open(annotations, "w", newline="") as handle:
        csv.writer(handle).writerows([[os.path.join(folder, r[0])] + r[1:6] + [os.path.join(folder, r[6])]
                                      for r in rows])
    classes = root / "classes.csv"
    classes.write_text("circle,0\nsquare,1\n")
    return str(annotations), str(classes)


def test_train_fine_tunes_from_an_old_file_with_another_class_count(legacy_h5, two_classes, tmp_path, capsys):
    snapshots = tmp_path / "snapshots"
    assert train.main(["--weights", legacy_h5["maskrcnn"]["keras-2.2"], "--snapshot-path", str(snapshots)] + SMALL
                      + ["csv", *two_classes]) == 0
    out = capsys.readouterr().out
    assert "from " + legacy_h5["maskrcnn"]["keras-2.2"] + ": a keras-maskrcnn 0.2 model" in out
    assert ("skipped classification_submodel/pyramid_classification: pyramid_classification/kernel has shape "
            "(3, 3, 256, 24) here and (3, 3, 256, 36) in the file") in out
    assert "skipped mask_submodel/roi_mask: roi_mask/kernel has shape (1, 1, 256, 2) here and (1, 1, 256, 3)" in out
    # ResNet50 53 convs + 53 batch norms, FPN 8 convs, heads 5 + 5 + 6 convs: 130, less the 2 skipped.
    assert "Loaded the weights of 128 layers" in out
    model = load_model(str(snapshots / "resnet50_csv_01.keras"))
    assert model.get_layer("masks").roi_align.sampling == "crop_and_resize"
    assert model.outputs[-1].shape[-1] == 2
    # Frozen batch normalisation keeps the file's statistics through training.
    source = legacy_h5["model"].get_layer("bn_conv1").get_weights()
    for got, want in zip(model.get_layer("bn_conv1").get_weights(), source):
        np.testing.assert_array_equal(got, want)


def test_a_keras_resnet_file_initialises_the_old_backbone(tmp_path, capsys):
    """What maskrcnn-train --weights does with the ImageNet files of keras-resnet (train.load_old_weights)."""
    inputs = keras.Input((None, None, 3))
    features = legacy_resnet_features(inputs, 50)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool5")(features[-1])
    classifier = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="fc1000")(pooled),
                             name="resnet50")
    bn = classifier.get_layer("bn4c_branch2b")
    bn.set_weights([np.full_like(w, v) for w, v in zip(bn.get_weights(), (0.5, 0.1, 0.2, 2.0))])
    path = write_legacy_h5(classifier, str(tmp_path / "ResNet-50-model.keras.h5"))
    model = legacy_maskrcnn(3)
    train.load_old_weights(model, path)
    out = capsys.readouterr().out
    assert "Loaded the weights of 106 layers from" in out  # 53 convolutions and 53 batch norms
    assert "a keras-resnet 0.2 classifier (ImageNet-style backbone weights), backbone resnet50" in out
    assert "not in the file, starting fresh: 11 layers (C5_reduced, C4_reduced, C3_reduced" in out
    for got, want in zip(model.get_layer("bn4c_branch2b").get_weights(), (0.5, 0.1, 0.2, 2.0)):
        np.testing.assert_allclose(got, want)
    np.testing.assert_array_equal(model.get_layer("res3b_branch2a").get_weights()[0],
                                  classifier.get_layer("res3b_branch2a").get_weights()[0])


def test_predict_and_evaluate_take_an_old_file(legacy_h5, small_shapes, tmp_path, capsys):
    output = tmp_path / "predictions"
    assert predict.main([legacy_h5["maskrcnn"]["keras-2.2"], small_shapes["val_images"], "--output-dir", str(output),
                         "--score-threshold", "0.05", "--image-min-side", "96", "--image-max-side", "128"]) == 0
    results = json.load(open(output / "results.json"))
    assert isinstance(results, list) and (output / "00000.png").exists()
    assert evaluate.main(["--image-min-side", "96", "--image-max-side", "128", "csv", small_shapes["val"],
                          small_shapes["classes"], legacy_h5["maskrcnn"]["tf-keras"]]) == 0
    assert "mAP" in capsys.readouterr().out


def test_predict_refuses_a_model_without_masks_and_evaluate_a_class_mismatch(legacy_h5, small_shapes, two_classes,
                                                                              tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the file was refused")

    monkeypatch.setattr(models, "load_model", refuse)  # maskrcnn-predict imports it when run
    with pytest.raises(SystemExit):
        predict.main([legacy_h5["retinanet_inference"], small_shapes["val_images"], "--output-dir", str(tmp_path)])
    assert "is a keras-retinanet model without a mask head; maskrcnn-predict needs masks" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main(["csv", two_classes[0], two_classes[1], legacy_h5["maskrcnn"]["tf-keras"]])
    assert "predicts 3 classes, the data set has 2" in capsys.readouterr().err
    not_model = tmp_path / "weights.h5"
    with h5py.File(not_model, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(SystemExit):
        predict.main([str(not_model), small_shapes["val_images"], "--output-dir", str(tmp_path)])
    assert "holds no Keras weights" in capsys.readouterr().err
