"""The seed's per-class mask average precision at IoU 0.5 (keras-retinanet's definition).

A detection is a true positive when its mask overlaps the ground-truth mask of its class that it
overlaps most with IoU >= iou_threshold and that ground truth was not matched by a higher-scoring
detection (the VOC / keras-retinanet measure, with mask IoU instead of box IoU). AP is the area
under the precision envelope over all recall points. Kept beside the COCO metrics
(`coco_metrics`) so that numbers of earlier versions stay comparable. Mask IoU is computed by
pycocotools on run-length encodings of the full-image masks, never on dense arrays.
"""

import numpy as np

from .. import defaults
from ..utils.eval import encode_masks, mask_iou
from .records import collect


def _compute_ap(recall, precision):
    """All-points interpolated average precision.

    recall, precision: (K,) cumulative curves over the detections sorted by score. The precision
    is replaced by its running maximum from the right (the envelope), and AP sums
    envelope * recall step over the points where recall changes. Returns a float in [0, 1].
    """
    recall = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    precision = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))


def _as_rles(masks):
    """RLE list from a list of RLEs, or from full-image 0/1 masks ((N, H, W) or list of (H, W))."""
    if len(masks) == 0:
        return []
    if isinstance(masks[0], dict):
        return list(masks)
    return encode_masks(masks)


def compute_average_precisions(detections, annotations, num_classes, iou_threshold=defaults.MATCH_IOU_THRESHOLD):
    """Per-class mask AP over a data set.

    detections: per image, a dict 'scores' (K,), 'labels' (K,) int, 'masks' (K RLEs, or full-image
    0/1 masks of the image's size). annotations: per image, a dict 'labels' (M,) int, 'masks'
    (M RLEs or full-image masks). Within each image, detections of a class are matched in
    decreasing score order to the ground truth of highest IoU; a match needs IoU >= iou_threshold
    and an unmatched ground truth, otherwise the detection is a false positive.
    Returns {label: (average_precision, num_annotations)} for label in range(num_classes);
    a class without annotations gets (0.0, 0).
    """
    if len(detections) != len(annotations):
        raise ValueError(f"{len(detections)} images of detections but {len(annotations)} of annotations")
    per_class = {label: ([], [], 0) for label in range(num_classes)}
    for image_detections, image_annotations in zip(detections, annotations):
        detection_scores = np.asarray(image_detections["scores"], dtype=np.float64).reshape(-1)
        detection_labels = np.asarray(image_detections["labels"]).reshape(-1).astype(np.int64)
        detection_masks = _as_rles(image_detections["masks"])
        annotation_labels = np.asarray(image_annotations["labels"]).reshape(-1).astype(np.int64)
        annotation_masks = _as_rles(image_annotations["masks"])
        for label in range(num_classes):
            scores, hits, count = per_class[label]
            gt = np.flatnonzero(annotation_labels == label)
            found = np.flatnonzero(detection_labels == label)
            found = found[np.argsort(-detection_scores[found], kind="stable")]
            overlaps = mask_iou([detection_masks[i] for i in found], [annotation_masks[j] for j in gt])
            matched = np.zeros(gt.size, dtype=bool)
            for row, detection in enumerate(found):
                scores.append(detection_scores[detection])
                hit = False
                if gt.size:
                    best = int(np.argmax(overlaps[row]))
                    if overlaps[row, best] >= iou_threshold and not matched[best]:
                        matched[best] = True
                        hit = True
                hits.append(hit)
            per_class[label] = (scores, hits, count + gt.size)

    average_precisions = {}
    for label, (scores, hits, count) in per_class.items():
        if count == 0:
            average_precisions[label] = (0.0, 0)
            continue
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        hits = np.asarray(hits, dtype=np.float64)[order]
        true_positives = np.cumsum(hits)
        false_positives = np.cumsum(1.0 - hits)
        recall = true_positives / count
        precision = true_positives / np.maximum(true_positives + false_positives, np.finfo(np.float64).eps)
        average_precisions[label] = (_compute_ap(recall, precision), int(count))
    return average_precisions


def mean_average_precision(average_precisions, weighted=False):
    """Mean of {label: (ap, num_annotations)} over classes with annotations.

    weighted=True weights each class by its number of annotations. Returns 0.0 when no class
    has annotations.
    """
    values = [(ap, count) for ap, count in average_precisions.values() if count > 0]
    if not values:
        return 0.0
    aps = np.array([ap for ap, _ in values], dtype=np.float64)
    counts = np.array([count for _, count in values], dtype=np.float64)
    if weighted:
        return float(np.sum(aps * counts) / np.sum(counts))
    return float(np.mean(aps))


def seed_average_precisions(records, num_classes, iou_threshold=defaults.MATCH_IOU_THRESHOLD):
    """Per-class mask AP (keras-retinanet's definition) of `records.ImageRecord`s.

    Returns {label: (average_precision, num_annotations)} for label in range(num_classes).
    """
    detections = [{"scores": r.scores, "labels": r.labels, "masks": r.rles} for r in records]
    annotations = [{"labels": r.gt_labels, "masks": r.gt_rles} for r in records]
    return compute_average_precisions(detections, annotations, num_classes, iou_threshold=iou_threshold)


def evaluate(generator, model, iou_threshold=defaults.MATCH_IOU_THRESHOLD,
             score_threshold=defaults.SCORE_THRESHOLD, max_detections=defaults.MAX_DETECTIONS,
             binarize_threshold=defaults.BINARIZE_THRESHOLD):
    """Evaluates a prediction model on a generator's images: per-class mask AP (the seed's measure).

    model: anything with predict_on_batch(images (1, h, w, 3)) returning outputs whose last four
    are boxes (1, N, 4) in resized-input pixels, scores (1, N), labels (1, N), masks
    (1, N, S, S, C). Predicted masks are pasted at full image size and binarised at
    binarize_threshold. An image that cannot be read raises UnreadableImageError, or is left out
    with a warning when the generator's skip_bad_images is true.
    Returns {label: (average_precision, num_annotations)} for labels the generator has.
    """
    records = collect(generator, model, score_threshold=score_threshold, max_detections=max_detections,
                      binarize_threshold=binarize_threshold)
    average_precisions = seed_average_precisions(records, generator.num_classes(), iou_threshold=iou_threshold)
    return {label: value for label, value in average_precisions.items() if generator.has_label(label)}
