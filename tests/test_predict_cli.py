"""maskrcnn-predict on videos, with tiles, class filters, masks and summaries, and its outputs when
interrupted: a small untrained model saved with its settings (no training needed: a score threshold
of 0 keeps every detection)."""

import csv
import json
import os

import cv2
import keras
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from keras_maskrcnn.bin import predict
from keras_maskrcnn.models import backbone, save_model

CLASSES = ["circle", "square"]
DETECTIONS = 3


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    keras.utils.set_random_seed(2)
    model = backbone("vgg16").maskrcnn(num_classes=2, score_threshold=0.0, max_detections=DETECTIONS,
                                       feature_size=16, mask_feature_size=16)
    path = str(tmp_path_factory.mktemp("model") / "tiny.keras")
    save_model(model, path, backbone="vgg16", image_min_side=64, image_max_side=64, pad_multiple=32, classes=CLASSES)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 30-frame 64 x 48 video at 12 frames per second."""
    path = str(tmp_path_factory.mktemp("video") / "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 12, (64, 48))
    rng = np.random.default_rng(0)
    for index in range(30):
        frame = np.full((48, 64, 3), 40, np.uint8)
        cv2.circle(frame, (10 + index, 24), 8, (0, 200, 255), -1)
        writer.write(np.clip(frame.astype(int) + rng.integers(0, 20, frame.shape), 0, 255).astype(np.uint8))
    writer.release()
    return path


def _run(args):
    if "--max-detections" not in args:
        args = args + ["--max-detections", str(DETECTIONS)]
    return predict.main(args + ["--score-threshold", "0.0"])


def _summary(folder):
    with open(os.path.join(folder, "summary.csv"), newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_video_gives_a_video_of_as_many_frames_and_results_for_each(model_file, video, tmp_path):
    output = tmp_path / "out"
    assert _run([model_file, video, "--output-dir", str(output)]) == 0
    assert sorted(os.listdir(output)) == ["clip.mp4", "results.json", "summary.csv"]
    written = cv2.VideoCapture(str(output / "clip.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(12)
    assert (written.get(cv2.CAP_PROP_FRAME_WIDTH), written.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (64, 48)
    results = json.loads((output / "results.json").read_text())
    assert sorted({r["frame"] for r in results}) == list(range(30))
    assert all(r["file_name"] == video and len(r["polygons"]) >= 0 and r["area"] >= 0 for r in results)
    rows = _summary(output)
    assert [int(row["frame"]) for row in rows] == list(range(30))
    counts = sum(int(row[f"count:{name}"]) for row in rows for name in CLASSES)
    assert counts == sum(int(row["detections"]) for row in rows) == len(results) == 30 * DETECTIONS
    for name in CLASSES:
        area = sum(r["area"] for r in results if r["category_name"] == name)
        assert sum(int(row[f"area:{name}"]) for row in rows) == area


def test_vid_stride_max_frames_and_frames_as_pictures(model_file, video, tmp_path):
    output = tmp_path / "out"
    assert _run([model_file, video, "--output-dir", str(output), "--vid-stride", "3", "--max-frames", "4",
                 "--no-save-video"]) == 0
    assert sorted(os.listdir(output)) == [f"clip_{i:06d}.png" for i in (0, 3, 6, 9)] + ["results.json", "summary.csv"]


def test_classes_masks_and_polygons(model_file, video, tmp_path):
    picture = tmp_path / "frame.png"
    ok, frame = cv2.VideoCapture(video).read()
    cv2.imwrite(str(picture), frame)
    output = tmp_path / "out"
    assert _run([model_file, str(picture), "--output-dir", str(output), "--save-masks", "--classes", "square"]) == 0
    results = json.loads((output / "results.json").read_text())
    assert {r["category_name"] for r in results} <= {"square"}
    masks = sorted(os.listdir(output / "masks"))
    assert len(masks) == len(results)
    for result, name in zip(results, masks):
        assert name.endswith("_square.png")
        saved = cv2.imread(str(output / "masks" / name), cv2.IMREAD_GRAYSCALE) > 0
        rle = {"size": result["segmentation"]["size"], "counts": result["segmentation"]["counts"].encode()}
        np.testing.assert_array_equal(saved, mask_utils.decode(rle).astype(bool))
    rows = _summary(output)
    assert int(rows[0]["count:circle"]) == 0 and int(rows[0]["count:square"]) == len(results)


def test_tiles_cover_a_large_picture_and_stay_inside_it(model_file, tmp_path):
    picture = tmp_path / "large.png"
    cv2.imwrite(str(picture), np.random.default_rng(1).integers(0, 255, (150, 230, 3), dtype=np.uint8))
    output = tmp_path / "out"
    assert _run([model_file, str(picture), "--output-dir", str(output), "--tile", "64", "--tile-overlap", "0.25",
                 "--max-detections", "7", "--tile-detections", "2"]) == 0
    results = json.loads((output / "results.json").read_text())
    assert 2 < len(results) <= 7  # 2 a tile from 15 tiles, 7 for the picture
    for result in results:
        x, y, w, h = result["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 230 and y + h <= 150
        assert result["segmentation"]["size"] == [150, 230]
    assert cv2.imread(str(output / "large.png")).shape == (150, 230, 3)


def test_an_interrupted_run_keeps_complete_outputs(model_file, video, tmp_path, monkeypatch):
    added = []
    original = predict.Outputs.add

    def add_then_interrupt(self, result):
        if len(added) == 5:
            raise KeyboardInterrupt
        added.append(result.frame)
        original(self, result)

    monkeypatch.setattr(predict.Outputs, "add", add_then_interrupt)
    output = tmp_path / "out"
    assert _run([model_file, video, "--output-dir", str(output)]) == 130
    results = json.loads((output / "results.json").read_text())
    assert sorted({r["frame"] for r in results}) == [0, 1, 2, 3, 4]
    assert len(_summary(output)) == 5
    assert int(cv2.VideoCapture(str(output / "clip.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 5


def test_source_and_output_errors_come_before_the_model(model_file, tmp_path, capsys):
    def error_of(args):
        with pytest.raises(SystemExit) as stop:
            predict.main(args)
        assert stop.value.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    picture = tmp_path / "p.png"
    cv2.imwrite(str(picture), np.zeros((20, 20, 3), np.uint8))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert "cannot open video" in error_of([model_file, str(broken), "--output-dir", str(tmp_path / "o")])
    assert "camera 9 cannot be opened" in error_of([model_file, "9", "--output-dir", str(tmp_path / "o")])
    assert "pattern" in error_of([model_file, str(tmp_path / "*.jpg"), "--output-dir", str(tmp_path / "o")])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "file" in error_of([model_file, str(picture), "--output-dir", str(blocker)])
    assert "--tile-overlap" in error_of([model_file, str(picture), "--output-dir", str(tmp_path / "o"),
                                         "--tile-overlap", "1"])
    assert "--tile" in error_of([model_file, str(picture), "--output-dir", str(tmp_path / "o"), "--tile", "8"])
    assert "'triangle' not among the model's classes" in error_of(
        [model_file, str(picture), "--output-dir", str(tmp_path / "o"), "--classes", "triangle"])


def test_a_full_disk_stops_with_one_line_and_no_written_claim(model_file, video, tmp_path, monkeypatch, capsys):
    """The third file written fails as on a full disk: one line naming it, exit status 1, no 'in D' line."""
    import errno

    from keras_maskrcnn.utils import files

    calls = []
    original = files.os.write

    def write(fd, data):
        calls.append(fd)
        if len(calls) >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(fd, data)

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    ok, frame = cv2.VideoCapture(video).read()
    for index in range(4):
        cv2.imwrite(str(pictures / f"p{index}.png"), frame)
    monkeypatch.setattr(files.os, "write", write)
    with pytest.raises(SystemExit) as stop:
        _run([model_file, str(pictures), "--output-dir", str(tmp_path / "out")])
    captured = capsys.readouterr()
    message = str(stop.value.code)
    assert message.startswith("maskrcnn-predict: error: cannot write '") and "\n" not in message
    assert message.endswith(".png': No space left on device")
    assert "results.json, summary.csv in" not in captured.out
    assert sorted(os.listdir(tmp_path / "out")) == ["p0.png"]  # no results.json, no temporary file


def test_evaluate_and_debug_check_their_output_folders_first(tmp_path, capsys, small_shapes):
    from keras_maskrcnn.bin import debug, evaluate

    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    for main, args in ((evaluate.main, ["--save-path", str(blocker), "csv", small_shapes["val"],
                                        small_shapes["classes"], str(tmp_path / "no-model.keras")]),
                       (debug.main, ["--output-dir", str(blocker), "csv", small_shapes["val"],
                                     small_shapes["classes"]])):
        with pytest.raises(SystemExit) as stop:
            main(args)
        assert stop.value.code == 2
        assert f"'{blocker}' exists and is not a folder" in capsys.readouterr().err
