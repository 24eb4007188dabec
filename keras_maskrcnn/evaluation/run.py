"""A whole evaluation: one pass of the model, COCO metrics (segm and bbox), the seed's mask
mAP@0.5, and the reports written to a folder.

    evaluation = evaluate_model(generator, model)
    print(format_table(per_class_rows(evaluation.metrics, evaluation.seed_by_name())))
    write_reports("evaluation", generator, evaluation, settings={...})
"""

import os
from dataclasses import dataclass

from .. import defaults
from . import reports
from .average_precision import mean_average_precision, seed_average_precisions
from .coco_metrics import coco_metrics, coco_results
from .records import class_names, collect


@dataclass
class Evaluation:
    """The results of `evaluate_model`.

    Attributes:
        records: list of `records.ImageRecord` (ground truth and detections, masks as RLE).
        names: {label: class name}.
        metrics: {'segm': ..., 'bbox': ...} as `coco_metrics.coco_metrics` gives.
        evals: {'segm': COCOeval, 'bbox': COCOeval}.
        seed: {label: (AP, instances)}, the seed's mask mAP@0.5 per class.
        seed_iou: the mask IoU threshold of `seed`.
    """

    records: list
    names: dict
    metrics: dict
    evals: dict
    seed: dict
    seed_iou: float = defaults.MATCH_IOU_THRESHOLD

    def seed_by_name(self):
        """{class name: (AP, instances)} of the seed's measure."""
        return {self.names[label]: value for label, value in self.seed.items() if label in self.names}

    def seed_map(self, weighted=False):
        """The seed's mAP (mean over classes with instances, optionally weighted by them)."""
        return mean_average_precision({label: value for label, value in self.seed.items() if label in self.names},
                                      weighted=weighted)


def evaluate_model(generator, model, score_threshold=defaults.SCORE_THRESHOLD,
                   max_detections=defaults.MAX_DETECTIONS, binarize_threshold=defaults.BINARIZE_THRESHOLD,
                   iou_threshold=defaults.MATCH_IOU_THRESHOLD, verbose=False):
    """Runs `model` over `generator` once and scores it.

    Args:
        generator: any data set generator (csv, coco, labelme, yolo).
        model: see `records.detect`.
        score_threshold: lowest score kept (see `records.detect`).
        max_detections: detections per image (see `records.detect`).
        binarize_threshold: mask probability from which a pixel is foreground (see `records.detect`).
        iou_threshold: mask IoU of the seed's mAP.
        verbose: print pycocotools' summaries.

    Returns:
        An Evaluation.
    """
    records = collect(generator, model, score_threshold=score_threshold, max_detections=max_detections,
                      binarize_threshold=binarize_threshold)
    names = class_names(generator)
    metrics, evals = coco_metrics(records, names, verbose=verbose)
    metrics["images"] = len(records)
    seed = seed_average_precisions(records, generator.num_classes(), iou_threshold=iou_threshold)
    return Evaluation(records=records, names=names, metrics=metrics, evals=evals,
                      seed={label: value for label, value in seed.items() if label in names},
                      seed_iou=iou_threshold)


def metrics_document(evaluation, settings=None, best_threshold=None, best_f1=None, confusion_threshold=None):
    """The content of metrics.json: {'segm', 'bbox' (COCO metrics, fractions 0..1), 'images',
    'mask_mAP50_seed' ({'mAP', 'iou_threshold', 'per_class': {name: {'AP', 'instances'}}}), 'f1'
    (best mask F1 and its score threshold), 'settings'}."""
    document = dict(evaluation.metrics)
    document["mask_mAP50_seed"] = {
        "definition": "keras-retinanet's per-class average precision with mask IoU (as in earlier versions)",
        "iou_threshold": evaluation.seed_iou,
        "mAP": evaluation.seed_map(),
        "per_class": {name: {"AP": ap if count else None, "instances": count}
                      for name, (ap, count) in evaluation.seed_by_name().items()},
    }
    document["f1"] = {"iou_type": "segm", "iou_threshold": 0.5, "best_score_threshold": best_threshold,
                      "best_f1": best_f1}
    document["confusion_matrix_score_threshold"] = confusion_threshold
    document["settings"] = dict(settings or {})
    return document


def write_reports(directory, generator, evaluation, settings=None, worst=8, confusion_threshold=None, log=print):
    """Writes metrics.json, per_class.csv, detections.json, pr_curves.png, f1_curve.png,
    confusion_matrix.png and worst/NN_NAME.png (ground truth beside predictions) into `directory`.

    Args:
        directory: the folder (created when missing).
        generator: the evaluated generator (the worst pictures reload their images from it).
        evaluation: an Evaluation.
        settings: what the run used (model, data set, thresholds), stored in metrics.json.
        worst: how many worst pictures at most.
        confusion_threshold: the score from which detections count in the confusion matrix and
            the worst pictures; default the threshold of the best mask F1 (0.25 without one).
        log: receives one line per file written, and the best F1 threshold.

    Returns:
        {'written': [paths], 'best_threshold': float or None, 'best_f1': float or None,
        'confusion_threshold': float, 'confusion_matrix': (C + 1, C + 1) counts}.
    """
    os.makedirs(directory, exist_ok=True)
    written = []
    segm = evaluation.evals["segm"]
    path, best, best_f1 = reports.plot_f1_curve(os.path.join(directory, "f1_curve.png"), segm, evaluation.names)
    if best is not None:
        log(f"Best mask F1 {best_f1:.4f} at score threshold {best:.3f} (use it as --score-threshold)")
    elif best_f1 is not None:
        log("No detection matches an object at mask IoU 0.5: F1 is 0 at every score threshold")
    if confusion_threshold is None:
        confusion_threshold = best if best is not None else 0.25
    written += [path] if path else []
    written.append(reports.write_json(os.path.join(directory, "metrics.json"),
                                      metrics_document(evaluation, settings, best, best_f1, confusion_threshold)))
    written.append(reports.write_per_class_csv(os.path.join(directory, "per_class.csv"),
                                               reports.per_class_rows(evaluation.metrics, evaluation.seed_by_name())))
    written.append(reports.write_json(os.path.join(directory, "detections.json"),
                                      coco_results(evaluation.records, evaluation.names)))
    path = reports.plot_pr_curves(os.path.join(directory, "pr_curves.png"), evaluation.evals, evaluation.names)
    written += [path] if path else []
    num_classes = generator.num_classes()
    matrix = reports.confusion_matrix(evaluation.records, num_classes, score_threshold=confusion_threshold)
    path = reports.plot_confusion_matrix(os.path.join(directory, "confusion_matrix.png"), matrix,
                                         evaluation.names, confusion_threshold)
    written += [path] if path else []
    written += reports.write_worst_pictures(os.path.join(directory, "worst"), generator, evaluation.records,
                                            evaluation.names, count=worst, score_threshold=confusion_threshold)
    for path in written:
        log(f"wrote {path}")
    return {"written": written, "best_threshold": best, "best_f1": best_f1,
            "confusion_threshold": confusion_threshold, "confusion_matrix": matrix}
