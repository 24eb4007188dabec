import numpy as np
import pytest

from keras_maskrcnn.utils.visualization import (
    draw_annotations, draw_box, draw_caption, draw_detections, draw_mask, draw_masks, label_color)


def _canvas(height=120, width=160):
    return np.full((height, width, 3), 100, dtype=np.uint8)


def _changed(before, after):
    return np.any(before != after, axis=2)


def test_label_color_is_stable_and_distinct():
    colors = [label_color(label) for label in range(80)]
    assert colors == [label_color(label) for label in range(80)]
    assert len(set(colors)) == 80
    for color in colors:
        assert len(color) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in color)
    # consecutive labels are far apart in colour
    for a, b in zip(colors, colors[1:]):
        assert np.abs(np.subtract(a, b)).sum() > 100
    assert label_color(-1) == (128, 128, 128)


def test_draw_mask_changes_only_pixels_inside_the_box():
    image = _canvas()
    before = image.copy()
    mask = np.zeros((28, 28), dtype=np.float32)
    mask[7:21, 7:21] = 1.0
    box = np.array([30.3, 20.6, 90.2, 80.9])
    draw_mask(image, box, mask, color=(0, 0, 255))
    changed = _changed(before, image)
    assert changed.any()
    rows, cols = np.nonzero(changed)
    # the mask covers the middle half of the box: x 45.3..75.2, y 35.7..65.8
    assert cols.min() >= 45 and cols.max() <= 75 and rows.min() >= 35 and rows.max() <= 66
    # inside: blended at 0.5 alpha; border ring: the colour itself
    assert tuple(image[50, 60]) == (50, 50, 178)
    assert tuple(image[rows.min(), 60]) == (0, 0, 255)


def test_draw_mask_default_colour_from_label_and_no_border():
    image = _canvas()
    mask = np.ones((28, 28), dtype=np.float32)
    draw_mask(image, [10, 10, 30, 30, 3], mask, border=False)
    expected = np.round(0.5 * 100 + 0.5 * np.array(label_color(3))).astype(np.uint8)
    assert np.all(image[10:30, 10:30] == expected)
    assert np.all(image[:10] == 100) and np.all(image[30:] == 100)


def test_draw_mask_below_threshold_draws_nothing():
    image = _canvas()
    draw_mask(image, [10, 10, 60, 60], np.full((28, 28), 0.4, np.float32))
    assert np.all(image == 100)


def test_draw_masks_uses_label_colours():
    image = _canvas()
    masks = np.ones((2, 28, 28), dtype=np.float32)
    draw_masks(image, np.array([[0, 0, 20, 20], [100, 60, 140, 100]]), masks, labels=[0, 5],
               border=False)
    assert tuple(image[10, 10]) == tuple(np.round(0.5 * 100 + 0.5 * np.array(label_color(0))).astype(int))
    assert tuple(image[80, 120]) == tuple(np.round(0.5 * 100 + 0.5 * np.array(label_color(5))).astype(int))


def test_draw_box_and_caption_stay_near_the_box():
    image = _canvas()
    before = image.copy()
    draw_box(image, [40, 50, 100, 90], (0, 255, 0))
    draw_caption(image, [40, 50, 100, 90], "box")
    rows, cols = np.nonzero(_changed(before, image))
    assert rows.min() >= 50 - 24 and rows.max() <= 92
    assert cols.min() >= 38 and cols.max() <= 102
    # interior of the box away from the caption stays untouched
    assert np.all(image[60:88, 43:97] == 100)


def test_draw_detections_respects_threshold_padding_and_class_channel():
    image = _canvas()
    before = image.copy()
    boxes = np.array([[10, 30, 50, 70], [100, 30, 140, 70], [60, 80, 90, 110]], dtype=np.float32)
    scores = np.array([0.9, 0.3, 0.95])
    labels = np.array([1, 0, -1])
    masks = np.zeros((3, 28, 28, 2), dtype=np.float32)
    masks[0, :, :, 1] = 1.0
    masks[1, :, :, 0] = 1.0
    masks[2] = 1.0
    draw_detections(image, boxes, scores, labels, masks=masks, label_to_name=lambda l: f"c{l}",
                    score_threshold=0.5)
    changed = _changed(before, image)
    # only the first detection (score 0.9, label 1) is drawn
    assert not changed[:, 95:].any()
    assert not changed[75:, 55:].any()
    expected = np.round(0.5 * 100 + 0.5 * np.array(label_color(1))).astype(np.uint8)
    assert tuple(image[50, 30]) == tuple(expected)


def test_draw_detections_without_masks_and_fixed_colour():
    image = _canvas()
    draw_detections(image, [[20, 20, 60, 60]], [0.8], [2], color=(255, 0, 0))
    assert tuple(image[40, 20]) == (255, 0, 0)
    assert np.all(image[30:50, 30:50] == 100)


def test_draw_annotations_full_size_masks():
    image = _canvas()
    before = image.copy()
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    mask[60:90, 70:110] = 1
    annotations = {"bboxes": np.array([[70.0, 60.0, 110.0, 90.0]]), "labels": np.array([0]),
                   "masks": [mask]}
    draw_annotations(image, annotations, label_to_name=lambda l: "square")
    changed = _changed(before, image)
    rows, cols = np.nonzero(changed)
    assert rows.min() >= 60 - 24 and rows.max() <= 92 and cols.min() >= 68
    # below the caption band (the caption may be wider than the box) only the box area changes
    rows, cols = np.nonzero(changed[60:])
    assert cols.min() >= 68 and cols.max() <= 112
    assert tuple(image[75, 90]) == (50, 178, 50)
    with pytest.raises(ValueError, match="mask shape"):
        draw_annotations(image, {"bboxes": annotations["bboxes"], "labels": annotations["labels"],
                                 "masks": [np.ones((5, 5), np.uint8)]})


def test_draw_annotations_without_masks_uses_label_colours_when_color_none():
    image = _canvas()
    draw_annotations(image, {"bboxes": [[20, 40, 60, 80]], "labels": [4]}, color=None)
    assert tuple(image[60, 20]) == label_color(4)
