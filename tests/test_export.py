"""maskrcnn-export and exported models: every format against the Keras model, and maskrcnn-predict on them.

One tiny model (VGG16 with 32-channel FPN and heads and a 16-channel mask head, 3 classes, 16 detection
rows, 128 x 160 inputs) with weights set so that the scores are spread out
(`utils.synthetic.informative_weights`), saved as a .keras file, is exported once per format through
the maskrcnn-export command (its check on); the tests share those artifacts. A format whose runtime
is not installed is skipped (the test extra installs all four). VGG16 has the fewest layers of the
backbones, and each converter's time grows with the layer count (the four exports: 75 s against
124 s for MobileNetV2 with the default widths); the README's export example converts a MobileNetV2
model, and an old ResNet50 file goes to LiteRT below.
"""

import contextlib
import io
import json
import os

import cv2
import keras
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from keras_maskrcnn.bin import export as export_cli
from keras_maskrcnn.bin import predict
from keras_maskrcnn.models import backbone, export_model, load_model, save_model
from keras_maskrcnn.models import export as export_module
from keras_maskrcnn import runtimes
from keras_maskrcnn.utils.compare import compare_detections, describe
from keras_maskrcnn.utils.synthetic import informative_weights

FORMATS = {  # format -> (file name, runtime, its module)
    "tf_saved_model": ("saved_model", "saved_model", "tensorflow"),
    "onnx": ("model.onnx", "onnxruntime", "onnxruntime"),
    "openvino": ("model.xml", "openvino", "openvino"),
    "litert": ("model.tflite", "litert", "ai_edge_litert"),
}
BACKBONE = "vgg16"
CLASSES = ["circle", "square", "triangle"]
HEIGHT, WIDTH = 128, 160
MAX_DETECTIONS = 16  # buckets 0, 2, 4, 8, 16


def _count(outputs, image=0):
    """Detections in [boxes, scores, labels, masks] (rows with a score above -1)."""
    return int((np.asarray(outputs[1])[image] > -1).sum())


def _few_and_clear(outputs, threshold=0.05):
    """Whether the prediction model's outputs hold 1 to 4 detections and no class score within 1e-4 of the threshold."""
    return 1 <= _count(outputs[-4:]) <= 4 and np.abs(outputs[1] - threshold).min() > 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """dict(model (the Keras prediction model), keras_file, image_file, inputs {none, few, max: (1, H, W, 3)},
    artifacts {format: path or None when its runtime is not installed}, logs {format: printed lines})."""
    root = tmp_path_factory.mktemp("export")
    keras.utils.set_random_seed(1)
    net = backbone(BACKBONE)
    model = net.maskrcnn(num_classes=3, max_detections=MAX_DETECTIONS, feature_size=32, mask_feature_size=16)
    raw = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image_file = str(root / "noise.png")
    cv2.imwrite(image_file, raw)
    noise = net.preprocess_image(raw[None])
    informative_weights(model, noise)
    # The same weights give all rows, a few and none: the scores fall with the input's contrast. "few" is
    # the first contrast giving 1 to 4 detections with no score within 1e-4 of the 0.05 threshold (for this
    # model: none up to 0.30 of the noise's contrast, all 16 rows from 0.45).
    few = next(scale * noise for scale in np.linspace(0.3, 0.4, 41)
               if _few_and_clear(model.predict_on_batch(scale * noise)))
    inputs = dict(none=np.zeros_like(noise), few=few, max=noise)
    keras_file = str(root / "model.keras")
    save_model(model, keras_file, backbone=BACKBONE, classes=CLASSES, image_min_side=HEIGHT,
               image_max_side=WIDTH, pad_multiple=32)
    artifacts, logs = {}, {}
    for fmt, (name, _, module) in FORMATS.items():
        try:
            __import__(module)
        except ImportError:
            artifacts[fmt] = None
            continue
        path = str(root / name)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert export_cli.main([keras_file, path, "--format", fmt, "--check-image", image_file]) == 0
        artifacts[fmt], logs[fmt] = path, printed.getvalue().splitlines()[2:]  # after "Loading", "Exporting"
    return dict(model=load_model(keras_file), built=model, keras_file=keras_file, image_file=image_file,
                inputs=inputs, artifacts=artifacts, logs=logs, root=root)


def _artifact(exported, fmt):
    path = exported["artifacts"][fmt]
    if path is None:
        pytest.skip(f"the runtime of {fmt} ({FORMATS[fmt][2]}) is not installed")
    return path


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_checks_the_artifact_and_says_what_it_wrote(exported, fmt):
    path = _artifact(exported, fmt)
    logs = exported["logs"][fmt]
    assert "dynamic input size (any height and width)" in logs[0]
    assert f"--runtime {FORMATS[fmt][1]}" in logs[0]
    assert f"check on a {HEIGHT} x {WIDTH} input against Keras: same: {MAX_DETECTIONS} of {MAX_DETECTIONS}" in logs[1]
    info = json.loads(open(runtimes.metadata_path(path)).read())
    assert info["format"] == fmt and info["runtime"] == FORMATS[fmt][1]
    assert info["input"] == dict(name="image", shape=[None, None, None, 3], dtype="float32", size=None,
                                 dynamic_size=True)
    assert info["outputs"] == ["boxes", "scores", "labels", "masks"]
    assert info["classes"] == CLASSES and info["backbone"] == BACKBONE and info["preprocessing"] == "caffe"
    assert (info["image_min_side"], info["image_max_side"], info["pad_multiple"]) == (HEIGHT, WIDTH, 32)
    assert info["score_threshold"] == 0.05 and info["max_detections"] == MAX_DETECTIONS
    assert info["check"]["same"] and info["check"]["images"][0]["count"] == MAX_DETECTIONS


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_artifact_gives_the_bucketed_keras_models_outputs_for_none_few_and_all_rows(exported, fmt):
    """Reloaded with its runtime: the same detections as the Keras model (whose mask head runs on 0, 2 or 4,
    and 16 rows here), also at another input size and for a batch of two."""
    artifact = runtimes.load_artifact(_artifact(exported, fmt))
    assert artifact.runtime == FORMATS[fmt][1]
    model = exported["model"]
    counts = {}
    for name, batch in exported["inputs"].items():
        expected = model.predict_on_batch(batch)[-4:]
        got = artifact.predict_on_batch(batch)
        assert [np.asarray(g).shape for g in got] == [np.asarray(e).shape for e in expected]
        report = compare_detections(expected, got, score_tol=1e-4, box_tol=1e-2, mask_tol=1e-3)
        assert report["same"], f"{name}: {describe(report)}"
        # The padding rows too: boxes, scores, labels -1, masks zero past the bucket, as in Keras.
        np.testing.assert_array_equal(got[2], expected[2])
        np.testing.assert_allclose(got[3], expected[3], atol=1e-3)
        counts[name] = report["count"]
    assert counts["none"] == 0 and 1 <= counts["few"] <= 4 and counts["max"] == MAX_DETECTIONS
    pair = np.concatenate([exported["inputs"]["few"], exported["inputs"]["max"]])[:, 16:112, 8:136]
    expected, got = model.predict_on_batch(pair)[-4:], artifact.predict_on_batch(pair)
    for image in range(2):
        report = compare_detections(expected, got, image=image, score_tol=1e-4, box_tol=1e-2, mask_tol=1e-3)
        assert report["same"], describe(report)


PREDICT_OPTIONS = ["--score-threshold", "0.05", "--max-detections", str(MAX_DETECTIONS)]


@pytest.fixture(scope="module")
def keras_results(exported):
    """The results.json of maskrcnn-predict run once on the .keras file, which every format's run is held to."""
    output = exported["root"] / "predict-keras"
    assert predict.main([exported["keras_file"], exported["image_file"], "--output-dir", str(output)]
                        + PREDICT_OPTIONS) == 0
    return json.loads((output / "results.json").read_text())


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_predict_on_the_artifact_writes_the_keras_runs_detections(exported, keras_results, fmt, tmp_path):
    path = _artifact(exported, fmt)
    common = [exported["image_file"]] + PREDICT_OPTIONS
    assert predict.main([path, "--runtime", FORMATS[fmt][1], "--output-dir", str(tmp_path / fmt)] + common) == 0
    assert sorted(os.listdir(tmp_path / fmt)) == ["noise.png", "results.json", "summary.csv"]
    results = json.loads((tmp_path / fmt / "results.json").read_text())
    assert len(results) == len(keras_results) == MAX_DETECTIONS
    for a, b in zip(sorted(keras_results, key=lambda r: -r["score"]), sorted(results, key=lambda r: -r["score"])):
        assert (a["category_id"], a["category_name"]) == (b["category_id"], b["category_name"])
        assert abs(a["score"] - b["score"]) <= 1e-4
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=1e-2)
        masks = [mask_utils.decode({"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()})
                 for r in (a, b)]
        assert np.sum(masks[0] != masks[1]) <= 2  # masks within 1e-3: a pixel at 0.5 may flip


def test_predict_infers_the_runtime_from_the_path(exported, tmp_path):
    path = exported["artifacts"]["onnx"] or exported["artifacts"]["tf_saved_model"]
    assert predict.main([path, exported["image_file"], "--output-dir", str(tmp_path)]) == 0
    assert runtimes.runtime_for_path(exported["artifacts"]["tf_saved_model"]) == "saved_model"
    assert [runtimes.runtime_for_path(p) for p in ("a.onnx", "a.xml", "a.tflite", "a.keras", "a.h5")] == [
        "onnxruntime", "openvino", "litert", "keras", "keras"]
    with pytest.raises(ValueError, match="cannot tell the runtime"):
        runtimes.runtime_for_path("model.pt")


def test_fixed_size_artifact_pads_smaller_inputs_and_refuses_larger_ones(exported, tmp_path):
    _artifact(exported, "litert")
    path = str(tmp_path / "fixed.tflite")
    model = exported["built"]
    info = export_model(model, path, "litert", image_size=(HEIGHT, WIDTH), check_input=exported["inputs"]["max"])
    assert info["input"]["size"] == [HEIGHT, WIDTH] and info["check"]["same"]
    artifact = runtimes.load_artifact(path)
    assert artifact.fixed_size == (HEIGHT, WIDTH)
    smaller = exported["inputs"]["max"][:, :96, :128]
    padded = np.zeros_like(exported["inputs"]["max"])
    padded[:, :96, :128] = smaller
    report = compare_detections(model.predict_on_batch(padded)[-4:], artifact.predict_on_batch(smaller))
    assert report["same"] and report["count"] > 0, describe(report)
    with pytest.raises(ValueError, match="does not fit the artifact's fixed size 128 x 160"):
        artifact.predict_on_batch(np.zeros((1, 160, 160, 3), np.float32))


def test_a_failed_check_removes_the_artifact_and_lists_the_differences(exported, tmp_path, monkeypatch):
    """The failure path alone: the export is replaced by a file write and the check by a failing report."""
    def fake_export(self, path, **kwargs):
        open(path, "w").close()

    report = dict(count=3, other_count=2, matched=2, unmatched=[1], max_score=2e-3, max_box=0.5, max_mask=None,
                  same=False)
    monkeypatch.setattr(keras.Model, "export", fake_export)
    monkeypatch.setattr(export_module, "check_artifact", lambda *a, **k: dict(same=False, images=[report]))
    path = str(tmp_path / "bad.onnx")
    with pytest.raises(export_module.ExportCheckError, match=r"DIFFERENT \(1 unmatched\): 2 of 3 detections paired"):
        export_model(exported["built"], path, "onnx", check_input=exported["inputs"]["max"])
    assert os.listdir(tmp_path) == []


def test_a_missing_runtime_is_a_one_line_error_naming_the_extra(exported, tmp_path, monkeypatch, capsys):
    import importlib

    real = importlib.import_module

    def refuse(name, *args):
        if name.split(".")[0] in ("onnxruntime", "openvino"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", refuse)
    model = tmp_path / "model.xml"
    model.write_text("<net/>")
    with pytest.raises(runtimes.MissingRuntime, match=r"pip install 'keras-maskrcnn\[openvino\]'$"):
        runtimes.load_artifact(str(model))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        predict.main([str(model), exported["image_file"], "--output-dir", str(tmp_path / "out")])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["maskrcnn-predict: error: running an ONNX model needs the onnxruntime package, which is not "
                     "installed: pip install 'keras-maskrcnn[onnx]'"]


def test_export_argument_errors(exported, tmp_path, capsys):
    for args, message in ([["--format", "onnx"], "must end in .onnx"], [["--format", "pt"], "invalid choice"]):
        with pytest.raises(SystemExit):
            export_cli.main([exported["keras_file"], str(tmp_path / "model.bin")] + args)
        assert message in capsys.readouterr().err


def test_an_old_keras_maskrcnn_model_exports_with_its_crop_and_resize_roi_align(legacy_h5, tmp_path):
    """A keras-maskrcnn 0.2 .h5 file (ResNet50 of keras-resnet, RoiAlign sampling='crop_and_resize', which
    takes the image) to LiteRT, the format with the most changed graph (slice of rows, 5-D RoIAlign)."""
    pytest.importorskip("ai_edge_litert")
    from keras_maskrcnn.models import read_metadata

    source = next(iter(legacy_h5["maskrcnn"].values()))
    model = load_model(source)
    path = str(tmp_path / "old.tflite")
    info = export_model(model, path, "litert", check_input=legacy_h5["image"], metadata=read_metadata(source))
    check = info["check"]["images"][0]
    assert check["same"] and check["count"] == _count(legacy_h5["outputs"][-4:]) > 0, describe(check)
    assert info["legacy"]["kind"] == "keras-maskrcnn" and info["preprocessing"] == "caffe"
    got = runtimes.load_artifact(path).predict_on_batch(legacy_h5["image"][:, :64, :96])
    report = compare_detections(model.predict_on_batch(legacy_h5["image"][:, :64, :96])[-4:], got)
    assert report["same"], describe(report)


def test_onnx_conversion_runs_tf2onnx_optimizers_in_place_and_falls_back_to_copies(exported, tmp_path, monkeypatch,
                                                                                  capsys):
    """The conversion alone (Model.export replaced): first with TF2ONNX_CATCH_ERRORS=FALSE, then, when
    that fails, again without it; a value the caller set is kept and used once."""
    calls = []

    def export(self, path, format=None, **kwargs):
        calls.append(os.environ.get(export_module.TF2ONNX_CATCH_ERRORS))
        if calls[-1] == "FALSE":
            raise RuntimeError("optimizer x failed")
        open(path, "w").close()

    monkeypatch.setattr(keras.Model, "export", export)
    monkeypatch.delenv(export_module.TF2ONNX_CATCH_ERRORS, raising=False)
    export_model(exported["built"], str(tmp_path / "a.onnx"), "onnx", check=False)
    assert calls == ["FALSE", None] and export_module.TF2ONNX_CATCH_ERRORS not in os.environ
    assert "RuntimeError: optimizer x failed); converting again with each optimizer on a copy" in capsys.readouterr().out
    monkeypatch.setenv(export_module.TF2ONNX_CATCH_ERRORS, "TRUE")
    export_model(exported["built"], str(tmp_path / "b.onnx"), "onnx", check=False)
    assert calls == ["FALSE", None, "TRUE"] and os.environ[export_module.TF2ONNX_CATCH_ERRORS] == "TRUE"


def test_tf2onnx_node_updates_write_into_new_protos_while_converting():
    """tf2onnx rewrites every node's proto after each optimizer pass; with protobuf's upb a deleted
    attribute's memory stays with the proto, so each pass kept another copy of every constant. While
    converting, each update goes to a new NodeProto (same content); afterwards tf2onnx is as it was."""
    from tf2onnx.graph import Graph, Node

    original = Node.update_proto
    node = Graph([], opset=13).make_const("weights", np.arange(12, dtype=np.float32).reshape(3, 4))
    node.update_proto()
    before = node.op.SerializeToString()
    with export_module._FreshNodeProtos():
        assert Node.update_proto is not original
        for _ in range(3):
            old = node.op
            node.update_proto()
            assert node.op is not old and node.op.SerializeToString() == before
            assert len(old.attribute) == 1  # the old proto is left as it was
    assert Node.update_proto is original
    kept = node.op
    node.update_proto()
    assert node.op is kept and node.op.SerializeToString() == before


def test_predictor_on_an_exported_artifact_gives_the_keras_models_results(exported):
    """The Predictor runs an ONNX artifact (settings from the JSON beside it) like the .keras file."""
    from keras_maskrcnn import Predictor

    path = _artifact(exported, "onnx")
    options = dict(score_threshold=0.05, max_detections=MAX_DETECTIONS)
    [keras_result] = Predictor(exported["keras_file"], **options)(exported["image_file"])
    [onnx_result] = Predictor(path, **options)(exported["image_file"])
    assert len(keras_result) == len(onnx_result) > 0
    np.testing.assert_array_equal(keras_result.labels, onnx_result.labels)
    np.testing.assert_allclose(keras_result.scores, onnx_result.scores, atol=1e-4)
    np.testing.assert_allclose(keras_result.boxes, onnx_result.boxes, atol=1e-2)
    assert np.sum(keras_result.masks != onnx_result.masks) <= 2 * len(keras_result)
