"""Per-class average precision of instance masks (the CSV evaluation).

A detection is a true positive when its mask overlaps the ground-truth mask of its class that it
overlaps most with IoU >= iou_threshold and that ground truth was not matched by a higher-scoring
detection (the VOC / keras-retinanet measure, with mask IoU instead of box IoU). AP is the area
under the precision envelope over all recall points. Mask IoU is computed by pycocotools on
run-length encodings of the full-image masks, never on dense float arrays.
"""

import os
import sys

import cv2
import numpy as np
import progressbar
from pycocotools import mask as mask_utils

from .image import UnreadableImageError
from .masks import paste_mask
from .visualization import draw_annotations, draw_detections


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


def encode_masks(masks):
    """Run-length encodes full-image 0/1 masks (list of (H, W) or (N, H, W)) for pycocotools.

    Returns a list of N RLE dicts ('size' [H, W], 'counts' bytes).
    """
    if len(masks) == 0:
        return []
    stacked = np.stack([np.asarray(m) != 0 for m in masks], axis=-1).astype(np.uint8)
    return mask_utils.encode(np.asfortranarray(stacked))


def mask_iou(detection_rles, annotation_rles):
    """IoU between D detection and G ground-truth RLE masks: (D, G) float64."""
    if len(detection_rles) == 0 or len(annotation_rles) == 0:
        return np.zeros((len(detection_rles), len(annotation_rles)), dtype=np.float64)
    crowd = [0] * len(annotation_rles)
    return np.asarray(mask_utils.iou(list(detection_rles), list(annotation_rles), crowd),
                      dtype=np.float64).reshape(len(detection_rles), len(annotation_rles))


class _CurrentStderr:
    """Forwards to whatever sys.stderr is when written to.

    progressbar2 swaps a literal sys.stderr for the stream it saw at import; under pytest's
    capture or in notebooks that stream can be closed or stale by the time a bar runs.
    """

    def __getattr__(self, name):
        return getattr(sys.stderr, name)


def progress(iterable, prefix, least=0):
    """Iterates over `iterable` with a progressbar2 bar on the current sys.stderr (without a bar
    when it has fewer than `least` items)."""
    if least and len(iterable) < least:
        return iter(iterable)
    return progressbar.progressbar(iterable, prefix=prefix, fd=_CurrentStderr())


def _network_input(generator, raw_image):
    """Prepares a raw BGR uint8 image like training does: resize, preprocess, then zero-pad the
    bottom and right to the generator's pad_multiple (if any).

    Returns ((1, h, w, 3) float32, scale of the resize).
    """
    image, scale = generator.resize_image(raw_image)
    image = np.asarray(generator.preprocess_image(image), dtype=np.float32)
    multiple = int(getattr(generator, "pad_multiple", 1) or 1)
    height = -(-image.shape[0] // multiple) * multiple
    width = -(-image.shape[1] // multiple) * multiple
    batch = np.zeros((1, height, width, image.shape[2]), dtype=np.float32)
    batch[0, :image.shape[0], :image.shape[1]] = image
    return batch, scale


def _unscale_boxes(boxes, scale):
    """Maps boxes (N, 4) from resized-input pixels back to the original image (divide by scale).

    scale: a float, or (scale_x, scale_y).
    """
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    if scale.size == 2:
        scale = np.array([scale[0], scale[1], scale[0], scale[1]])
    return np.asarray(boxes, dtype=np.float64) / scale


def predict_image(generator, model, raw_image, score_threshold=0.05, max_detections=100):
    """Runs `model` on one raw image and keeps its best detections.

    Returns boxes (K, 4) float in original-image pixels, scores (K,), labels (K,) int64 and
    masks (K, S, S) float (each detection's own class channel), sorted by decreasing score,
    K <= max_detections, only scores > score_threshold and labels >= 0.
    """
    batch, scale = _network_input(generator, raw_image)
    outputs = model.predict_on_batch(batch)
    boxes, scores, labels, masks = (np.asarray(o) for o in outputs[-4:])
    scores = scores[0].astype(np.float64)
    labels = labels[0].astype(np.int64)
    keep = np.flatnonzero((scores > score_threshold) & (labels >= 0))
    order = keep[np.argsort(-scores[keep], kind="stable")][:max_detections]
    if order.size:
        image_masks = masks[0, order, :, :, labels[order]]
    else:
        image_masks = np.zeros((0,) + masks.shape[2:4], dtype=np.float32)
    return (_unscale_boxes(boxes[0, order], scale), scores[order], labels[order],
            image_masks.astype(np.float32))


def load_or_skip(generator, load, index):
    """load(index) (e.g. generator.load_image); None when it raises UnreadableImageError and the
    generator skips bad images (its skip_bad_images), after a warning naming the file and a
    note in the generator's bad_images. Without skip_bad_images the error propagates."""
    try:
        return load(index)
    except UnreadableImageError as error:
        if not getattr(generator, "skip_bad_images", False):
            raise
        if hasattr(generator, "record_bad_image"):
            generator.record_bad_image(index, error)
        from ..preprocessing.bad_images import warn

        warn(f"evaluation leaves out an unreadable image: {error}")
        return None


def _get_detections(generator, model, score_threshold=0.05, max_detections=100,
                    binarize_threshold=0.5, save_path=None):
    """Runs the model over every image of the generator (with a progress bar).

    Returns a list (one per image) of dicts: 'boxes' (K, 4) float original-image pixels,
    'scores' (K,), 'labels' (K,) int, 'masks' list of K RLEs of the pasted, binarised full-image
    masks; None for an image that cannot be read when the generator skips bad images (see
    `load_or_skip`). With save_path, writes `{index}.png` there with annotations and detections
    drawn.
    """
    if save_path is not None:
        os.makedirs(save_path, exist_ok=True)
    detections = []
    for index in progress(range(generator.size()), "Running network: "):
        raw_image = load_or_skip(generator, generator.load_image, index)
        drawn = load_or_skip(generator, generator.load_annotations, index) if save_path is not None else {}
        if raw_image is None or drawn is None:
            detections.append(None)
            continue
        boxes, scores, labels, masks = predict_image(
            generator, model, raw_image, score_threshold=score_threshold,
            max_detections=max_detections)
        rles = [encode_masks([paste_mask(mask, box, raw_image.shape[:2], binarize_threshold)])[0]
                for box, mask in zip(boxes, masks)]
        detections.append({"boxes": boxes, "scores": scores, "labels": labels, "masks": rles})

        if save_path is not None:
            picture = raw_image.copy()
            draw_annotations(picture, drawn, label_to_name=generator.label_to_name)
            draw_detections(picture, boxes, scores, labels, masks=masks,
                            label_to_name=generator.label_to_name,
                            score_threshold=score_threshold,
                            binarize_threshold=binarize_threshold)
            cv2.imwrite(os.path.join(save_path, f"{index}.png"), picture)
    return detections


def _get_annotations(generator, skip=()):
    """Loads the ground truth of every image: list of dicts 'labels' (M,) int, 'bboxes' (M, 4),
    'masks' list of M RLEs of the full-image masks; None for the images of `skip` and for those
    whose masks cannot be read when the generator skips bad images."""
    annotations = []
    for index in range(generator.size()):
        loaded = None if index in skip else load_or_skip(generator, generator.load_annotations, index)
        if loaded is None:
            annotations.append(None)
            continue
        annotations.append({
            "labels": np.asarray(loaded["labels"]).reshape(-1).astype(np.int64),
            "bboxes": np.asarray(loaded["bboxes"], dtype=np.float64).reshape(-1, 4),
            "masks": encode_masks(loaded["masks"]),
        })
    return annotations


def _as_rles(masks):
    """RLE list from a list of RLEs, or from full-image 0/1 masks ((N, H, W) or list of (H, W))."""
    if len(masks) == 0:
        return []
    if isinstance(masks[0], dict):
        return list(masks)
    return encode_masks(masks)


def compute_average_precisions(detections, annotations, num_classes, iou_threshold=0.5):
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


def evaluate(generator, model, iou_threshold=0.5, score_threshold=0.05, max_detections=100,
             binarize_threshold=0.5, save_path=None):
    """Evaluates a prediction model on a generator's images: per-class mask AP.

    model: anything with predict_on_batch(images (1, h, w, 3)) returning outputs whose last four
    are boxes (1, N, 4) in resized-input pixels, scores (1, N), labels (1, N), masks
    (1, N, S, S, C). Predicted masks are pasted at full image size and binarised at
    binarize_threshold. save_path: directory for annotated pictures, or None. An image that
    cannot be read raises UnreadableImageError, or is left out with a warning when the
    generator's skip_bad_images is true.
    Returns {label: (average_precision, num_annotations)} for labels the generator has.
    """
    detections = _get_detections(generator, model, score_threshold=score_threshold,
                                 max_detections=max_detections,
                                 binarize_threshold=binarize_threshold, save_path=save_path)
    annotations = _get_annotations(generator, skip={i for i, found in enumerate(detections) if found is None})
    pairs = [(found, truth) for found, truth in zip(detections, annotations) if found is not None and truth is not None]
    detections, annotations = [found for found, _ in pairs], [truth for _, truth in pairs]
    average_precisions = compute_average_precisions(
        detections, annotations, generator.num_classes(), iou_threshold=iou_threshold)
    return {label: value for label, value in average_precisions.items() if generator.has_label(label)}
