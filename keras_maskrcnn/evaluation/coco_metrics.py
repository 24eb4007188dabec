"""COCO metrics (pycocotools' COCOeval, segm and bbox) for every data set type.

The ground truth of any generator (csv, coco, labelme, yolo, ...) becomes a pycocotools COCO
object in memory, the detections COCO results; COCOeval scores them overall and per class. In
both, `category_id` is the generator's label and image ids are those of `records.ImageRecord`.
"""

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                   "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
"""Short names of the 12 numbers of COCOeval.stats, in order."""

PER_CLASS_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
"""The per-class numbers, read from COCOeval's accumulated precision and recall arrays."""

IOU_TYPES = ("segm", "bbox")


def _rle_json(rle):
    """A copy of an RLE with str counts (JSON-serialisable)."""
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _xywh(box):
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def ground_truth_coco(records, names):
    """The ground truth of the records as a pycocotools COCO object (built in memory).

    Args:
        records: list of `records.ImageRecord`.
        names: {label: class name}; every label becomes a category with id = label.

    Returns:
        pycocotools.coco.COCO with images (id, file_name, height, width), categories and one
        annotation per object: category_id = label, bbox [x, y, w, h] from the data set's box,
        segmentation RLE, area = mask area, iscrowd 0 (1 for COCO crowd regions).
    """
    images, annotations = [], []
    for record in records:
        images.append({"id": record.image_id, "file_name": record.file_name,
                       "height": record.height, "width": record.width})
        objects = [(label, rle, box, 0) for label, rle, box in zip(record.gt_labels, record.gt_rles, record.gt_boxes)]
        objects += [(label, rle, mask_utils.toBbox(rle), 1)
                    for label, rle in zip(record.crowd_labels, record.crowd_rles)]
        for label, rle, box, crowd in objects:
            bbox = [float(v) for v in box] if crowd else _xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": record.image_id,
                                "category_id": int(label), "iscrowd": crowd, "bbox": bbox,
                                "area": float(mask_utils.area(rle)), "segmentation": _rle_json(rle)})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": int(label), "name": name} for label, name in sorted(names.items())]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_results(records, names):
    """The detections of the records as COCO results (what detections.json holds).

    Returns:
        list of dicts: image_id, file_name, category_id (= label), category_name, score,
        bbox [x, y, w, h] in image pixels, segmentation (RLE, str counts).
    """
    results = []
    for record in records:
        for box, score, label, rle in zip(record.boxes, record.scores, record.labels, record.rles):
            results.append({"image_id": record.image_id, "file_name": record.file_name,
                            "category_id": int(label), "category_name": names.get(int(label), str(int(label))),
                            "score": float(score), "bbox": _xywh(box), "segmentation": _rle_json(rle)})
    return results


def results_for(results, iou_type):
    """New dicts of the results with only what COCOeval scores for `iou_type` (loadRes adds to them).

    pycocotools' loadRes takes a detection's area from its box when a box is present; for segm
    the area must come from the mask, so the box is dropped there (and the mask for bbox). The
    values are shared: loadRes reads them without changing them.
    """
    keep = ("image_id", "category_id", "score", "segmentation" if iou_type == "segm" else "bbox")
    return [{key: result[key] for key in keep} for result in results]


def _load_results(coco_gt, results):
    """COCO object of the results; an empty one (no detections) when there are none, where
    pycocotools' loadRes would fail."""
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(results)
    empty = COCO()
    empty.dataset = {"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                     "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def run_cocoeval(coco_gt, results, iou_type, image_ids=None, category_ids=None, verbose=False):
    """COCOeval of `results` against `coco_gt`, evaluated, accumulated and summarised.

    Args:
        coco_gt: pycocotools COCO of the ground truth.
        results: COCO result dicts (with 'segmentation' for segm, 'bbox' for bbox).
        iou_type: 'segm' or 'bbox'.
        image_ids: the images to score (default all of coco_gt).
        category_ids: the categories to score (default all).
        verbose: print pycocotools' 12-line summary.

    Returns:
        The pycocotools COCOeval (its stats, eval['precision'] (T, R, K, A, M), eval['recall']
        (T, K, A, M) and evalImgs filled).
    """
    with contextlib.ExitStack() as stack:
        if not verbose:
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        coco_eval = COCOeval(coco_gt, _load_results(coco_gt, results_for(results, iou_type)), iou_type)
        if image_ids is not None:
            coco_eval.params.imgIds = [int(i) for i in image_ids]
        if category_ids is not None:
            coco_eval.params.catIds = [int(i) for i in category_ids]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def compact(coco_eval):
    """Frees the parts of an accumulated COCOeval that the reports do not read: the results'
    COCO object, the IoU matrices, and the per-image matches of the areas other than 'all'
    (stats, eval['precision'] and eval['recall'] stay). Returns coco_eval."""
    params = coco_eval.params
    all_range = list(params.areaRng[params.areaRngLbl.index("all")])
    kept = ("category_id", "aRng", "dtScores", "dtMatches", "dtIgnore", "gtIgnore")
    coco_eval.evalImgs = [{key: entry[key] for key in kept} for entry in coco_eval.evalImgs
                          if entry is not None and list(entry["aRng"]) == all_range]
    coco_eval.ious = {}
    coco_eval._gts = coco_eval._dts = None
    coco_eval.cocoDt = None
    return coco_eval


def _value(values):
    """Mean of the entries > -1 (COCOeval's marker of 'no ground truth'); None when there are none."""
    values = np.asarray(values)[np.asarray(values) > -1]
    return float(np.mean(values)) if values.size else None


def per_class_values(coco_eval):
    """{category id: {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"}} from an accumulated COCOeval.

    Read from eval['precision'] and eval['recall'] at maxDets 100 the way COCOeval.summarize
    reads them for all classes at once; None where the class has no ground truth.
    """
    params = coco_eval.params
    precision = coco_eval.eval["precision"]
    recall = coco_eval.eval["recall"]
    t50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))
    t75 = int(np.argmin(np.abs(params.iouThrs - 0.75)))
    areas = {name: params.areaRngLbl.index(name) for name in ("all", "small", "medium", "large")}
    top = params.maxDets.index(100) if 100 in params.maxDets else len(params.maxDets) - 1
    values = {}
    for k, category in enumerate(params.catIds):
        values[int(category)] = {
            "AP": _value(precision[:, :, k, areas["all"], top]),
            "AP50": _value(precision[t50, :, k, areas["all"], top]),
            "AP75": _value(precision[t75, :, k, areas["all"], top]),
            "APs": _value(precision[:, :, k, areas["small"], top]),
            "APm": _value(precision[:, :, k, areas["medium"], top]),
            "APl": _value(precision[:, :, k, areas["large"], top]),
            "AR100": _value(recall[:, k, areas["all"], top]),
        }
    return values


def counts(records, names):
    """{label: (instances, images)}: non-crowd ground-truth objects of each class and the images holding them."""
    result = {label: [0, 0] for label in names}
    for record in records:
        for label, count in zip(*np.unique(record.gt_labels, return_counts=True)):
            if int(label) in result:
                result[int(label)][0] += int(count)
                result[int(label)][1] += 1
    return {label: tuple(value) for label, value in result.items()}


def coco_metrics(records, names, iou_types=IOU_TYPES, verbose=False):
    """COCOeval of the records' detections against their ground truth, overall and per class.

    Args:
        records: list of `records.ImageRecord`.
        names: {label: class name}.
        iou_types: 'segm' and/or 'bbox'.
        verbose: print "Evaluating IOU_TYPE" and pycocotools' summary for each.

    Returns:
        (metrics, evals): metrics is {iou_type: {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1",
        "AR10", "AR100", "ARs", "ARm", "ARl" (fractions 0..1, None without ground truth),
        "per_class": {name: {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR100", "instances", "images"}}}};
        evals is {iou_type: the pycocotools COCOeval, `compact`ed}.
    """
    coco_gt = ground_truth_coco(records, names)
    results = coco_results(records, names)
    image_ids = [record.image_id for record in records]
    instances = counts(records, names)
    metrics, evals = {}, {}
    for iou_type in iou_types:
        if verbose:
            print(f"Evaluating {iou_type}")
        coco_eval = compact(run_cocoeval(coco_gt, results, iou_type, image_ids=image_ids, verbose=verbose))
        evals[iou_type] = coco_eval
        stats = [None if value < 0 else float(value) for value in coco_eval.stats]
        per_class = per_class_values(coco_eval)
        metrics[iou_type] = dict(zip(COCO_STAT_NAMES, stats))
        metrics[iou_type]["per_class"] = {
            names[label]: dict(per_class[label], instances=instances[label][0], images=instances[label][1])
            for label in sorted(names)}
    return metrics, evals
