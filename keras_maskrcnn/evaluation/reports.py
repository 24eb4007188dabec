"""What an evaluation writes and shows: the per-class table, metrics.json, per_class.csv,
detections.json, precision-recall and F1 curves, the confusion matrix, the worst pictures and the
training curves.

Plots need matplotlib (the `plots` extra); without it they are skipped with one message saying
so, and everything else is written. Pictures of images are drawn with OpenCV.
"""

import csv
import json
import os
import sys
import tempfile

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..utils.eval import mask_iou
from ..utils.visualization import draw_annotations

_PLOTS_SKIPPED = []
_UMASK = os.umask(0)
os.umask(_UMASK)


def pyplot():
    """matplotlib.pyplot with the Agg backend; None (after saying once why plots are skipped)
    when matplotlib cannot be imported."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        if not _PLOTS_SKIPPED:
            _PLOTS_SKIPPED.append(str(error))
            print(f"plots are skipped: matplotlib cannot be imported ({error}); "
                  f"pip install 'keras-maskrcnn[plots]' to draw them", file=sys.stderr)
        return None
    return plt


def _atomic_write(path, write, mode="w"):
    """Calls write(handle) on a temporary file beside `path`, then renames it to `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, mode, **({"newline": ""} if "b" not in mode else {})) as stream:
            write(stream)
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def _save_figure(plt, figure, path):
    try:
        _atomic_write(path, lambda stream: figure.savefig(stream, format="png", dpi=110), mode="wb")
    finally:
        plt.close(figure)
    return path


# tables and files

TABLE_COLUMNS = ("class", "instances", "images", "mask AP", "mask AP50", "mask AP75", "box AP", "box AP50",
                 "mAP@0.5 (seed)")


def per_class_rows(metrics, seed=None):
    """Rows of the per-class table: one dict per class (TABLE_COLUMNS), then one 'all' row.

    metrics: as `coco_metrics.coco_metrics` gives. seed: {class name: (AP, instances)} of the
    seed's mask mAP@0.5, or None.
    """
    segm, bbox = metrics["segm"], metrics.get("bbox", {"per_class": {}})
    rows = []
    for name, values in segm["per_class"].items():
        box = bbox["per_class"].get(name, {})
        rows.append({"class": name, "instances": values["instances"], "images": values["images"],
                     "mask AP": values["AP"], "mask AP50": values["AP50"], "mask AP75": values["AP75"],
                     "box AP": box.get("AP"), "box AP50": box.get("AP50"),
                     "mAP@0.5 (seed)": seed[name][0] if seed and name in seed and seed[name][1] else None})
    seed_values = [row["mAP@0.5 (seed)"] for row in rows if row["mAP@0.5 (seed)"] is not None]
    rows.append({"class": "all", "instances": sum(row["instances"] for row in rows),
                 "images": metrics.get("images", ""), "mask AP": segm["AP"], "mask AP50": segm["AP50"],
                 "mask AP75": segm["AP75"], "box AP": bbox.get("AP"), "box AP50": bbox.get("AP50"),
                 "mAP@0.5 (seed)": float(np.mean(seed_values)) if seed_values else None})
    return rows


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def format_table(rows):
    """The per-class table as aligned text (one line per row, '-' where a class has no ground truth)."""
    cells = [list(TABLE_COLUMNS)] + [[_cell(row[column]) for column in TABLE_COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path, data):
    """Writes `data` as indented JSON (completely, or not at all); returns the path."""
    return _atomic_write(path, lambda stream: json.dump(data, stream, indent=1))


def write_per_class_csv(path, rows):
    """Writes the per-class table as CSV (empty cells where a class has no ground truth); returns the path."""
    def write(stream):
        writer = csv.DictWriter(stream, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return _atomic_write(path, write)


# curves from COCOeval

def pr_curves(coco_eval, iou=0.5):
    """Precision-recall at one IoU threshold from an accumulated COCOeval.

    Returns (recall (R,), {category id: precision (R,) or None without ground truth}, mean (R,) or None):
    COCOeval's interpolated precision at its 101 recall points, area 'all', maxDets 100.
    """
    params = coco_eval.params
    t = int(np.argmin(np.abs(params.iouThrs - iou)))
    top = params.maxDets.index(100) if 100 in params.maxDets else len(params.maxDets) - 1
    precision = coco_eval.eval["precision"][t, :, :, params.areaRngLbl.index("all"), top]
    curves = {}
    for k, category in enumerate(params.catIds):
        curves[int(category)] = None if np.all(precision[:, k] < 0) else np.clip(precision[:, k], 0, None)
    present = [curve for curve in curves.values() if curve is not None]
    return np.asarray(params.recThrs), curves, (np.mean(present, axis=0) if present else None)


def f1_curves(coco_eval, iou=0.5, thresholds=None):
    """F1 against the score threshold, from COCOeval's matches at one IoU threshold (area 'all', maxDets 100).

    A detection scoring at least t counts; a true positive is one COCOeval matched to a
    ground truth (crowd matches and crowd ground truth are left out, as COCOeval does).

    Returns:
        (thresholds (T,), {category id: F1 (T,) or None without ground truth}, mean F1 (T,) over
        the classes with ground truth or None, best threshold (the highest of equal F1s), best
        mean F1); the last two None without ground truth, the threshold None (and F1 0) when no
        detection matches.
    """
    params = coco_eval.params
    thresholds = np.round(np.linspace(0.0, 1.0, 201), 6) if thresholds is None else np.asarray(thresholds)
    t = int(np.argmin(np.abs(params.iouThrs - iou)))
    all_range = params.areaRng[params.areaRngLbl.index("all")]
    matches = {int(category): ([], [], 0) for category in params.catIds}
    for entry in coco_eval.evalImgs:
        if entry is None or list(entry["aRng"]) != list(all_range):
            continue
        scores, hits, positives = matches[int(entry["category_id"])]
        kept = ~np.asarray(entry["dtIgnore"], bool).reshape(len(params.iouThrs), -1)[t]
        scores.extend(np.asarray(entry["dtScores"], np.float64)[kept])
        hits.extend((np.asarray(entry["dtMatches"]).reshape(len(params.iouThrs), -1)[t] > 0)[kept])
        positives += int(np.sum(~np.asarray(entry["gtIgnore"], bool)))
        matches[int(entry["category_id"])] = (scores, hits, positives)
    curves = {}
    for category, (scores, hits, positives) in matches.items():
        if positives == 0:
            curves[category] = None
            continue
        scores, hits = np.asarray(scores, np.float64), np.asarray(hits, bool)
        above = scores[None, :] >= thresholds[:, None]
        true_positives = np.sum(above & hits[None, :], axis=1)
        found = np.sum(above, axis=1)
        precision = np.where(found > 0, true_positives / np.maximum(found, 1), 0.0)
        recall = true_positives / positives
        curves[category] = np.where(precision + recall > 0,
                                    2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    present = [curve for curve in curves.values() if curve is not None]
    if not present:
        return thresholds, curves, None, None, None
    mean = np.mean(present, axis=0)
    if not np.any(mean > 0):  # no detection matches: no threshold is better than another
        return thresholds, curves, mean, None, 0.0
    best = len(mean) - 1 - int(np.argmax(mean[::-1]))  # the highest threshold among equal F1s
    return thresholds, curves, mean, float(thresholds[best]), float(mean[best])


LEGEND_CLASSES = 20
"""With more classes than this, the curves' legends name only the mean."""


def plot_pr_curves(path, evals, names, iou=0.5):
    """Writes mask and box precision-recall at IoU `iou` (one line per class and the mean); the
    path, or None when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return None
    figure, axes = plt.subplots(1, len(evals), figsize=(8 * len(evals), 5), squeeze=False)
    for axis, (iou_type, coco_eval) in zip(axes[0], evals.items()):
        recall, curves, mean = pr_curves(coco_eval, iou)
        named = sum(curve is not None for curve in curves.values()) <= LEGEND_CLASSES
        for category, precision in curves.items():
            if precision is not None:
                ap = float(np.mean(precision))
                axis.plot(recall, precision, linewidth=1,
                          label=f"{names.get(category, category)} {ap:.3f}" if named else None)
        if mean is not None:
            axis.plot(recall, mean, color="black", linewidth=3, label=f"all classes {float(np.mean(mean)):.3f}")
        axis.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
                 title=f"{'mask' if iou_type == 'segm' else 'box'} precision-recall at IoU {iou:g} (AP{int(iou * 100)})")
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    figure.tight_layout()
    return _save_figure(plt, figure, path)


def plot_f1_curve(path, coco_eval, names, iou=0.5, iou_type="segm"):
    """Writes F1 against the score threshold (one line per class, the mean, the best threshold
    marked); returns (path or None without matplotlib, best threshold, best mean F1)."""
    thresholds, curves, mean, best, best_f1 = f1_curves(coco_eval, iou)
    plt = pyplot()
    if plt is None:
        return None, best, best_f1
    figure, axis = plt.subplots(figsize=(9, 5))
    named = sum(curve is not None for curve in curves.values()) <= LEGEND_CLASSES
    for category, curve in curves.items():
        if curve is not None:
            axis.plot(thresholds, curve, linewidth=1, label=str(names.get(category, category)) if named else None)
    if mean is not None and best is None:
        axis.plot(thresholds, mean, color="black", linewidth=3, label="all classes: no detection matches")
    elif mean is not None:
        axis.plot(thresholds, mean, color="black", linewidth=3, label=f"all classes {best_f1:.3f} at {best:.3f}")
        axis.axvline(best, color="red", linestyle="--", linewidth=1)
        axis.plot([best], [best_f1], "o", color="red")
        axis.annotate(f"best: F1 {best_f1:.3f} at score {best:.3f}", (best, best_f1),
                      textcoords="offset points", xytext=(8, 8), color="red",
                      bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    axis.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="score threshold", ylabel="F1",
             title=f"{'mask' if iou_type == 'segm' else 'box'} F1 at IoU {iou:g} against the score threshold")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    figure.tight_layout()
    return _save_figure(plt, figure, path), best, best_f1


# confusion matrix

def match_image(record, score_threshold=0.25, iou_threshold=0.5):
    """Matches one image's detections (scoring at least score_threshold) to its ground truth by
    mask IoU, whatever their classes.

    Pairs with IoU >= iou_threshold are taken greedily in decreasing IoU (ties: the higher
    score first), each detection and each ground-truth object at most once.

    Returns:
        (pairs, unmatched detections, unmatched ground truth): pairs as (detection index,
        ground-truth index) lists of the record's rows.
    """
    kept = np.flatnonzero(np.asarray(record.scores) >= score_threshold)
    overlaps = mask_iou([record.rles[i] for i in kept], list(record.gt_rles))
    candidates = [(-overlaps[d, g], -float(record.scores[kept[d]]), d, g)
                  for d, g in zip(*np.nonzero(overlaps >= iou_threshold))]
    used_d, used_g, pairs = set(), set(), []
    for _, _, d, g in sorted(candidates):
        if d not in used_d and g not in used_g:
            used_d.add(d)
            used_g.add(g)
            pairs.append((int(kept[d]), int(g)))
    false = [int(kept[d]) for d in range(kept.size) if d not in used_d]
    missed = [g for g in range(len(record.gt_rles)) if g not in used_g]
    return pairs, false, missed


def confusion_matrix(records, num_classes, score_threshold=0.25, iou_threshold=0.5):
    """Counts of (predicted, true) class over the data set, with background as the last class.

    Detections scoring at least score_threshold are matched to ground truth by `match_image`
    (mask IoU >= iou_threshold, any class). A matched pair adds 1 at [its label, the object's
    label]; a missed object 1 at [background, its label]; a false detection 1 at [its label,
    background].

    Returns:
        (num_classes + 1, num_classes + 1) int64 matrix: rows predicted, columns true.
    """
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for record in records:
        pairs, false, missed = match_image(record, score_threshold, iou_threshold)
        for d, g in pairs:
            matrix[int(record.labels[d]), int(record.gt_labels[g])] += 1
        for d in false:
            matrix[int(record.labels[d]), num_classes] += 1
        for g in missed:
            matrix[num_classes, int(record.gt_labels[g])] += 1
    return matrix


def plot_confusion_matrix(path, matrix, names, score_threshold, iou_threshold=0.5):
    """Writes the confusion matrix: counts, and normalised by true class (each column sums to 1).

    Classes with neither objects nor counted detections are left out (and their number said in
    the title), so that a model of few classes on a data set of many stays readable.
    Returns the path, or None without matplotlib.
    """
    plt = pyplot()
    if plt is None:
        return None
    count = matrix.shape[0] - 1
    shown = [label for label in range(count) if matrix[label].sum() or matrix[:, label].sum()] + [count]
    left_out = count + 1 - len(shown)
    matrix = matrix[np.ix_(shown, shown)]
    labels = [names.get(label, str(label)) for label in shown[:-1]] + ["background"]
    totals = matrix.sum(axis=0, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = min(max(5.0, 0.45 * len(labels) + 2.5), 14.0)
    figure, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    for axis, values, title, fmt in ((axes[0], matrix, "counts", "d"),
                                     (axes[1], normalised, "normalised by true class", ".2f")):
        axis.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1e-9))
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize="small")
        axis.set_yticks(range(len(labels)), labels, fontsize="small")
        axis.set(xlabel="true", ylabel="predicted", title=f"confusion matrix, {title}")
        if len(labels) <= 30:
            for row in range(values.shape[0]):
                for column in range(values.shape[1]):
                    value = values[row, column]
                    axis.text(column, row, format(value, fmt), ha="center", va="center", fontsize="small",
                              color="white" if value > 0.6 * values.max() else "black")
    note = f"; {left_out} classes without objects or detections not shown" if left_out else ""
    figure.suptitle(f"mask IoU >= {iou_threshold:g}, detections scoring >= {score_threshold:.3f}{note}")
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    return _save_figure(plt, figure, path)


# pictures of the worst images

def worst_images(records, count, score_threshold=0.25, iou_threshold=0.5):
    """The `count` records with the most errors at score_threshold and mask IoU iou_threshold
    (`match_image`): missed objects, false detections and objects found as another class; most
    first (then most missed, then the earlier image).

    Returns:
        list of (record, missed, false, swapped) for records with at least one error: missed
        ground-truth rows, false detection rows, and (detection, ground truth) pairs of different classes.
    """
    scored = []
    for record in records:
        pairs, false, missed = match_image(record, score_threshold, iou_threshold)
        swapped = [(d, g) for d, g in pairs if int(record.labels[d]) != int(record.gt_labels[g])]
        errors = len(missed) + len(false) + len(swapped)
        if errors:
            scored.append(((errors, len(missed), -record.index), (record, missed, false, swapped)))
    scored.sort(key=lambda item: item[0], reverse=True)
    return [entry for _, entry in scored[:count]]


def _header(picture, text):
    """The picture with a 22-pixel black strip above it carrying `text`."""
    strip = np.zeros((22, picture.shape[1], 3), np.uint8)
    cv2.putText(strip, text, (4, 16), cv2.FONT_HERSHEY_PLAIN, 1.0, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([strip, picture], axis=0)


PICTURE_MIN_WIDTH = 320
"""Narrower pictures are enlarged (by a whole factor) so that captions and headers stay readable."""


def worst_picture(image, record, names, score_threshold, missed, false, swapped=()):
    """Ground truth (left) beside the detections scoring at least score_threshold (right), with
    a line on top of each saying what it shows; pictures narrower than PICTURE_MIN_WIDTH are
    enlarged by a whole factor f first. Returns (f H + 22, 2 f W + 4, 3) BGR uint8."""
    def name(label):
        return names.get(int(label), str(int(label)))

    factor = max(1, -(-PICTURE_MIN_WIDTH // image.shape[1]))

    def enlarged(mask):
        mask = mask_utils.decode(mask)
        return mask if factor == 1 else cv2.resize(mask, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)

    if factor > 1:
        image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    truth = image.copy()
    if len(record.gt_labels):
        draw_annotations(truth, {"bboxes": record.gt_boxes * factor, "labels": record.gt_labels,
                                 "masks": [enlarged(rle) for rle in record.gt_rles]},
                         color=None, label_to_name=name)
    found = image.copy()
    for box, score, label, rle in zip(record.boxes, record.scores, record.labels, record.rles):
        if score >= score_threshold:
            draw_annotations(found, {"bboxes": box[None] * factor, "labels": [label], "masks": [enlarged(rle)]},
                             color=None, label_to_name=lambda label, score=score: f"{name(label)} {score:.2f}")
    kept = int(np.sum(record.scores >= score_threshold))
    left = _header(truth, f"truth: {len(record.gt_labels)}, {len(missed)} missed")
    right = _header(found, f"found: {kept}, {len(false)} false, {len(swapped)} wrong class")
    gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def write_worst_pictures(directory, generator, records, names, count=8, score_threshold=0.25, iou_threshold=0.5):
    """Writes pictures of the worst images (`worst_images`) as NN_NAME.png in `directory`;
    returns the paths written."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for rank, (record, missed, false, swapped) in enumerate(
            worst_images(records, count, score_threshold, iou_threshold)):
        image = generator.load_image(record.index)
        picture = worst_picture(image, record, names, score_threshold, missed, false, swapped)
        stem = os.path.splitext(os.path.basename(record.file_name))[0]
        path = os.path.join(directory, f"{rank + 1:02d}_{stem}.png")
        ok, encoded = cv2.imencode(".png", picture)
        if not ok:
            raise OSError(f"could not encode the picture of {record.file_name}")
        written.append(_atomic_write(path, lambda stream, data=encoded: stream.write(data.tobytes()), mode="wb"))
    return written


# training curves

def plot_training_curves(csv_path, path=None):
    """Writes every column of a Keras CSVLogger file (losses and metrics) against the epoch,
    one panel each (a 'val_' column in its training column's panel), as training_curves.png
    beside it (or at `path`); returns the path written, or None without matplotlib or without rows."""
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return None
    columns = [name for name in rows[0] if name != "epoch"]
    series = {}
    for name in columns:
        values = []
        for row in rows:
            try:
                values.append(float(row[name]))
            except (TypeError, ValueError):
                values.append(np.nan)
        if np.any(np.isfinite(values)):
            series[name] = np.asarray(values)
    plt = pyplot()
    if plt is None or not series:
        return None
    from matplotlib.ticker import MaxNLocator

    epochs = [int(float(row["epoch"])) + 1 for row in rows] if "epoch" in rows[0] else list(range(1, len(rows) + 1))
    panels = sorted({name[4:] if name.startswith("val_") and name[4:] in columns else name for name in series},
                    key=lambda name: ("loss" not in name, name))
    width = min(4, len(panels))
    height = -(-len(panels) // width)
    figure, axes = plt.subplots(height, width, figsize=(3.6 * width, 2.8 * height), squeeze=False)
    for axis, name in zip(axes.flat, panels):
        for key, label in ((name, "training"), (f"val_{name}", "validation")):
            if key in series:
                axis.plot(epochs, series[key], marker="o", markersize=3, label=label)
        if f"val_{name}" in series and name in series:
            axis.legend(fontsize="x-small")
        axis.set_title(name, fontsize="medium")
        axis.set_xlabel("epoch", fontsize="small")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    figure.tight_layout()
    path = path or os.path.join(os.path.dirname(os.path.abspath(csv_path)), "training_curves.png")
    return _save_figure(plt, figure, path)
