"""Comparing the detections of two runs of a model (another backend, another runtime, the original code).

Detections are matched one to one, not row by row: two detections whose scores differ by less than
float rounding may come out in either order, and that is not a difference.
"""

import numpy as np


def _rows(outputs, image):
    boxes, scores, labels = (np.asarray(x)[image] for x in outputs[:3])
    keep = scores > -1
    masks = np.asarray(outputs[3])[image][keep] if len(outputs) > 3 else None
    return boxes[keep].astype(np.float64), scores[keep].astype(np.float64), labels[keep], masks


def compare_detections(reference, other, image=0, score_tol=1e-4, box_tol=1e-2, mask_tol=1e-3):
    """Compares [boxes (B,N,4), scores (B,N), labels (B,N)(, masks (B,N,h,w,C))] of two runs on image
    `image` (padding rows, score -1, left out).

    Each reference detection is paired with an unpaired detection of `other` of the same label whose
    score is within score_tol and box within box_tol (the closest box), in the reference's order.
    Returns a dict: count (reference), other_count, matched, unmatched (reference rows without a
    partner), max_score, max_box (pixels), max_mask (over the paired rows, all classes; None without
    masks), same (True when every detection is paired both ways and masks are within mask_tol).
    """
    boxes, scores, labels, masks = _rows(reference, image)
    other_boxes, other_scores, other_labels, other_masks = _rows(other, image)
    free = np.ones(len(other_scores), dtype=bool)
    pairs, unmatched = [], []
    for i in range(len(scores)):
        box_error = np.abs(other_boxes - boxes[i]).max(axis=1) if len(other_boxes) else np.zeros(0)
        fits = free & (other_labels == labels[i]) & (np.abs(other_scores - scores[i]) <= score_tol) & (box_error <= box_tol)
        if not fits.any():
            unmatched.append(i)
            continue
        j = int(np.flatnonzero(fits)[np.argmin(box_error[fits])])
        free[j] = False
        pairs.append((i, j))
    report = dict(count=len(scores), other_count=len(other_scores), matched=len(pairs), unmatched=unmatched,
                  max_score=0.0, max_box=0.0, max_mask=None)
    if pairs:
        first, second = (np.array(p) for p in zip(*pairs))
        report["max_score"] = float(np.abs(scores[first] - other_scores[second]).max())
        report["max_box"] = float(np.abs(boxes[first] - other_boxes[second]).max())
        if masks is not None and other_masks is not None:
            report["max_mask"] = float(np.abs(masks[first].astype(np.float64) - other_masks[second]).max())
    within = report["max_mask"] is None or report["max_mask"] <= mask_tol
    report["same"] = bool(len(pairs) == len(scores) == len(other_scores) and within)
    return report


def describe(report):
    """One line of a `compare_detections` report."""
    masks = "" if report["max_mask"] is None else f", masks {report['max_mask']:.2e}"
    verdict = "same" if report["same"] else f"DIFFERENT ({len(report['unmatched'])} unmatched)"
    return (f"{verdict}: {report['matched']} of {report['count']} detections paired ({report['other_count']} "
            f"in the other), max differences: scores {report['max_score']:.2e}, boxes {report['max_box']:.2e} px{masks}")
