"""Tests of the COCO metrics (pycocotools COCOeval, segm and bbox) for every data set type, and of
the reports: metrics.json against pycocotools run independently on detections.json."""

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from keras_maskrcnn.evaluation.average_precision_test import (
    MASK_SIZE, EmptyModel, GroundTruthModel, StubGenerator, shape_scenes, write_csv_dataset)
from keras_maskrcnn.evaluation.coco_metrics import (
    COCO_STAT_NAMES, coco_metrics, coco_results, ground_truth_coco, results_for, run_cocoeval)
from keras_maskrcnn.evaluation.records import collect
from keras_maskrcnn.evaluation.run import evaluate_model, write_reports
from keras_maskrcnn.utils.masks import roi_mask_targets

TINYCOCO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tinycoco"


class ChosenModel:
    """Fake prediction model returning chosen detections for the k-th call (image k mod size).

    detections[k]: list of (box x1 y1 x2 y2 in original pixels, score, label, full-image 0/1 mask);
    they come back in resized-input pixels with each mask sampled at 28x28 into its box.
    """

    def __init__(self, generator, detections, rows=12):
        self.generator = generator
        self.detections = detections
        self.rows = rows
        self.calls = 0

    def predict_on_batch(self, batch):
        index = self.calls % self.generator.size()
        self.calls += 1
        scale = self.generator.resize_image(self.generator.load_image(index))[1]
        scale = np.asarray(scale, np.float64).reshape(-1)
        scale = np.array([scale[0], scale[-1], scale[0], scale[-1]])
        out_boxes = np.zeros((1, self.rows, 4), np.float32)
        out_scores = np.full((1, self.rows), -1.0, np.float32)
        out_labels = np.full((1, self.rows), -1, np.int32)
        out_masks = np.zeros((1, self.rows, MASK_SIZE, MASK_SIZE, self.generator.num_classes()), np.float32)
        for n, (box, score, label, mask) in enumerate(self.detections[index]):
            out_boxes[0, n] = np.asarray(box) * scale
            out_scores[0, n] = score
            out_labels[0, n] = label
            out_masks[0, n, :, :, label] = roi_mask_targets(mask, np.asarray([box], np.float64), MASK_SIZE)[0]
        return [out_boxes, out_scores, out_labels, out_masks]


def imperfect_detections(scenes):
    """Per image: every object found, shifted by a few pixels (more for later objects), scores
    spread so classes interleave, one object of image 1 given the other class, and one false
    detection per image. APs come out between 0 and 1 and differ by IoU threshold."""
    detections = []
    for index, (image, truth) in enumerate(scenes):
        found = []
        for n, (box, label, mask) in enumerate(zip(truth["bboxes"], truth["labels"], truth["masks"])):
            shift = 1 + 2 * n + index
            moved = np.roll(mask, shift, axis=1)
            moved[:, :shift] = 0
            label = 1 - int(label) if (index, n) == (1, 0) else int(label)
            found.append((np.asarray(box) + [shift, 0, shift, 0], 0.9 - 0.13 * n - 0.05 * index, label, moved))
        height, width = image.shape[:2]
        false = np.zeros((height, width), np.uint8)
        false[height - 12:height - 2, 2:14] = 1
        found.append((np.array([2, height - 12, 14, height - 2], np.float64), 0.6 - 0.1 * index, index % 2, false))
        detections.append(found)
    return detections


def _csv_generator(tmp_path, scenes):
    from keras_maskrcnn.preprocessing.csv_generator import CSVGenerator

    annotations_csv, classes_csv = write_csv_dataset(str(tmp_path), scenes, StubGenerator.classes)
    return CSVGenerator(annotations_csv, classes_csv, image_min_side=90, image_max_side=140), annotations_csv


def _independent_csv_truth(annotations_csv):
    """pycocotools COCO of a CSV data set read straight from its files (not through the library):
    (COCO, {image path: image id}, {class name: category id})."""
    names = {name: label for name, label in StubGenerator.classes.items()}
    images, annotations, ids = [], [], {}
    with open(annotations_csv, newline="") as handle:
        for path, x1, y1, x2, y2, name, mask_path in csv.reader(handle):
            if path not in ids:
                ids[path] = 100 + len(ids)
                height, width = cv2.imread(path).shape[:2]
                images.append({"id": ids[path], "file_name": path, "height": height, "width": width})
            mask = (cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8)
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode("ascii")
            x1, y1, x2, y2 = (float(v) for v in (x1, y1, x2, y2))
            annotations.append({"id": len(annotations) + 1, "image_id": ids[path], "category_id": names[name] + 10,
                                "iscrowd": 0, "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(mask.sum()),
                                "segmentation": rle})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": label + 10, "name": name} for name, label in names.items()]}
    coco.createIndex()
    return coco, ids, {name: label + 10 for name, label in names.items()}


def write_coco_dataset(directory, scenes, set_name="val2017"):
    """The scenes in the COCO layout (images/SET/*.png, annotations/instances_SET.json), category
    ids 3 (square) and 7 (circle), image ids from 101; returns the annotations file."""
    os.makedirs(os.path.join(directory, "images", set_name), exist_ok=True)
    os.makedirs(os.path.join(directory, "annotations"), exist_ok=True)
    category = {0: 3, 1: 7}
    images, annotations = [], []
    for index, (image, truth) in enumerate(scenes):
        cv2.imwrite(os.path.join(directory, "images", set_name, f"{index}.png"), image)
        images.append({"id": 101 + index, "file_name": f"{index}.png", "height": image.shape[0],
                       "width": image.shape[1]})
        for mask, label, box in zip(truth["masks"], truth["labels"], truth["bboxes"]):
            rle = mask_utils.encode(np.asfortranarray(mask))
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({"id": len(annotations) + 1, "image_id": 101 + index,
                                "category_id": category[int(label)], "iscrowd": 0,
                                "area": float(mask_utils.area(rle)), "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")}})
    path = os.path.join(directory, "annotations", f"instances_{set_name}.json")
    with open(path, "w") as handle:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 3, "name": "square"}, {"id": 7, "name": "circle"}]}, handle)
    return path


def _pycocotools_per_class(coco_gt, detections, iou_type, category_ids):
    """{category id: (AP, AP50)} by pycocotools' COCOeval run for each category alone."""
    keep = ("image_id", "category_id", "score", "segmentation" if iou_type == "segm" else "bbox")
    results = coco_gt.loadRes([{key: d[key] for key in keep} for d in detections])
    values = {}
    for category in category_ids:
        coco_eval = COCOeval(coco_gt, results, iou_type)
        coco_eval.params.catIds = [category]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        values[category] = (coco_eval.stats[0], coco_eval.stats[1])
    return values


def _check_against_pycocotools(metrics, detections, coco_gt, category_of_name):
    """metrics.json's per-class AP and AP50 equal pycocotools' on detections.json (1e-6)."""
    checked = 0
    for iou_type in ("segm", "bbox"):
        independent = _pycocotools_per_class(coco_gt, detections, iou_type, sorted(category_of_name.values()))
        for name, category in category_of_name.items():
            ap, ap50 = independent[category]
            assert metrics[iou_type]["per_class"][name]["AP"] == pytest.approx(ap, abs=1e-6), (iou_type, name)
            assert metrics[iou_type]["per_class"][name]["AP50"] == pytest.approx(ap50, abs=1e-6), (iou_type, name)
            checked += 1
        assert 0.0 < metrics[iou_type]["AP"] < 1.0
    return checked


def test_metrics_json_per_class_ap_equals_pycocotools_on_a_csv_data_set(tmp_path, capsys):
    scenes = shape_scenes()
    (tmp_path / "data").mkdir()
    generator, annotations_csv = _csv_generator(tmp_path / "data", scenes)
    model = ChosenModel(generator, imperfect_detections(scenes))
    evaluation = evaluate_model(generator, model)
    write_reports(str(tmp_path / "out"), generator, evaluation, settings={"model": "chosen"})
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())
    # the test's own ground truth: other image and category ids, mapped through file and class names
    coco_gt, image_ids, category_of_name = _independent_csv_truth(annotations_csv)
    for detection in detections:
        detection["image_id"] = image_ids[detection["file_name"]]
        detection["category_id"] = category_of_name[detection["category_name"]]
    assert _check_against_pycocotools(metrics, detections, coco_gt, category_of_name) == 4
    assert metrics["segm"]["per_class"]["square"]["instances"] == 4
    assert metrics["segm"]["per_class"]["circle"]["images"] == 3
    assert set(metrics["segm"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR100", "per_class"}
    assert metrics["settings"] == {"model": "chosen"}
    assert 0.0 < metrics["mask_mAP50_seed"]["mAP"] < 1.0


def test_metrics_json_per_class_ap_equals_pycocotools_on_a_coco_data_set(tmp_path):
    from keras_maskrcnn.preprocessing.coco import CocoGenerator

    scenes = shape_scenes()
    annotations = write_coco_dataset(str(tmp_path / "coco"), scenes)
    generator = CocoGenerator(str(tmp_path / "coco"), "val2017", image_min_side=90, image_max_side=140)
    model = ChosenModel(generator, imperfect_detections(scenes))
    evaluation = evaluate_model(generator, model)
    write_reports(str(tmp_path / "out"), generator, evaluation)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())
    # the data set's own file: its image ids, and its category ids found by category name
    coco_gt = COCO(annotations)
    category_of_name = {c["name"]: c["id"] for c in coco_gt.loadCats(coco_gt.getCatIds())}
    assert {d["image_id"] for d in detections} == {101, 102, 103}
    for detection in detections:
        detection["category_id"] = category_of_name[detection["category_name"]]
    assert _check_against_pycocotools(metrics, detections, coco_gt, category_of_name) == 4


def test_per_class_values_equal_cocoeval_run_per_category(tmp_path):
    scenes = shape_scenes()
    generator = StubGenerator(scenes)
    records = collect(generator, ChosenModel(generator, imperfect_detections(scenes)))
    names = {0: "square", 1: "circle"}
    metrics, evals = coco_metrics(records, names)
    coco_gt = ground_truth_coco(records, names)
    results = coco_results(records, names)
    for iou_type in ("segm", "bbox"):
        assert [metrics[iou_type][name] for name in COCO_STAT_NAMES] == pytest.approx(
            [None if value < 0 else value for value in evals[iou_type].stats])
        for label, name in names.items():
            alone = run_cocoeval(coco_gt, results, iou_type, category_ids=[label]).stats
            values = metrics[iou_type]["per_class"][name]
            for key, index in (("AP", 0), ("AP50", 1), ("AP75", 2), ("APs", 3), ("APm", 4), ("APl", 5),
                               ("AR100", 8)):
                expected = None if alone[index] < 0 else alone[index]
                assert values[key] == pytest.approx(expected, abs=1e-12), (iou_type, name, key)


def test_ground_truth_model_scores_one_and_empty_model_zero():
    generator = StubGenerator(shape_scenes())
    names = {0: "square", 1: "circle"}
    metrics, _ = coco_metrics(collect(generator, GroundTruthModel(generator)), names)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)
    assert metrics["segm"]["AP50"] == pytest.approx(1.0)
    assert metrics["segm"]["AP"] > 0.95
    metrics, _ = coco_metrics(collect(generator, EmptyModel(2)), names)
    assert metrics["segm"]["AP"] == 0.0 and metrics["bbox"]["per_class"]["circle"]["AP"] == 0.0


def test_a_class_without_ground_truth_has_no_ap():
    generator = StubGenerator(shape_scenes())
    metrics, _ = coco_metrics(collect(generator, GroundTruthModel(generator)), {0: "square", 1: "circle", 2: "star"})
    assert metrics["segm"]["per_class"]["star"] == {"AP": None, "AP50": None, "AP75": None, "APs": None,
                                                    "APm": None, "APl": None, "AR100": None,
                                                    "instances": 0, "images": 0}
    assert metrics["segm"]["AP50"] == pytest.approx(1.0)


def test_results_per_iou_type_keep_only_their_field():
    # loadRes takes a detection's area from its box when one is present; segm must use the mask
    results = [{"image_id": 1, "file_name": "a.png", "category_id": 1, "category_name": "a", "score": 0.5,
                "bbox": [0, 0, 4, 4], "segmentation": {"size": [8, 8], "counts": "0"}}]
    assert set(results_for(results, "segm")[0]) == {"image_id", "category_id", "score", "segmentation"}
    assert set(results_for(results, "bbox")[0]) == {"image_id", "category_id", "score", "bbox"}


def test_coco_generator_on_tinycoco_with_ground_truth_model():
    if not (TINYCOCO / "annotations" / "instances_val2017.json").is_file():
        pytest.skip(f"{TINYCOCO} is not available")
    from keras_maskrcnn.preprocessing.coco import CocoGenerator

    generator = CocoGenerator(str(TINYCOCO), "val2017", image_min_side=240, image_max_side=400)
    evaluation = evaluate_model(generator, GroundTruthModel(generator))
    # boxes are exact; masks are resampled through 28x28 and pasted back
    assert evaluation.metrics["bbox"]["AP"] == pytest.approx(1.0)
    assert evaluation.metrics["segm"]["AP50"] > 0.95
    assert {record.image_id for record in evaluation.records} <= set(generator.image_ids)


def test_a_predictor_evaluates_like_its_model(tmp_path):
    from keras_maskrcnn.inference.predictor import Predictor

    scenes = shape_scenes()
    generator, _ = _csv_generator(tmp_path, scenes)
    direct = evaluate_model(generator, ChosenModel(generator, imperfect_detections(scenes)))
    predictor = Predictor(ChosenModel(generator, imperfect_detections(scenes)), score_threshold=0.05,
                          image_min_side=90, image_max_side=140, pad_multiple=generator.pad_multiple,
                          classes=["square", "circle"], backbone="resnet50")
    through = evaluate_model(generator, predictor)
    for iou_type in ("segm", "bbox"):
        for name in ("square", "circle"):
            assert through.metrics[iou_type]["per_class"][name]["AP"] == pytest.approx(
                direct.metrics[iou_type]["per_class"][name]["AP"], abs=1e-6)
    assert 0.0 < through.metrics["segm"]["AP"] < 1.0
