"""Backbones from `keras.applications` and the `backbone(name)` factory."""

import os

import keras

from .. import layers, losses
from ..utils.applications import APPLICATIONS, BACKBONES
from ..utils.image import preprocess_image
from ..utils.precision import policy_scope, resolve_policy
from .maskrcnn import maskrcnn
from .retinanet import PriorProbability


class Backbone:
    """A backbone network by name, with what is needed to build, load and feed a Mask R-CNN on it."""

    def __init__(self, name):
        self.name = name
        self.validate()
        self.application, self.feature_layers, self.preprocessing = APPLICATIONS[name]
        self.custom_objects = {
            "UpsampleLike": layers.UpsampleLike,
            "PriorProbability": PriorProbability,
            "RegressBoxes": layers.RegressBoxes,
            "ClipBoxes": layers.ClipBoxes,
            "FilterDetections": layers.FilterDetections,
            "Anchors": layers.Anchors,
            "RoiAlign": layers.RoiAlign,
            "DetectionMasks": layers.DetectionMasks,
            "FlattenRois": layers.FlattenRois,
            "UnflattenRois": layers.UnflattenRois,
            "FocalLoss": losses.FocalLoss,
            "SmoothL1Loss": losses.SmoothL1Loss,
            "MaskBinaryCrossentropy": losses.MaskBinaryCrossentropy,
        }

    def validate(self):
        """Raises ValueError, listing the valid names, if this backbone is unknown."""
        if self.name not in APPLICATIONS:
            raise ValueError(f"backbone {self.name!r} is not supported; choose one of: {', '.join(BACKBONES)}")

    def preprocess_image(self, image):
        """BGR image(s) in [0, 255] -> float32 input for this backbone."""
        return preprocess_image(image, self.preprocessing)

    def features(self, inputs, weights=None, freeze_backbone=False, freeze_bn=None):
        """[C3, C4, C5] of this backbone on `inputs` (strides 8, 16, 32).

        weights: None (random), 'imagenet' (downloads; needs the internet) or a path to a weights file
        of the `keras.applications` model without top. freeze_bn: batch normalisation kept in
        inference mode; by default on with pretrained weights (as keras-retinanet trained) and off
        from scratch, where its statistics must be learnt. freeze_backbone freezes every backbone layer.
        """
        if freeze_bn is None:
            freeze_bn = weights is not None
        if isinstance(weights, str) and weights != "imagenet" and not os.path.isfile(weights):
            raise ValueError(f"backbone weights file {weights!r} does not exist")
        constructor = getattr(keras.applications, self.application)
        kwargs = dict(input_tensor=inputs, include_top=False, weights=weights)
        if self.application.startswith("MobileNetV3"):
            kwargs["include_preprocessing"] = True
        model = constructor(**kwargs)
        for layer in model.layers:
            if freeze_backbone or (freeze_bn and isinstance(layer, keras.layers.BatchNormalization)):
                layer.trainable = False
        return [model.outputs[0] if name is None else model.get_layer(name).output for name in self.feature_layers]

    def maskrcnn(self, num_classes, inputs=None, weights=None, freeze_backbone=False, freeze_bn=None,
                 modifier=None, mixed_precision=None, **kwargs):
        """Prediction model (see `keras_maskrcnn.models.maskrcnn.maskrcnn`) on this backbone.

        modifier: optional callable applied to the backbone's `keras.Model` before use (e.g. to
        freeze layers); mixed_precision: None/False, True/"auto", "mixed_bfloat16" or
        "mixed_float16", the dtype policy of backbone and heads (see `maskrcnn`); kwargs go to
        `maskrcnn`: settings (a `keras_maskrcnn.models.settings.ModelSettings`) and single settings
        by name (anchor_params, mask_dtype, score_threshold, ...).
        """
        policy = resolve_policy(mixed_precision)
        with policy_scope(policy):
            if inputs is None:
                inputs = keras.Input(shape=(None, None, 3), name="image")
            backbone_layers = self.features(inputs, weights=weights, freeze_backbone=freeze_backbone,
                                            freeze_bn=freeze_bn)
            if modifier is not None:
                modifier(keras.Model(inputs, backbone_layers, name=f"{self.name}_backbone"))
            return maskrcnn(inputs, backbone_layers, num_classes, name=f"{self.name}_maskrcnn",
                            mixed_precision=policy, **kwargs)


def backbone(name):
    """The `Backbone` called `name` (one of `BACKBONES`); ValueError listing valid names otherwise."""
    return Backbone(name)
