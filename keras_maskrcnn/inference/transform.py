"""The input transform of prediction: resize, preprocess, pad to a batch, and map boxes back.

This is the one copy of the path from pictures (BGR uint8, as OpenCV holds them) to the model's
input batch that `Predictor`, `maskrcnn-predict`, `maskrcnn-evaluate`, the per-epoch evaluation and
the export check use; training's generator resizes and pads by the same rules.
"""

from dataclasses import dataclass

import numpy as np

from ..defaults import IMAGE_MAX_SIDE, IMAGE_MIN_SIDE, MAX_DETECTIONS, PAD_MULTIPLE, SCORE_THRESHOLD
from ..utils.image import preprocess_image, resize_image


def round_up(value, multiple):
    """`value` rounded up to a multiple of `multiple` (itself when multiple <= 1)."""
    multiple = int(multiple or 1)
    return -(-int(value) // multiple) * multiple


@dataclass(frozen=True)
class InputTransform:
    """How pictures become a model input.

    Args:
        min_side: the smaller side is resized to this many pixels...
        max_side: ...unless the larger side would then exceed this. None for both: no resize
            (scale 1, as tiles are predicted).
        pad_multiple: batch height and width are zero-padded (bottom and right) up to a multiple of this.
        preprocessing: the backbone's preprocessing mode (`utils.image.preprocess_image`: caffe, tf,
            torch or rgb), or a callable BGR image -> float32 input (a generator's preprocess_image).
        resizer: a callable BGR image -> (resized image, scale) used instead of the min/max side rule
            (a generator's resize_image), or None.
    """

    min_side: int | None = IMAGE_MIN_SIDE
    max_side: int | None = IMAGE_MAX_SIDE
    pad_multiple: int = PAD_MULTIPLE
    preprocessing: object = "caffe"
    resizer: object = None

    def resize(self, image):
        """(resized BGR image, scale): the picture resized by the min/max side rule (scale 1 without one)."""
        if self.resizer is not None:
            return self.resizer(image)
        if self.min_side is None or self.max_side is None:
            return image, 1.0
        return resize_image(image, min_side=self.min_side, max_side=self.max_side)

    def prepare(self, images):
        """(batch (B, H, W, 3) float32, scales (B,) float64) for a list of BGR uint8 pictures.

        Each picture is resized and preprocessed, then zero-padded at the bottom and right to the
        largest of the batch rounded up to pad_multiple (boxes are in input pixels, so padding does
        not move them).
        """
        resized, scales = [], []
        for image in images:
            picture, scale = self.resize(image)
            if callable(self.preprocessing):
                resized.append(np.asarray(self.preprocessing(picture), dtype=np.float32))
            else:
                resized.append(preprocess_image(picture, self.preprocessing))
            scales.append(scale)
        height = round_up(max(picture.shape[0] for picture in resized), self.pad_multiple)
        width = round_up(max(picture.shape[1] for picture in resized), self.pad_multiple)
        batch = np.zeros((len(resized), height, width, 3), dtype=np.float32)
        for index, picture in enumerate(resized):
            batch[index, :picture.shape[0], :picture.shape[1]] = picture
        return batch, np.asarray(scales, dtype=np.float64)

    @staticmethod
    def unscale(boxes, scale):
        """Boxes (N, 4) from input pixels back to the picture's (divided by the resize scale): float64."""
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / float(scale)


def select_detections(boxes, scores, labels, masks, score_threshold=SCORE_THRESHOLD, max_detections=MAX_DETECTIONS):
    """One picture's rows of the model outputs that are detections, best first.

    boxes (N, 4), scores (N,), labels (N,), masks (N, S, S, C) of one picture (padded rows have
    score -1 and label -1). Keeps scores > score_threshold and labels >= 0, sorted by decreasing
    score (stable), at most max_detections. Returns boxes (K, 4) float64 in input pixels, scores (K,)
    float64, labels (K,) int64 and masks (K, S, S) float32: each detection's own class channel.
    """
    scores = np.asarray(scores).astype(np.float64)
    labels = np.asarray(labels).astype(np.int64)
    keep = np.flatnonzero((scores > score_threshold) & (labels >= 0))
    order = keep[np.argsort(-scores[keep], kind="stable")][:max_detections]
    masks = np.asarray(masks)
    if order.size:
        chosen = masks[order, :, :, labels[order]].astype(np.float32)
    else:
        chosen = np.zeros((0,) + masks.shape[1:3], dtype=np.float32)
    return np.asarray(boxes, dtype=np.float64)[order].reshape(-1, 4), scores[order], labels[order], chosen


def generator_transform(generator):
    """The InputTransform of a data set generator: its resize limits, pad multiple and preprocessing
    (what training fed the model), for predicting on its pictures."""
    return InputTransform(getattr(generator, "image_min_side", None), getattr(generator, "image_max_side", None),
                          int(getattr(generator, "pad_multiple", 1) or 1), generator.preprocess_image,
                          resizer=generator.resize_image)
