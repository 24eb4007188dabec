"""Box decoding layers: `RegressBoxes` applies regression deltas to anchors, `ClipBoxes` clips to the image."""

import keras
from keras import ops


def bbox_transform_inv(anchors, deltas, mean=0.0, std=0.2):
    """Boxes (..., 4) from anchors (..., 4) and deltas (..., 4): corner offsets times anchor width/height."""
    anchors = ops.cast(anchors, "float32")
    deltas = ops.cast(deltas, "float32") * std + mean
    widths = anchors[..., 2] - anchors[..., 0]
    heights = anchors[..., 3] - anchors[..., 1]
    return ops.stack(
        [
            anchors[..., 0] + deltas[..., 0] * widths,
            anchors[..., 1] + deltas[..., 1] * heights,
            anchors[..., 2] + deltas[..., 2] * widths,
            anchors[..., 3] + deltas[..., 3] * heights,
        ],
        axis=-1,
    )


def _number_or_four(value, name):
    """A float, or a list of 4 floats (one per coordinate) when they differ."""
    if isinstance(value, (int, float)):
        return float(value)
    values = [float(v) for v in value]
    if len(values) != 4:
        raise ValueError(f"RegressBoxes {name} takes one number or four, got {values}")
    return values[0] if len(set(values)) == 1 else values


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class RegressBoxes(keras.layers.Layer):
    """[anchors (B,A,4), regression (B,A,4)] -> boxes (B,A,4) float32, x1y1x2y2 in input pixels.

    mean, std: the regression normalisation, one number or one per coordinate (keras-retinanet
    saved four)."""

    def __init__(self, mean=0.0, std=0.2, **kwargs):
        super().__init__(**kwargs)
        self.mean = _number_or_four(mean, "mean")
        self.std = _number_or_four(std, "std")

    def call(self, inputs):
        anchors, regression = inputs
        mean, std = self.mean, self.std
        if isinstance(mean, list):
            mean = ops.convert_to_tensor(mean, "float32")
        if isinstance(std, list):
            std = ops.convert_to_tensor(std, "float32")
        return bbox_transform_inv(anchors, regression, mean, std)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(mean=self.mean, std=self.std)
        return config


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class ClipBoxes(keras.layers.Layer):
    """[image (B,H,W,C), boxes (B,A,4)] -> boxes with x clipped to [0, W - margin] and y to
    [0, H - margin]. margin 0 keeps boxes inside the image's continuous extent; keras-retinanet
    1.0 clipped to the last pixel (margin 1)."""

    def __init__(self, margin=0.0, **kwargs):
        super().__init__(**kwargs)
        self.margin = float(margin)

    def call(self, inputs):
        image, boxes = inputs
        shape = ops.shape(image)
        height = ops.cast(shape[1], "float32") - self.margin
        width = ops.cast(shape[2], "float32") - self.margin
        boxes = ops.cast(boxes, "float32")
        x1 = ops.clip(boxes[..., 0], 0.0, width)
        y1 = ops.clip(boxes[..., 1], 0.0, height)
        x2 = ops.clip(boxes[..., 2], 0.0, width)
        y2 = ops.clip(boxes[..., 3], 0.0, height)
        return ops.stack([x1, y1, x2, y2], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin)
        return config
