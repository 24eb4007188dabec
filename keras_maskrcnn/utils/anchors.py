"""Anchor generation and anchor targets, in numpy.

Conventions (shared with the `Anchors` and `RegressBoxes` layers):
- boxes are (x1, y1, x2, y2) in input-image pixels, continuous coordinates (no "+1");
- anchors of a level are ordered by position (row-major over the feature map), then by
  ratio, then by scale; levels are concatenated from P3 to P7;
- a feature map of stride s covers an image of height H with ceil(H / s) rows, and the
  anchor centre of cell (i, j) is ((j + 0.5) * s, (i + 0.5) * s).
"""

import numpy as np


class AnchorParameters:
    """Sizes, strides, ratios (height / width) and scales of the anchors per pyramid level."""

    def __init__(self, sizes=(32, 64, 128, 256, 512), strides=(8, 16, 32, 64, 128),
                 ratios=(0.5, 1.0, 2.0), scales=(2.0 ** 0, 2.0 ** (1.0 / 3.0), 2.0 ** (2.0 / 3.0))):
        if len(sizes) != len(strides):
            raise ValueError(f"anchor sizes {list(sizes)} and strides {list(strides)} differ in length")
        self.sizes = [float(s) for s in sizes]
        self.strides = [int(s) for s in strides]
        self.ratios = np.asarray(ratios, dtype=np.float64)
        self.scales = np.asarray(scales, dtype=np.float64)

    def num_anchors(self):
        """Anchors per feature-map position."""
        return len(self.ratios) * len(self.scales)

    def get_config(self):
        return {
            "sizes": list(self.sizes),
            "strides": list(self.strides),
            "ratios": [float(r) for r in self.ratios],
            "scales": [float(s) for s in self.scales],
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, AnchorParameters) and self.get_config() == other.get_config()

    def __repr__(self):
        return f"AnchorParameters({self.get_config()})"


AnchorParameters.default = AnchorParameters()


def generate_anchors(base_size=16, ratios=None, scales=None):
    """Anchors (R*S, 4) centred on (0, 0): ratio-major, scale-minor; area (base_size*scale)^2."""
    ratios = AnchorParameters.default.ratios if ratios is None else np.asarray(ratios, dtype=np.float64)
    scales = AnchorParameters.default.scales if scales is None else np.asarray(scales, dtype=np.float64)
    side = base_size * np.tile(scales, len(ratios))
    ratio = np.repeat(ratios, len(scales))
    widths = side / np.sqrt(ratio)
    heights = widths * ratio
    return np.stack([-widths / 2, -heights / 2, widths / 2, heights / 2], axis=1)


def shift(shape, stride, anchors):
    """Places `anchors` (A, 4) at every cell of a feature map of `shape` (rows, cols): (rows*cols*A, 4)."""
    shift_x = (np.arange(shape[1], dtype=np.float64) + 0.5) * stride
    shift_y = (np.arange(shape[0], dtype=np.float64) + 0.5) * stride
    shift_x, shift_y = np.meshgrid(shift_x, shift_y)
    shifts = np.stack([shift_x.ravel(), shift_y.ravel(), shift_x.ravel(), shift_y.ravel()], axis=1)
    return (shifts[:, None, :] + anchors[None, :, :]).reshape(-1, 4)


def feature_shapes(image_shape, strides):
    """Feature-map (rows, cols) per stride for an image of `image_shape` (H, W, ...): ceil division."""
    h, w = int(image_shape[0]), int(image_shape[1])
    return [(-(-h // s), -(-w // s)) for s in strides]


def anchors_for_shape(image_shape, anchor_params=None):
    """All anchors (A, 4) float32 for an image of `image_shape`, levels P3..P7 concatenated."""
    anchor_params = anchor_params or AnchorParameters.default
    shapes = feature_shapes(image_shape, anchor_params.strides)
    all_anchors = [
        shift(shape, stride, generate_anchors(size, anchor_params.ratios, anchor_params.scales))
        for shape, stride, size in zip(shapes, anchor_params.strides, anchor_params.sizes)
    ]
    return np.concatenate(all_anchors, axis=0).astype(np.float32)


def _intersection(boxes, query_boxes):
    """Intersection areas (N, K) of boxes (N, 4) and query_boxes (K, 4), float64."""
    iw = np.minimum(boxes[:, None, 2], query_boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], query_boxes[None, :, 0])
    ih = np.minimum(boxes[:, None, 3], query_boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], query_boxes[None, :, 1])
    return np.clip(iw, 0, None) * np.clip(ih, 0, None)


def _area(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def compute_overlap(boxes, query_boxes):
    """IoU matrix (N, K) between boxes (N, 4) and query_boxes (K, 4)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    query_boxes = np.asarray(query_boxes, dtype=np.float64)
    inter = _intersection(boxes, query_boxes)
    union = _area(boxes)[:, None] + _area(query_boxes)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def compute_ioa(anchors, regions):
    """Intersection over anchor area (N, K): how much of each anchor lies inside each region."""
    anchors = np.asarray(anchors, dtype=np.float64)
    regions = np.asarray(regions, dtype=np.float64)
    return _intersection(anchors, regions) / np.maximum(_area(anchors)[:, None], 1e-12)


def bbox_transform(anchors, gt_boxes, mean=0.0, std=0.2):
    """Regression targets (N, 4): corner offsets over anchor width/height, normalised by mean/std."""
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    scale = np.stack([widths, heights, widths, heights], axis=1)
    targets = (gt_boxes - anchors) / scale
    return ((targets - mean) / std).astype(np.float32)


def compute_gt_annotations(anchors, gt_boxes, negative_overlap=0.4, positive_overlap=0.5):
    """Assigns each anchor its best ground-truth box.

    Returns (positive (N,) bool, ignore (N,) bool, argmax (N,) int): positive where the best IoU
    is >= positive_overlap, ignored where it lies in (negative_overlap, positive_overlap).
    """
    overlaps = compute_overlap(anchors, gt_boxes)
    argmax = overlaps.argmax(axis=1)
    best = overlaps[np.arange(overlaps.shape[0]), argmax]
    positive = best >= positive_overlap
    ignore = (best > negative_overlap) & ~positive
    return positive, ignore, argmax


# Values of the compact classification target besides class indices (see anchor_targets_bbox).
BACKGROUND = -1
IGNORE = -2


def class_target_dtype(num_classes):
    """The smallest signed integer dtype holding class indices 0..num_classes-1, -1 and -2."""
    for dtype in (np.int8, np.int16, np.int32):
        if num_classes <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f"{num_classes} classes do not fit an int32 class target")


def anchor_targets_bbox(anchors, annotations_group, num_classes, image_shapes,
                        negative_overlap=0.4, positive_overlap=0.5, ignore_overlap=0.5,
                        mean=0.0, std=0.2):
    """Compact targets of the regression and classification outputs for a batch.

    anchors: (N, 4) for the padded batch shape. annotations_group: one dict per image with
    'bboxes' (K, 4) and 'labels' (K,), optionally 'ignore_bboxes' (J, 4) (crowd regions: an
    anchor with more than `ignore_overlap` of its area inside one is ignored unless positive).
    image_shapes: the (H, W) of each image before batch padding; anchors centred outside are ignored.

    Returns
        regression (B, N, 4) float32: the deltas of positive anchors, NaN for every other anchor;
        classification (B, N) int8 (int16, int32 for more classes): the class index of a
        positive anchor, BACKGROUND (-1) for a negative one, IGNORE (-2) for an ignored one.
    The losses expand the classes to one-hot; `dense_targets` gives the expanded layout.
    """
    batch_size = len(annotations_group)
    regression = np.full((batch_size, anchors.shape[0], 4), np.nan, dtype=np.float32)
    classification = np.full((batch_size, anchors.shape[0]), BACKGROUND, dtype=class_target_dtype(num_classes))
    centres_x = (anchors[:, 0] + anchors[:, 2]) / 2
    centres_y = (anchors[:, 1] + anchors[:, 3]) / 2

    for index, (annotations, image_shape) in enumerate(zip(annotations_group, image_shapes)):
        bboxes = np.asarray(annotations["bboxes"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(annotations["labels"]).reshape(-1).astype(np.int64)
        classes = classification[index]
        positive = np.zeros(anchors.shape[0], dtype=bool)
        if bboxes.shape[0]:
            positive, ignore, argmax = compute_gt_annotations(anchors, bboxes, negative_overlap, positive_overlap)
            classes[ignore] = IGNORE
        ignore_boxes = np.asarray(annotations.get("ignore_bboxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
        if ignore_boxes.shape[0]:
            classes[compute_ioa(anchors, ignore_boxes).max(axis=1) > ignore_overlap] = IGNORE
        outside = (centres_x >= image_shape[1]) | (centres_y >= image_shape[0])
        positive &= ~outside
        classes[outside] = IGNORE
        if positive.any():
            classes[positive] = labels[argmax[positive]]
            regression[index, positive] = bbox_transform(anchors[positive], bboxes[argmax[positive]], mean, std)
    return regression, classification


def dense_targets(regression, classification, num_classes):
    """The compact targets of anchor_targets_bbox expanded to the dense layout of keras-retinanet:
    regression (B, N, 5) with zeros for NaN and the anchor state (-1 ignore, 0 negative,
    1 positive) last, classification (B, N, num_classes + 1) one-hot with the state last."""
    classification = np.asarray(classification)
    state = np.where(classification >= 0, 1.0, np.where(classification == IGNORE, -1.0, 0.0)).astype(np.float32)
    dense_regression = np.zeros(classification.shape + (5,), dtype=np.float32)
    dense_regression[..., :4] = np.nan_to_num(np.asarray(regression, dtype=np.float32), nan=0.0)
    dense_regression[..., 4] = state
    dense_classification = np.zeros(classification.shape + (num_classes + 1,), dtype=np.float32)
    positive = np.nonzero(classification >= 0)
    dense_classification[positive + (classification[positive].astype(np.int64),)] = 1.0
    dense_classification[..., -1] = state
    return dense_regression, dense_classification
