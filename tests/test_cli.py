"""The command-line tools end to end on a tiny shapes data set, and their argument errors.

One short training run (vgg16, whose few layers compile fast; 64 px images; 2 steps), resumed
for a second epoch, makes the snapshot that the other commands use. The error tests check that
bad arguments stop a command before any model is built.
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from keras_maskrcnn import models
from keras_maskrcnn.bin import debug, evaluate, predict, train
from keras_maskrcnn.datasets.shapes import CLASSES
from keras_maskrcnn.models import load_model, load_training_model, read_metadata, save_model
from keras_maskrcnn.models.backbone import Backbone
from keras_maskrcnn.preprocessing.bad_images import BadImageWarning
from keras_maskrcnn.utils.precision import resolve_policy

SIZE = ["--image-min-side", "64", "--image-max-side", "64"]
TRAIN = ["--backbone", "vgg16", "--batch-size", "2", "--steps", "2", "--lr", "1e-4", "--mask-rois", "2",
         "--max-detections", "5", "--tensorboard-dir", "", "--seed", "0"] + SIZE


@pytest.fixture(scope="module")
def data(small_shapes):
    """The shared small shapes sets (conftest.py), the val set also in COCO layout."""
    coco_dir = small_shapes["root"] / "coco"
    if not coco_dir.exists():
        write_coco(str(small_shapes["root"] / "val"), small_shapes["val"], str(coco_dir), "val2017")
    return dict(small_shapes, coco=str(coco_dir))


def write_coco(folder, annotations_csv, coco_dir, set_name):
    """Copies a shapes CSV data set into the COCO layout with RLE segmentations."""
    os.makedirs(os.path.join(coco_dir, "annotations"), exist_ok=True)
    os.makedirs(os.path.join(coco_dir, "images", set_name), exist_ok=True)
    images, annotations, ids = [], [], {}
    with open(annotations_csv) as handle:
        for path, x1, y1, x2, y2, name, mask_path in csv.reader(handle):
            if path not in ids:
                ids[path] = len(ids) + 1
                image = cv2.imread(os.path.join(folder, path))
                shutil.copy(os.path.join(folder, path), os.path.join(coco_dir, "images", set_name,
                                                                     os.path.basename(path)))
                images.append({"id": ids[path], "file_name": os.path.basename(path),
                               "height": image.shape[0], "width": image.shape[1]})
            mask = (cv2.imread(os.path.join(folder, mask_path), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8)
            rle = mask_utils.encode(np.asfortranarray(mask))
            x1, y1, x2, y2 = (float(v) for v in (x1, y1, x2, y2))
            annotations.append({"id": len(annotations) + 1, "image_id": ids[path],
                                "category_id": CLASSES.index(name) + 1, "iscrowd": 0,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(mask.sum()),
                                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")}})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    with open(os.path.join(coco_dir, "annotations", f"instances_{set_name}.json"), "w") as handle:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, handle)


@pytest.fixture(scope="module")
def trained(data):
    """Trains one epoch with per-epoch evaluation, then resumes for a second without it
    (and without image sizes, which come from the snapshot)."""
    snapshots = data["root"] / "snapshots"
    first = ["--epochs", "1", "--snapshot-path", str(snapshots), "--config", data["config"]] + TRAIN
    assert train.main(first + ["csv", data["train"], data["classes"], "--val-annotations", data["val"]]) == 0
    resume = ["--epochs", "2", "--snapshot-path", str(snapshots), "--no-evaluation",
              "--snapshot", str(snapshots / "vgg16_csv_01.keras")] + TRAIN[:-len(SIZE)]
    assert train.main(resume + ["csv", data["train"], data["classes"]]) == 0
    return snapshots


def error_of(main, args, capsys):
    """The argparse error message of main(args) (which must exit with status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


# end to end

def test_train_writes_snapshots_log_and_evaluates(trained, capsys):
    first, second = trained / "vgg16_csv_01.keras", trained / "vgg16_csv_02.keras"
    assert first.is_file() and second.is_file()
    metadata = read_metadata(str(first))
    assert metadata["epoch"] == 1 and metadata["backbone"] == "vgg16"
    assert metadata["classes"] == list(CLASSES)
    assert metadata["anchor_params"]["sizes"] == [16, 32, 64, 128, 256]
    with open(trained / "vgg16_csv.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert "mAP" in rows[0] and 0.0 <= float(rows[0]["mAP"]) <= 1.0
    assert 0.0 <= float(rows[0]["segm_AP"]) <= float(rows[0]["segm_AP50"]) <= 1.0
    assert (trained / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(np.isfinite(float(row["loss"])) for row in rows)


def test_resume_continues_epoch_and_optimizer(trained):
    model, metadata = load_training_model(str(trained / "vgg16_csv_02.keras"), "vgg16")
    assert metadata["epoch"] == 2
    assert int(model.optimizer.iterations.numpy()) == 4
    assert (metadata["image_min_side"], metadata["image_max_side"]) == (64, 64)


def test_snapshot_loads_as_prediction_model(trained):
    model = load_model(str(trained / "vgg16_csv_02.keras"), "vgg16")
    image = np.zeros((1, 64, 64, 3), np.float32)
    boxes, scores, labels, masks = model.predict_on_batch(image)[-4:]
    assert boxes.shape == (1, 5, 4) and masks.shape == (1, 5, 28, 28, 3)


def test_evaluate_csv_prints_per_class_ap_and_map(trained, data, capsys, tmp_path):
    snapshot = str(trained / "vgg16_csv_02.keras")
    args = ["csv", data["val"], data["classes"], snapshot, "--max-detections", "5", "--save-path", str(tmp_path)]
    assert evaluate.main(args) == 0
    output = capsys.readouterr().out
    for name in CLASSES:
        assert f"instances of class {name} with average precision: " in output
    assert "mAP: " in output
    assert "mask AP50" in output and "Evaluating segm" in output
    assert {"metrics.json", "per_class.csv", "detections.json", "pr_curves.png", "f1_curve.png",
            "confusion_matrix.png"} <= set(os.listdir(tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["segm"]["per_class"]) == set(CLASSES) and metrics["settings"]["model"] == snapshot


def test_evaluate_coco_prints_cocoeval_summaries(trained, data, capsys, tmp_path):
    snapshot = str(trained / "vgg16_csv_02.keras")
    results = tmp_path / "results.json"
    args = ["coco", data["coco"], snapshot, "--score-threshold", "0.0", "--max-detections", "5",
            "--save-path", str(results)]
    assert evaluate.main(args) == 0
    output = capsys.readouterr().out
    assert "Evaluating segm" in output and "Evaluating bbox" in output
    assert output.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]") == 2
    detections = json.loads(results.read_text())
    assert detections and {"image_id", "category_id", "score", "bbox", "segmentation"} <= set(detections[0])


def test_debug_writes_annotated_pictures(data, tmp_path):
    args = ["--anchors", "--annotations", "--masks", "--random-transform", "--config", data["config"],
            "--output-dir", str(tmp_path)] + SIZE + ["csv", data["train"], data["classes"]]
    assert debug.main(args) == 0
    names = sorted(os.listdir(tmp_path))
    assert names == ["00000.png", "00001.png", "00002.png", "00003.png"]
    picture = cv2.imread(str(tmp_path / names[0]))
    assert picture.shape == (64, 64, 3)
    original = cv2.imread(os.path.join(data["root"], "train", "images", "00000.png"))
    assert not np.array_equal(picture, original)


def test_debug_without_resize_keeps_image_size(data, tmp_path):
    args = ["--no-resize", "--masks", "--output-dir", str(tmp_path), "coco", data["coco"], "--coco-set", "val2017"]
    assert debug.main(args) == 0
    assert cv2.imread(str(tmp_path / "00000.png")).shape == (64, 64, 3)


def test_predict_writes_pictures_and_coco_results(trained, data, tmp_path):
    snapshot = str(trained / "vgg16_csv_02.keras")
    args = [snapshot, data["val_images"], "--output-dir", str(tmp_path), "--score-threshold", "0.0",
            "--max-detections", "3"]
    assert predict.main(args) == 0
    assert sorted(os.listdir(tmp_path)) == ["00000.png", "00001.png", "results.json", "summary.csv"]
    assert cv2.imread(str(tmp_path / "00000.png")).shape == (64, 64, 3)
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["image_id"] for r in results} == {0, 1}
    for result in results:
        assert result["category_name"] in CLASSES
        assert isinstance(result["segmentation"]["counts"], str)
        mask = mask_utils.decode({"size": result["segmentation"]["size"],
                                  "counts": result["segmentation"]["counts"].encode("ascii")})
        assert mask.shape == (64, 64)
        x, y, w, h = result["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64


def test_mixed_precision_trains_evaluates_and_predicts(data, tmp_path, capsys, monkeypatch):
    snapshots = tmp_path / "snapshots"
    args = ["--backbone", "vgg16", "--batch-size", "1", "--steps", "1", "--epochs", "1", "--mask-rois", "2",
            "--max-detections", "3", "--tensorboard-dir", "", "--no-evaluation", "--seed", "0",
            "--snapshot-path", str(snapshots), "--mixed-precision"] + SIZE
    assert train.main(args + ["csv", data["train"], data["classes"]]) == 0
    snapshot = str(snapshots / "vgg16_csv_01.keras")
    compute_dtype = resolve_policy(True).split("_")[1]  # bfloat16, or float16 where a GPU is visible
    model, _ = load_training_model(snapshot, "vgg16")
    assert model.get_layer("block1_conv1").compute_dtype == compute_dtype
    assert model.get_layer("P3").variable_dtype == "float32"
    with open(snapshots / "vgg16_csv.csv") as handle:
        assert all(np.isfinite(float(row["loss"])) for row in csv.DictReader(handle))

    loaded = []

    def recording(load):
        def wrapper(*args, **kwargs):
            loaded.append((kwargs.get("mixed_precision"), load(*args, **kwargs)))
            return loaded[-1][1]
        return wrapper

    monkeypatch.setattr(models, "load_model", recording(models.load_model))  # the tools import it when run
    assert evaluate.main(["--mixed-precision", "--max-detections", "3",
                          "csv", data["val"], data["classes"], snapshot]) == 0
    assert "mAP: " in capsys.readouterr().out
    # A float32 model (random weights) computes in the reduced precision once loaded with the flag.
    float32_model = str(tmp_path / "float32.keras")
    save_model(Backbone("vgg16").maskrcnn(num_classes=len(CLASSES), max_detections=3, feature_size=32,
                                          mask_feature_size=16),
               float32_model, backbone="vgg16", classes=list(CLASSES), image_min_side=64, image_max_side=64)
    assert predict.main([float32_model, data["val_images"], "--output-dir", str(tmp_path / "predictions"),
                         "--score-threshold", "0.0", "--max-detections", "3", "--mixed-precision"]) == 0
    assert (tmp_path / "predictions" / "results.json").is_file()
    assert [flag for flag, _ in loaded] == [True, True]
    assert all(model.get_layer("block1_conv1").compute_dtype == compute_dtype for _, model in loaded)


def test_console_scripts_are_installed():
    # All at once: each spends most of its time importing Keras.
    names = ("maskrcnn-train", "maskrcnn-evaluate", "maskrcnn-debug", "maskrcnn-predict", "maskrcnn-convert",
             "maskrcnn-export")
    runs = {name: subprocess.Popen([os.path.join(os.path.dirname(sys.executable), name), "--help"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names}
    for name, run in runs.items():
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
        assert stdout.startswith(f"usage: {name}")


HELP_ONLY = """
import contextlib, io, sys
from keras_maskrcnn.bin import convert, debug, evaluate, export, predict, train
for tool in (train, evaluate, debug, predict, convert, export):
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
        tool.main(["--help"])
    assert out.getvalue().startswith("usage: maskrcnn-"), out.getvalue()
print(sorted(name for name in ("keras", "tensorflow", "jax", "torch") if name in sys.modules))
"""


def test_help_does_not_import_keras_or_a_backend():
    result = subprocess.run([sys.executable, "-c", HELP_ONLY], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# argument errors, all before any model is built

@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required: {coco,csv,labelme,yolo}"),
    (["--backbone", "resnet9", "csv", "TRAIN", "CLASSES"], "argument --backbone: invalid choice: 'resnet9'"),
    (["--batch-size", "0", "csv", "TRAIN", "CLASSES"], "argument --batch-size: '0' must be at least 1"),
    (["--lr", "-1", "csv", "TRAIN", "CLASSES"], "argument --lr: '-1' must be a positive number"),
    (["--pad-multiple", "0", "csv", "TRAIN", "CLASSES"], "argument --pad-multiple: '0' must be at least 1"),
    (["--weights", "w.h5", "--no-weights", "csv", "TRAIN", "CLASSES"], "not allowed with argument"),
    (["--snapshot", "missing.keras", "csv", "TRAIN", "CLASSES"], "snapshot 'missing.keras' does not exist"),
    (["--weights", "missing.h5", "csv", "TRAIN", "CLASSES"], "weights file 'missing.h5' does not exist"),
    (["csv", "missing.csv", "CLASSES"], "annotations file 'missing.csv' does not exist"),
    (["csv", "TRAIN", "missing.csv"], "classes file 'missing.csv' does not exist"),
    (["--compute-val-loss", "csv", "TRAIN", "CLASSES"], "--compute-val-loss needs --val-annotations"),
    (["coco", "/no/such/coco"], "COCO data set folder '/no/such/coco' does not exist"),
])
def test_train_argument_errors(args, message, data, capsys, no_model_building):
    args = [{"TRAIN": data["train"], "CLASSES": data["classes"]}.get(arg, arg) for arg in args]
    error = error_of(train.main, args, capsys)
    assert error.startswith("usage: maskrcnn-train")
    assert message in error


def test_pad_multiples_shape_the_batches_and_the_snapshot_keeps_the_image_one(trained, data, no_model_building):
    parser, args = train.parse_args(["--backbone", "vgg16", "--pad-multiple", "96", "--mask-rois", "24",
                                     "--mask-rois-multiple", "24"] + SIZE + ["csv", data["train"], data["classes"]])
    generator, _ = train.create_generators(parser, args, Backbone("vgg16"), None)
    inputs, targets = generator[0]
    assert inputs["image"].shape[1:3] == (96, 96)
    assert inputs["rois"].shape[1] == 24 and targets["masks"].shape[1] == 24
    assert train.snapshot_metadata(args, None, list(CLASSES))["pad_multiple"] == 96
    snapshot = str(trained / "vgg16_csv_02.keras")
    assert read_metadata(snapshot)["pad_multiple"] == 32
    _, args = evaluate.parse_args(["csv", data["val"], data["classes"], snapshot])
    assert args.pad_multiple == 32
    _, args = predict.parse_args([snapshot, data["val_images"], "--output-dir", "out", "--pad-multiple", "64"])
    assert args.pad_multiple == 64


def test_train_flags_may_follow_the_dataset(data, capsys, no_model_building):
    error = error_of(train.main, ["csv", data["train"], data["classes"], "--batch-size", "0"], capsys)
    assert "argument --batch-size: '0' must be at least 1" in error


def test_train_reports_the_bad_csv_line(data, tmp_path, capsys, no_model_building):
    broken = tmp_path / "broken.csv"
    lines = open(data["train"]).read().splitlines()
    broken.write_text("\n".join(lines[:2] + ["images/00000.png,1,2,3,x,circle,masks/00000_00.png"]) + "\n")
    shutil.copytree(os.path.join(data["root"], "train", "images"), tmp_path / "images")
    shutil.copytree(os.path.join(data["root"], "train", "masks"), tmp_path / "masks")
    error = error_of(train.main, ["csv", str(broken), data["classes"]], capsys)
    assert f"{broken}:3: y2 'x' is not a number" in error


def test_train_rejects_a_bad_config(data, tmp_path, capsys, no_model_building):
    config = tmp_path / "bad.ini"
    config.write_text("[anchor_parameters]\nsizes = 32 64\n")
    error = error_of(train.main, ["--config", str(config), "csv", data["train"], data["classes"]], capsys)
    assert "lacks strides, ratios, scales" in error


def test_resume_checks_epochs_and_backbone(trained, data, capsys, no_model_building):
    snapshot = str(trained / "vgg16_csv_02.keras")
    error = error_of(train.main, ["--snapshot", snapshot, "--epochs", "2", "csv", data["train"], data["classes"]],
                     capsys)
    assert "is at epoch 2; --epochs 2 must be larger" in error
    error = error_of(train.main, ["--snapshot", snapshot, "--backbone", "resnet50", "--epochs", "3",
                                  "csv", data["train"], data["classes"]], capsys)
    assert "was trained with --backbone vgg16, not resnet50" in error


def test_evaluate_argument_errors(trained, data, tmp_path, capsys, no_model_building):
    error = error_of(evaluate.main, ["csv", data["val"], data["classes"], "missing.keras"], capsys)
    assert "model file 'missing.keras' does not exist" in error
    error = error_of(evaluate.main, ["csv", data["val"], data["classes"]], capsys)
    assert "the following arguments are required: model" in error
    two_classes = tmp_path / "two.csv"
    two_classes.write_text("circle,0\nsquare,1\n")
    snapshot = str(trained / "vgg16_csv_02.keras")
    error = error_of(evaluate.main, ["csv", data["train"], str(two_classes), snapshot], capsys)
    assert "unknown class name 'triangle'" in error or "predicts 3 classes" in error
    error = error_of(evaluate.main, ["--iou-threshold", "2", "csv", data["val"], data["classes"], snapshot], capsys)
    assert "argument --iou-threshold: '2' must lie in [0, 1]" in error


def test_predict_argument_errors(trained, tmp_path, capsys, no_model_building):
    snapshot = str(trained / "vgg16_csv_02.keras")
    error = error_of(predict.main, [snapshot, "missing.png", "--output-dir", str(tmp_path)], capsys)
    assert "'missing.png' does not exist" in error
    error = error_of(predict.main, [snapshot, str(tmp_path)], capsys)
    assert "the following arguments are required: --output-dir" in error
    error = error_of(predict.main, [snapshot, str(tmp_path), "--output-dir", str(tmp_path / "out")], capsys)
    assert "holds no pictures or videos" in error
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    error = error_of(predict.main, [snapshot, str(not_an_image), "--output-dir", str(tmp_path / "out")], capsys)
    assert "could not be read" in error


def test_debug_argument_errors(data, capsys, monkeypatch):
    error = error_of(debug.main, ["csv", data["train"], data["classes"]], capsys)
    assert "nothing to do: give --output-dir, --show or both" in error
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    error = error_of(debug.main, ["--show", "csv", data["train"], data["classes"]], capsys)
    assert "--show needs" in error


# unreadable images

def copy_set(data, tmp_path, name="train", truncated=(), unreadable=()):
    """A copy of a shapes set in tmp_path: images in `truncated` cut to half (their headers stay
    readable), and for every name in `unreadable` ('x.jpg': zero bytes, 'x.txt.jpg': text) a
    negative image row appended. Returns (annotations, folder)."""
    folder = tmp_path / name
    shutil.copytree(os.path.join(data["root"], name), folder)
    for image in truncated:
        path = folder / "images" / image
        content = path.read_bytes()
        path.write_bytes(content[:len(content) // 2])
    rows = open(folder / "annotations.csv").read().splitlines()
    for image in unreadable:
        (folder / "images" / image).write_bytes(b"" if image.count(".") == 1 else b"not a picture\n")
        rows.append(f"images/{image},,,,,,")
    (folder / "annotations.csv").write_text("\n".join(rows) + "\n")
    return str(folder / "annotations.csv"), folder


TINY = ["--feature-size", "16", "--mask-feature-size", "8", "--epochs", "1", "--no-evaluation"]


def test_train_lists_unreadable_images_before_building_a_model(data, tmp_path, capsys, no_model_building):
    annotations, folder = copy_set(data, tmp_path, unreadable=["empty.jpg", "notes.txt.jpg"])
    error = error_of(train.main, ["csv", annotations, data["classes"]], capsys)
    rows = len(open(annotations).read().splitlines())
    assert error.endswith(
        f"maskrcnn-train: error: training set: 2 of 6 images cannot be read, more than --max-bad-images 1 allows; "
        f"fix or remove them (or raise --max-bad-images):\n"
        f"  {annotations}:{rows - 1}: image file '{folder}/images/empty.jpg' could not be read: cannot identify "
        f"image file '{folder}/images/empty.jpg'\n"
        f"  {annotations}:{rows}: image file '{folder}/images/notes.txt.jpg' could not be read: cannot identify "
        f"image file '{folder}/images/notes.txt.jpg'\n")
    with pytest.raises(AssertionError, match="a model was built"):
        train.main(["--max-bad-images", "2", "--tensorboard-dir", "", "csv", annotations, data["classes"]])
    assert ("maskrcnn-train: warning: training set: 2 of 6 images cannot be read and are left out "
            "(at most 2 may be bad):\n") in capsys.readouterr().err


def test_train_replaces_an_image_that_fails_to_decode_and_logs_it(data, tmp_path, capsys):
    annotations, folder = copy_set(data, tmp_path, truncated=["00001.png"])
    snapshots = tmp_path / "snapshots"
    with pytest.warns(BadImageWarning) as warned:
        assert train.main(TINY + TRAIN + ["--snapshot-path", str(snapshots), "--config", data["config"],
                                          "csv", annotations, data["classes"]]) == 0
    captured = capsys.readouterr()
    line = next(number for number, row in enumerate(open(annotations), start=1) if row.startswith("images/00001.png"))
    message = (f"{annotations}:{line}: image file '{folder}/images/00001.png' could not be read: "
               f"image file is truncated")
    assert all(re.fullmatch(rf"skipped an unreadable image, replaced in this batch by '{folder}/images/0000[023].png': "
                            f"{re.escape(message)}", str(warning.message))
               for warning in warned if warning.category is BadImageWarning)
    assert (f"Epoch 1: skipped 1 unreadable image (each replaced in its batch by another image):\n  {message}\n"
            in captured.out)
    with open(snapshots / "vgg16_csv.csv") as handle:
        assert [float(row["skipped_images"]) for row in csv.DictReader(handle)] == [1.0]
    assert (snapshots / "vgg16_csv_01.keras").is_file()


def test_train_stops_when_more_images_fail_than_allowed(data, tmp_path):
    annotations, folder = copy_set(data, tmp_path, truncated=["00001.png", "00002.png"])
    with pytest.raises(SystemExit) as exit_info, pytest.warns(BadImageWarning):
        train.main(TINY + TRAIN + ["--snapshot-path", str(tmp_path / "snapshots"), "--max-bad-images", "1",
                                   "csv", annotations, data["classes"]])
    message = str(exit_info.value.code)
    assert message.startswith("maskrcnn-train: error: 2 of 4 images cannot be read, more than --max-bad-images 1 "
                              "allows; fix or remove them (or raise --max-bad-images):\n")
    assert f"'{folder}/images/00001.png' could not be read: image file is truncated" in message
    assert f"'{folder}/images/00002.png' could not be read: image file is truncated" in message
    assert not (tmp_path / "snapshots" / "vgg16_csv_01.keras").exists()


def test_evaluate_stops_on_unreadable_images_unless_told_to_skip_them(trained, data, tmp_path, capsys):
    snapshot = str(trained / "vgg16_csv_02.keras")
    annotations, folder = copy_set(data, tmp_path, name="val", unreadable=["empty.jpg"])
    error = error_of(evaluate.main, ["csv", annotations, data["classes"], snapshot], capsys)
    assert error.endswith(
        f"maskrcnn-evaluate: error: 1 of 3 images cannot be read; a metric over the other images would not be the "
        f"data set's; fix or remove them, or pass --skip-bad-images to evaluate without them:\n"
        f"  {annotations}:{len(open(annotations).read().splitlines())}: image file '{folder}/images/empty.jpg' could "
        f"not be read: cannot identify image file '{folder}/images/empty.jpg'\n")
    assert evaluate.main(["--skip-bad-images", "--max-detections", "5", "csv", annotations, data["classes"],
                          snapshot]) == 0
    captured = capsys.readouterr()
    assert "maskrcnn-evaluate: warning: 1 of 3 images cannot be read and is left out (--skip-bad-images)" in captured.err
    assert "mAP: " in captured.out and "Evaluated on 2 of 3 images; left out as unreadable:\n  " in captured.out

    truncated, folder = copy_set(data, tmp_path / "truncated", name="val", truncated=["00001.png"])
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--max-detections", "5", "csv", truncated, data["classes"], snapshot])
    assert exit_info.value.code != 0
    assert str(exit_info.value.code).startswith(
        f"maskrcnn-evaluate: error: {truncated}:")
    assert str(exit_info.value.code).endswith(
        f"image file '{folder}/images/00001.png' could not be read: image file is truncated; a metric over the other "
        f"images would not be the data set's; fix or remove them, or pass --skip-bad-images to evaluate without them")
    with pytest.warns(BadImageWarning, match=rf"evaluation leaves out an unreadable image: .*{folder}/images/00001.png"):
        assert evaluate.main(["--skip-bad-images", "--max-detections", "5", "csv", truncated, data["classes"],
                              snapshot]) == 0
    assert "Evaluated on 1 of 2 images; left out as unreadable:\n  " in capsys.readouterr().out


def test_bad_image_warnings_are_shown_as_plain_lines():
    import warnings

    from keras_maskrcnn.bin import common

    common.plain_bad_image_warnings("maskrcnn-x")
    assert warnings.formatwarning("a.csv:3: image file 'x.png' could not be read", BadImageWarning, "f.py", 1) == (
        "maskrcnn-x: warning: a.csv:3: image file 'x.png' could not be read\n")
    assert "f.py:1: UserWarning: other" in warnings.formatwarning("other", UserWarning, "f.py", 1, "")


def test_predict_skips_unreadable_files_and_lists_them_in_the_results(trained, data, tmp_path, capsys):
    images = tmp_path / "images"
    shutil.copytree(data["val_images"], images)
    (images / "empty.jpg").write_bytes(b"")
    content = (images / "00001.png").read_bytes()
    (images / "00001.png").write_bytes(content[:len(content) // 2])
    output = tmp_path / "out"
    with pytest.warns(BadImageWarning) as warned:
        assert predict.main([str(trained / "vgg16_csv_02.keras"), str(images), "--output-dir", str(output),
                             "--score-threshold", "0.0", "--max-detections", "2"]) == 0
    captured = capsys.readouterr()
    assert [str(warning.message) for warning in warned if warning.category is BadImageWarning] == [
        f"skipped an unreadable image: image file '{images}/00001.png' could not be read: image file is truncated",
        f"skipped an unreadable image: image file '{images}/empty.jpg' could not be read: cannot identify image "
        f"file '{images}/empty.jpg'"]
    assert "2 unreadable images skipped (in results.json with an \"error\" instead of detections):" in captured.out
    assert sorted(os.listdir(output)) == ["00000.png", "results.json", "summary.csv"]
    results = json.loads((output / "results.json").read_text())
    errors = [result for result in results if "error" in result]
    assert [(r["image_id"], os.path.basename(r["file_name"])) for r in errors] == [(1, "00001.png"), (2, "empty.jpg")]
    assert {r["image_id"] for r in results if "error" not in r} == {0}


def test_snapshot_latest_resolves_to_the_newest_snapshot(trained, data, tmp_path, capsys, no_model_building):
    common = ["--snapshot", "latest", "--snapshot-path", str(trained), "csv", data["train"], data["classes"]]
    _, args = train.parse_args(["--epochs", "3"] + common)
    assert args.snapshot == str(trained / "vgg16_csv_02.keras") and args.backbone == "vgg16"
    assert f"--snapshot latest: resuming from {trained / 'vgg16_csv_02.keras'}" in capsys.readouterr().out
    assert train.main(["--epochs", "2"] + common) == 0
    assert f"--snapshot latest: {trained / 'vgg16_csv_02.keras'} is at epoch 2, --epochs 2 are done" in (
        capsys.readouterr().out)
    _, args = train.parse_args(["--epochs", "3", "--snapshot", "latest", "--snapshot-path", str(tmp_path / "none"),
                                "csv", data["train"], data["classes"]])
    assert args.snapshot is None and args.backbone == "resnet50"
    assert "no complete snapshot in" in capsys.readouterr().out
