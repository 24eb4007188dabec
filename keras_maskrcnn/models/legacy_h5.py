"""Reading the `.h5` files of keras-maskrcnn 0.2, keras-retinanet 1.0 and keras-resnet 0.2 with h5py.

Nothing of the old code is needed: the `model_config` JSON says what the layers were (only their
names, class names and a few settings are read) and `model_weights` holds the arrays by layer name.
Both layouts work: Keras 2.2 (bytes attributes, class names without `module`) and tf_keras 2.x.
"""

import json
import os
import re

import numpy as np

from ..utils.anchors import AnchorParameters

# Which backbone a file holds, by the blocks of its stages 3 and 4 (keras-resnet layer names).
_RESNET_DEPTHS = {(4, 6): 50, (4, 23): 101, (8, 36): 152}
# Layer names of backbones keras-retinanet 1.0 had and we do not rebuild in its layout.
_OTHER_BACKBONES = (
    ("conv_pw_13_relu", "mobilenet"), ("block5_conv3", "vgg"), ("conv5_block16_concat", "densenet"),
    ("top_activation", "efficientnet"), ("stage4_unit3_relu1", "senet"),
)
# Layers that tell other well-known models apart, for clear errors.
_OTHER_MODELS = (("mrcnn_mask", "matterport's Mask_RCNN"), ("rpn_model", "matterport's Mask_RCNN"))

KINDS = {
    "keras-maskrcnn": "a keras-maskrcnn 0.2 model (RetinaNet with a mask head)",
    "keras-retinanet": "a keras-retinanet 1.0 training model (regression and classification)",
    "keras-retinanet-inference": "a keras-retinanet 1.0 inference model (boxes, scores, labels)",
    "keras-resnet": "a keras-resnet 0.2 classifier (ImageNet-style backbone weights)",
}


def _text(value):
    return value.decode("utf8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _flatten_layers(config, prefix=()):
    """{name: (class_name, config, nesting path)} of every layer of a model config, nested models
    included (a nested model's layers under its own path)."""
    found = {}
    for layer in config.get("config", {}).get("layers", []):
        name = layer.get("config", {}).get("name") or layer.get("name")
        found.setdefault(name, (layer.get("class_name"), layer.get("config", {}), prefix))
        if layer.get("class_name") in ("Model", "Functional", "Sequential"):
            found.update({k: v for k, v in _flatten_layers(layer, prefix + (name,)).items() if k not in found})
    return found


class LegacyFile:
    """What an old `.h5` file holds, read once with h5py.

    Attributes: path; kind (a key of `KINDS`); keras_version and backend (as the file says, or
    None); backbone ('resnet50', 'resnet101', 'resnet152'); num_classes (None for keras-resnet);
    num_anchors; anchor_params (AnchorParameters); filter (dict of FilterDetections settings,
    empty if the file has none); regression (dict mean, std); shapes: {layer name: [(weight name,
    shape), ...]} in the file's order; weights: the same with the arrays (empty unless read with
    arrays=True); layers: {name: (class name, config, nesting)} from the config (empty for a
    weights-only file).
    """

    def __init__(self, path, arrays=True):
        self.path = str(path)
        self.read_arrays = arrays
        if not os.path.isfile(self.path):
            raise ValueError(f"model file {self.path!r} does not exist")
        if not is_hdf5(self.path):
            raise ValueError(f"{self.path!r} is not a readable HDF5 model file: {_what_it_is(self.path)}")
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                self._read(f)
        except ValueError as error:
            if self.path in str(error):
                raise
            raise ValueError(f"{self.path!r} is not a readable old model file (damaged?): "
                             f"{' '.join(str(error).split())}") from None
        except (OSError, KeyError, RuntimeError, TypeError) as error:
            raise ValueError(f"{self.path!r} is not a readable HDF5 model file (truncated or damaged?): {error}") from None
        self._describe()

    def _read(self, f):
        attrs = {key: _text(value) for key, value in f.attrs.items() if key in ("keras_version", "backend")}
        self.keras_version = attrs.get("keras_version")
        self.backend = attrs.get("backend")
        config = f.attrs.get("model_config")
        self.config = json.loads(_text(config)) if config is not None else None
        self.layers = _flatten_layers(self.config) if self.config else {}
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise ValueError(f"{self.path!r} holds no Keras weights: no 'layer_names' in "
                             f"{'model_weights' if group is not f else 'the root group'} (found {sorted(f.keys())[:10]})")
        self.shapes, self.weights = {}, {}
        self.layer_names = [_text(n) for n in group.attrs["layer_names"]]
        for name in self.layer_names:
            layer = group[name]
            names = [_text(n) for n in layer.attrs.get("weight_names", [])]
            if names:
                self.shapes[name] = [(weight, tuple(layer[weight].shape)) for weight in names]
                if self.read_arrays:
                    self.weights[name] = [(weight, np.asarray(layer[weight])) for weight in names]

    def _has(self, name):
        return name in self.layer_names or name in self.layers

    def _describe(self):
        found = self.layer_names[:8]
        for marker, model in _OTHER_MODELS:
            if self._has(marker):
                raise ValueError(f"{self.path!r} holds {model} (layer {marker!r}), not a keras-maskrcnn, "
                                 f"keras-retinanet or keras-resnet model")
        if not self._has("res2a_branch2a"):
            for marker, family in _OTHER_BACKBONES:
                if self._has(marker):
                    raise ValueError(f"{self.path!r} has a {family} backbone (layer {marker!r}); old files load "
                                     f"with the keras-resnet ResNet50/101/152 backbones only")
            raise ValueError(f"{self.path!r} is not a keras-maskrcnn, keras-retinanet or keras-resnet model: it has no "
                             f"keras-resnet layer 'res2a_branch2a' (layers found: {found}...)")
        heads = [self._has(n) for n in ("regression_submodel", "classification_submodel")]
        if self._has("mask_submodel"):
            self.kind = "keras-maskrcnn"
        elif all(heads):
            self.kind = "keras-retinanet-inference" if self._has("filtered_detections") else "keras-retinanet"
        elif any(heads):
            raise ValueError(f"{self.path!r} has only one of the RetinaNet heads regression_submodel and "
                             f"classification_submodel: an unknown layer layout")
        else:
            self.kind = "keras-resnet"
        self.backbone = self._backbone_name()
        self.num_anchors = self.num_classes = None
        if self.kind != "keras-resnet":
            self.num_anchors = self._outputs("regression_submodel", "pyramid_regression") // 4
            self.num_classes = self._outputs("classification_submodel", "pyramid_classification") // self.num_anchors
            if self.kind == "keras-maskrcnn" and self._outputs("mask_submodel", "roi_mask") != self.num_classes:
                raise ValueError(f"{self.path!r}: the mask head predicts {self._outputs('mask_submodel', 'roi_mask')} "
                                 f"classes and the classification head {self.num_classes}: an unknown layer layout")
        self.anchor_params = self._anchor_params()
        self.filter = self._filter()
        self.regression = self._regression()

    def _backbone_name(self):
        names = set(self.layer_names) | set(self.layers)
        blocks = []
        for stage in (3, 4):
            pattern = re.compile(rf"^res{stage}[a-z](\d*)_branch2a$")
            blocks.append(sum(1 for n in names if pattern.match(n)))
        depth = _RESNET_DEPTHS.get(tuple(blocks))
        if depth is None:
            raise ValueError(f"{self.path!r} has a keras-resnet backbone with {blocks[0]} blocks in stage 3 and "
                             f"{blocks[1]} in stage 4, which is none of ResNet50/101/152")
        return f"resnet{depth}"

    def _outputs(self, group, layer):
        """Output channels of `layer` inside the nested model `group`, from its bias (or kernel)."""
        entries = self.shapes.get(group, [])
        for name, shape in entries:
            if name.split("/")[-2:-1] == [layer] or name.startswith(layer + "/"):
                return int(shape[-1])
        kernels = [shape for name, shape in entries if "kernel" in name]
        if not kernels:
            raise ValueError(f"{self.path!r}: no weights for {group}/{layer}: an unknown layer layout")
        return int(kernels[-1][-1])

    def _anchor_params(self):
        levels = sorted((n for n in self.layers if re.match(r"^anchors_\d+$", n)), key=lambda n: int(n.split("_")[1]))
        if not levels:
            params = AnchorParameters.default
        else:
            configs = [self.layers[n][1] for n in levels]
            params = AnchorParameters(
                sizes=[c["size"] for c in configs], strides=[c["stride"] for c in configs],
                ratios=configs[0].get("ratios") or AnchorParameters.default.ratios,
                scales=configs[0].get("scales") or AnchorParameters.default.scales,
            )
        if self.num_anchors is not None and params.num_anchors() != self.num_anchors:
            raise ValueError(f"{self.path!r}: the heads predict {self.num_anchors} anchors per position but the anchor "
                             f"parameters give {params.num_anchors()}: an unknown layer layout")
        return params

    def _filter(self):
        if "filtered_detections" not in self.layers:
            return {}
        config = self.layers["filtered_detections"][1]
        keys = ("nms", "class_specific_filter", "nms_threshold", "score_threshold", "max_detections")
        return {key: config[key] for key in keys if key in config}

    def _regression(self):
        config = self.layers.get("boxes", (None, {}))[1]
        return dict(mean=config.get("mean", 0.0), std=config.get("std", 0.2))

    def metadata(self):
        """What `read_metadata` gives for this file: backbone, anchor_params, filter, legacy."""
        return dict(backbone=self.backbone, anchor_params=self.anchor_params.get_config(), filter=dict(self.filter),
                    legacy=dict(kind=self.kind, keras_version=self.keras_version, num_classes=self.num_classes))

    def describe(self):
        """One line: what the file is."""
        classes = f", {self.num_classes} classes" if self.num_classes else ""
        version = f", written by Keras {self.keras_version}" if self.keras_version else ""
        return f"{self.path}: {KINDS[self.kind]}, backbone {self.backbone}{classes}{version}"


def _what_it_is(path):
    with open(path, "rb") as f:
        start = f.read(16)
    if not start:
        return "the file is empty"
    if start.startswith(b"PK"):
        return "it is a zip archive (a .keras file?)"
    return f"it starts with {start!r}"


def is_hdf5(path):
    """Whether `path` starts with the HDF5 signature (cheap; says nothing about its contents)."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False
