"""`UpsampleLike`: nearest-neighbour upsampling of a feature map to the size of another."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class UpsampleLike(keras.layers.Layer):
    """[source (B,h,w,C), target (B,H,W,*)] -> (B,H,W,C), with H <= 2h and W <= 2w.

    Repeats every pixel twice in each direction and crops to the target, which is exact
    nearest-neighbour resizing for feature maps of ceil(H/2) rows and ceil(W/2) columns.
    """

    def call(self, inputs):
        source, target = inputs
        target_shape = ops.shape(target)
        upsampled = ops.repeat(ops.repeat(source, 2, axis=1), 2, axis=2)
        return upsampled[:, : target_shape[1], : target_shape[2], :]

    def compute_output_shape(self, input_shape):
        source, target = input_shape
        return (source[0], target[1], target[2], source[3])
