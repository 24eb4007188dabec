"""Run-time patches that let the original keras-maskrcnn 0.2.2, keras-retinanet 1.0.0 and keras-resnet 0.2.0
run on TensorFlow 2.21 + tf-keras 2.21 in benchmarks/.venv-legacy. Import this module before anything else:

    import patches          # first line of every script in the legacy venv
    patches.apply()         # done on import; idempotent

Nothing of the old packages is copied or edited on disk: every patch below is a monkeypatch or a
sys.modules alias applied in memory, and each keeps the math of the original code unchanged.

keras-maskrcnn 0.2.2 was written for Keras 2.2 (`import keras`) with keras-retinanet 0.5 and
TensorFlow 1.x; keras-retinanet 1.0.0 uses `tensorflow.keras`. The patches, in the order applied:

 1. TF_USE_LEGACY_KERAS=1 before TensorFlow is imported, so that `tensorflow.keras` (what
    keras-retinanet 1.0 uses) is tf_keras (Keras 2) and not Keras 3.
 2. `import keras` and `import keras.<anything>` resolve to `tf_keras` and `tf_keras.<anything>`
    (a meta-path finder that aliases the very same module objects), so keras-maskrcnn and
    keras-resnet (`import keras`) and keras-retinanet (`from tensorflow import keras`) build their
    layers from the same classes. Keras 3 is installed in the venv by TensorFlow, but is never
    imported under the name `keras`.
 3. `keras.initializers.normal` (a Keras 2.2 alias, gone from tf_keras) = `RandomNormal`, used by
    keras-maskrcnn's mask head. Same initializer (mean 0, stddev 0.01).
 4. `keras_retinanet.backend.where`, `.gather_nd`, `.scatter_nd`: removed from keras-retinanet 1.0's
    backend, called by keras-maskrcnn's RoiAlign and losses; thin wrappers of tf.where (one argument:
    the indices of the true elements), tf.gather_nd and tf.scatter_nd, as keras-retinanet 0.5 had them.
    (`map_fn` and `resize_images`, also called, still exist in 1.0 and are used as they are.)
 5. `keras_retinanet.backend.tensorflow_backend`: keras-retinanet 1.0 renamed the module to
    `keras_retinanet.backend.backend`; keras-maskrcnn's models/retinanet.py imports the old name.
    The old name is an alias of the new module (which has the wrappers of 4).
 6. `keras_maskrcnn.backend.crop_and_resize`: tf.image.crop_and_resize's `box_ind=` argument is now
    `box_indices=`. The replacement does what the original does (cast boxes to float32, crop and
    resize, cast back to the image dtype) with the new keyword.
 7. `keras.backend.zeros` with a shape computed at run time (RoiAlign calls
    `keras.backend.zeros((keras.backend.shape(level_boxes)[0],), dtype='int32')` inside tf.map_fn,
    as the box indices of crop_and_resize): tf_keras builds the zeros under tf.init_scope() (lifted
    out of the graph being traced, so that a static shape can become a variable), where a shape
    tensor of the map_fn's loop is "out of scope" and tracing fails. When the shape holds a tensor,
    the wrapper returns `tf.zeros(shape, dtype)` in the current graph (the same zeros tensor that
    tf_keras returns for a symbolic shape); a static shape goes to the original (a variable, as before).
 8. keras-maskrcnn's resnet_maskrcnn passes `backbone_layers=resnet.outputs[1:]`, the list
    [C3, C4, C5] that keras-retinanet 0.5's `retinanet()` took; keras-retinanet 1.0 takes a dict
    {'C3', 'C4', 'C5'} (and would add P2 only for a 'C2' key and pyramid level 2, neither used).
    `keras_maskrcnn.models.retinanet.retinanet_mask` is wrapped to turn a list of three into that dict.
    Same features, same FPN P3..P7.
 9. tf_keras's Adam ignores `lr=` (Keras 2.2's name, used by both bin/train.py), and the lower-case
    `keras.optimizers.adam` that keras-maskrcnn's bin/train.py calls is gone: a subclass maps `lr` to
    `learning_rate`, and `adam` is an alias of it. Matters only for training.

Every patch is listed in PATCHES (name -> reason) after apply(), so that the scripts can record
which ones ran (reference.py writes them into its manifest).
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys

APPLIED = False
PATCHES = {}


def _note(name, reason):
    PATCHES[name] = reason


class _KerasAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `keras` and `keras.X.Y` and answers them with `tf_keras` and `tf_keras.X.Y` (the same objects)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" and not fullname.startswith("keras."):
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        target = "tf_keras" + spec.name[len("keras"):]
        module = importlib.import_module(target)
        sys.modules[spec.name] = module
        return module

    def exec_module(self, module):
        pass  # already executed under its tf_keras name


def _alias_keras():
    if "keras" in sys.modules:
        import tf_keras
        if sys.modules["keras"] is not tf_keras:
            raise RuntimeError("keras (Keras 3) was imported before benchmarks/legacy/patches.py; import patches first")
    sys.meta_path.insert(0, _KerasAlias())
    import keras
    import tf_keras
    assert keras is tf_keras, keras
    _note("keras -> tf_keras", "the old packages `import keras` (Keras 2.2); keras-retinanet 1.0 uses tensorflow.keras; "
          "both must be tf_keras so their layers share classes")


def _initializers_normal():
    import tf_keras
    if not hasattr(tf_keras.initializers, "normal"):
        tf_keras.initializers.normal = tf_keras.initializers.RandomNormal
        _note("keras.initializers.normal", "Keras 2.2 alias gone from tf_keras; = RandomNormal (keras-maskrcnn mask head)")


def _retinanet_backend():
    import tensorflow as tf
    import keras_retinanet.backend as package
    import keras_retinanet.backend.backend as module

    def where(*args, **kwargs):
        """tf.where (keras-retinanet 0.5's backend.where)."""
        return tf.where(*args, **kwargs)

    def gather_nd(*args, **kwargs):
        """tf.gather_nd (keras-retinanet 0.5's backend.gather_nd)."""
        return tf.gather_nd(*args, **kwargs)

    def scatter_nd(*args, **kwargs):
        """tf.scatter_nd (keras-retinanet 0.5's backend.scatter_nd)."""
        return tf.scatter_nd(*args, **kwargs)

    for fn in (where, gather_nd, scatter_nd):
        if not hasattr(module, fn.__name__):
            setattr(module, fn.__name__, fn)
            setattr(package, fn.__name__, fn)
            _note(f"keras_retinanet.backend.{fn.__name__}", f"removed in keras-retinanet 1.0, called by keras-maskrcnn; "
                  f"= tf.{fn.__name__}")
    if "keras_retinanet.backend.tensorflow_backend" not in sys.modules:
        sys.modules["keras_retinanet.backend.tensorflow_backend"] = module
        package.tensorflow_backend = module
        _note("keras_retinanet.backend.tensorflow_backend", "renamed keras_retinanet.backend.backend in 1.0; "
              "keras-maskrcnn imports the old name; alias")


def _maskrcnn_crop_and_resize():
    import tensorflow as tf
    import keras_maskrcnn.backend as package
    import keras_maskrcnn.backend.tensorflow_backend as module

    def crop_and_resize(image, boxes, box_ind, crop_size, **kwargs):
        """keras-maskrcnn 0.2.2's crop_and_resize with tf.image.crop_and_resize's new box_indices keyword."""
        return tf.cast(
            tf.image.crop_and_resize(image=image, boxes=tf.cast(boxes, tf.float32), box_indices=box_ind,
                                     crop_size=crop_size, **kwargs),
            image.dtype)

    module.crop_and_resize = crop_and_resize
    package.crop_and_resize = crop_and_resize
    _note("keras_maskrcnn.backend.crop_and_resize", "tf.image.crop_and_resize(box_ind=) is now box_indices=; "
          "same casts and call")


def _dynamic_zeros():
    import tensorflow as tf
    import tf_keras

    original = tf_keras.backend.zeros
    if getattr(original, "_legacy_patch", False):
        return

    def zeros(shape, dtype=None, name=None):
        """keras.backend.zeros; a shape holding a tensor gives tf.zeros (a tensor) instead of a variable."""
        dims = shape if isinstance(shape, (list, tuple)) else [shape]
        if any(tf.is_tensor(d) for d in dims):
            return tf.zeros(tf.stack([tf.cast(d, tf.int32) for d in dims]) if isinstance(shape, (list, tuple)) else shape,
                            dtype=dtype or tf_keras.backend.floatx(), name=name)
        return original(shape, dtype=dtype, name=name)

    zeros._legacy_patch = True
    tf_keras.backend.zeros = zeros
    _note("keras.backend.zeros", "tf_keras builds zeros under tf.init_scope(), where a run-time size from inside "
          "tf.map_fn (RoiAlign's box indices) is out of scope; such shapes give tf.zeros in place, static shapes "
          "the original")


def _backbone_layers_dict():
    import keras_maskrcnn.models.retinanet as module

    original = module.retinanet_mask
    if getattr(original, "_legacy_patch", False):
        return

    def retinanet_mask(*args, **kwargs):
        """keras-maskrcnn's retinanet_mask; a [C3, C4, C5] list of backbone_layers becomes keras-retinanet 1.0's dict."""
        layers = kwargs.get("backbone_layers")
        if isinstance(layers, (list, tuple)):
            if len(layers) != 3:
                raise ValueError(f"expected backbone_layers [C3, C4, C5], got {len(layers)} tensors")
            kwargs["backbone_layers"] = dict(zip(("C3", "C4", "C5"), layers))
        return original(*args, **kwargs)

    retinanet_mask._legacy_patch = True
    module.retinanet_mask = retinanet_mask
    _note("keras_maskrcnn retinanet_mask backbone_layers", "keras-maskrcnn passes the list [C3, C4, C5]; "
          "keras-retinanet 1.0's retinanet() takes the dict {'C3', 'C4', 'C5'}")


def _adam_lr():
    import tf_keras

    original = tf_keras.optimizers.Adam
    if getattr(original, "_legacy_patch", False):
        return

    class Adam(original):
        """tf_keras Adam that takes Keras 2.2's `lr=` as `learning_rate=`."""
        _legacy_patch = True

        def __init__(self, *args, **kwargs):
            if "lr" in kwargs:
                kwargs.setdefault("learning_rate", kwargs.pop("lr"))
            super().__init__(*args, **kwargs)

    Adam.__name__ = Adam.__qualname__ = "Adam"
    tf_keras.optimizers.Adam = Adam
    tf_keras.optimizers.adam = Adam
    _note("keras.optimizers.Adam(lr=), keras.optimizers.adam", "tf_keras's Adam ignores lr=, mapped to learning_rate; "
          "adam (Keras 2.2 name) gone, alias (training only)")


def apply():
    """Applies every patch once (idempotent). Returns PATCHES."""
    global APPLIED
    if APPLIED:
        return PATCHES
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("tensorflow was imported before benchmarks/legacy/patches.py without TF_USE_LEGACY_KERAS=1")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _note("TF_USE_LEGACY_KERAS=1", "tensorflow.keras (keras-retinanet 1.0) must be tf_keras, not Keras 3")
    _alias_keras()
    _initializers_normal()
    _retinanet_backend()
    _maskrcnn_crop_and_resize()
    _dynamic_zeros()
    _backbone_layers_dict()
    _adam_lr()
    _check_originals()
    APPLIED = True
    return PATCHES


def _check_originals():
    """The old packages must be the installed originals, not this repository's keras_maskrcnn."""
    import keras_maskrcnn
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    location = os.path.abspath(keras_maskrcnn.__file__)
    if location.startswith(here + os.sep) and "site-packages" not in location:
        raise RuntimeError(f"keras_maskrcnn resolves to this repository ({location}), not keras-maskrcnn 0.2.2; "
                           "run the script by its path (python benchmarks/legacy/x.py), not with the repo on sys.path")


apply()
