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
from ..utils.precision import model_policy, policy_scope, resolve_policy
from .mask_head import mask_submodel
from .retinanet import PYRAMID_LEVELS, detections, pyramid_features, retinanet_outputs
from .settings import LEGACY, BoxDecoding, DetectionFilter, MaskHead, ModelSettings, RoiAlignment

def mask_outputs(boxes, features, mask_model, mask_dtype=None, roi_align=None, image=None):
    """Masks (B, N, 28, 28, num_classes) for every one of boxes (B, N, 4) in input pixels.

    roi_align: a `RoiAlign` config or `RoiAlignment` (default: the default layer); one that takes the
    image needs `image`."""
    roi_align = _roi_align_layer(roi_align)
    pooled = roi_align(([image] if roi_align.takes_image else []) + [boxes] + list(features))
    flat = layers.FlattenRois(name="roi_flatten")(pooled)
    return layers.UnflattenRois(dtype_out=mask_dtype, name="masks")([mask_model(flat), pooled])


def _roi_align_layer(alignment):
    if isinstance(alignment, RoiAlignment):
        alignment = alignment.to_config()
    return layers.RoiAlign.from_config(dict(alignment or {}, name="roi_align"))


def _layer(model, name):
    """The layer of `model` called `name`, or None."""
    return next((layer for layer in model.layers if layer.name == name), None)


def _mask_parts(model):
    """(mask head, RoiAlign config) of a training model (layers of their own) or of a prediction
    model (inside `masks`). ValueError for a model with neither."""
    head, roi_align = _layer(model, "mask_submodel"), _layer(model, "roi_align")
    if head is not None and roi_align is not None:
        return head, roi_align.get_config()
    masks = _layer(model, "masks")
    if not isinstance(masks, layers.DetectionMasks):
        raise ValueError(f"model {model.name!r} has no mask_submodel and roi_align layers, nor a DetectionMasks "
                         f"layer called masks")
    return masks.mask_model, masks.roi_align.get_config()


def _box_decoding(model):
    """The `BoxDecoding` of a model built here, read from its `clipped_boxes` and `boxes` layers. A
    training model has neither: there keras-maskrcnn 0.2's RoIAlign sampling stands for its ClipBoxes
    (margin 1), and the regression keeps the defaults."""
    clip, regress = _layer(model, "clipped_boxes"), _layer(model, "boxes")
    if clip is not None and regress is not None:
        return BoxDecoding(clip_margin=clip.margin, regression_mean=regress.mean, regression_std=regress.std)
    _, roi_align = _mask_parts(model)
    return BoxDecoding(clip_margin=LEGACY.box_decoding.clip_margin
                       if roi_align.get("sampling") == LEGACY.roi_alignment.sampling else 0.0)


def box_settings(model):
    """The box decoding of a model built here as flat options: dict(clip_margin[, regression_mean,
    regression_std]) (see `_box_decoding`; a training model gives clip_margin only)."""
    decoding = _box_decoding(model).to_config()
    if _layer(model, "boxes") is None:
        return dict(clip_margin=decoding["clip_margin"])
    return decoding


def model_settings(model):
    """The `ModelSettings` a model built here was built with, read back from its layers: anchors,
    detection filter, box decoding and mask head from a prediction model (`anchors`,
    `filtered_detections`, `boxes`, `clipped_boxes`, `masks`), RoI alignment from either kind; a
    training model gives the defaults for the parts it lacks."""
    head, roi_align = _mask_parts(model)
    settings = ModelSettings(box_decoding=_box_decoding(model), roi_alignment=RoiAlignment.from_layer_config(roi_align))
    anchors, filters, masks = _layer(model, "anchors"), _layer(model, "filtered_detections"), _layer(model, "masks")
    if anchors is not None:
        settings = settings.replace(anchors=anchors.anchor_params)
    if filters is not None:
        config = filters.get_config()
        settings = settings.replace(detection_filter=DetectionFilter.from_config(
            {key: config[key] for key in DetectionFilter().to_config() if key in config}))
    if isinstance(masks, layers.DetectionMasks):
        settings = settings.replace(mask_head=MaskHead(
            feature_size=int(head.get_layer("roi_mask_0").filters),
            upsampling="nearest" if any(layer.name == "roi_mask_upsample" for layer in head.layers) else "transposed",
            mask_dtype=masks.mask_dtype, row_selection=masks.row_selection, buckets=masks.buckets))
    return settings


def prediction_base(model):
    """The settings a new prediction model of `model` starts from: the defaults with `model`'s RoI
    alignment and box decoding (these belong to its weights)."""
    _, roi_align = _mask_parts(model)
    return ModelSettings(box_decoding=_box_decoding(model), roi_alignment=RoiAlignment.from_layer_config(roi_align))


def _parts(model):
    """(image, [P3..P7], regression, classification, mask_submodel, RoiAlign config) of a model built here."""
    missing = [name for name in PYRAMID_LEVELS + ("regression", "classification") if _layer(model, name) is None]
    if missing:
        raise ValueError(f"model {model.name!r} is not a keras_maskrcnn model: it has no layer {missing[0]!r}")
    try:
        mask_model, roi_align = _mask_parts(model)
    except ValueError as error:
        raise ValueError(f"model {model.name!r} is not a keras_maskrcnn model: {error}") from None
    features = [model.get_layer(level).output for level in PYRAMID_LEVELS]
    regression = model.get_layer("regression").output
    classification = model.get_layer("classification").output
    return model.inputs[0], features, regression, classification, mask_model, roi_align


def _prediction_graph(image, features, regression, classification, mask_model, settings, name="maskrcnn"):
    """The prediction model on the given tensors and mask head, built as `settings` (a `ModelSettings`) say."""
    boxes, scores, labels = detections(image, features, regression, classification, settings.anchors,
                                       **settings.box_decoding.to_config(), **settings.detection_filter.to_config())
    roi_align = _roi_align_layer(settings.roi_alignment)
    head = settings.mask_head
    inputs = [boxes, scores] + ([image] if roi_align.takes_image else []) + list(features)
    masks = layers.DetectionMasks(mask_model, buckets=head.buckets, mask_dtype=head.mask_dtype, roi_align=roi_align,
                                  row_selection=head.row_selection, name="masks")(inputs)
    return keras.Model(
        inputs=image, outputs=[regression, classification, boxes, scores, labels, masks], name=name
    )


def maskrcnn(inputs, backbone_layers, num_classes, anchor_params=None, mask_dtype=None,
             prior_probability=0.01, feature_size=256, mask_feature_size=None, name="maskrcnn",
             mixed_precision=None, legacy=False, mask_upsampling=None, settings=None, **options):
    """Prediction model: image (B,H,W,3) -> [regression (B,A,4), classification (B,A,C),
    boxes (B,N,4), scores (B,N), labels (B,N) int32, masks (B,N,28,28,C)].

    Args:
        inputs: the image `keras.Input`.
        backbone_layers: [C3, C4, C5] computed from it.
        num_classes: C.
        prior_probability: the classification head's starting foreground probability (0.01).
        feature_size: channels of the FPN and the box heads (256, as in keras-maskrcnn; smaller is
            faster and is enough for simple data such as the shapes demo).
        name: the model's name.
        mixed_precision: None or False (float32), True or "auto" ("mixed_float16" if a GPU is
            visible, else "mixed_bfloat16"), "mixed_bfloat16" or "mixed_float16": the dtype policy
            the layers are built under (the global policy is restored afterwards). Build
            backbone_layers under the same policy (`Backbone.maskrcnn` does). Outputs keep the
            dtypes above whatever the policy.
        legacy: keras-maskrcnn 0.2's layers after the backbone, for the models it trained: the
            settings start from `settings.LEGACY` instead of the defaults, and the mask head's last
            conv keeps its old name (roi_mask_features).
        settings: a `ModelSettings` (anchors, detection_filter, box_decoding, roi_alignment,
            mask_head; see `keras_maskrcnn.models.settings`). None: the defaults (or `LEGACY`).
        anchor_params: `AnchorParameters` (default `AnchorParameters.default`), applied over
            `settings` like the options.
        mask_dtype: dtype of the masks output (float32), applied over `settings`.
        mask_feature_size: channels of the mask head's convolutions (256), applied over `settings`.
        mask_upsampling: "transposed" (a 2x2 stride-2 transposed conv as in the paper and
            torchvision) or "nearest" (keras-maskrcnn's; legacy "nearest"), applied over `settings`.
        options: the other single settings given by name, applied over `settings` (None leaves a
            setting as it is):
            - detection filter (`FilterDetections`): nms (True), class_specific_filter (True),
              score_threshold (0.05), nms_threshold (0.5), max_detections (N, 100),
              pre_nms_top_k (1000), top_k_blocks (0: one pre-NMS top_k; else by blocks of that size);
            - box decoding: regression_mean (0), regression_std (0.2), clip_margin (0; legacy 1);
            - roi_align: a `RoiAlign` config (crop_size, sampling_ratio, sampling "aligned" or, for
              legacy, "crop_and_resize", low_rank, ...);
            - mask head: row_selection ("switch"; "slice" or "all" are the export forms, see
              `DetectionMasks`), buckets (row counts the head may run on; default 0, N/8, N/4, N/2, N).

    Returns:
        keras.Model: the prediction model.

    Raises:
        TypeError: for an option no setting has.
    """
    settings = (settings or (LEGACY if legacy else ModelSettings())).replace(
        anchor_params=anchor_params, mask_dtype=mask_dtype, mask_feature_size=mask_feature_size,
        mask_upsampling=mask_upsampling, **options)
    with policy_scope(resolve_policy(mixed_precision)):
        features = pyramid_features(*backbone_layers, feature_size=feature_size)
        regression, classification = retinanet_outputs(features, num_classes, settings.anchors.num_anchors(),
                                                       prior_probability, feature_size)
        mask_model = mask_submodel(num_classes, pyramid_feature_size=feature_size,
                                   feature_size=settings.mask_head.feature_size,
                                   last_conv_name="roi_mask_features" if legacy else "roi_mask_4",
                                   upsampling=settings.resolved_upsampling())
        return _prediction_graph(inputs, features, regression, classification, mask_model, settings, name)


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


def prediction_model(model, anchor_params=None, mask_dtype=None, name="maskrcnn", settings=None, **options):
    """Prediction model sharing every weight of `model` (a training or prediction model built here).

    Args:
        model: a training or prediction model built here.
        settings: a `ModelSettings`; None: the defaults with `model`'s RoI alignment and box decoding
            (`box_settings`).
        anchor_params: `AnchorParameters` applied over those (see `maskrcnn`).
        mask_dtype: dtype of the masks output, applied over those.
        options: other single settings applied over those (see `maskrcnn`).
        name: the model's name.

    Returns:
        keras.Model: image -> [regression, classification, boxes, scores, labels, masks]. New layers
        take the dtype policy of `model`'s layers.
    """
    image, features, regression, classification, mask_model, _ = _parts(model)
    settings = (settings or prediction_base(model)).replace(anchor_params=anchor_params, mask_dtype=mask_dtype, **options)
    with policy_scope(model_policy(model)):
        return _prediction_graph(image, features, regression, classification, mask_model, settings, name)


def is_training_model(model):
    """True for a model whose inputs include the `rois` of the training model."""
    return any(getattr(t, "name", "").startswith("rois") for t in model.inputs)
