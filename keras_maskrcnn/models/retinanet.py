"""The RetinaNet detector: feature pyramid P3..P7, shared classification and regression heads, box decoding."""

import math

import keras
import numpy as np

from .. import defaults, layers
from ..utils.anchors import AnchorParameters

PYRAMID_LEVELS = ("P3", "P4", "P5", "P6", "P7")


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class PriorProbability(keras.initializers.Initializer):
    """Bias initialiser so that sigmoid(bias) = probability: foreground starts rare and focal loss stays stable."""

    def __init__(self, probability=0.01):
        self.probability = float(probability)

    def __call__(self, shape, dtype=None):
        value = -math.log((1 - self.probability) / self.probability)
        return keras.ops.convert_to_tensor(np.full(shape, value, dtype=np.float32), dtype=dtype)

    def get_config(self):
        return {"probability": self.probability}


def _head_conv(filters, name, **kwargs):
    return keras.layers.Conv2D(
        filters, 3, padding="same", name=name,
        kernel_initializer=keras.initializers.RandomNormal(mean=0.0, stddev=0.01), **kwargs,
    )


def classification_submodel(num_classes, num_anchors, pyramid_feature_size=256, feature_size=256,
                            prior_probability=0.01, name="classification_submodel"):
    """Head shared over levels: (B,H,W,256) -> (B, H*W*num_anchors, num_classes) sigmoid scores."""
    inputs = keras.Input(shape=(None, None, pyramid_feature_size))
    x = inputs
    for i in range(4):
        x = _head_conv(feature_size, f"pyramid_classification_{i}", activation="relu", bias_initializer="zeros")(x)
    x = _head_conv(num_classes * num_anchors, "pyramid_classification",
                   bias_initializer=PriorProbability(prior_probability))(x)
    x = keras.layers.Reshape((-1, num_classes), name="pyramid_classification_reshape")(x)
    outputs = keras.layers.Activation("sigmoid", dtype="float32", name="pyramid_classification_sigmoid")(x)
    return keras.Model(inputs, outputs, name=name)


def regression_submodel(num_anchors, pyramid_feature_size=256, feature_size=256, num_values=4,
                        name="regression_submodel"):
    """Head shared over levels: (B,H,W,256) -> (B, H*W*num_anchors, 4) box deltas."""
    inputs = keras.Input(shape=(None, None, pyramid_feature_size))
    x = inputs
    for i in range(4):
        x = _head_conv(feature_size, f"pyramid_regression_{i}", activation="relu", bias_initializer="zeros")(x)
    x = _head_conv(num_anchors * num_values, "pyramid_regression", bias_initializer="zeros")(x)
    outputs = keras.layers.Reshape((-1, num_values), dtype="float32", name="pyramid_regression_reshape")(x)
    return keras.Model(inputs, outputs, name=name)


def pyramid_features(C3, C4, C5, feature_size=256):
    """FPN of keras-retinanet: [P3, P4, P5, P6, P7], each (B, ceil(H/stride), ceil(W/stride), feature_size)."""
    P5 = keras.layers.Conv2D(feature_size, 1, name="C5_reduced")(C5)
    P5_upsampled = layers.UpsampleLike(name="P5_upsampled")([P5, C4])
    P5 = keras.layers.Conv2D(feature_size, 3, padding="same", name="P5")(P5)

    P4 = keras.layers.Conv2D(feature_size, 1, name="C4_reduced")(C4)
    P4 = keras.layers.Add(name="P4_merged")([P5_upsampled, P4])
    P4_upsampled = layers.UpsampleLike(name="P4_upsampled")([P4, C3])
    P4 = keras.layers.Conv2D(feature_size, 3, padding="same", name="P4")(P4)

    P3 = keras.layers.Conv2D(feature_size, 1, name="C3_reduced")(C3)
    P3 = keras.layers.Add(name="P3_merged")([P4_upsampled, P3])
    P3 = keras.layers.Conv2D(feature_size, 3, padding="same", name="P3")(P3)

    P6 = keras.layers.Conv2D(feature_size, 3, strides=2, padding="same", name="P6")(C5)
    P7 = keras.layers.Activation("relu", name="C6_relu")(P6)
    P7 = keras.layers.Conv2D(feature_size, 3, strides=2, padding="same", name="P7")(P7)
    return [P3, P4, P5, P6, P7]


def retinanet_outputs(features, num_classes, num_anchors, prior_probability=0.01, feature_size=256):
    """Applies the shared heads to every level: regression (B, A, 4), classification (B, A, num_classes).

    feature_size: channels of the pyramid levels and of the heads' hidden convolutions.
    """
    regression_model = regression_submodel(num_anchors, pyramid_feature_size=feature_size, feature_size=feature_size)
    classification_model = classification_submodel(num_classes, num_anchors, pyramid_feature_size=feature_size,
                                                   feature_size=feature_size, prior_probability=prior_probability)
    regression = keras.layers.Concatenate(axis=1, name="regression", dtype="float32")(
        [regression_model(f) for f in features])
    classification = keras.layers.Concatenate(axis=1, name="classification", dtype="float32")(
        [classification_model(f) for f in features])
    return regression, classification


def retinanet(inputs, backbone_layers, num_classes, anchor_params=None, prior_probability=0.01,
              feature_size=256, name="retinanet"):
    """Detector without box decoding: image -> [regression (B,A,4), classification (B,A,C)].

    backbone_layers: the backbone's [C3, C4, C5] tensors computed from `inputs`; feature_size:
    channels of the FPN and of the heads (256 in keras-retinanet).
    """
    anchor_params = anchor_params or AnchorParameters.default
    features = pyramid_features(*backbone_layers, feature_size=feature_size)
    outputs = retinanet_outputs(features, num_classes, anchor_params.num_anchors(), prior_probability, feature_size)
    return keras.Model(inputs=inputs, outputs=list(outputs), name=name)


def detections(image, features, regression, classification, anchor_params=None, nms=True,
               class_specific_filter=True, score_threshold=defaults.SCORE_THRESHOLD,
               nms_threshold=defaults.NMS_THRESHOLD, max_detections=defaults.MAX_DETECTIONS,
               pre_nms_top_k=defaults.PRE_NMS_TOP_K, clip_margin=0.0, regression_mean=0.0, regression_std=0.2,
               top_k_blocks=0):
    """Decoded, filtered detections: [boxes (B,N,4) float32, scores (B,N) float32, labels (B,N) int32]
    in input pixels. These layers compute in float32 whatever the global dtype policy.
    clip_margin, regression_mean, regression_std: see `ClipBoxes` and `RegressBoxes`; top_k_blocks: see
    `FilterDetections`."""
    anchors = layers.Anchors(anchor_params, dtype="float32", name="anchors")(features)
    boxes = layers.RegressBoxes(regression_mean, regression_std, dtype="float32", name="boxes")([anchors, regression])
    boxes = layers.ClipBoxes(clip_margin, dtype="float32", name="clipped_boxes")([image, boxes])
    return layers.FilterDetections(
        nms=nms,
        class_specific_filter=class_specific_filter,
        score_threshold=score_threshold,
        nms_threshold=nms_threshold,
        max_detections=max_detections,
        pre_nms_top_k=pre_nms_top_k,
        top_k_blocks=top_k_blocks,
        dtype="float32",
        name="filtered_detections",
    )([boxes, classification])


def retinanet_bbox(model, anchor_params=None, name="retinanet-bbox", **filter_kwargs):
    """Bounding-box prediction model from a `retinanet` model (or any model with layers P3..P7,
    regression, classification): image -> [regression, classification, boxes, scores, labels]."""
    image = model.inputs[0]
    features = [model.get_layer(level).output for level in PYRAMID_LEVELS]
    regression = model.get_layer("regression").output
    classification = model.get_layer("classification").output
    boxes, scores, labels = detections(image, features, regression, classification, anchor_params, **filter_kwargs)
    return keras.Model(inputs=image, outputs=[regression, classification, boxes, scores, labels], name=name)
