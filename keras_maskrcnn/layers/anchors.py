"""`Anchors`: the anchor boxes of every pyramid level, computed from the feature-map shapes."""

import keras
import numpy as np
from keras import ops

from ..utils.anchors import AnchorParameters, generate_anchors


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class Anchors(keras.layers.Layer):
    """Anchors for features [P3, ..., P7] -> (B, total anchors, 4) float32, x1y1x2y2 in input pixels.

    Same order and values as `keras_maskrcnn.utils.anchors.anchors_for_shape` whenever each
    feature map has ceil(H / stride) rows and ceil(W / stride) columns. Only the shapes of the
    features are read, so they are not cast to this layer's dtype.
    """

    def __init__(self, anchor_params=None, **kwargs):
        super().__init__(**kwargs)
        self.autocast = False
        if isinstance(anchor_params, dict):
            anchor_params = AnchorParameters.from_config(anchor_params)
        self.anchor_params = anchor_params or AnchorParameters.default
        self.base_anchors = [
            generate_anchors(size, self.anchor_params.ratios, self.anchor_params.scales).astype(np.float32)
            for size in self.anchor_params.sizes
        ]

    def _level_anchors(self, feature, stride, base):
        shape = ops.shape(feature)
        rows, cols = shape[1], shape[2]
        shift_x = (ops.cast(ops.arange(cols), "float32") + 0.5) * stride
        shift_y = (ops.cast(ops.arange(rows), "float32") + 0.5) * stride
        shift_y, shift_x = ops.meshgrid(shift_y, shift_x, indexing="ij")
        shift_x = ops.reshape(shift_x, (-1,))
        shift_y = ops.reshape(shift_y, (-1,))
        shifts = ops.stack([shift_x, shift_y, shift_x, shift_y], axis=1)
        anchors = ops.expand_dims(shifts, 1) + ops.expand_dims(ops.convert_to_tensor(base), 0)
        return ops.reshape(anchors, (-1, 4))

    def call(self, features):
        anchors = ops.concatenate(
            [
                self._level_anchors(feature, stride, base)
                for feature, stride, base in zip(features, self.anchor_params.strides, self.base_anchors)
            ],
            axis=0,
        )
        batch = ops.shape(features[0])[0]
        return ops.broadcast_to(ops.expand_dims(anchors, 0), (batch, ops.shape(anchors)[0], 4))

    def compute_output_shape(self, input_shape):
        total = 0
        for shape in input_shape:
            if shape[1] is None or shape[2] is None:
                total = None
                break
            total += shape[1] * shape[2] * self.anchor_params.num_anchors()
        return (input_shape[0][0], total, 4)

    def get_config(self):
        config = super().get_config()
        config["anchor_params"] = self.anchor_params.get_config()
        return config
