"""Tests of the reports: the confusion matrix counted by hand, the F1 curve's best threshold,
the files written, and the plots skipped without matplotlib."""

import csv
import json
import sys

import numpy as np
import pytest

from keras_maskrcnn.evaluation import reports
from keras_maskrcnn.evaluation.average_precision_test import (
    EmptyModel, GroundTruthModel, StubGenerator, rectangle, shape_scenes)
from keras_maskrcnn.evaluation.coco_metrics import coco_metrics
from keras_maskrcnn.evaluation.coco_metrics_test import ChosenModel, imperfect_detections
from keras_maskrcnn.evaluation.records import ImageRecord
from keras_maskrcnn.evaluation.run import evaluate_model, write_reports
from keras_maskrcnn.utils.eval import encode_masks

SHAPE = (40, 40)
CAT, DOG = 0, 1
PNG = b"\x89PNG\r\n\x1a\n"


def record(index, truth, found):
    """An ImageRecord of 40x40 rectangles: truth [(label, x1, y1, x2, y2)], found [(label, score, x1, y1, x2, y2)]."""
    return ImageRecord(
        index=index, image_id=index + 1, file_name=f"image{index}.png", height=SHAPE[0], width=SHAPE[1],
        gt_labels=np.array([t[0] for t in truth], np.int64),
        gt_boxes=np.array([t[1:] for t in truth], np.float64).reshape(-1, 4),
        gt_rles=encode_masks([rectangle(SHAPE, *t[1:]) for t in truth]),
        labels=np.array([f[0] for f in found], np.int64), scores=np.array([f[1] for f in found], np.float64),
        boxes=np.array([f[2:] for f in found], np.float64).reshape(-1, 4),
        rles=encode_masks([rectangle(SHAPE, *f[2:]) for f in found]))


def constructed_case():
    """Two images of cats and dogs with known outcomes at score 0.5 and mask IoU 0.5:

    image 0: cat A found as cat (match), a second cat detection on A (a duplicate: false), dog B
             found as cat (class swap), a dog detection on empty ground (false);
    image 1: cat C only detected at score 0.1 (below 0.5: missed), dog D found as dog with IoU
             0.8 (match), cat E found as cat with IoU 0.4 only (missed, and a false detection).
    """
    return [
        record(0, truth=[(CAT, 0, 0, 10, 10), (DOG, 20, 0, 30, 10)],
               found=[(CAT, 0.9, 0, 0, 10, 10), (CAT, 0.6, 0, 0, 10, 10), (CAT, 0.8, 20, 0, 30, 10),
                      (DOG, 0.7, 0, 30, 10, 40)]),
        record(1, truth=[(CAT, 0, 0, 10, 10), (DOG, 20, 20, 30, 30), (CAT, 0, 20, 10, 30)],
               found=[(CAT, 0.1, 0, 0, 10, 10), (DOG, 0.95, 22, 20, 30, 30), (CAT, 0.6, 0, 24, 10, 34)]),
    ]


def test_confusion_matrix_counts_by_hand():
    matrix = reports.confusion_matrix(constructed_case(), num_classes=2, score_threshold=0.5)
    # rows predicted (cat, dog, background), columns true (cat, dog, background)
    expected = np.array([
        [1, 1, 2],  # cat: A matched; dog B taken for a cat; the duplicate on A and the poor E detection
        [0, 1, 1],  # dog: D matched; the detection on empty ground
        [2, 0, 0],  # background (missed): C (its detection scores 0.1) and E (IoU 0.4)
    ])
    np.testing.assert_array_equal(matrix, expected)
    # at score 0.05, C's detection counts and matches C
    matrix = reports.confusion_matrix(constructed_case(), num_classes=2, score_threshold=0.05)
    assert matrix[CAT, CAT] == 2 and matrix[2, CAT] == 1


def test_match_image_takes_each_object_once_by_highest_iou():
    case = constructed_case()[0]
    pairs, false, missed = reports.match_image(case, score_threshold=0.5)
    assert sorted(pairs) == [(0, 0), (2, 1)] and sorted(false) == [1, 3] and missed == []


def test_worst_images_rank_by_errors():
    worst = reports.worst_images(constructed_case(), count=5, score_threshold=0.5)
    # image 0: 2 false + 1 swap = 3 errors; image 1: 2 missed + 1 false = 3 errors, more missed first
    assert [(r.index, missed, false, swapped) for r, missed, false, swapped in worst] == [
        (1, [0, 2], [2], []), (0, [], [1, 3], [(2, 1)])]


def test_f1_curve_best_threshold_by_hand():
    # one class, two objects; detections: hit 0.9, false 0.8, hit 0.3. F1 is 0.8 for t <= 0.3
    # (P 2/3, R 1), 0.5 up to 0.8 (P 1/2, R 1/2) and 2/3 up to 0.9 (P 1, R 1/2): the best is
    # 0.8 and its highest threshold 0.3
    case = [record(0, truth=[(CAT, 0, 0, 10, 10), (CAT, 20, 20, 30, 30)],
                   found=[(CAT, 0.9, 0, 0, 10, 10), (CAT, 0.8, 0, 30, 10, 40), (CAT, 0.3, 20, 20, 30, 30)])]
    _, evals = coco_metrics(case, {CAT: "cat"})
    thresholds, curves, mean, best, best_f1 = reports.f1_curves(evals["segm"])
    assert best == pytest.approx(0.3) and best_f1 == pytest.approx(0.8)
    assert mean[np.searchsorted(thresholds, 0.5)] == pytest.approx(0.5)
    assert mean[np.searchsorted(thresholds, 0.85)] == pytest.approx(2 / 3)
    assert mean[-1] == 0.0


def _evaluated(tmp_path):
    scenes = shape_scenes()
    generator = StubGenerator(scenes)
    return generator, evaluate_model(generator, ChosenModel(generator, imperfect_detections(scenes)))


def test_write_reports_writes_every_file(tmp_path):
    generator, evaluation = _evaluated(tmp_path)
    lines = []
    result = write_reports(str(tmp_path / "out"), generator, evaluation, settings={"model": "m"}, log=lines.append)
    out = tmp_path / "out"
    for name in ("pr_curves.png", "f1_curve.png", "confusion_matrix.png"):
        assert (out / name).read_bytes()[:8] == PNG
    worst = sorted((out / "worst").iterdir())
    assert worst and all(path.read_bytes()[:8] == PNG for path in worst)
    assert lines[0].startswith("Best mask F1 ") and "use it as --score-threshold" in lines[0]
    assert sorted(line[len("wrote "):] for line in lines[1:]) == sorted(result["written"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["f1"]["best_score_threshold"] == result["best_threshold"]
    assert metrics["confusion_matrix_score_threshold"] == result["best_threshold"]
    with open(out / "per_class.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["class"] for row in rows] == ["square", "circle", "all"]
    assert float(rows[0]["mask AP"]) == pytest.approx(metrics["segm"]["per_class"]["square"]["AP"])
    assert int(rows[2]["instances"]) == 7
    table = reports.format_table(reports.per_class_rows(evaluation.metrics, evaluation.seed_by_name()))
    assert table.splitlines()[0].split()[:3] == ["class", "instances", "images"]
    assert len(table.splitlines()) == 5


def test_without_matplotlib_plots_are_skipped_once_and_the_rest_written(tmp_path, monkeypatch, capsys):
    generator, evaluation = _evaluated(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    monkeypatch.setattr(reports, "_PLOTS_SKIPPED", [])
    lines = []
    write_reports(str(tmp_path / "out"), generator, evaluation, log=lines.append)
    reports.plot_training_curves(_csv_log(tmp_path))
    err = capsys.readouterr().err
    assert err.count("plots are skipped: matplotlib cannot be imported") == 1
    assert "keras-maskrcnn[plots]" in err
    names = {path.name for path in (tmp_path / "out").iterdir()}
    assert names == {"metrics.json", "per_class.csv", "detections.json", "worst"}
    assert not any(line.endswith(".png") and "worst" not in line for line in lines)
    assert not (tmp_path / "training_curves.png").exists()
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["f1"]["best_f1"] > 0


def _csv_log(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss,mAP,segm_AP,val_loss\n0,2.5,0.1,0.05,2.7\n1,1.5,0.3,0.2,1.9\n2,1.2,,0.25,NA\n")
    return str(path)


def test_training_curves_beside_the_log(tmp_path):
    assert reports.plot_training_curves(_csv_log(tmp_path)) == str(tmp_path / "training_curves.png")
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == PNG


def test_worst_picture_shows_truth_beside_predictions():
    scenes = shape_scenes()
    generator = StubGenerator(scenes)
    evaluation = evaluate_model(generator, GroundTruthModel(generator))
    first = evaluation.records[0]
    picture = reports.worst_picture(generator.load_image(0), first, evaluation.names, 0.5, [], [])
    height, width = scenes[0][0].shape[:2]  # 60 x 80: enlarged 4 times to reach 320 pixels
    assert picture.shape == (4 * height + 22, 2 * 4 * width + 4, 3)


def test_without_any_match_there_is_no_best_threshold(tmp_path):
    generator = StubGenerator(shape_scenes())
    evaluation = evaluate_model(generator, EmptyModel(2))
    lines = []
    result = write_reports(str(tmp_path), generator, evaluation, log=lines.append)
    assert result["best_threshold"] is None and result["confusion_threshold"] == 0.25
    assert lines[0] == "No detection matches an object at mask IoU 0.5: F1 is 0 at every score threshold"
    np.testing.assert_array_equal(result["confusion_matrix"], [[0, 0, 0], [0, 0, 0], [4, 3, 0]])
    assert json.loads((tmp_path / "metrics.json").read_text())["f1"]["best_f1"] == 0.0
