"""Reshapes between per-image RoI batches (B, N, ...) and one flat batch of RoIs (B*N, ...)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class FlattenRois(keras.layers.Layer):
    """(B, N, ...) -> (B*N, ...) of the same dtype, so per-RoI heads run as one batched convolution."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.autocast = False

    def call(self, inputs):
        return ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))

    def compute_output_shape(self, input_shape):
        if input_shape[0] is None or input_shape[1] is None:
            return (None,) + tuple(input_shape[2:])
        return (input_shape[0] * input_shape[1],) + tuple(input_shape[2:])

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=inputs.dtype)


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class UnflattenRois(keras.layers.Layer):
    """[x (B*N, ...), reference (B, N, ...)] -> (B, N, ...) of x's dtype, or cast to `dtype_out`."""

    def __init__(self, dtype_out=None, **kwargs):
        super().__init__(**kwargs)
        self.autocast = False
        self.dtype_out = dtype_out

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        x = ops.reshape(x, (shape[0], shape[1]) + tuple(x.shape[1:]))
        return ops.cast(x, self.dtype_out) if self.dtype_out else x

    def compute_output_shape(self, input_shape):
        x, reference = input_shape
        return (reference[0], reference[1]) + tuple(x[1:])

    def compute_output_spec(self, inputs):
        x, reference = inputs
        return keras.KerasTensor(
            (reference.shape[0], reference.shape[1]) + tuple(x.shape[1:]), dtype=self.dtype_out or x.dtype
        )

    def get_config(self):
        config = super().get_config()
        config["dtype_out"] = self.dtype_out
        return config
