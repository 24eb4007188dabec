"""Losses of the training model: focal (classification), smooth L1 (regression), mask binary cross-entropy.

Target layouts (as the generators produce them, see utils.anchors.anchor_targets_bbox):
- regression:     (B, A, 4)   the deltas of positive anchors, NaN for every other anchor;
- classification: (B, A)      integer: the class of a positive anchor, -1 background, -2 ignore,
                              expanded to one-hot here (num_classes from the prediction);
- masks:          (B, M, 1 + S*S) the RoI's class (-1 for padding rows), then its S x S target mask.
Every loss returns a float32 scalar for the whole batch and is finite when nothing is positive.
Under a `tf.distribute` strategy the counts that normalise a loss (positive anchors, valid RoIs)
are summed over the replicas, so the replicas' losses add up to the loss of the global batch.
"""

import keras
from keras import ops

from .utils.anchors import IGNORE
from .utils.distribution import global_sum

_EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class FocalLoss(keras.losses.Loss):
    """Focal loss summed over non-ignored anchors and classes, divided by the positive anchor count."""

    def __init__(self, alpha=0.25, gamma=2.0, name="focal", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        classes = ops.cast(y_true, "int32")
        probabilities = ops.clip(ops.cast(y_pred, "float32"), _EPSILON, 1.0 - _EPSILON)
        labels = ops.one_hot(ops.maximum(classes, 0), probabilities.shape[-1], dtype="float32")
        labels = labels * ops.cast(classes >= 0, "float32")[..., None]
        positive = ops.equal(labels, 1.0)
        alpha_factor = ops.where(positive, self.alpha, 1.0 - self.alpha)
        focal_weight = alpha_factor * ops.where(positive, 1.0 - probabilities, probabilities) ** self.gamma
        cross_entropy = -(labels * ops.log(probabilities) + (1.0 - labels) * ops.log(1.0 - probabilities))
        counted = ops.cast(ops.not_equal(classes, IGNORE), "float32")[..., None]
        normalizer = ops.maximum(1.0, global_sum(ops.sum(ops.cast(classes >= 0, "float32"))))
        return ops.sum(focal_weight * cross_entropy * counted) / normalizer

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, gamma=self.gamma)
        return config


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class SmoothL1Loss(keras.losses.Loss):
    """Smooth L1 over the deltas of positive anchors, divided by the positive anchor count."""

    def __init__(self, sigma=3.0, name="smooth_l1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.sigma = float(sigma)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        known = ops.logical_not(ops.isnan(y_true))
        diff = ops.abs(ops.cast(y_pred, "float32") - ops.where(known, y_true, 0.0))
        sigma_squared = self.sigma ** 2
        loss = ops.where(diff < 1.0 / sigma_squared, 0.5 * sigma_squared * diff ** 2, diff - 0.5 / sigma_squared)
        positive = ops.cast(ops.all(known, axis=-1), "float32")
        normalizer = ops.maximum(1.0, global_sum(ops.sum(positive)))
        return ops.sum(loss * positive[..., None]) / normalizer

    def get_config(self):
        config = super().get_config()
        config["sigma"] = self.sigma
        return config


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class MaskBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy of each RoI's mask on its ground-truth class channel.

    Mean over the S x S pixels, then over the RoIs whose class is >= 0; 0 when there are none.
    y_pred: (B, M, S, S, C) probabilities.
    """

    def __init__(self, name="mask_bce", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        num_classes = y_pred.shape[-1]
        labels = ops.cast(y_true[..., 0], "int32")
        valid = ops.cast(labels >= 0, "float32")
        target = ops.reshape(y_true[..., 1:], ops.shape(y_pred)[:-1])
        channel = ops.one_hot(ops.maximum(labels, 0), num_classes, dtype="float32")
        probabilities = ops.sum(y_pred * channel[:, :, None, None, :], axis=-1)
        probabilities = ops.clip(probabilities, _EPSILON, 1.0 - _EPSILON)
        cross_entropy = -(target * ops.log(probabilities) + (1.0 - target) * ops.log(1.0 - probabilities))
        per_roi = ops.mean(cross_entropy, axis=(2, 3))
        return ops.sum(per_roi * valid) / ops.maximum(1.0, global_sum(ops.sum(valid)))


def focal(alpha=0.25, gamma=2.0):
    """Focal loss for the classification output (keras-retinanet defaults)."""
    return FocalLoss(alpha=alpha, gamma=gamma)


def smooth_l1(sigma=3.0):
    """Smooth L1 loss for the regression output (keras-retinanet defaults)."""
    return SmoothL1Loss(sigma=sigma)


def mask_loss():
    """Binary cross-entropy for the masks output."""
    return MaskBinaryCrossentropy()


def training_losses():
    """The loss dict for `training_model(...).compile(loss=...)`."""
    return {"regression": smooth_l1(), "classification": focal(), "masks": mask_loss()}
