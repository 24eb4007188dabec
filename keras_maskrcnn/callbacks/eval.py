"""Per-epoch evaluation as a Keras callback: the seed's mask mAP@0.5 and COCO's mask AP and AP50."""

import importlib.util
import os
import warnings

import keras

from ..evaluation.run import evaluate_model, write_reports

_WRITERS = {}


def write_scalars(tensorboard, values, step):
    """Writes {name: float} as scalars at `step` into a keras.callbacks.TensorBoard's log dir.

    Uses the callback's validation writer (TensorFlow summaries). Does nothing when tensorboard
    is None, and warns instead of failing when TensorFlow or the tensorboard package is missing.
    """
    if tensorboard is None:
        return
    writer = _writer(tensorboard)
    if writer is None:
        return
    import tensorflow as tf

    with writer.as_default():
        for name, value in values.items():
            tf.summary.scalar(name, float(value), step=int(step))
    writer.flush()


def _writer(tensorboard):
    """The TensorFlow summary writer of a keras.callbacks.TensorBoard's validation logs; None
    (after a warning) when TensorFlow or the tensorboard package is missing."""
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tensorboard") is None:
        warnings.warn("TensorFlow with the tensorboard package is needed to write evaluation "
                      "results to TensorBoard; skipping", stacklevel=3)
        return None
    import tensorflow as tf

    writer = getattr(tensorboard, "_val_writer", None)
    if writer is None:
        directory = os.path.join(tensorboard.log_dir, "validation")
        if directory not in _WRITERS:
            _WRITERS[directory] = tf.summary.create_file_writer(directory)
        writer = _WRITERS[directory]
    return writer


def write_images(tensorboard, name, pictures, step):
    """Writes BGR uint8 pictures (list of (H, W, 3)) as the image summary `name` at `step` into a
    keras.callbacks.TensorBoard's validation log dir (one summary per picture: their sizes differ)."""
    if tensorboard is None or not pictures:
        return
    writer = _writer(tensorboard)
    if writer is None:
        return
    import tensorflow as tf

    with writer.as_default():
        for number, picture in enumerate(pictures):
            tf.summary.image(f"{name}/{number}", picture[None, :, :, ::-1].copy(), step=int(step))
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
    """Evaluates the model on a generator at the end of every epoch, in one pass over it.

    Stores in the epoch's logs 'mAP' (the seed's per-class mask AP at iou_threshold, averaged
    over classes), 'segm_AP' and 'segm_AP50' (pycocotools' mask AP over IoU 0.5:0.95 and at 0.5),
    so that they reach the CSV log and TensorBoard.

    generator: the evaluation generator (any data set type). prediction_model: the model to run
    (outputs ending in boxes, scores, labels, masks); default the model being fitted, which is
    only right when that model already is a prediction model. tensorboard: a
    keras.callbacks.TensorBoard whose log directory also receives the values (a TensorBoard
    callback listed after this one picks up the logs anyway). weighted_average: weight classes by
    their instance counts in 'mAP'. verbose: 1 prints per-class AP with instance counts, the mAP
    and the COCO mask AP. save_path: a folder where the evaluation reports (metrics.json, curves,
    ...) of the latest epoch are written, or None. tensorboard_images: with tensorboard, this
    many validation pictures (the first ones, ground truth beside the detections scoring at least
    picture_threshold) are added to TensorBoard every epoch as 'validation_pictures/N'.
    """

    def __init__(self, generator, iou_threshold=0.5, score_threshold=0.05, max_detections=100,
                 save_path=None, tensorboard=None, weighted_average=False, verbose=1,
                 prediction_model=None, binarize_threshold=0.5, tensorboard_images=0, picture_threshold=0.5):
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
        self.tensorboard_images = tensorboard_images
        self.picture_threshold = picture_threshold
        self.mean_ap = None
        self.evaluation = None

    def pictures(self, evaluation):
        """The first tensorboard_images pictures of the epoch: ground truth beside detections."""
        from ..evaluation.reports import match_image, worst_picture

        pictures = []
        for record in evaluation.records[:self.tensorboard_images]:
            pairs, false, missed = match_image(record, self.picture_threshold)
            swapped = [(d, g) for d, g in pairs if int(record.labels[d]) != int(record.gt_labels[g])]
            pictures.append(worst_picture(self.generator.load_image(record.index), record, evaluation.names,
                                          self.picture_threshold, missed, false, swapped))
        return pictures

    def values(self, evaluation):
        """{log name: value} of one evaluation."""
        return {"mAP": self.mean_ap, "segm_AP": evaluation.metrics["segm"]["AP"] or 0.0,
                "segm_AP50": evaluation.metrics["segm"]["AP50"] or 0.0}

    def report(self, evaluation, values):
        """Prints the epoch's results (verbose)."""
        for name, (average_precision, count) in evaluation.seed_by_name().items():
            print(f"{count:.0f} instances of class {name} with average precision: {average_precision:.4f}")
        print(f"mAP: {self.mean_ap:.4f}")
        print(f"mask AP (COCO): {values['segm_AP']:.4f}, AP50: {values['segm_AP50']:.4f}")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        model = model_to_run(self)
        self.evaluation = evaluate_model(
            self.generator, model, score_threshold=self.score_threshold, max_detections=self.max_detections,
            binarize_threshold=self.binarize_threshold, iou_threshold=self.iou_threshold)
        self.mean_ap = self.evaluation.seed_map(weighted=self.weighted_average)
        values = self.values(self.evaluation)
        if self.verbose:
            self.report(self.evaluation, values)
        if self.save_path is not None:
            write_reports(self.save_path, self.generator, self.evaluation, settings={"epoch": epoch + 1},
                          log=print if self.verbose else (lambda line: None))
        logs.update(values)
        write_scalars(self.tensorboard, values, epoch)
        if self.tensorboard is not None and self.tensorboard_images:
            write_images(self.tensorboard, "validation_pictures", self.pictures(self.evaluation), epoch)


class TrainingCurves(keras.callbacks.Callback):
    """Draws training_curves.png (every loss and metric of a CSV log against the epoch) beside
    the log at the end of every epoch; list it after the keras.callbacks.CSVLogger writing
    `csv_path`. Without matplotlib it says once that the plot is skipped."""

    def __init__(self, csv_path, path=None):
        super().__init__()
        self.csv_path = str(csv_path)
        self.path = path
        self.written = None

    def on_epoch_end(self, epoch, logs=None):
        from ..evaluation.reports import plot_training_curves

        if os.path.isfile(self.csv_path):
            self.written = plot_training_curves(self.csv_path, self.path)
