"""The default sizes, thresholds and detection counts, in one place.

The generators, the input transform of prediction (`inference.transform`), the `Predictor`, the
model settings (`models.settings.DetectionFilter`) and the command-line tools' options all take
their defaults from here. This module imports nothing, so that the tools' `--help` stays fast.
"""

IMAGE_MIN_SIDE = 800
"""Length of a picture's smaller side after the resize (keras-retinanet's)."""
IMAGE_MAX_SIDE = 1333
"""Limit of the larger side after the resize."""
PAD_MULTIPLE = 32
"""Multiple that batch heights and widths are padded up to (the largest backbone stride)."""

SCORE_THRESHOLD = 0.05
"""Lowest score a prediction model keeps, and that evaluation counts (low scores still add to AP)."""
NMS_THRESHOLD = 0.5
"""IoU above which non-maximum suppression drops the lower-scored box."""
MAX_DETECTIONS = 100
"""Detections per picture a prediction model outputs (and evaluation counts)."""
PRE_NMS_TOP_K = 1000
"""Boxes per class kept by score before non-maximum suppression."""

PREDICT_SCORE_THRESHOLD = 0.5
"""Lowest score `maskrcnn-predict` and the `Predictor` show: drawn pictures keep the confident detections."""
MATCH_IOU_THRESHOLD = 0.5
"""Mask IoU from which a detection counts as finding an object in the per-class mAP of `maskrcnn-evaluate`."""
BINARIZE_THRESHOLD = 0.5
"""Mask probability from which a pixel belongs to the object."""
