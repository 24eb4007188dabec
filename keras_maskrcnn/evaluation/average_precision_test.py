"""Tests of the seed's mask mAP@0.5 and of the pass over a data set, plus fakes shared by the
other evaluation tests."""

import csv
import os

import cv2
import numpy as np
import pytest

from keras_maskrcnn.evaluation.average_precision import (
    _compute_ap, compute_average_precisions, evaluate, mean_average_precision)
from keras_maskrcnn.evaluation.records import collect
from keras_maskrcnn.utils.eval import encode_masks, mask_iou
from keras_maskrcnn.utils.masks import roi_mask_targets

MASK_SIZE = 28
PADDED_DETECTIONS = 8


def rectangle(shape, x1, y1, x2, y2):
    """(H, W) uint8 mask with pixels [y1:y2, x1:x2] set."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def disc(shape, cx, cy, radius):
    """(H, W) uint8 mask of a filled circle."""
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.circle(mask, (cx, cy), radius, 1, -1)
    return mask


def box_of(mask):
    """Tight continuous box (x1, y1, x2, y2) of a 0/1 mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def shape_scenes():
    """Three small BGR images with square (label 0) and circle (label 1) instances."""
    scenes = []
    for index, (height, width) in enumerate([(60, 80), (72, 64), (50, 90)]):
        image = np.full((height, width, 3), 40 + 30 * index, dtype=np.uint8)
        masks = [rectangle((height, width), 5 + index, 6, 30 + index, 28),
                 disc((height, width), width - 20, height - 18, 12)]
        labels = [0, 1]
        if index == 2:
            masks.append(rectangle((height, width), 35, 3, 55, 20))
            labels.append(0)
        for mask, label in zip(masks, labels):
            image[mask.astype(bool)] = (200, 80, 30) if label == 0 else (30, 90, 220)
        scenes.append((image, {
            "labels": np.array(labels, dtype=np.int64),
            "bboxes": np.stack([box_of(m) for m in masks]),
            "masks": masks,
        }))
    return scenes


class StubGenerator:
    """The generator interface the evaluators use, over in-memory images (resize factor 1.5)."""

    classes = {"square": 0, "circle": 1}

    def __init__(self, scenes, scale=1.5):
        self.scenes = scenes
        self.scale = scale

    def size(self):
        return len(self.scenes)

    def num_classes(self):
        return len(self.classes)

    def has_label(self, label):
        return label in self.classes.values()

    def label_to_name(self, label):
        return {v: k for k, v in self.classes.items()}[label]

    def name_to_label(self, name):
        return self.classes[name]

    def image_path(self, index):
        return f"image{index}.png"

    def load_image(self, index):
        return self.scenes[index][0].copy()

    def load_annotations(self, index):
        annotations = self.scenes[index][1]
        return {"labels": annotations["labels"].copy(), "bboxes": annotations["bboxes"].copy(),
                "masks": [m.copy() for m in annotations["masks"]]}

    def preprocess_image(self, image):
        return image.astype(np.float32) - 100.0

    def resize_image(self, image):
        resized = cv2.resize(image, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_LINEAR)
        return resized, self.scale


class GroundTruthModel:
    """Fake prediction model: for the k-th call returns the ground truth of image k (mod size).

    Boxes are in resized-input pixels, masks are the ground-truth masks sampled at 28x28 into
    their boxes, in the label's channel; rows are padded with score -1 / label -1.
    `transform(boxes, masks)` may alter the detections (original-image boxes, full masks).
    """

    def __init__(self, generator, transform=None, score=0.9):
        self.generator = generator
        self.transform = transform
        self.score = score
        self.calls = 0

    def predict_on_batch(self, batch):
        index = self.calls % self.generator.size()
        self.calls += 1
        raw = self.generator.load_image(index)
        resized, scale = self.generator.resize_image(raw)
        multiple = getattr(self.generator, "pad_multiple", 1)
        assert batch.shape[1:3] == tuple(-(-side // multiple) * multiple for side in resized.shape[:2])
        annotations = self.generator.load_annotations(index)
        boxes = np.asarray(annotations["bboxes"], dtype=np.float64)
        masks = list(annotations["masks"])
        labels = np.asarray(annotations["labels"])
        if self.transform is not None:
            boxes, masks = self.transform(boxes, masks)
        count = len(labels)
        num_classes = self.generator.num_classes()
        rows = max(PADDED_DETECTIONS, count + 2)
        out_boxes = np.zeros((1, rows, 4), dtype=np.float32)
        out_scores = np.full((1, rows), -1.0, dtype=np.float32)
        out_labels = np.full((1, rows), -1, dtype=np.int32)
        out_masks = np.zeros((1, rows, MASK_SIZE, MASK_SIZE, num_classes), dtype=np.float32)
        for n in range(count):
            out_boxes[0, n] = boxes[n] * scale
            out_scores[0, n] = self.score - 0.001 * n
            out_labels[0, n] = labels[n]
            out_masks[0, n, :, :, labels[n]] = roi_mask_targets(masks[n], boxes[n:n + 1], MASK_SIZE)[0]
        return [np.zeros((1, 5, 4)), out_boxes, out_scores, out_labels, out_masks]


class EmptyModel:
    """Fake prediction model that never detects anything (all rows padded)."""

    def __init__(self, num_classes):
        self.num_classes = num_classes

    def predict_on_batch(self, batch):
        return [np.zeros((1, 4, 4), np.float32), np.full((1, 4), -1.0, np.float32),
                np.full((1, 4), -1, np.int32),
                np.zeros((1, 4, MASK_SIZE, MASK_SIZE, self.num_classes), np.float32)]


def write_csv_dataset(directory, scenes, classes):
    """Writes scenes as PNG images + mask PNGs + annotations.csv and classes.csv.

    Rows are `path,x1,y1,x2,y2,class_name,mask_path`; returns (annotations_csv, classes_csv).
    """
    names = {label: name for name, label in classes.items()}
    rows = []
    for index, (image, annotations) in enumerate(scenes):
        image_path = os.path.join(directory, f"image{index}.png")
        cv2.imwrite(image_path, image)
        for n, (box, label, mask) in enumerate(zip(annotations["bboxes"], annotations["labels"],
                                                   annotations["masks"])):
            mask_path = os.path.join(directory, f"image{index}_mask{n}.png")
            cv2.imwrite(mask_path, mask * 255)
            rows.append([image_path] + [int(v) for v in box] + [names[int(label)], mask_path])
    annotations_csv = os.path.join(directory, "annotations.csv")
    classes_csv = os.path.join(directory, "classes.csv")
    with open(annotations_csv, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with open(classes_csv, "w", newline="") as handle:
        csv.writer(handle).writerows([[name, label] for name, label in classes.items()])
    return annotations_csv, classes_csv


def test_compute_ap_single_curve_points():
    assert _compute_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    # one hit among two detections found first by the worse score: precision 1/2 at recall 1
    assert _compute_ap(np.array([0.0, 1.0]), np.array([0.0, 0.5])) == pytest.approx(0.5)
    assert _compute_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_mask_iou_on_rle():
    a = rectangle((20, 20), 0, 0, 10, 10)
    b = rectangle((20, 20), 5, 0, 15, 10)
    overlaps = mask_iou(encode_masks([a, b]), encode_masks([b]))
    assert overlaps.shape == (2, 1)
    assert overlaps[:, 0] == pytest.approx([50 / 150, 1.0])
    assert mask_iou([], encode_masks([a])).shape == (0, 1)


def _two_image_ground_truth():
    shape = (40, 40)
    return [
        {"labels": np.array([0, 0]), "masks": [rectangle(shape, 0, 0, 10, 10),
                                               rectangle(shape, 20, 20, 30, 30)]},
        {"labels": np.array([0, 2]), "masks": [rectangle(shape, 0, 0, 20, 10),
                                               rectangle(shape, 30, 30, 40, 40)]},
    ]


def test_detections_equal_to_ground_truth_give_ap_one():
    annotations = _two_image_ground_truth()
    detections = [{"scores": np.linspace(0.9, 0.5, len(a["labels"])), "labels": a["labels"],
                   "masks": a["masks"]} for a in annotations]
    result = compute_average_precisions(detections, annotations, num_classes=3)
    assert result[0] == (pytest.approx(1.0), 3)
    assert result[1] == (0.0, 0)
    assert result[2] == (pytest.approx(1.0), 1)
    assert mean_average_precision(result) == pytest.approx(1.0)


def test_disjoint_detections_give_ap_zero():
    annotations = _two_image_ground_truth()
    shape = (40, 40)
    detections = [{"scores": np.array([0.9, 0.8]), "labels": np.array([0, 2]),
                   "masks": [rectangle(shape, 30, 0, 40, 10), rectangle(shape, 0, 30, 10, 40)]}
                  for _ in annotations]
    result = compute_average_precisions(detections, annotations, num_classes=3)
    assert result[0] == (0.0, 3)
    assert result[2] == (0.0, 1)
    assert mean_average_precision(result) == 0.0


def test_mixed_case_matches_hand_computation():
    # Class 0 ground truth: image 0 has A = 10x10 at (0,0) and B = 10x10 at (20,20);
    # image 1 has C = 20x10 at (0,0). Class 0 detections, by score:
    #   d1 0.9 image 0: exactly A                                  -> TP (A matched)
    #   d2 0.8 image 1: 8x10 at (0,0), IoU with C = 80/200 = 0.4   -> FP (below 0.5)
    #   d3 0.7 image 0: exactly A again, A already matched         -> FP
    #   d4 0.6 image 0: 8x10 inside B, IoU = 80/100 = 0.8           -> TP
    #   d5 0.5 image 1: 12x10 at (0,0), IoU with C = 120/200 = 0.6 -> TP (C still unmatched)
    # 3 annotations. cumulative TP 1,1,1,2,3 and FP 0,1,2,2,2:
    #   recall    1/3, 1/3, 1/3, 2/3, 1
    #   precision 1,   1/2, 1/3, 1/2, 3/5
    # precision envelope (max to the right): 1, 3/5, 3/5, 3/5, 3/5 ; recall steps of 1/3 at
    # d1, d4, d5 -> AP = 1/3 * (1 + 3/5 + 3/5) = 11/15 = 0.7333...
    # Class 1: one detection, no annotations -> (0, 0). Class 2: one missed annotation -> (0, 1).
    shape = (40, 40)
    annotations = _two_image_ground_truth()
    detections = [
        {"scores": np.array([0.9, 0.7, 0.6, 0.95]), "labels": np.array([0, 0, 0, 1]),
         "masks": [rectangle(shape, 0, 0, 10, 10), rectangle(shape, 0, 0, 10, 10),
                   rectangle(shape, 22, 20, 30, 30), rectangle(shape, 0, 0, 5, 5)]},
        {"scores": np.array([0.5, 0.8]), "labels": np.array([0, 0]),
         "masks": encode_masks([rectangle(shape, 0, 0, 12, 10), rectangle(shape, 0, 0, 8, 10)])},
    ]
    result = compute_average_precisions(detections, annotations, num_classes=3, iou_threshold=0.5)
    assert result[0][0] == pytest.approx(11 / 15)
    assert result[0][1] == 3
    assert result[1] == (0.0, 0)
    assert result[2] == (0.0, 1)
    # unweighted mean over classes 0 and 2; weighted by 3 and 1 annotations
    assert mean_average_precision(result) == pytest.approx(11 / 30)
    assert mean_average_precision(result, weighted=True) == pytest.approx(11 / 20)
    # At IoU 0.3, d2 matches C (0.4) and d5 becomes a duplicate of C: hits d1..d5 = 1,1,0,1,0,
    # recall 1/3,2/3,2/3,1,1, precision 1,1,2/3,3/4,3/5, envelope 1,1,3/4,3/4,3/5
    # -> AP = 1/3 * 1 + 1/3 * 1 + 1/3 * 3/4 = 11/12.
    result = compute_average_precisions(detections, annotations, num_classes=3, iou_threshold=0.3)
    assert result[0][0] == pytest.approx(11 / 12)


def test_detect_selects_label_channel_and_drops_padding():
    """A model that is not a Predictor runs through one with the generator's transform: padding rows
    dropped, boxes back in picture pixels, each detection's own class channel pasted."""
    from pycocotools import mask as mask_utils

    from keras_maskrcnn.evaluation.records import detect

    generator = StubGenerator(shape_scenes())
    image = generator.load_image(0)
    boxes, scores, labels, rles = detect(generator, GroundTruthModel(generator), image)
    expected = generator.load_annotations(0)
    np.testing.assert_allclose(boxes, expected["bboxes"], atol=1e-4)
    np.testing.assert_array_equal(labels, expected["labels"])
    assert len(rles) == 2 and np.all(scores > 0)
    ious = mask_iou(rles, encode_masks(expected["masks"]))
    assert np.all(np.diag(ious) > 0.8) and all(mask_utils.area(rle) > 0 for rle in rles)


def _csv_generator(tmp_path, scenes):
    """A CSVGenerator over the scenes written to tmp_path, or the stub when it is not available."""
    try:
        from keras_maskrcnn.preprocessing.csv_generator import CSVGenerator
    except ImportError:
        return StubGenerator(scenes)
    annotations_csv, classes_csv = write_csv_dataset(str(tmp_path), scenes, StubGenerator.classes)
    return CSVGenerator(annotations_csv, classes_csv, image_min_side=90, image_max_side=140)


def test_evaluate_with_ground_truth_model(tmp_path):
    scenes = shape_scenes()
    generator = _csv_generator(tmp_path, scenes)
    result = evaluate(generator, GroundTruthModel(generator))
    assert result == {0: (pytest.approx(1.0), 4), 1: (pytest.approx(1.0), 3)}


def test_evaluate_with_shifted_and_empty_models(tmp_path):
    generator = _csv_generator(tmp_path, shape_scenes())

    def shift(boxes, masks):
        # move every detection 40 px right: no overlap with its ground truth
        moved = [np.pad(m, ((0, 0), (40, 0)))[:, :m.shape[1]] for m in masks]
        return boxes + [40, 0, 40, 0], moved

    result = evaluate(generator, GroundTruthModel(generator, transform=shift))
    assert result == {0: (0.0, 4), 1: (0.0, 3)}
    result = evaluate(generator, EmptyModel(generator.num_classes()))
    assert result == {0: (0.0, 4), 1: (0.0, 3)}


def test_collect_keeps_ground_truth_and_detections_as_rle():
    generator = StubGenerator(shape_scenes())
    records = collect(generator, GroundTruthModel(generator))
    assert len(records) == 3
    assert [len(r.gt_rles) for r in records] == [2, 2, 3]
    assert [len(r.rles) for r in records] == [2, 2, 3]
    assert records[2].gt_rles[0]["size"] == [50, 90] and records[2].rles[0]["size"] == [50, 90]
    assert (records[2].height, records[2].width) == (50, 90)
    assert [r.image_id for r in records] == [1, 2, 3]
    np.testing.assert_allclose(records[0].boxes, records[0].gt_boxes, atol=1e-4)
    assert np.all(np.diff(records[2].scores) <= 0)


def test_evaluate_raises_on_an_unreadable_image_or_leaves_it_out(tmp_path):
    from keras_maskrcnn.utils.image import UnreadableImageError

    scenes = shape_scenes()
    generator = _csv_generator(tmp_path, scenes)
    if isinstance(generator, StubGenerator):
        pytest.skip("needs the CSV generator")
    broken = tmp_path / "image1.png"
    broken.write_bytes(broken.read_bytes()[:100])
    with pytest.raises(UnreadableImageError, match=r"annotations.csv:\d+: image file '.*image1.png' could not be read"):
        evaluate(generator, EmptyModel(generator.num_classes()))
    generator.skip_bad_images = True
    with pytest.warns(UserWarning, match=r"evaluation leaves out an unreadable image: .*image1.png"):
        result = evaluate(generator, EmptyModel(generator.num_classes()))
    kept = [scenes[0][1]["labels"], scenes[2][1]["labels"]]
    assert result == {label: (0.0, sum(int((labels == label).sum()) for labels in kept)) for label in (0, 1)}
    assert list(generator.bad_images.messages()) == [str(broken)]


def test_utils_imports_nothing_above_it():
    """keras_maskrcnn/utils holds helpers every room uses; none of its modules imports another room."""
    import re
    from pathlib import Path

    import keras_maskrcnn.utils

    upward = re.compile(r"^\s*(from\s+\.\.|from\s+keras_maskrcnn\.(?!utils)|import\s+keras_maskrcnn\.(?!utils))", re.M)
    offenders = [path.name for path in Path(keras_maskrcnn.utils.__file__).parent.glob("*.py")
                 if not path.name.endswith("_test.py") and upward.search(path.read_text())]
    assert offenders == []
