"""Drawing boxes, captions and instance masks on BGR uint8 images, in place (numpy and cv2).

Boxes are (x1, y1, x2, y2) float in image pixels. Predicted masks are small (S, S) float arrays
for their box (S = 28 for the mask head); they are placed with sub-pixel accuracy by
`keras_maskrcnn.utils.masks.paste_mask`. Annotation masks are full-image (H, W) 0/1 arrays.
"""

import colorsys

import cv2
import numpy as np

from .masks import paste_mask

_GOLDEN_RATIO_CONJUGATE = 0.618033988749895
_MASK_ALPHA = 0.5
_BORDER_KERNEL = np.ones((3, 3), dtype=np.uint8)


def label_color(label):
    """A distinct, stable BGR colour for a class label (int >= 0): a tuple of three ints 0..255.

    Hues step around the colour wheel by the golden ratio, so neighbouring labels differ
    strongly; saturation and value cycle slowly so that labels far apart stay distinguishable.
    Negative labels (padding) get grey.
    """
    label = int(label)
    if label < 0:
        return (128, 128, 128)
    hue = (label * _GOLDEN_RATIO_CONJUGATE) % 1.0
    saturation = (0.95, 0.75, 0.55)[(label // 7) % 3]
    value = (0.95, 0.8)[(label // 21) % 2]
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return (int(round(blue * 255)), int(round(green * 255)), int(round(red * 255)))


def _box_corners(box):
    """Integer pixel corners (x1, y1, x2, y2) of a float box for cv2 drawing."""
    return tuple(int(round(float(v))) for v in np.asarray(box).reshape(-1)[:4])


def draw_box(image, box, color, thickness=2):
    """Draws a rectangle outline for `box` (x1, y1, x2, y2, ...) in `color` (BGR)."""
    x1, y1, x2, y2 = _box_corners(box)
    cv2.rectangle(image, (x1, y1), (x2, y2), tuple(int(c) for c in color), thickness, cv2.LINE_AA)


def draw_boxes(image, boxes, color, thickness=2):
    """Draws every box of a (N, 4+) array in the same colour."""
    for box in boxes:
        draw_box(image, box, color, thickness=thickness)


def draw_caption(image, box, caption, color=(0, 0, 0)):
    """Writes `caption` at the top-left corner of `box`: white text on a filled `color` label.

    The label sits just above the box, or just inside it when the box touches the image top.
    """
    x1, y1, _, _ = _box_corners(box)
    font, scale = cv2.FONT_HERSHEY_PLAIN, 1.0
    (text_width, text_height), baseline = cv2.getTextSize(caption, font, scale, 1)
    label_height = text_height + baseline + 2
    top = y1 - label_height if y1 - label_height >= 0 else y1
    left = max(x1, 0)
    cv2.rectangle(image, (left, top), (left + text_width + 2, top + label_height - 1),
                  tuple(int(c) for c in color), -1)
    cv2.putText(image, caption, (left + 1, top + text_height + 1), font, scale, (255, 255, 255), 1,
                cv2.LINE_AA)


def _overlay_mask(image, mask, color, border=True):
    """Blends a full-image (H, W) 0/1 mask into `image` at 0.5 alpha; opaque 1-pixel contour.

    Only pixels where the mask is set change (the contour is the mask's own outer ring).
    """
    mask = np.asarray(mask)
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape[:2]}")
    mask = (mask != 0).astype(np.uint8)
    selected = mask.astype(bool)
    if not selected.any():
        return
    color = np.asarray(color, dtype=np.float32)
    blended = (1.0 - _MASK_ALPHA) * image[selected].astype(np.float32) + _MASK_ALPHA * color
    image[selected] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    if border:
        inner = cv2.erode(mask, _BORDER_KERNEL, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        ring = selected & (inner == 0)
        image[ring] = color.astype(np.uint8)


def draw_mask(image, box, mask, color=None, binarize_threshold=0.5, border=True):
    """Draws a predicted mask of a box.

    image: (H, W, 3) BGR uint8, changed in place. box: (x1, y1, x2, y2[, label]) float in image
    pixels. mask: (S, S) float in [0, 1] for that box; it is pasted with sub-pixel placement,
    thresholded at `binarize_threshold`, blended at 0.5 alpha and outlined. color: BGR; default
    label_color(box[4]) when a label is given, else green.
    """
    box = np.asarray(box, dtype=np.float64).reshape(-1)
    if color is None:
        color = label_color(int(box[4])) if box.size > 4 else (0, 255, 0)
    full = paste_mask(mask, box[:4], image.shape[:2], threshold=binarize_threshold)
    _overlay_mask(image, full, color, border=border)


def draw_masks(image, boxes, masks, color=None, labels=None, binarize_threshold=0.5, border=True):
    """Draws N predicted masks: boxes (N, 4), masks (N, S, S) float, labels (N,) optional.

    Colours: `color` if given, else label_color of each label, else green.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for index, box in enumerate(boxes):
        mask_color = color
        if mask_color is None:
            mask_color = label_color(labels[index]) if labels is not None else (0, 255, 0)
        draw_mask(image, box, masks[index], color=mask_color,
                  binarize_threshold=binarize_threshold, border=border)


def _darker(color):
    """The colour at 60 % brightness, so that white caption text stays readable on it."""
    return tuple(int(c * 0.6) for c in color)


def _caption_text(label, score, label_to_name):
    name = label_to_name(int(label)) if label_to_name else str(int(label))
    return name if score is None else f"{name}: {float(score):.2f}"


def draw_detections(image, boxes, scores, labels, masks=None, color=None, label_to_name=None,
                    score_threshold=0.5, binarize_threshold=0.5):
    """Draws detections whose score is at least `score_threshold`: mask, box and caption.

    boxes (N, 4) float image pixels, scores (N,), labels (N,) int (rows with label < 0 are
    skipped). masks: (N, S, S) float for each detection's class, or (N, S, S, C) from which the
    detection's label channel is taken; None draws boxes only. color: BGR for all, default
    label_color per label. label_to_name: label -> str for captions.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if masks is not None:
        masks = np.asarray(masks)
    selection = np.where((scores >= score_threshold) & (labels >= 0))[0]
    for index in selection:
        detection_color = color if color is not None else label_color(labels[index])
        if masks is not None:
            mask = masks[index]
            if mask.ndim == 3:
                mask = mask[..., labels[index]]
            draw_mask(image, boxes[index], mask, color=detection_color,
                      binarize_threshold=binarize_threshold)
        draw_box(image, boxes[index], detection_color)
        draw_caption(image, boxes[index], _caption_text(labels[index], scores[index], label_to_name),
                     color=_darker(detection_color))


def draw_annotations(image, annotations, color=(0, 255, 0), label_to_name=None):
    """Draws ground truth: full-image masks, boxes and class captions.

    annotations: dict with 'bboxes' (N, 4) float image pixels, 'labels' (N,) int and optionally
    'masks' (a list of N, or an (N, H, W) array of, full-image 0/1 masks of the image's size).
    color: BGR for all, or None for label_color per label.
    """
    boxes = np.asarray(annotations["bboxes"], dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(annotations["labels"]).reshape(-1).astype(np.int64)
    if boxes.shape[0] != labels.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {labels.shape[0]} labels in annotations")
    masks = annotations.get("masks")
    if masks is not None and len(masks) != labels.shape[0]:
        raise ValueError(f"{len(masks)} masks but {labels.shape[0]} labels in annotations")
    for index in range(labels.shape[0]):
        annotation_color = color if color is not None else label_color(labels[index])
        if masks is not None:
            _overlay_mask(image, masks[index], annotation_color)
        draw_box(image, boxes[index], annotation_color)
        draw_caption(image, boxes[index], _caption_text(labels[index], None, label_to_name),
                     color=_darker(annotation_color))
