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


# draw_instances: sizes that follow the picture, captions inside the picture, translucent masks

from keras_maskrcnn.utils.visualization import caption_rectangle, draw_filled_mask, draw_instances, line_width_for

SIZES = [(96, 96), (480, 640), (3000, 4000)]


def _edge_boxes(height, width):
    """Boxes touching each edge and corner of a picture, one in the middle and one larger than it."""
    h, w = height, width
    return {
        "middle": [w * 0.4, h * 0.4, w * 0.6, h * 0.6],
        "top": [w * 0.4, 0, w * 0.6, h * 0.3],
        "left": [0, h * 0.4, w * 0.3, h * 0.6],
        "right": [w * 0.7, h * 0.4, w, h * 0.6],
        "bottom": [w * 0.4, h * 0.7, w * 0.6, h],
        "top_left": [0, 0, w * 0.2, h * 0.2],
        "top_right": [w * 0.9, 0, w, h * 0.1],
        "bottom_right": [w * 0.95, h * 0.95, w, h],
        "outside": [-w * 0.1, -h * 0.1, w * 1.1, h * 1.1],
    }


def test_line_width_and_caption_size_grow_with_the_picture():
    assert [line_width_for(size) for size in SIZES] == [1, 2, 10]
    widths = [line_width_for((side, side)) for side in range(32, 8001, 97)]
    assert widths == sorted(widths)
    heights = []
    for size in SIZES:
        (left, top, right, bottom), _ = caption_rectangle(size, [10, 50, 20, 60], "person 0.99", line_width_for(size))
        heights.append(bottom - top)
    assert heights == sorted(heights) and heights[0] <= 14 and heights[-1] >= 80
    # the caption of a 96 px picture fits a third of its height; a 4000 px one's is at least 2 % of it
    assert heights[0] <= 96 / 3 and heights[-1] >= 0.02 * 3000


@pytest.mark.parametrize("size", SIZES)
def test_captions_stay_inside_the_picture_for_boxes_at_every_edge(size):
    height, width = size
    line_width = line_width_for(size)
    for where, box in _edge_boxes(height, width).items():
        image = np.zeros((height, width, 3), dtype=np.uint8)
        draw_caption(image, box, "person 0.99", color=(0, 0, 255))
        rows, cols = np.nonzero(image.any(axis=2))
        (left, top, right, bottom), _ = caption_rectangle(size, box, "person 0.99", line_width)
        # the drawn pixels are the whole label and nothing else, and the label is inside the picture
        assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (top, bottom, left, right), where
        assert 0 <= top < bottom <= height and 0 <= left < right <= width, where
        x1, y1 = max(box[0], 0), max(box[1], 0)
        if where in ("middle", "left", "right", "bottom", "bottom_right"):
            assert bottom <= y1, f"{where}: the caption goes above the box when there is room"
        else:
            assert top == 0 and top >= y1 - 1, f"{where}: inside the box at its top"
        at_x1 = max(int(round(x1)) - line_width // 2, 0)
        if where in ("top_right", "bottom_right"):
            assert right == width and left < x1, f"{where}: shifted left to end at the right edge"
        elif where == "right":
            assert left == at_x1 or (right == width and left < x1), where
        else:
            assert left == at_x1, where


def test_a_caption_wider_than_the_picture_is_cut_at_the_right_edge_only():
    image = np.zeros((96, 96, 3), dtype=np.uint8)
    caption = "a very long class name that cannot fit 0.99"
    (left, top, right, bottom), _ = caption_rectangle(image.shape, [40, 40, 60, 60], caption, 1)
    assert left == 0 and right > 96
    draw_caption(image, [40, 40, 60, 60], caption, color=(0, 0, 255))
    rows, cols = np.nonzero(image.any(axis=2))
    assert cols.min() == 0 and cols.max() == 95 and rows.min() == top and rows.max() + 1 == bottom


def test_hide_labels_draws_nothing_outside_the_boxes_and_hide_scores_shortens_captions():
    height, width = 480, 640
    boxes = np.array([[100, 100, 200, 200], [300, 150, 500, 400], [0, 0, 80, 60]], dtype=float)
    labels = np.array([0, 1, 2])
    scores = np.array([0.9, 0.8, 0.7])
    line_width = line_width_for((height, width))

    def drawn(**options):
        image = np.zeros((height, width, 3), dtype=np.uint8)
        draw_instances(image, boxes, labels, scores, **options)
        return image.any(axis=2)

    inside = np.zeros((height, width), dtype=bool)
    margin = line_width // 2 + 1
    for x1, y1, x2, y2 in boxes.astype(int):
        inside[max(y1 - margin, 0):y2 + margin + 1, max(x1 - margin, 0):x2 + margin + 1] = True
    hidden = drawn(hide_labels=True)
    assert hidden.any() and not (hidden & ~inside).any()
    shown = drawn()
    assert (shown & ~inside).any()  # captions above the boxes
    assert (drawn(hide_scores=True) & ~inside).sum() < (shown & ~inside).sum()
    # a given line width is used for the boxes: 5 px outlines
    thick = drawn(line_width=5, hide_labels=True)
    assert thick[150, 98:103].all() and not thick[150, 97] and not thick[150, 103]
    thick = drawn(line_width=4, hide_labels=True)
    assert thick[150, 98:102].all() and not thick[150, 97] and not thick[150, 102]


def test_masks_are_a_translucent_fill_with_a_contour_in_the_class_colour():
    image = np.full((96, 96, 3), (10, 200, 60), dtype=np.uint8)
    original = image.copy()
    masks = np.zeros((1, 96, 96), dtype=bool)
    masks[0, 30:70, 20:60] = True
    result = draw_instances(image, [[20, 30, 60, 70]], [3], [0.9], masks, hide_labels=True, alpha=0.3)
    assert result is image  # in place
    color = np.array(label_color(3), dtype=np.float64)
    expected = np.round(0.7 * original[50, 40] + 0.3 * color).astype(np.uint8)
    assert np.array_equal(image[50, 40], expected)
    assert np.array_equal(image[35:65, 25:55], np.broadcast_to(expected, (30, 30, 3)))
    # the contour runs on the mask's edge in the class colour; outside the box nothing changes
    assert np.array_equal(image[50, 20], color.astype(np.uint8))
    assert np.array_equal(image[:25], original[:25]) and np.array_equal(image[:, 65:], original[:, 65:])
    # alpha 0 leaves the inside alone, alpha 1 paints it
    for alpha, inside in ((0.0, original[50, 40]), (1.0, color.astype(np.uint8))):
        image = original.copy()
        draw_filled_mask(image, masks[0], label_color(3), alpha=alpha)
        assert np.array_equal(image[50, 40], inside)


def test_one_fixed_colour_per_class_and_names_as_list_callable_or_dict():
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    boxes = [[20, 50, 80, 120], [150, 50, 250, 120], [100, 150, 140, 190]]
    draw_instances(image, boxes, [1, 1, 4], [0.9, 0.8, 0.7], hide_labels=True)
    assert tuple(image[80, 20]) == tuple(image[80, 150]) == label_color(1)
    assert tuple(image[170, 100]) == label_color(4)
    captions = []
    for names in (["zero", "one"], lambda label: ["zero", "one"][label], {1: "one"}):
        image = np.zeros((200, 300, 3), dtype=np.uint8)
        draw_instances(image, boxes[:1], [1], names=names)
        captions.append(image)
    assert np.array_equal(captions[0], captions[1]) and np.array_equal(captions[0], captions[2])
    # a label without a name shows its number
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    draw_instances(image, boxes[:1], [7], names=["zero"], color=(0, 255, 0))
    assert image.any()


def test_draw_instances_rejects_bad_input():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="BGR uint8"):
        draw_instances(np.zeros((64, 64), dtype=np.uint8), [[0, 0, 5, 5]], [0])
    with pytest.raises(ValueError, match="BGR uint8"):
        draw_instances(image.astype(np.float32), [[0, 0, 5, 5]], [0])
    with pytest.raises(ValueError, match="1 boxes but 2 labels"):
        draw_instances(image, [[0, 0, 5, 5]], [0, 1])
    with pytest.raises(ValueError, match="mask shape"):
        draw_instances(image, [[0, 0, 5, 5]], [0], masks=np.ones((1, 32, 32), bool))
    with pytest.raises(ValueError, match="alpha"):
        draw_instances(image, [[0, 0, 5, 5]], [0], alpha=1.5)
    # nothing to draw is fine
    assert draw_instances(image, np.zeros((0, 4)), [], masks=np.zeros((0, 64, 64), bool)) is image
