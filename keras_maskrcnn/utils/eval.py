"""Run-length encodings of full-image masks and their IoU (pycocotools), shared by evaluation and tests.

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


def rle_areas(rles):
    """(N,) float64 areas of N RLE masks. pycocotools' area() of more than 255 masks at once overflows
    (it sizes its output with a uint8 under NumPy 2), so it is called on chunks of 255."""
    rles = list(rles)
    chunks = [mask_utils.area(rles[start:start + 255]) for start in range(0, len(rles), 255)]
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)


def mask_iou(detection_rles, annotation_rles):
    """IoU between D detection and G ground-truth RLE masks: (D, G) float64."""
    if len(detection_rles) == 0 or len(annotation_rles) == 0:
        return np.zeros((len(detection_rles), len(annotation_rles)), dtype=np.float64)
    crowd = [0] * len(annotation_rles)
    return np.asarray(mask_utils.iou(list(detection_rles), list(annotation_rles), crowd),
                      dtype=np.float64).reshape(len(detection_rles), len(annotation_rles))


