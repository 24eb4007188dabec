import os
import warnings

import cv2
import numpy as np
import pytest

from keras_maskrcnn.preprocessing import anchor_coverage as ac
from keras_maskrcnn.preprocessing.csv_generator import CSVGenerator
from keras_maskrcnn.utils.anchors import AnchorParameters, anchor_targets_bbox, anchors_for_shape, compute_overlap
from keras_maskrcnn.utils.config import anchor_parameters_from_file

SMALL = AnchorParameters(sizes=(16, 32, 64, 128, 256), ratios=(0.5, 1, 2), scales=(1, 1.2, 1.6))


def random_boxes(rng, count, shape, low=3, high=200):
    rows, cols = shape
    w = rng.uniform(low, min(high, cols), count)
    h = w * np.exp(rng.normal(0, 0.6, count))
    h = np.clip(h, 2, rows)
    x1 = rng.uniform(0, cols - w)
    y1 = rng.uniform(0, rows - h)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1)


def inside_anchors(shape, params, pad=32):
    anchors = anchors_for_shape(ac.padded_shape(shape, pad), params)
    centres_x = (anchors[:, 0] + anchors[:, 2]) / 2
    centres_y = (anchors[:, 1] + anchors[:, 3]) / 2
    return anchors, (centres_x < shape[1]) & (centres_y < shape[0])


@pytest.mark.parametrize("params", [AnchorParameters.default, SMALL,
                                    AnchorParameters(sizes=(11, 30, 50, 120, 300), ratios=(0.4, 1.3, 3.7),
                                                     scales=(1, 1.9))])
def test_best_anchor_iou_equals_the_maximum_over_all_anchors(params):
    rng = np.random.default_rng(0)
    for shape in [(200, 301), (97, 64), (800, 1201)]:
        boxes = random_boxes(rng, 40, shape)
        anchors, inside = inside_anchors(shape, params)
        reference = compute_overlap(anchors[inside], boxes).max(axis=0)
        fast = ac.best_anchor_iou(boxes, np.tile(shape, (len(boxes), 1)), params)
        # the anchors are float32 in anchors_for_shape
        np.testing.assert_allclose(fast, reference, atol=2e-5)


def objects_of(images, pad=32):
    """DataObjects of [(shape, boxes)], boxes already in resized pixels."""
    boxes = np.concatenate([b for _, b in images])
    owners = np.concatenate([np.full(len(b), i) for i, (_, b) in enumerate(images)])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return ac.DataObjects(boxes, areas, np.zeros(len(boxes)), owners, [s for s, _ in images], range(len(images)),
                          pad_multiple=pad)


@pytest.mark.parametrize("params", [AnchorParameters.default, SMALL])
def test_covered_objects_is_training_assignment(params):
    """An object is covered exactly when anchor_targets_bbox gives it a positive anchor, with
    overlapping objects competing for anchors."""
    rng = np.random.default_rng(1)
    images = []
    for shape in [(128, 160), (224, 100), (300, 300), (64, 64)]:
        boxes = random_boxes(rng, 25, shape, low=4, high=120)
        boxes[5:10] = boxes[:5] + rng.uniform(-3, 3, (5, 4))  # near duplicates compete for anchors
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, shape[1])
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, shape[0])
        images.append((shape, boxes))
    objects = objects_of(images)
    covered = ac.covered_objects(objects, params)
    expected = []
    for shape, boxes in images:
        anchors = anchors_for_shape(ac.padded_shape(shape), params)
        _, classes = anchor_targets_bbox(anchors, [{"bboxes": boxes, "labels": np.arange(len(boxes))}], 1000, [shape])
        expected.append(np.isin(np.arange(len(boxes)), classes[0][classes[0] >= 0]))
    expected = np.concatenate(expected)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(covered, expected)


def test_groups_and_table():
    objects = objects_of([((400, 400), np.array([[0, 0, 10, 10], [0, 0, 40, 40], [0, 0, 100, 100],
                                                 [0, 0, 31.9, 32]]))])
    assert objects.groups().tolist() == ["small", "medium", "large", "small"]
    table = ac.coverage_by_group(objects, np.array([False, True, True, True]))
    assert table == {"small": (1, 2), "medium": (1, 1), "large": (1, 1), "all": (3, 4)}
    assert ac.format_coverage(table) == "75.0% of 4 objects (small 50.0% of 2, medium 100.0% of 1, large 100.0% of 1)"


def write_csv_set(folder, objects_per_image, size=64, extra_rows=()):
    """A CSV data set of rectangles: objects_per_image is a list of lists of (x1, y1, x2, y2, class)."""
    os.makedirs(folder / "masks", exist_ok=True)
    rows = []
    for index, objects in enumerate(objects_per_image):
        image = f"{index}.png"
        cv2.imwrite(str(folder / image), np.full((size, size, 3), 90, np.uint8))
        if not objects:
            rows.append(f"{image},,,,,,")
        for number, (x1, y1, x2, y2, name) in enumerate(objects):
            mask = np.zeros((size, size), np.uint8)
            mask[y1:y2, x1:x2] = 255
            cv2.imwrite(str(folder / "masks" / f"{index}_{number}.png"), mask)
            rows.append(f"{image},{x1},{y1},{x2},{y2},{name},masks/{index}_{number}.png")
    rows += list(extra_rows)
    (folder / "annotations.csv").write_text("\n".join(rows) + "\n")
    (folder / "classes.csv").write_text("a,0\nb,1\n")
    return str(folder / "annotations.csv"), str(folder / "classes.csv")


def test_collect_objects_resizes_like_training(tmp_path):
    annotations, classes = write_csv_set(tmp_path, [[(4, 4, 12, 20, "a"), (30, 30, 60, 50, "b")], []])
    generator = CSVGenerator(annotations, classes, image_min_side=128, image_max_side=128)
    objects = ac.collect_objects(generator)
    np.testing.assert_allclose(objects.boxes, [[8, 8, 24, 40], [60, 60, 120, 100]])
    np.testing.assert_allclose(objects.areas, [8 * 16 * 4, 30 * 20 * 4])
    assert objects.labels.tolist() == [0, 1]
    assert objects.image_shapes.tolist() == [[128, 128], [128, 128]]
    assert objects.negatives() == 1 and objects.problems == []
    # the generator's own sides unless given
    assert ac.collect_objects(generator, image_min_side=64, image_max_side=64).boxes[0].tolist() == [4, 4, 12, 20]


def test_problems_name_image_and_annotation(tmp_path):
    annotations, classes = write_csv_set(tmp_path, [[(4, 4, 12, 20, "a"), (4, 4, 12, 20, "a")]])
    # a mask that reaches far beyond the box it is given with
    mask = np.zeros((64, 64), np.uint8)
    mask[4:40, 4:40] = 255
    cv2.imwrite(str(tmp_path / "masks" / "0_1.png"), mask)
    generator = CSVGenerator(annotations, classes)
    objects = ac.collect_objects(generator)
    image = str(tmp_path / "0.png")
    assert f"{image}: annotation 1: mask reaches 28 px beyond its box [4.0, 4.0, 12.0, 20.0]" in objects.problems
    assert any(p.startswith(f"{image}: annotations 0 and 1: same class") for p in objects.problems)


def test_dropped_annotations_are_problems(tmp_path):
    annotations, classes = write_csv_set(tmp_path, [[(4, 4, 12, 20, "a")]])
    empty = np.zeros((64, 64), np.uint8)
    cv2.imwrite(str(tmp_path / "masks" / "0_0.png"), empty)
    generator = CSVGenerator(annotations, classes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        objects = ac.collect_objects(generator)
    assert len(objects) == 0
    assert any("annotation 0 dropped (mask empty inside its box)" in p for p in objects.problems)


def test_search_covers_small_objects_and_keeps_anchors_per_location():
    rng = np.random.default_rng(2)
    shapes, boxes = [], []
    for _ in range(30):
        for box in random_boxes(rng, 4, (256, 256), low=8, high=20):
            boxes.append(box)
            shapes.append((256, 256))
    boxes, shapes = np.array(boxes), np.array(shapes)
    before = (ac.best_anchor_iou(boxes, shapes) >= 0.5).mean()
    fitted, score = ac.search_anchors(boxes, shapes, generations=200)
    after = (ac.best_anchor_iou(boxes, shapes, fitted) >= 0.5).mean()
    assert before < 0.2 and after > 0.6 and after > before + 0.4
    assert fitted.num_anchors() == 9 and fitted.strides == AnchorParameters.default.strides
    assert min(fitted.sizes) < 20 and fitted.scales[0] == 1.0
    assert ac.search_anchors(boxes, shapes, generations=200) == (fitted, score)  # seeded
    fewer, _ = ac.search_anchors(boxes, shapes, num_ratios=1, num_scales=2, generations=50)
    assert (len(fewer.ratios), len(fewer.scales)) == (1, 2)
    with pytest.raises(ValueError, match="no objects"):
        ac.search_anchors(np.zeros((0, 4)), np.zeros((0, 2)))


def test_anchor_config_round_trip(tmp_path):
    params = AnchorParameters(sizes=(11.3, 34.4, 52.5, 117.8, 302.4), ratios=(0.403, 1.24, 3.73),
                              scales=(1.0, 1.92, 3.42))
    path = str(tmp_path / "sub" / "anchors.ini")
    ac.write_anchor_config(path, params, comment="fitted\nby a test")
    assert anchor_parameters_from_file(path) == params
    text = open(path).read()
    assert text.startswith("# fitted\n# by a test\n[anchor_parameters]\n")
    assert os.listdir(tmp_path / "sub") == ["anchors.ini"]


def test_coverage_line(tmp_path):
    annotations, classes = write_csv_set(tmp_path, [[(4, 4, 12, 20, "a"), (10, 10, 50, 50, "b")], []])
    generator = CSVGenerator(annotations, classes, image_min_side=64, image_max_side=64, anchor_params=SMALL)
    text, fraction = ac.coverage_line(generator)
    covered = ac.covered_objects(ac.collect_objects(generator), SMALL)
    assert fraction == covered.mean()
    assert text.startswith(f"anchor coverage: {100 * covered.mean():.1f}% of 2 objects (small ")
    assert text.endswith("get a positive anchor (IoU >= 0.5) at image sides 64/64")
    default_text, default_fraction = ac.coverage_line(generator, AnchorParameters.default, max_images=1)
    assert "(of 1 of the 2 images)" in default_text and default_fraction <= fraction
    assert ac.coverage_warning(0.95) is None
    assert ac.coverage_warning(0.5).startswith("maskrcnn-train: warning: only 50.0% of the objects")
