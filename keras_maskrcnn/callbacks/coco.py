"""Per-epoch COCO evaluation (bbox and segm) as a Keras callback."""

import keras

from ..utils.coco_eval import COCO_STAT_NAMES, evaluate_coco
from .eval import model_to_run, write_scalars


class CocoEval(keras.callbacks.Callback):
    """Runs pycocotools COCOeval at the end of every epoch.

    generator: a COCO generator. prediction_model: the model to run; default the model being
    fitted. Stores in logs 'segm_AP', 'segm_AP50', ... 'segm_ARl' and the same for 'bbox_'
    (the 12 COCOeval stats each), plus 'mAP' = segm AP; also writes them into the TensorBoard
    callback's log directory when given. threshold: minimum detection score.
    """

    def __init__(self, generator, prediction_model=None, tensorboard=None, threshold=0.05,
                 save_path=None, binarize_threshold=0.5):
        super().__init__()
        self.generator = generator
        self.prediction_model = prediction_model
        self.tensorboard = tensorboard
        self.threshold = threshold
        self.save_path = save_path
        self.binarize_threshold = binarize_threshold
        self.stats = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        model = model_to_run(self)
        self.stats = evaluate_coco(self.generator, model, threshold=self.threshold,
                                   save_path=self.save_path,
                                   binarize_threshold=self.binarize_threshold)
        values = {}
        for iou_type in ("segm", "bbox"):
            for name, value in zip(COCO_STAT_NAMES, self.stats[iou_type]):
                values[f"{iou_type}_{name}"] = float(value)
        values["mAP"] = values["segm_AP"]
        logs.update(values)
        write_scalars(self.tensorboard, values, epoch)
