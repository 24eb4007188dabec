"""Writes one of our legacy-architecture models as the `.h5` file keras-maskrcnn 0.2 or keras-retinanet
1.0 would have written, with h5py, in either layout:

- "keras-2.2": Keras 2.2.4 (the original's era): bytes attributes, class_name "Model", no
  `module` / `registered_name`, and weight names with the "_1" suffix TensorFlow 1 gave the
  variables of a model built a second time in one session ('res2a_branch2a_1/kernel:0'), so that
  the names inside nested models do not say their layer and only their order does;
- "tf-keras": tf_keras 2.x: str attributes, class_name "Functional", `module` and
  `registered_name` on every layer, weights named '<layer>/<variable>:0' (as the tf_keras 2.21
  files of `make legacy-reference` have them, TimeDistributed layers included).

The layer list follows the originals (anchors_0..4 + `anchors`, keras-resnet `BatchNormalization`
with `freeze`, `roi_align`, a TimeDistributed `mask_submodel`, `masks` as ConcatenateBoxes); only
what `keras_maskrcnn.models.legacy_h5` reads is filled in each layer's config. Used by the tests
(CI has no legacy venv); the real files come from `make legacy-reference`.
"""

import json

import h5py
import numpy as np

from keras_maskrcnn import layers

LAYOUTS = ("keras-2.2", "tf-keras")


def _entry(layout, class_name, config, module="keras.layers"):
    entry = {"class_name": class_name, "config": config, "name": config["name"], "inbound_nodes": []}
    if layout == "tf-keras":
        entry.update(module=module, registered_name=None if module.startswith("keras") else class_name)
    return entry


def _nested(layout, model, wrap=False):
    """The config of a nested model (a RetinaNet head or the mask head, TimeDistributed if wrap)."""
    entries = []
    for layer in model.layers:
        config = {"name": layer.name}
        if hasattr(layer, "filters"):
            config["filters"] = layer.filters
        class_name = type(layer).__name__
        if wrap and class_name != "InputLayer":
            entries.append(_entry(layout, "TimeDistributed", {"name": layer.name, "layer": {
                "class_name": class_name, "config": dict(config, name=f"{class_name.lower()}_{len(entries)}")}}))
        else:
            entries.append(_entry(layout, class_name, config))
    return {"class_name": "Model" if layout == "keras-2.2" else "Functional",
            "config": {"name": model.name, "layers": entries}}


def _config(layout, model, anchor_params):
    """(model_config dict, [(layer name, weight owner or None)]) of `model` in the original's layer list."""
    entries, owners = [], []
    for layer in model.layers:
        name = layer.name
        if isinstance(layer, layers.Anchors):
            for i, (size, stride) in enumerate(zip(anchor_params.sizes, anchor_params.strides)):
                config = dict(name=f"anchors_{i}", size=size, stride=stride, ratios=anchor_params.ratios.tolist(),
                              scales=anchor_params.scales.tolist())
                entries.append(_entry(layout, "Anchors", config, "keras_retinanet.layers._misc"))
                owners.append((f"anchors_{i}", None))
            entries.append(_entry(layout, "Concatenate", {"name": "anchors", "axis": 1}))
            owners.append(("anchors", None))
        elif isinstance(layer, layers.DetectionMasks):
            entries.append(_entry(layout, "Shape", {"name": "shape_1"}, "keras_maskrcnn.layers.misc"))
            entries.append(_entry(layout, "RoiAlign", {"name": "roi_align_1", "crop_size": [14, 14]},
                                  "keras_maskrcnn.layers.roi"))
            entries.append(dict(_nested(layout, layer.mask_model, wrap=True), name="mask_submodel"))
            entries.append(_entry(layout, "ConcatenateBoxes", {"name": "masks"}, "keras_maskrcnn.layers.misc"))
            owners += [("shape_1", None), ("roi_align_1", None), ("mask_submodel", layer.mask_model), ("masks", None)]
        elif isinstance(layer, layers.FilterDetections):
            config = {key: getattr(layer, key) for key in
                      ("nms", "class_specific_filter", "nms_threshold", "score_threshold", "max_detections")}
            config.update(name=name, parallel_iterations=32)
            entries.append(_entry(layout, "FilterDetections", config, "keras_retinanet.layers.filter_detections"))
            owners.append((name, None))
        elif isinstance(layer, layers.RegressBoxes):
            mean = layer.mean if isinstance(layer.mean, list) else [layer.mean] * 4
            std = layer.std if isinstance(layer.std, list) else [layer.std] * 4
            entries.append(_entry(layout, "RegressBoxes", {"name": name, "mean": mean, "std": std},
                                  "keras_retinanet.layers._misc"))
            owners.append((name, None))
        elif hasattr(layer, "layers"):
            entries.append(dict(_nested(layout, layer), name=name))
            owners.append((name, layer))
        else:
            class_name = type(layer).__name__
            config = {"name": name}
            if class_name == "BatchNormalization":
                config.update(epsilon=layer.epsilon, freeze=True)
            entries.append(_entry(layout, class_name, config))
            owners.append((name, layer if layer.weights else None))
    root = {"class_name": "Model" if layout == "keras-2.2" else "Functional",
            "config": {"name": model.name, "layers": entries}}
    if layout == "tf-keras":
        root.update(module="keras.src.engine.functional", registered_name="Functional")
    return root, owners


def _weights(layout, owner):
    """[(weight name, array)] of a layer or nested model as the layout names them."""
    nested = hasattr(owner, "layers")
    found = []
    for leaf in (owner.layers if nested else [owner]):
        for variable in leaf.weights:
            array = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
            suffix = "_1" if layout == "keras-2.2" else ""
            found.append((f"{leaf.name}{suffix}/{variable.name}:0", array))
    return found


def write_legacy_h5(model, path, layout="keras-2.2", anchor_params=None, drop_layers=(), extra_layers=()):
    """Writes `model` (built by `legacy_maskrcnn` / `legacy_retinanet_bbox`) to `path` as an old `.h5`.

    drop_layers: top-level names to leave out; extra_layers: (name, [(weight name, array)]) to add
    (both for the bad-layout tests)."""
    from keras_maskrcnn.utils.anchors import AnchorParameters

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    if anchor_params is None:
        anchor_params = model.get_layer("anchors").anchor_params if _has(model, "anchors") else AnchorParameters.default
    config, owners = _config(layout, model, anchor_params)
    config["config"]["layers"] = [e for e in config["config"]["layers"] if e["name"] not in drop_layers]
    text = (lambda s: s.encode("utf8")) if layout == "keras-2.2" else str
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = text("2.2.4" if layout == "keras-2.2" else "2.15.0")
        f.attrs["backend"] = text("tensorflow")
        f.attrs["model_config"] = text(json.dumps(config))
        group = f.create_group("model_weights")
        written = []
        kept = [(n, _weights(layout, o) if o is not None else []) for n, o in owners if n not in drop_layers]
        for name, weights in kept + list(extra_layers):
            layer = group.create_group(name)
            layer.attrs["weight_names"] = [text(w) for w, _ in weights]
            for weight, array in weights:
                layer.create_dataset(weight, data=array)
            written.append(name)
        group.attrs["layer_names"] = [text(n) for n in written]
        group.attrs["keras_version"] = f.attrs["keras_version"]
        group.attrs["backend"] = f.attrs["backend"]
    return path


def _has(model, name):
    return any(layer.name == name for layer in model.layers)
