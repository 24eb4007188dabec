"""Per-epoch mask mAP evaluation (CSV-style data sets) as a Keras callback."""

import importlib.util
import os
import warnings

import keras

from ..utils.eval import evaluate, mean_average_precision

_WRITERS = {}


def write_scalars(tensorboard, values, step):
    """Writes {name: float} as scalars at `step` into a keras.callbacks.TensorBoard's log dir.

    Uses the callback's validation writer (TensorFlow summaries). Does nothing when tensorboard
    is None, and warns instead of failing when TensorFlow or the tensorboard package is missing.
    """
    if tensorboard is None:
        return
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tensorboard") is None:
        warnings.warn("TensorFlow with the tensorboard package is needed to write evaluation "
                      "scalars to TensorBoard; skipping", stacklevel=2)
        return
    import tensorflow as tf

    writer = getattr(tensorboard, "_val_writer", None)
    if writer is None:
        directory = os.path.join(tensorboard.log_dir, "validation")
        if directory not in _WRITERS:
            _WRITERS[directory] = tf.summary.create_file_writer(directory)
        writer = _WRITERS[directory]
    with writer.as_default():
        for name, value in values.items():
            tf.summary.scalar(name, float(value), step=int(step))
    writer.flush()


def model_to_run(callback):
    """The callback's prediction_model, else the fitted model; ValueError for a training model
    (it needs RoI inputs and does not output detections)."""
    if callback.prediction_model is not None:
        return callback.prediction_model
    model = callback.model
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) > 1:
        raise ValueError(f"{type(callback).__name__} would run the fitted model {model.name!r}, which takes "
                         f"{len(inputs)} inputs (a training model); pass prediction_model=, e.g. "
                         f"keras_maskrcnn.models.maskrcnn.prediction_model(training_model)")
    return model


class Evaluate(keras.callbacks.Callback):
    """Evaluates per-class mask AP at the end of every epoch; stores logs['mAP'].

    generator: the evaluation generator. prediction_model: the model to run (outputs ending in
    boxes, scores, labels, masks); default the model being fitted, which is only right when that
    model already is a prediction model. tensorboard: a keras.callbacks.TensorBoard whose log
    directory also receives 'mAP' (a TensorBoard callback listed after this one picks up
    logs['mAP'] anyway). weighted_average: weight classes by their instance counts.
    verbose: 1 prints per-class AP with instance counts and the mAP.
    """

    def __init__(self, generator, iou_threshold=0.5, score_threshold=0.05, max_detections=100,
                 save_path=None, tensorboard=None, weighted_average=False, verbose=1,
                 prediction_model=None, binarize_threshold=0.5):
        super().__init__()
        self.generator = generator
        self.iou_threshold = iou_threshold
        self.score_threshold = score_threshold
        self.max_detections = max_detections
        self.save_path = save_path
        self.tensorboard = tensorboard
        self.weighted_average = weighted_average
        self.verbose = verbose
        self.prediction_model = prediction_model
        self.binarize_threshold = binarize_threshold
        self.mean_ap = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        model = model_to_run(self)
        average_precisions = evaluate(
            self.generator, model, iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold, max_detections=self.max_detections,
            binarize_threshold=self.binarize_threshold, save_path=self.save_path)
        self.mean_ap = mean_average_precision(average_precisions, weighted=self.weighted_average)
        if self.verbose:
            for label, (average_precision, count) in average_precisions.items():
                print(f"{count:.0f} instances of class {self.generator.label_to_name(label)} "
                      f"with average precision: {average_precision:.4f}")
            print(f"mAP: {self.mean_ap:.4f}")
        logs["mAP"] = self.mean_ap
        write_scalars(self.tensorboard, {"mAP": self.mean_ap}, epoch)
