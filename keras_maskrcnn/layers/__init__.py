"""Keras layers of the detector and the mask branch; all run on the TensorFlow, JAX and PyTorch backends."""

from .anchors import Anchors
from .boxes import ClipBoxes, RegressBoxes
from .detection_masks import DetectionMasks
from .filter_detections import FilterDetections
from .roi_align import RoiAlign
from .roi_batch import FlattenRois, UnflattenRois
from .upsample_like import UpsampleLike

__all__ = [
    "Anchors",
    "ClipBoxes",
    "DetectionMasks",
    "FilterDetections",
    "FlattenRois",
    "RegressBoxes",
    "RoiAlign",
    "UnflattenRois",
    "UpsampleLike",
]
