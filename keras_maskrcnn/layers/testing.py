"""`run_layer_test`: the checks every layer of this package passes, in one call for its tests.

    from keras_maskrcnn.layers.testing import run_layer_test
    run_layer_test(RoiAlign, dict(crop_size=(7, 7)), [boxes] + features,
                   expected_output_shape=(2, 20, 7, 7, 4), expected_output_dtype="float32")

It checks the config round trip (`from_config(get_config())` and Keras serialisation by registered
name), the output shapes and dtypes under float32 and under a mixed dtype policy, and that a symbolic
call (a functional model, run compiled by `predict_on_batch`) gives what the eager call gives.
"""

import keras
import numpy as np


def _flat(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _numpy(outputs):
    return [keras.ops.convert_to_numpy(output) for output in _flat(outputs)]


def _dtype_name(value):
    return keras.backend.standardize_dtype(value)


def _check_outputs(outputs, shapes, dtypes, what):
    """Asserts shapes (None: any length on that axis) and dtypes of the flat `outputs`."""
    if shapes is not None:
        shapes = shapes if isinstance(shapes, list) else [shapes]
        assert len(shapes) == len(outputs), f"{what}: {len(outputs)} outputs, expected {len(shapes)}"
        for index, (output, shape) in enumerate(zip(outputs, shapes)):
            got = tuple(output.shape)
            assert len(got) == len(shape) and all(want is None or want == have for want, have in zip(shape, got)), \
                f"{what}: output {index} has shape {got}, expected {tuple(shape)}"
    if dtypes is not None:
        dtypes = dtypes if isinstance(dtypes, list) else [dtypes] * len(outputs)
        for index, (output, dtype) in enumerate(zip(outputs, dtypes)):
            assert _dtype_name(output.dtype) == _dtype_name(dtype), \
                f"{what}: output {index} is {_dtype_name(output.dtype)}, expected {_dtype_name(dtype)}"


def _copy_weights(source, target):
    if source.weights:
        target.set_weights(source.get_weights())


def run_layer_test(layer_cls, init_kwargs, inputs, expected_output_shape=None, expected_output_dtype=None,
                   mixed_policy="mixed_bfloat16", expected_mixed_dtype=None, symbolic=True, atol=1e-6, rtol=1e-6,
                   nested_keys=()):
    """Runs the standard checks of a layer on `inputs`; returns the eager outputs (numpy, a list).

    Args:
        layer_cls: the layer class.
        init_kwargs: dict of its constructor's arguments (no dtype).
        inputs: the call's input: one array or a list of arrays (numpy).
        expected_output_shape: a shape tuple (None for an axis of any length), or a list of them for
            a layer with several outputs.
        expected_output_dtype: the dtype of every output, or a list, one per output (None: not checked).
        mixed_policy: the mixed dtype policy the layer is also built under (None: no mixed check).
        expected_mixed_dtype: output dtype(s) under mixed_policy (None: the policy's compute dtype for
            floating outputs, the float32 dtype's for the others).
        symbolic: also call the layer on `keras.Input`s of the inputs' shapes in a functional model,
            run by `predict_on_batch`, and compare with the eager call within atol and rtol.
        atol, rtol: tolerances of that comparison and of the clone's.
        nested_keys: config keys holding a serialised model (a layer's sub-model): compared by class
            only, since Keras names a revived model's layers anew (its outputs are still compared).

    Raises:
        AssertionError: naming the check, the output and what it got.
    """
    def comparable(config):
        return {key: value["class_name"] if key in nested_keys else value for key, value in config.items()}

    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert comparable(clone.get_config()) == comparable(config), \
        f"{layer_cls.__name__}: from_config(get_config()) changes the config"
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is layer_cls and comparable(revived.get_config()) == comparable(config), \
        f"{layer_cls.__name__}: Keras serialisation by registered name does not give the layer back"

    eager = layer(inputs)
    outputs = _numpy(eager)
    _check_outputs(_flat(eager), expected_output_shape, expected_output_dtype, f"{layer_cls.__name__} (eager)")

    clone(inputs)  # builds it
    _copy_weights(layer, clone)
    for index, (got, want) in enumerate(zip(_numpy(clone(inputs)), outputs)):
        np.testing.assert_allclose(got, want, atol=atol, rtol=rtol,
                                   err_msg=f"{layer_cls.__name__}: the clone's output {index} differs")

    if symbolic:
        arrays = _flat(inputs)
        tensors = [keras.Input(shape=np.shape(a)[1:], batch_size=np.shape(a)[0], dtype=_dtype_name(np.asarray(a).dtype))
                   for a in arrays]
        symbolic_outputs = layer(tensors if isinstance(inputs, (list, tuple)) else tensors[0])
        _check_outputs(_flat(symbolic_outputs), expected_output_shape, expected_output_dtype,
                       f"{layer_cls.__name__} (symbolic)")
        model = keras.Model(tensors, symbolic_outputs)
        compiled = _numpy(model.predict_on_batch(list(arrays) if len(arrays) > 1 else arrays[0]))
        for index, (got, want) in enumerate(zip(compiled, outputs)):
            np.testing.assert_allclose(got, want, atol=atol, rtol=rtol,
                                       err_msg=f"{layer_cls.__name__}: symbolic output {index} differs from eager")

    if mixed_policy:
        mixed = layer_cls(**init_kwargs, dtype=mixed_policy)
        assert layer_cls.from_config(mixed.get_config()).dtype_policy.name == mixed_policy, \
            f"{layer_cls.__name__}: the dtype policy does not round-trip through the config"
        mixed_outputs = _flat(mixed(inputs))
        if expected_mixed_dtype is None:
            compute = keras.DTypePolicy(mixed_policy).compute_dtype
            expected_mixed_dtype = [compute if "float" in _dtype_name(output.dtype) else _dtype_name(output.dtype)
                                    for output in _flat(eager)]
        _check_outputs(mixed_outputs, expected_output_shape, expected_mixed_dtype,
                       f"{layer_cls.__name__} ({mixed_policy})")
    return outputs
