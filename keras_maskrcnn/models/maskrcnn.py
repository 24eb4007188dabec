"""Mask R-CNN on RetinaNet: the prediction model and the training model that shares its layers.

Layer names (stable; weights load by them):
- backbone layers keep their `keras.applications` names; FPN: C3_reduced, C4_reduced, C5_reduced,
  P5_upsampled, P4_merged, P4_upsampled, P3_merged, P3, P4, P5, P6, C6_relu, P7;
- heads: regression_submodel, classification_submodel (shared over levels), concatenated by
  `regression` and `classification`;
- detections: anchors, boxes, clipped_boxes, filtered_detections;
- mask branch: mask_submodel (roi_mask_0..3, roi_mask_deconv or roi_mask_upsample + roi_mask_4,
  roi_mask); in the training model
  roi_align, roi_flatten, mask_submodel, masks; in the prediction model all of it inside `masks`
  (a `DetectionMasks` layer, which runs the head only on rows holding detections).

Reduced precision: `maskrcnn(..., mixed_precision=...)` builds every layer under a mixed dtype
policy except the float32 ones listed in `keras_maskrcnn.utils.precision`; `training_model` and
`prediction_model` build their new layers under the policy of the model they are given.
"""

import keras
import numpy as np

from .. import layers
from ..utils.anchors import AnchorParameters
from ..utils.precision import model_policy, policy_scope, resolve_policy
from .mask_head import mask_submodel
from .retinanet import PYRAMID_LEVELS, detections, pyramid_features, retinanet_outputs

FILTER_DEFAULTS = dict(
    nms=True, class_specific_filter=True, score_threshold=0.05, nms_threshold=0.5,
    max_detections=100, pre_nms_top_k=1000,
)

# What keras-maskrcnn 0.2 did differently after the backbone: RoIAlign by crop_and_resize, boxes
# clipped to the last pixel (keras-retinanet 1.0's ClipBoxes).
LEGACY_SETTINGS = dict(roi_align=dict(sampling="crop_and_resize"), clip_margin=1.0)


def mask_outputs(boxes, features, mask_model, mask_dtype=None, roi_align=None, image=None):
    """Masks (B, N, 28, 28, num_classes) for every one of boxes (B, N, 4) in input pixels.

    roi_align: a `RoiAlign` config (default: the default layer); one that takes the image needs `image`."""
    roi_align = layers.RoiAlign.from_config(dict(roi_align or {}, name="roi_align"))
    pooled = roi_align(([image] if roi_align.takes_image else []) + [boxes] + list(features))
    flat = layers.FlattenRois(name="roi_flatten")(pooled)
    return layers.UnflattenRois(dtype_out=mask_dtype, name="masks")([mask_model(flat), pooled])


def _mask_parts(model):
    """(mask head, RoiAlign config) of a training model (layers of their own) or of a prediction
    model (inside `masks`)."""
    try:
        return model.get_layer("mask_submodel"), model.get_layer("roi_align").get_config()
    except ValueError:
        masks = model.get_layer("masks")
        if not isinstance(masks, layers.DetectionMasks):
            raise
        return masks.mask_model, masks.roi_align.get_config()


def box_settings(model):
    """The box decoding of a model built here: dict(clip_margin[, regression_mean, regression_std]),
    read from its `clipped_boxes` and `boxes` layers. A training model has neither: there keras-maskrcnn
    0.2's RoIAlign sampling stands for its ClipBoxes (margin 1), and the regression keeps the defaults."""
    try:
        clip, regress = model.get_layer("clipped_boxes"), model.get_layer("boxes")
        return dict(clip_margin=clip.margin, regression_mean=regress.mean, regression_std=regress.std)
    except ValueError:
        _, roi_align = _mask_parts(model)
        return dict(clip_margin=1.0 if roi_align.get("sampling") == "crop_and_resize" else 0.0)


def _parts(model):
    """(image, [P3..P7], regression, classification, mask_submodel, RoiAlign config) of a model built here."""
    try:
        features = [model.get_layer(level).output for level in PYRAMID_LEVELS]
        regression = model.get_layer("regression").output
        classification = model.get_layer("classification").output
        mask_model, roi_align = _mask_parts(model)
    except ValueError as error:
        raise ValueError(f"model {model.name!r} is not a keras_maskrcnn model: {error}") from None
    return model.inputs[0], features, regression, classification, mask_model, roi_align


def _prediction_graph(image, features, regression, classification, mask_model, anchor_params=None,
                      mask_dtype=None, name="maskrcnn", roi_align=None, clip_margin=0.0, regression_mean=0.0,
                      regression_std=0.2, row_selection="switch", buckets=None, **filter_kwargs):
    options = dict(FILTER_DEFAULTS, **filter_kwargs)
    boxes, scores, labels = detections(image, features, regression, classification, anchor_params,
                                       clip_margin=clip_margin, regression_mean=regression_mean,
                                       regression_std=regression_std, **options)
    roi_align = layers.RoiAlign.from_config(dict(roi_align or {}, name="roi_align"))
    inputs = [boxes, scores] + ([image] if roi_align.takes_image else []) + list(features)
    masks = layers.DetectionMasks(mask_model, buckets=buckets, mask_dtype=mask_dtype, roi_align=roi_align,
                                  row_selection=row_selection, name="masks")(inputs)
    return keras.Model(
        inputs=image, outputs=[regression, classification, boxes, scores, labels, masks], name=name
    )


def maskrcnn(inputs, backbone_layers, num_classes, anchor_params=None, mask_dtype=None,
             prior_probability=0.01, feature_size=256, mask_feature_size=256, name="maskrcnn",
             mixed_precision=None, legacy=False, mask_upsampling=None, **filter_kwargs):
    """Prediction model: image (B,H,W,3) -> [regression (B,A,4), classification (B,A,C),
    boxes (B,N,4), scores (B,N), labels (B,N) int32, masks (B,N,28,28,C)].

    inputs: the image `keras.Input`; backbone_layers: [C3, C4, C5] computed from it.
    filter_kwargs: nms, class_specific_filter, score_threshold, nms_threshold, max_detections,
    pre_nms_top_k (see `FilterDetections`). mask_dtype: dtype of the masks output (default float32).
    feature_size: channels of the FPN and the box heads; mask_feature_size: channels of the mask
    head's convolutions (both 256 by default, as in keras-maskrcnn; smaller is faster and is
    enough for simple data such as the shapes demo). mask_upsampling: "transposed" (a 2x2 stride-2
    transposed conv, as in the paper and torchvision) or "nearest" (keras-maskrcnn's); None: "nearest"
    for a legacy model, else "transposed" (see `mask_submodel`).
    mixed_precision: None or False (float32), True or "auto" ("mixed_float16" if a GPU is visible,
    else "mixed_bfloat16"), "mixed_bfloat16" or "mixed_float16": the dtype policy the layers are
    built under (the global policy is restored afterwards). Build backbone_layers under the same
    policy (`Backbone.maskrcnn` does). Outputs keep the dtypes above whatever the policy.
    legacy: keras-maskrcnn 0.2's layers after the backbone (`LEGACY_SETTINGS` and its mask head's
    layer names), for the models it trained. filter_kwargs may also hold roi_align (a `RoiAlign`
    config), clip_margin, regression_mean and regression_std.
    """
    anchor_params = anchor_params or AnchorParameters.default
    if mask_upsampling is None:
        mask_upsampling = "nearest" if legacy else "transposed"
    if legacy:
        filter_kwargs = dict(LEGACY_SETTINGS, **filter_kwargs)
    with policy_scope(resolve_policy(mixed_precision)):
        features = pyramid_features(*backbone_layers, feature_size=feature_size)
        regression, classification = retinanet_outputs(features, num_classes, anchor_params.num_anchors(),
                                                       prior_probability, feature_size)
        mask_model = mask_submodel(num_classes, pyramid_feature_size=feature_size, feature_size=mask_feature_size,
                                   last_conv_name="roi_mask_features" if legacy else "roi_mask_4",
                                   upsampling=mask_upsampling)
        return _prediction_graph(inputs, features, regression, classification, mask_model, anchor_params,
                                 mask_dtype, name, **filter_kwargs)


def training_model(model, name="maskrcnn_training"):
    """Training model sharing every weight of `model` (a prediction or training model built here).

    Inputs: image (B,H,W,3) and rois (B,M,4), the RoIs to predict masks for, x1y1x2y2 in input
    pixels. Outputs, named for the losses: regression (B,A,4), classification (B,A,C),
    masks (B,M,28,28,C). New layers take the dtype policy of `model`'s layers.
    """
    image, features, regression, classification, mask_model, roi_align = _parts(model)
    with policy_scope(model_policy(model)):
        rois = keras.Input(shape=(None, 4), name="rois")
        masks = mask_outputs(rois, features, mask_model, roi_align=roi_align, image=image)
        return keras.Model(inputs=[image, rois], outputs=[regression, classification, masks], name=name)


def build_training_state(train):
    """Creates the state a compiled training model `train` would create on its first step: its
    loss and metric trackers and the optimizer's variables, from the shapes of its inputs and
    outputs (image (B,H,W,3), rois (B,M,4); targets regression (B,A,4) float32, classification
    (B,A) of `utils.anchors.class_target_dtype`, masks (B,M,1+S*S) float32).

    Keras on TensorFlow without a distribution strategy otherwise creates them while it traces
    the first step, and a step that creates variables is traced a second time: building them
    first makes the first step about 40% cheaper. Does nothing on a model that is built already,
    nor on the other backends, whose trainers build from the first batch before they trace.
    """
    from ..utils.anchors import class_target_dtype

    if keras.backend.backend() != "tensorflow":
        return

    regression, classification, masks = train.outputs
    num_classes = int(classification.shape[-1])
    size = int(masks.shape[2]) * int(masks.shape[3])
    inputs = [keras.KerasTensor(tensor.shape, tensor.dtype) for tensor in train.inputs]
    targets = dict(regression=keras.KerasTensor((None, None, 4), "float32"),
                   classification=keras.KerasTensor((None, None), np.dtype(class_target_dtype(num_classes)).name),
                   masks=keras.KerasTensor((None, None, 1 + size), "float32"))
    train._symbolic_build(data_batch=(inputs, targets))


def prediction_model(model, anchor_params=None, mask_dtype=None, name="maskrcnn", **filter_kwargs):
    """Prediction model sharing every weight of `model` (a training or prediction model built here),
    with its RoIAlign and box decoding (`box_settings`) unless filter_kwargs say otherwise.

    New layers take the dtype policy of `model`'s layers."""
    image, features, regression, classification, mask_model, roi_align = _parts(model)
    filter_kwargs = dict(box_settings(model), **filter_kwargs)
    with policy_scope(model_policy(model)):
        return _prediction_graph(image, features, regression, classification, mask_model, anchor_params,
                                 mask_dtype, name, roi_align=roi_align, **filter_kwargs)


def is_training_model(model):
    """True for a model whose inputs include the `rois` of the training model."""
    return any(getattr(t, "name", "").startswith("rois") for t in model.inputs)
