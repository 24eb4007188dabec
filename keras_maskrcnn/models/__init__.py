"""Model builders, backbones and loading.

    from keras_maskrcnn.models import backbone, load_model, training_model
    model = backbone('resnet50').maskrcnn(num_classes=80)      # prediction model
    train = training_model(model)                               # shares its weights
    export_model(model, "model.onnx", format="onnx")           # also tf_saved_model, openvino, litert
"""

from .backbone import BACKBONES, Backbone, backbone, preprocess_image
from .export import export_model
from .maskrcnn import build_training_state, is_training_model, maskrcnn, prediction_model, training_model
from .retinanet import retinanet, retinanet_bbox
from .saving import load_model, load_training_model, read_metadata, save_model

__all__ = [
    "BACKBONES",
    "Backbone",
    "backbone",
    "build_training_state",
    "export_model",
    "is_training_model",
    "load_model",
    "load_training_model",
    "maskrcnn",
    "prediction_model",
    "preprocess_image",
    "read_metadata",
    "retinanet",
    "retinanet_bbox",
    "save_model",
    "training_model",
]
