"""Random weights with something to detect, for tests and benchmarks of models that were never trained."""

import keras
import numpy as np


def informative_weights(model, image, logit_std=1.5, bias=-4.0, seed=0):
    """Sets weights of a prediction model built here so that random weights give distinct, varied scores
    and non-constant masks on inputs like `image` (B, H, W, 3), preprocessed.

    The FPN's input convolutions are scaled so that their inputs have unit variance on `image` (a freshly
    built MobileNetV2 shrinks its features to about 1e-5), the classification and mask heads are
    He-initialised (seed), and the class logits are scaled to a spread of `logit_std` around `bias`.
    Scores then fall with the input's contrast, so one model gives many, few or no detections."""
    rng = np.random.default_rng(seed)
    names = ("C3_reduced", "C4_reduced", "C5_reduced", "P6")
    probe = keras.Model(model.inputs, [model.get_layer(name).input for name in names])
    for name, features in zip(names, probe.predict_on_batch(image)):
        layer = model.get_layer(name)
        kernel, layer_bias = layer.get_weights()
        layer.set_weights([kernel / max(float(np.std(features)), 1e-30), layer_bias])
    for head in (model.get_layer("classification_submodel"), model.get_layer("masks").mask_model):
        for layer in head.layers:
            if isinstance(layer, keras.layers.Conv2D):
                kernel, layer_bias = layer.get_weights()
                scale = np.sqrt(2.0 / np.prod(kernel.shape[:3]))
                layer.set_weights([rng.normal(0, scale, kernel.shape).astype(np.float32), layer_bias])
    last = model.get_layer("classification_submodel").get_layer("pyramid_classification")
    kernel, layer_bias = last.get_weights()
    last.set_weights([kernel, np.zeros_like(layer_bias)])
    scores = np.clip(model.predict_on_batch(image)[1].astype(np.float64), 1e-12, 1 - 1e-12)
    logits = np.log(scores / (1 - scores))
    last.set_weights([kernel * logit_std / logits.std(), np.full_like(layer_bias, bias)])
