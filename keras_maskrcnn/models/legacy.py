"""The models of keras-maskrcnn 0.2 and keras-retinanet 1.0, rebuilt in Keras 3 from their `.h5` files.

    from keras_maskrcnn.models.legacy import load_legacy_model
    model = load_legacy_model("resnet50_coco_v0.2.0.h5")   # image -> [..., boxes, scores, labels, masks]

The architecture is the one they were trained with (keras-resnet backbone, crop_and_resize RoIAlign,
boxes clipped to the last pixel, their filter settings); every layer is ours, so the model runs on
every Keras backend and saves as `.keras` with that architecture.
"""

import warnings

import keras

from .legacy_h5 import KINDS, LegacyFile
from .legacy_resnet import legacy_resnet_features
from .maskrcnn import maskrcnn
from .retinanet import retinanet, retinanet_bbox
from .settings import LEGACY

# keras-retinanet's convert_model / retinanet_bbox default.
RETINANET_MAX_DETECTIONS = 300


def _depth(backbone_name):
    if backbone_name not in ("resnet50", "resnet101", "resnet152"):
        raise ValueError(f"old models use the keras-resnet backbones resnet50, resnet101 and resnet152, "
                         f"not {backbone_name!r}")
    return int(backbone_name[len("resnet"):])


def legacy_maskrcnn(num_classes, backbone_name="resnet50", inputs=None, freeze_backbone=False, name="retinanet-mask",
                    **kwargs):
    """keras-maskrcnn 0.2's prediction model in Keras 3: image -> [regression, classification, boxes,
    scores, labels, masks], keras-resnet backbone with frozen batch normalisation. kwargs go to
    `maskrcnn` (anchor_params, max_detections, score_threshold, regression_std, ...)."""
    if inputs is None:
        inputs = keras.Input(shape=(None, None, 3), name="image")
    features = legacy_resnet_features(inputs, _depth(backbone_name), freeze_backbone=freeze_backbone)
    return maskrcnn(inputs, features, num_classes, name=name, legacy=True, **kwargs)


def legacy_retinanet_bbox(num_classes, backbone_name="resnet50", anchor_params=None, name="retinanet-bbox",
                          **filter_kwargs):
    """keras-retinanet 1.0's inference model in Keras 3: image -> [regression, classification,
    boxes, scores, labels]; filter_kwargs as `detections` takes them (300 detections by default)."""
    inputs = keras.Input(shape=(None, None, 3), name="image")
    features = legacy_resnet_features(inputs, _depth(backbone_name))
    model = retinanet(inputs, features, num_classes, anchor_params=anchor_params, name="retinanet")
    options = {"max_detections": RETINANET_MAX_DETECTIONS, "clip_margin": LEGACY.box_decoding.clip_margin,
               **filter_kwargs}
    return retinanet_bbox(model, anchor_params=anchor_params, name=name, **options)


def _weight_key(name):
    """'res2a_branch2a/kernel:0' -> ('res2a_branch2a', 'kernel'): the owner's name and the variable's."""
    parts = name.split(":")[0].split("/")
    return (parts[-2] if len(parts) > 1 else ""), parts[-1]


def _leaf_layers(layer):
    """The layers holding variables of `layer`, nested models unrolled, in build order."""
    if isinstance(layer, keras.Model):
        return [leaf for inner in layer.layers for leaf in _leaf_layers(inner)]
    return [layer] if layer.weights else []


def _arrays_for(layer, entries):
    """[(leaf layer, [arrays in its variables' order])] of `layer` from the file's entries for the
    layer of the same name, or None when they do not fit. Arrays are matched by variable name
    ('kernel', 'gamma', ...) and, inside a nested model, by the name of the layer owning them; where
    the file's names do not say the owner (wrapped layers of Keras 2 files), by order."""
    leaves = _leaf_layers(layer)
    nested = isinstance(layer, keras.Model)
    by_key = {}
    for name, array in entries:
        owner, variable = _weight_key(name)
        by_key[(owner if nested else None, variable)] = array
    wanted = [[(leaf.name if nested else None, v.name) for v in leaf.weights] for leaf in leaves]
    if len(by_key) == len(entries) and all(key in by_key for keys in wanted for key in keys):
        return [(leaf, [by_key[key] for key in keys]) for leaf, keys in zip(leaves, wanted)]
    arrays = [array for _, array in entries]
    if len(arrays) != sum(len(keys) for keys in wanted):
        return None
    pairs, start = [], 0
    for leaf, keys in zip(leaves, wanted):
        pairs.append((leaf, arrays[start:start + len(keys)]))
        start += len(keys)
    return pairs


def _weight_owners(model):
    """The top-level layers of `model` that hold weights, with the mask head of a prediction model
    (inside its `masks` layer) standing for itself, as the old files keep it: `mask_submodel`."""
    from ..layers import DetectionMasks

    for layer in model.layers:
        if isinstance(layer, DetectionMasks):
            yield layer.mask_model
        elif layer.weights:
            yield layer


def load_weights_by_name(model, legacy, skip_mismatch=False):
    """Copies the file's arrays into the layers of `model` with the same names, nested models layer
    by layer (so a head whose last conv has another class count keeps its hidden convs).

    Returns (loaded, skipped, missing): names ('classification_submodel/pyramid_classification' inside
    nested models) of layers loaded, [(name, reason)] of those whose shapes differ, and names of
    `model`'s weighted layers the file does not have. Without skip_mismatch anything skipped or missing
    is a ValueError and nothing is assigned."""
    plan, skipped, missing = [], [], []
    for owner in _weight_owners(model):
        entries = legacy.weights.get(owner.name)
        if entries is None:
            missing.append(owner.name)
            continue
        pairs = _arrays_for(owner, entries)
        if pairs is None:
            skipped.append((owner.name, f"the file holds {len(entries)} arrays for it, which do not match its "
                                        f"{len(owner.weights)} weights"))
            continue
        for leaf, arrays in pairs:
            name = owner.name if leaf is owner else f"{owner.name}/{leaf.name}"
            problem = next((f"{leaf.name}/{v.name} has shape {tuple(v.shape)} here and {tuple(a.shape)} in the file"
                            for v, a in zip(leaf.weights, arrays) if tuple(v.shape) != tuple(a.shape)), None)
            if problem:
                skipped.append((name, problem))
            else:
                plan.append((name, leaf, arrays))
    if not skip_mismatch and (skipped or missing):
        details = "; ".join([f"{name}: {why}" for name, why in skipped[:5]] + [f"{name}: not in the file"
                                                                               for name in missing[:5]])
        raise ValueError(f"{legacy.path!r} does not fit the rebuilt {model.name!r} model "
                         f"({len(skipped) + len(missing)} layers): {details}")
    for _, leaf, arrays in plan:
        leaf.set_weights(arrays)
    return [name for name, _, _ in plan], skipped, missing


def _check_backbone(legacy, backbone_name):
    if backbone_name is not None and backbone_name != legacy.backbone:
        raise ValueError(f"{legacy.path!r} holds a {legacy.backbone} backbone, not {backbone_name!r}; "
                         f"load it with backbone_name={legacy.backbone!r}")


def build_legacy_model(legacy, **filter_kwargs):
    """The prediction model of `legacy` (a LegacyFile of kind keras-maskrcnn or keras-retinanet*),
    random weights; filter_kwargs override the file's settings."""
    options = {"anchor_params": legacy.anchor_params, "regression_mean": legacy.regression["mean"],
               "regression_std": legacy.regression["std"], **legacy.filter, **filter_kwargs}
    if legacy.kind == "keras-maskrcnn":
        return legacy_maskrcnn(legacy.num_classes, legacy.backbone, **options)
    if legacy.kind.startswith("keras-retinanet"):
        options.pop("mask_dtype", None)
        return legacy_retinanet_bbox(legacy.num_classes, legacy.backbone, **options)
    raise ValueError(f"{legacy.path!r} holds {KINDS[legacy.kind]}: backbone weights only, no detector "
                     f"(use it with maskrcnn-train --weights)")


def load_legacy_model(path, backbone_name=None, **filter_kwargs):
    """Prediction model of an old `.h5` file with every weight of the file.

    keras-maskrcnn 0.2 files give image -> [regression, classification, boxes, scores, labels, masks];
    keras-retinanet 1.0 files (training or converted) give the box model, image -> [regression,
    classification, boxes, scores, labels], with a warning that there is no mask head.
    backbone_name: checked against the file's (None: whatever it holds). ValueError naming the path
    for files that are not such models; nothing half-loaded is returned.
    """
    legacy = LegacyFile(path)
    _check_backbone(legacy, backbone_name)
    model = build_legacy_model(legacy, **filter_kwargs)
    load_weights_by_name(model, legacy)
    if legacy.kind != "keras-maskrcnn":
        warnings.warn(f"{path}: {KINDS[legacy.kind]} has no mask head; the model outputs boxes, scores and labels only",
                      stacklevel=2)
    return model
