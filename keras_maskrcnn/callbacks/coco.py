"""Per-epoch COCO evaluation (bbox and segm) as a Keras callback."""

from ..evaluation.coco_metrics import COCO_STAT_NAMES
from .eval import Evaluate


class CocoEval(Evaluate):
    """Runs pycocotools COCOeval at the end of every epoch (any data set type).

    generator: the evaluation generator. prediction_model: the model to run; default the model
    being fitted. Stores in logs 'segm_AP', 'segm_AP50', ... 'segm_ARl' and the same for 'bbox_'
    (the 12 COCOeval stats each; 0 where there is no ground truth), plus 'mAP' = segm AP; also
    writes them into the TensorBoard callback's log directory when given. threshold: minimum
    detection score. verbose: 1 prints pycocotools' mask AP and AP50. tensorboard_images: see Evaluate.
    """

    def __init__(self, generator, prediction_model=None, tensorboard=None, threshold=0.05,
                 save_path=None, binarize_threshold=0.5, max_detections=100, verbose=1, tensorboard_images=0):
        super().__init__(generator, score_threshold=threshold, max_detections=max_detections,
                         save_path=save_path, tensorboard=tensorboard, verbose=verbose,
                         prediction_model=prediction_model, binarize_threshold=binarize_threshold,
                         tensorboard_images=tensorboard_images)
        self.threshold = threshold
        self.stats = None

    def values(self, evaluation):
        values = {}
        for iou_type in ("segm", "bbox"):
            for name in COCO_STAT_NAMES:
                value = evaluation.metrics[iou_type][name]
                values[f"{iou_type}_{name}"] = 0.0 if value is None else float(value)
        self.stats = {iou_type: [values[f"{iou_type}_{name}"] for name in COCO_STAT_NAMES]
                      for iou_type in ("segm", "bbox")}
        values["mAP"] = values["segm_AP"]
        return values

    def report(self, evaluation, values):
        print(f"mask AP (COCO): {values['segm_AP']:.4f}, AP50: {values['segm_AP50']:.4f}; "
              f"box AP: {values['bbox_AP']:.4f}, AP50: {values['bbox_AP50']:.4f}")
