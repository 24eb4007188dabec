"""Drawing boxes, captions and instance masks on BGR uint8 images, in place (numpy and cv2).

`draw_instances` is the main entry: translucent masks with a contour, boxes and captions, with a
line width and a caption size that follow the picture's size and captions that always stay inside
the picture. The other functions are its parts and the older entry points.

Boxes are (x1, y1, x2, y2) float in image pixels. `draw_instances` and `draw_annotations` take
full-image (H, W) masks; `draw_detections` and `draw_mask` take the mask head's small (S, S) float
masks (S = 28), placed with sub-pixel accuracy by `keras_maskrcnn.utils.masks.paste_mask`.

Sizes: the line width is `line_width_for(shape)` = max(1, round(0.003 * (H + W) / 2)) pixels, that is
1 px up to about 500 px pictures, 2 px for 640 x 480, 3 px for 1333 x 800 and 10 px for 4000 x 3000:
thin enough not to hide small objects, thick enough to see on a screen that shows the whole
picture. Caption text is `CAPTION_FONT` at a scale of 0.35 per line width pixel, so its capital
letters are about 8 px high per line width pixel (8 px on a 96 px picture, about 80 px on a 4000 px one).
"""

import colorsys

import cv2
import numpy as np

from .masks import paste_mask

_GOLDEN_RATIO_CONJUGATE = 0.618033988749895
_MASK_ALPHA = 0.5
_BORDER_KERNEL = np.ones((3, 3), dtype=np.uint8)

LINE_WIDTH_PER_PIXEL = 0.003
"""Line width in pixels per pixel of the picture's mean side (rounded, at least 1)."""
CAPTION_FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE_PER_LINE_WIDTH = 0.35
"""cv2 font scale per pixel of line width: about 8 px of capital letter height per line width pixel."""
DEFAULT_ALPHA = 0.4


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


def line_width_for(shape):
    """The line width in pixels (int >= 1) for a picture of `shape` (H, W, ...).

    max(1, round(LINE_WIDTH_PER_PIXEL * (H + W) / 2)): 1 for 96 px, 2 for 640 x 480, 10 for
    4000 x 3000.
    """
    height, width = int(shape[0]), int(shape[1])
    return max(1, int(round(LINE_WIDTH_PER_PIXEL * (height + width) / 2.0)))


def _font(line_width):
    """(font scale, text thickness) for captions drawn next to lines of `line_width` pixels."""
    line_width = max(1, int(line_width))
    return FONT_SCALE_PER_LINE_WIDTH * line_width, max(1, int(round(line_width * 0.6)))


def _text_color(background):
    """Black or white, whichever reads better on the BGR `background` (by its luma)."""
    blue, green, red = (float(c) for c in background)
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)


def _box_corners(box):
    """Integer pixel corners (x1, y1, x2, y2) of a float box for cv2 drawing."""
    return tuple(int(round(float(v))) for v in np.asarray(box).reshape(-1)[:4])


def _check_image(image):
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        description = (f"a {image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                       else type(image).__name__)
        raise ValueError(f"expected a BGR uint8 image of shape (H, W, 3), got {description}")


def draw_box(image, box, color, thickness=2):
    """Draws a rectangle outline for `box` (x1, y1, x2, y2, ...) in `color` (BGR), in place.

    Each side is a band exactly `thickness` pixels wide centred on the box's edge (for an even
    width, one pixel more outside than inside); parts outside the picture are cut.
    """
    x1, y1, x2, y2 = _box_corners(box)
    thickness = max(1, int(thickness))
    color = tuple(int(c) for c in color)
    before, after = (thickness - 1) // 2, thickness // 2
    outer_left, outer_top, outer_right, outer_bottom = x1 - after, y1 - after, x2 + after, y2 + after
    inner_left, inner_top, inner_right, inner_bottom = x1 + before, y1 + before, x2 - before, y2 - before
    # four filled bands (pixel-exact, where cv2's thick lines come out a pixel or two wider)
    for left, top, right, bottom in ((outer_left, outer_top, outer_right, inner_top),
                                     (outer_left, inner_bottom, outer_right, outer_bottom),
                                     (outer_left, outer_top, inner_left, outer_bottom),
                                     (inner_right, outer_top, outer_right, outer_bottom)):
        cv2.rectangle(image, (left, top), (right, bottom), color, -1, cv2.LINE_8)


def draw_boxes(image, boxes, color, thickness=2):
    """Draws every box of a (N, 4+) array in the same colour."""
    for box in boxes:
        draw_box(image, box, color, thickness=thickness)


def caption_rectangle(image_shape, box, caption, line_width):
    """Where a caption goes: (left, top, right, bottom) int pixels of its filled label, bottom/right
    exclusive, and (x, y) of the text's baseline origin.

    The label sits on the box's top-left corner, above the box when there is room, else inside the
    box at its top (at the picture's top when the box starts above it); it moves left when it would
    run past the right edge and up when it would run past the bottom. Only a caption wider than the
    picture is cut (at the right edge).
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    scale, thickness = _font(line_width)
    (text_width, text_height), baseline = cv2.getTextSize(caption, CAPTION_FONT, scale, thickness)
    pad = max(1, int(round(line_width / 2)))
    label_width = text_width + 2 * pad
    label_height = text_height + baseline + 2 * pad
    x1, y1, _, _ = _box_corners(box)
    # flush with the outer side of the box line (see draw_box)
    above = y1 - line_width // 2 - label_height
    top = above if above >= 0 else max(y1, 0)
    top = max(0, min(top, height - label_height))
    left = max(0, min(x1 - line_width // 2, width - label_width))
    origin = (left + pad, top + pad + text_height)
    return (left, top, left + label_width, top + label_height), origin


def draw_caption(image, box, caption, color=(0, 0, 0), line_width=None):
    """Writes `caption` on a filled `color` (BGR) label at the top-left corner of `box`, in place.

    The text is white or black, whichever reads better on `color`. Placement: see
    `caption_rectangle`; the label is always inside the picture. line_width: the width of the
    box lines the caption belongs to, which sets the text size; default `line_width_for(image)`.
    """
    line_width = line_width_for(image.shape) if line_width is None else max(1, int(line_width))
    (left, top, right, bottom), origin = caption_rectangle(image.shape, box, caption, line_width)
    scale, thickness = _font(line_width)
    color = tuple(int(c) for c in color)
    cv2.rectangle(image, (left, top), (right - 1, bottom - 1), color, -1)
    cv2.putText(image, caption, origin, CAPTION_FONT, scale, _text_color(color), thickness, cv2.LINE_AA)


def draw_filled_mask(image, mask, color, alpha=DEFAULT_ALPHA, line_width=None):
    """Blends a full-image (H, W) mask into `image` in place and outlines it: returns nothing.

    Pixels where `mask` is non-zero become round((1 - alpha) * pixel + alpha * color); then every
    contour of the mask (outer and holes, cv2.findContours) is drawn in `color` with `line_width`
    (default: half of `line_width_for(image)`, at least 1); 0 draws no contour.
    """
    mask = np.asarray(mask)
    if mask.shape[:2] != image.shape[:2] or mask.ndim != 2:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape[:2]}")
    selected = mask.view(np.uint8) if mask.dtype == bool else (mask != 0).view(np.uint8)
    selected = np.ascontiguousarray(selected)
    left, top, crop_width, crop_height = cv2.boundingRect(selected)
    if crop_width == 0 or crop_height == 0:
        return
    crop = selected[top:top + crop_height, left:left + crop_width]
    region = image[top:top + crop_height, left:left + crop_width]
    # the blend of every possible pixel value, per channel, applied as a lookup table
    table = (1.0 - alpha) * np.arange(256.0)[:, None] + alpha * np.asarray(color, dtype=np.float64)[None, :]
    table = np.clip(np.round(table), 0, 255).astype(np.uint8).reshape(1, 256, 3)
    pixels = np.ascontiguousarray(region)
    cv2.copyTo(cv2.LUT(pixels, table), np.ascontiguousarray(crop), pixels)
    region[...] = pixels
    if line_width is None:
        line_width = max(1, line_width_for(image.shape) // 2)
    if line_width > 0:
        contours, _ = cv2.findContours(crop.copy(), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE,
                                       offset=(int(left), int(top)))
        cv2.drawContours(image, contours, -1, tuple(int(c) for c in color), int(line_width), cv2.LINE_AA)


def _names_function(names):
    """label -> caption name for `names` given as None, a callable, or a list / dict by label."""
    if names is None:
        return str
    if callable(names):
        return names

    def lookup(label):
        try:
            return str(names[label])
        except (IndexError, KeyError):
            return str(label)

    return lookup


def _caption_text(label, score, label_to_name):
    name = label_to_name(int(label)) if label_to_name else str(int(label))
    return str(name) if score is None else f"{name} {float(score):.2f}"


def draw_instances(image, boxes, labels, scores=None, masks=None, names=None, line_width=None,
                   hide_labels=False, hide_scores=False, alpha=DEFAULT_ALPHA, color=None):
    """Draws N instances on `image` in place and returns it: masks, then boxes, then captions.

    The drawing changes `image` itself (pass `image.copy()` to keep the original); the same array
    is returned. Each class has one fixed colour (`label_color`); a mask is a translucent fill
    with a contour, a box an outline, and a caption "name score" on a label in the class colour,
    always inside the picture (see `caption_rectangle`). Captions are drawn last, the highest
    score on top.

    Args:
        image: (H, W, 3) BGR uint8 array, as OpenCV reads it.
        boxes: (N, 4) x1, y1, x2, y2 in image pixels.
        labels: (N,) int class labels; rows with a negative label (padding) are skipped.
        scores: (N,) float, or None for no scores (ground truth).
        masks: None, or N full-image (H, W) bool / 0-1 masks: an (N, H, W) array or any sequence
            (a lazy one is read one mask at a time).
        names: label -> caption text: a callable, a list or a dict by label; None shows the label.
        line_width: box line width in pixels; default `line_width_for(image.shape)`. The caption
            size and the mask contour (half of it) follow it.
        hide_labels: draw no captions.
        hide_scores: captions without the score.
        alpha: opacity of the mask fill, in [0, 1].
        color: one BGR colour for every instance instead of the class colours.

    Returns:
        `image`, drawn on.
    """
    _check_image(image)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {labels.shape[0]} labels")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape[0] != boxes.shape[0]:
            raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    if masks is not None and len(masks) != boxes.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {len(masks)} masks")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    line_width = line_width_for(image.shape) if line_width is None else int(line_width)
    if line_width < 1:
        raise ValueError(f"line_width must be at least 1, got {line_width}")
    label_to_name = _names_function(names)
    order = np.flatnonzero(labels >= 0)
    if scores is not None:
        order = order[np.argsort(scores[order], kind="stable")]
    colors = {index: tuple(color) if color is not None else label_color(labels[index]) for index in order}
    if masks is not None:
        for index in order:
            draw_filled_mask(image, masks[index], colors[index], alpha=alpha,
                             line_width=max(1, line_width // 2))
    for index in order:
        draw_box(image, boxes[index], colors[index], thickness=line_width)
    if not hide_labels:
        for index in order:
            score = None if scores is None or hide_scores else scores[index]
            draw_caption(image, boxes[index], _caption_text(labels[index], score, label_to_name),
                         color=colors[index], line_width=line_width)
    return image


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


class _PastedMasks:
    """The full-image masks of (S, S) or (S, S, C) head masks, pasted one at a time on access."""

    def __init__(self, masks, boxes, labels, image_shape, threshold):
        self.masks, self.boxes, self.labels = masks, boxes, labels
        self.image_shape, self.threshold = image_shape, threshold

    def __len__(self):
        return len(self.masks)

    def __getitem__(self, index):
        mask = np.asarray(self.masks[index])
        if mask.ndim == 3:
            mask = mask[..., self.labels[index]]
        return paste_mask(mask, self.boxes[index], self.image_shape, threshold=self.threshold)


def draw_detections(image, boxes, scores, labels, masks=None, color=None, label_to_name=None,
                    score_threshold=0.5, binarize_threshold=0.5, line_width=None, hide_labels=False,
                    hide_scores=False, alpha=_MASK_ALPHA):
    """Draws detections whose score is at least `score_threshold` with `draw_instances`, in place.

    boxes (N, 4) float image pixels, scores (N,), labels (N,) int (rows with label < 0 are
    skipped). masks: (N, S, S) float for each detection's class, or (N, S, S, C) from which the
    detection's label channel is taken; they are pasted at `binarize_threshold`. None draws boxes
    only. color: BGR for all, default label_color per label. label_to_name: label -> str for
    captions. line_width, hide_labels, hide_scores, alpha: as for `draw_instances`.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    selection = np.where((scores >= score_threshold) & (labels >= 0))[0]
    pasted = None
    if masks is not None:
        masks = np.asarray(masks)
        pasted = _PastedMasks(masks[selection], boxes[selection], labels[selection], image.shape[:2],
                              binarize_threshold)
    return draw_instances(image, boxes[selection], labels[selection], scores=scores[selection], masks=pasted,
                          names=label_to_name, line_width=line_width, hide_labels=hide_labels,
                          hide_scores=hide_scores, alpha=alpha, color=color)


def draw_annotations(image, annotations, color=(0, 255, 0), label_to_name=None, line_width=None,
                     hide_labels=False, alpha=_MASK_ALPHA):
    """Draws ground truth with `draw_instances` in place: full-image masks, boxes and class captions.

    annotations: dict with 'bboxes' (N, 4) float image pixels, 'labels' (N,) int and optionally
    'masks' (a list of N, or an (N, H, W) array of, full-image 0/1 masks of the image's size).
    color: BGR for all, or None for label_color per label. line_width, hide_labels, alpha: as for
    `draw_instances`.
    """
    boxes = np.asarray(annotations["bboxes"], dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(annotations["labels"]).reshape(-1).astype(np.int64)
    if boxes.shape[0] != labels.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {labels.shape[0]} labels in annotations")
    masks = annotations.get("masks")
    if masks is not None and len(masks) != labels.shape[0]:
        raise ValueError(f"{len(masks)} masks but {labels.shape[0]} labels in annotations")
    return draw_instances(image, boxes, labels, masks=masks, names=label_to_name, line_width=line_width,
                          hide_labels=hide_labels, alpha=alpha, color=color)
