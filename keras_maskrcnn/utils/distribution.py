"""Data-parallel training over several devices of one machine.

TensorFlow: `tf.distribute.MirroredStrategy` over the first N GPUs, or over N virtual CPU devices
when there is no GPU. JAX: `keras.distribution.DataParallel` over the first N devices (N virtual
CPU devices when there is no accelerator). PyTorch: not supported.

    configure_devices(2)            # early: before the backend runs any operation
    with distribution_scope(2):     # build, compile and fit inside
        model = ...; model.compile(...); model.fit(...)

Each step splits the global batch into N equal parts, one per device, and sums the gradients.
The losses of `keras_maskrcnn.losses` normalise by counts over the global batch (see
`global_sum`), so a step on N devices equals a step on one device, up to float rounding, as long
as batch normalisation runs in inference mode (frozen) or, on JAX, in any mode; TensorFlow
computes batch statistics per device. Gradient clipping (clipnorm) acts on each device's
gradients before they are summed on TensorFlow, and on the summed gradients on JAX.
"""

import contextlib
import os

import keras

_XLA_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def check_batch_size(batch_size, num_devices):
    """ValueError unless batch_size (images per step, all devices together) splits evenly over
    num_devices (0 or 1: one device)."""
    if num_devices > 1 and batch_size % num_devices:
        raise ValueError(f"the batch size {batch_size} must be a multiple of the number of devices "
                         f"{num_devices}, so that every device gets the same number of images")


def check_backend(num_devices):
    """ValueError when the Keras backend cannot train on num_devices > 1 devices (PyTorch)."""
    backend = keras.backend.backend()
    if num_devices > 1 and backend not in ("tensorflow", "jax"):
        raise ValueError(f"training on {num_devices} devices needs the tensorflow or jax backend; "
                         f"the {backend} backend is not supported (set KERAS_BACKEND)")


def configure_devices(num_devices):
    """Prepares num_devices devices; returns their names (e.g. ['/gpu:0', '/gpu:1'] on TensorFlow,
    JAX device objects on JAX), or [] for num_devices 0 or 1.

    Without a GPU, splits the CPU into num_devices virtual devices, which only works before the
    backend has run its first operation (call this early). ValueError when fewer devices exist
    than asked for, naming both numbers, or on an unsupported backend.
    """
    if num_devices <= 1:
        return []
    check_backend(num_devices)
    if keras.backend.backend() == "tensorflow":
        return _tensorflow_devices(num_devices)
    return _jax_devices(num_devices)


def _too_few(num_devices, available, kind, hint=""):
    return ValueError(f"asked for {num_devices} devices, but only {available} {kind} "
                      f"{'is' if available == 1 else 'are'} available{hint}")


def _tensorflow_devices(num_devices):
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if len(gpus) < num_devices:
            raise _too_few(num_devices, len(gpus), "GPU" if len(gpus) == 1 else "GPUs")
        return [f"/gpu:{i}" for i in range(num_devices)]
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu) or []
    if len(configured) < num_devices:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
        except RuntimeError:  # TensorFlow has initialised its devices already
            pass
    available = len(tf.config.list_logical_devices("CPU"))
    if available < num_devices:
        raise _too_few(num_devices, available, "CPU device" if available == 1 else "CPU devices",
                       " (no GPU found; virtual CPU devices must be configured before TensorFlow "
                       "initialises, e.g. by calling configure_devices first)")
    return [f"/cpu:{i}" for i in range(num_devices)]


def _jax_devices(num_devices):
    import jax

    if _XLA_DEVICE_COUNT_FLAG not in os.environ.get("XLA_FLAGS", ""):
        try:
            jax.config.update("jax_num_cpu_devices", num_devices)
        except AttributeError:  # older JAX without the option reads XLA_FLAGS when it starts
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                       f" {_XLA_DEVICE_COUNT_FLAG}={num_devices}").strip()
        except RuntimeError:  # JAX has initialised its devices already
            pass
    devices = jax.devices()
    if len(devices) < num_devices:
        kind = devices[0].platform.upper()
        raise _too_few(num_devices, len(devices), f"{kind} device" + ("" if len(devices) == 1 else "s"),
                       " (virtual CPU devices must be configured before JAX initialises, e.g. by "
                       f"calling configure_devices first or setting XLA_FLAGS={_XLA_DEVICE_COUNT_FLAG}=N)")
    return devices[:num_devices]


def distribution_scope(num_devices):
    """Context manager in which to build, compile and fit a model on num_devices devices.

    num_devices 0 or 1: a context that changes nothing. TensorFlow: the scope of a
    `tf.distribute.MirroredStrategy`; JAX: a `keras.distribution.DataParallel` distribution.
    Calls `configure_devices`, with its errors.
    """
    devices = configure_devices(num_devices)
    if not devices:
        return contextlib.nullcontext()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy(devices=devices).scope()
    names = [f"{device.platform}:{device.id}" for device in devices]
    return keras.distribution.DataParallel(devices=names).scope()


def num_replicas():
    """Devices the current training step runs on in parallel, each on its own part of the batch:
    N inside a `tf.distribute` replica context of N replicas, else 1 (also on JAX, whose
    distributed steps see the global batch)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context.num_replicas_in_sync if context is not None else 1


def global_sum(value):
    """The sum of a float32 scalar over the replicas of a `tf.distribute` step (value unchanged
    elsewhere), for loss normalisers such as positive-anchor counts, so that they count the
    global batch and a distributed step computes the same loss as one device."""
    if num_replicas() == 1:
        return value
    import tensorflow as tf

    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(value))
