"""COCO evaluation of a prediction model with pycocotools (bbox and segm)."""

import contextlib
import copy
import json
import os
import warnings

import numpy as np
from pycocotools.cocoeval import COCOeval

from .eval import encode_masks, load_or_skip, predict_image, progress
from .masks import paste_mask

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                   "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
"""Short names of the 12 numbers of COCOeval.stats, in order."""

IOU_TYPES = ("bbox", "segm")


def _get_coco_results(generator, model, threshold=0.05, binarize_threshold=0.5, max_detections=100):
    """Runs the model on every image of a COCO generator (with a progress bar).

    Returns (results, image_ids): results is a list of COCO result dicts (image_id, category_id,
    score, bbox [x, y, w, h] in original-image pixels, segmentation RLE with str counts);
    image_ids the COCO ids of all evaluated images (without those left out as unreadable, see
    `utils.eval.load_or_skip`).
    """
    results = []
    image_ids = []
    for index in progress(range(generator.size()), "COCO evaluation: "):
        raw_image = load_or_skip(generator, generator.load_image, index)
        if raw_image is None:
            continue
        image_id = int(generator.image_ids[index])
        image_ids.append(image_id)
        boxes, scores, labels, masks = predict_image(
            generator, model, raw_image, score_threshold=threshold, max_detections=max_detections)
        height, width = raw_image.shape[:2]
        boxes = np.clip(boxes, 0.0, [width, height, width, height])
        for box, score, label, mask in zip(boxes, scores, labels, masks):
            rle = encode_masks([paste_mask(mask, box, (height, width), binarize_threshold)])[0]
            rle["counts"] = rle["counts"].decode("ascii")
            results.append({
                "image_id": image_id,
                "category_id": int(generator.label_to_coco_label(int(label))),
                "score": float(score),
                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                "segmentation": rle,
            })
    return results, image_ids


def _results_for(results, iou_type):
    """Copies of the results carrying only the field `iou_type` is scored on.

    pycocotools' loadRes takes a detection's area from its box when a box is present; for segm
    the area must come from the mask, so the box is dropped there (and vice versa).
    """
    dropped = "segmentation" if iou_type == "bbox" else "bbox"
    return [{k: copy.deepcopy(v) for k, v in r.items() if k != dropped} for r in results]


def run_coco_eval(coco_gt, results, image_ids, iou_types=IOU_TYPES, verbose=True):
    """Scores COCO results against a COCO ground truth on exactly `image_ids`.

    coco_gt: pycocotools COCO. results: list of result dicts with 'bbox' and/or 'segmentation'.
    Prints the standard 12-line summary per IoU type when verbose.
    Returns {iou_type: list of 12 floats} (COCOeval.stats; -1 where there is no ground truth).
    Without results, warns and returns zeros.
    """
    image_ids = [int(i) for i in image_ids]
    if not results or not image_ids:
        warnings.warn("COCO evaluation: no detections on the evaluated images; all scores are 0",
                      stacklevel=2)
        return {iou_type: [0.0] * len(COCO_STAT_NAMES) for iou_type in iou_types}
    stats = {}
    for iou_type in iou_types:
        with contextlib.ExitStack() as stack:
            if not verbose:
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            else:
                print(f"Evaluating {iou_type}")
            coco_eval = COCOeval(coco_gt, coco_gt.loadRes(_results_for(results, iou_type)), iou_type)
            coco_eval.params.imgIds = image_ids
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        stats[iou_type] = [float(v) for v in coco_eval.stats]
    return stats


def _results_path(save_path, set_name):
    """The JSON file for results: save_path itself when it ends in .json, else a file in it."""
    if str(save_path).endswith(".json"):
        parent = os.path.dirname(os.path.abspath(save_path))
        os.makedirs(parent, exist_ok=True)
        return str(save_path)
    os.makedirs(save_path, exist_ok=True)
    return os.path.join(save_path, f"{set_name}_segm_results.json")


def evaluate_coco(generator, model, threshold=0.05, save_path=None, binarize_threshold=0.5):
    """Evaluates a prediction model on a COCO generator with COCOeval 'bbox' and 'segm'.

    generator: has coco, image_ids, set_name, label_to_coco_label and the image methods.
    threshold: minimum detection score. save_path: a directory (writes
    `{set_name}_segm_results.json` in it) or a .json file path for the results; None writes
    nothing. Returns {'bbox': 12 stats, 'segm': 12 stats}.
    """
    results, image_ids = _get_coco_results(generator, model, threshold=threshold,
                                           binarize_threshold=binarize_threshold)
    if save_path is not None:
        path = _results_path(save_path, getattr(generator, "set_name", "coco"))
        with open(path, "w") as handle:
            json.dump(results, handle)
    return run_coco_eval(generator.coco, results, image_ids)
