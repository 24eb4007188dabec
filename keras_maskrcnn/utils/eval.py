"""The picture -> detections path of the command-line tools: a model's outputs for one picture,
and run-length encodings of full-image masks (pycocotools).

The evaluation itself (COCO metrics, the seed's mask mAP@0.5, reports) lives in
`keras_maskrcnn.evaluation`.
"""

import numpy as np
from pycocotools import mask as mask_utils


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
