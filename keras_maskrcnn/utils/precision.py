"""Reduced precision: choosing a Keras mixed dtype policy and applying it to models built here.

Under a mixed policy, layers compute in bfloat16 or float16 while their variables stay float32.
The parts where precision matters stay float32 whatever the policy: the regression and
classification outputs, anchors and box decoding (Anchors, RegressBoxes, ClipBoxes),
FilterDetections, the box coordinates and level choice inside RoiAlign, the masks output and
the losses.
"""

import contextlib

import keras

MIXED_POLICIES = ("mixed_bfloat16", "mixed_float16")

# Layers built with dtype="float32" whatever the policy, by name (the stable names of
# keras_maskrcnn.models.maskrcnn) and by class name (the box decoding and filtering layers).
FLOAT32_LAYER_NAMES = frozenset({
    "regression", "classification", "pyramid_regression_reshape", "pyramid_classification_sigmoid", "roi_mask",
})
FLOAT32_LAYER_CLASSES = frozenset({"InputLayer", "Anchors", "RegressBoxes", "ClipBoxes", "FilterDetections"})


def gpu_visible():
    """True when the Keras backend sees at least one GPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def resolve_policy(mixed_precision):
    """Name of the mixed policy that `mixed_precision` asks for, or None for float32.

    None or False: float32. True or "auto": "mixed_float16" when a GPU is visible, else
    "mixed_bfloat16" (CPUs and TPUs compute bfloat16 without loss scaling). "mixed_bfloat16" or
    "mixed_float16": that policy. Anything else raises ValueError.
    """
    if mixed_precision is None or mixed_precision is False:
        return None
    if mixed_precision is True or mixed_precision == "auto":
        return "mixed_float16" if gpu_visible() else "mixed_bfloat16"
    if mixed_precision in MIXED_POLICIES:
        return mixed_precision
    raise ValueError(f"mixed_precision must be None, False, True, 'auto', 'mixed_bfloat16' or 'mixed_float16', "
                     f"got {mixed_precision!r}")


@contextlib.contextmanager
def policy_scope(policy):
    """Sets the global Keras dtype policy to `policy` (a name or `keras.DTypePolicy`; None leaves it
    alone) inside the block, and restores the previous global policy on leaving it."""
    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _layers(model):
    """`model` and every layer in it, nested models and the layers that custom layers hold included."""
    return model._flatten_layers(include_self=True, recursive=True)


def keeps_float32(layer):
    """True for the layers that compute in float32 whatever the policy."""
    return layer.name in FLOAT32_LAYER_NAMES or type(layer).__name__ in FLOAT32_LAYER_CLASSES


def apply_policy(model, policy):
    """Sets the dtype policy of every layer of a built (e.g. loaded) model, except those that
    `keeps_float32`, to `policy` in place; returns the model.

    Variables are float32 under float32 and under mixed policies alike, so weights are kept
    as they are; only the dtype layers compute in changes. Call it before the model first runs
    (its compiled functions are traced then) and before new models are built on its tensors.
    """
    policy = keras.DTypePolicy(policy) if isinstance(policy, str) else policy
    for layer in _layers(model):
        if not keeps_float32(layer):
            layer.dtype_policy = policy
    return model


def model_policy(model, layer_name="P3"):
    """The dtype policy of a model built here: that of its `layer_name` layer (a pyramid level)."""
    return model.get_layer(layer_name).dtype_policy
