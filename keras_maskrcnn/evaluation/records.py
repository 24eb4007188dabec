"""One pass of a model over a data set: per image, its ground truth and detections, masks as RLE.

Everything the evaluation computes (COCO metrics, the seed's mask mAP@0.5, the curves, the
confusion matrix, the worst pictures) is computed from these records, so a data set is read and
the model run once. Masks are kept as run-length encodings, never as full-size arrays for the
whole set: memory grows with the number of objects, not with the pixels.
"""

import os
from dataclasses import dataclass, field

import numpy as np

from .. import defaults
from ..preprocessing.bad_images import warn as warn_bad_image
from ..utils.eval import encode_masks
from ..utils.image import UnreadableImageError
from ..utils.progress import progress


@dataclass
class ImageRecord:
    """Ground truth and detections of one image.

    Attributes:
        index: the image's index in its generator.
        image_id: id in the COCO objects (the data set's COCO id when it has one, else index + 1).
        file_name: the image's path as the generator gives it.
        height, width: the image's size in pixels.
        gt_labels: (M,) int64 labels of the ground-truth objects.
        gt_boxes: (M, 4) float64 x1, y1, x2, y2 boxes of the ground truth.
        gt_rles: M pycocotools RLEs (full-image masks).
        crowd_labels: (Q,) int64 labels of crowd regions (COCO iscrowd), only ignored by COCOeval.
        crowd_rles: Q RLEs of the crowd regions.
        boxes: (K, 4) float64 detected boxes in image pixels, clipped to the image.
        scores: (K,) float64 detection scores, decreasing.
        labels: (K,) int64 detected labels.
        rles: K RLEs of the pasted, binarised detection masks.
    """

    index: int
    image_id: int
    file_name: str
    height: int
    width: int
    gt_labels: np.ndarray
    gt_boxes: np.ndarray
    gt_rles: list
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    rles: list
    crowd_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    crowd_rles: list = field(default_factory=list)


def load_or_skip(generator, load, index):
    """load(index) (e.g. generator.load_image); None when it raises UnreadableImageError and the
    generator skips bad images (its skip_bad_images), after a warning naming the file and a
    note in the generator's bad_images. Without skip_bad_images the error propagates."""
    try:
        return load(index)
    except UnreadableImageError as error:
        if not getattr(generator, "skip_bad_images", False):
            raise
        if hasattr(generator, "record_bad_image"):
            generator.record_bad_image(index, error)
        warn_bad_image(f"evaluation leaves out an unreadable image: {error}")
        return None


def detect(generator, model, image, score_threshold=defaults.SCORE_THRESHOLD,
           max_detections=defaults.MAX_DETECTIONS, binarize_threshold=defaults.BINARIZE_THRESHOLD):
    """Detections of `model` on one picture, masks pasted at full size and run-length encoded.

    The one place where the evaluation calls a model: everything else works on its results.

    Args:
        generator: gives the input transform (resize_image, preprocess_image, pad_multiple) of a
            model that is not a Predictor.
        model: a `keras_maskrcnn.inference.Predictor` (any model it runs, exported artifacts
            included; its own thresholds, detection limit and input transform apply), or anything
            with predict_on_batch(images (1, h, w, 3)) returning outputs whose last four are boxes
            (1, N, 4) in resized-input pixels, scores (1, N), labels (1, N), masks (1, N, S, S, C).
        image: (H, W, 3) BGR uint8 picture.
        score_threshold: detections scoring at most this are dropped.
        max_detections: at most this many detections (the best ones).
        binarize_threshold: mask probability from which a pixel is foreground.

    Returns:
        boxes (K, 4) float64 in image pixels (clipped to it), scores (K,) float64 decreasing,
        labels (K,) int64 and K RLEs (pycocotools dicts with bytes counts).
    """
    result = as_predictor(generator, model, score_threshold, max_detections, binarize_threshold).predict_images(
        [image])[0]
    return (np.asarray(result.boxes, np.float64).reshape(-1, 4), np.asarray(result.scores, np.float64),
            np.asarray(result.labels, np.int64), list(result.rles))


def as_predictor(generator, model, score_threshold=defaults.SCORE_THRESHOLD,
                 max_detections=defaults.MAX_DETECTIONS, binarize_threshold=defaults.BINARIZE_THRESHOLD):
    """`model` itself when it is a Predictor, else a Predictor running it with the generator's input
    transform (`inference.transform.generator_transform`) and these thresholds."""
    from ..inference.predictor import Predictor
    from ..inference.transform import generator_transform

    if isinstance(model, Predictor):
        return model
    return Predictor(model, score_threshold=score_threshold, max_detections=max_detections,
                     binarize_threshold=binarize_threshold, transform=generator_transform(generator))


def _image_id(generator, index):
    ids = getattr(generator, "image_ids", None)
    if ids is not None:
        try:
            return int(ids[index])
        except (TypeError, ValueError):
            pass
    return index + 1


def _crowd(generator, index, image_id):
    """(labels, RLEs) of the crowd regions of a COCO generator's image (none for other formats)."""
    coco = getattr(generator, "coco", None)
    if coco is None or not hasattr(generator, "coco_label_to_label"):
        return np.zeros(0, np.int64), []
    labels, rles = [], []
    for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=True)):
        if not annotation.get("iscrowd", 0):
            continue
        labels.append(generator.coco_label_to_label(annotation["category_id"]))
        rles.append(coco.annToRLE(annotation))
    return np.asarray(labels, np.int64), rles


def ground_truth_record(generator, index, image, annotations):
    """The ImageRecord of one image's ground truth (no detections yet)."""
    labels = np.asarray(annotations["labels"]).reshape(-1).astype(np.int64)
    boxes = np.asarray(annotations["bboxes"], dtype=np.float64).reshape(-1, 4)
    masks = annotations.get("masks")
    if masks is None or len(masks) != labels.size:
        raise ValueError(f"{generator.image_path(index)}: the evaluation needs a mask per object, got "
                         f"{0 if masks is None else len(masks)} masks for {labels.size} objects")
    height, width = image.shape[:2]
    for number, mask in enumerate(masks):
        if np.shape(mask)[:2] != (height, width):
            raise ValueError(f"{generator.image_path(index)}: mask {number} has shape {np.shape(mask)}, "
                             f"the image {height}x{width}")
    image_id = _image_id(generator, index)
    crowd_labels, crowd_rles = _crowd(generator, index, image_id)
    return ImageRecord(index=index, image_id=image_id, file_name=str(generator.image_path(index)),
                       height=height, width=width, gt_labels=labels, gt_boxes=boxes,
                       gt_rles=encode_masks(masks), crowd_labels=crowd_labels, crowd_rles=crowd_rles,
                       boxes=np.zeros((0, 4)), scores=np.zeros(0), labels=np.zeros(0, np.int64), rles=[])


def collect(generator, model, score_threshold=defaults.SCORE_THRESHOLD,
            max_detections=defaults.MAX_DETECTIONS, binarize_threshold=defaults.BINARIZE_THRESHOLD,
            prefix="Running network: "):
    """Runs `model` over every image of `generator` (with a progress bar).

    Args:
        generator: any data set generator (csv, coco, ...): size, load_image, load_annotations,
            image_path and the input transform.
        model: see `detect`.
        score_threshold, max_detections, binarize_threshold: see `detect`.

    Returns:
        A list of ImageRecord, one per readable image, in the generator's order. Images that
        cannot be read raise UnreadableImageError, or are left out with a warning when the
        generator's skip_bad_images is true (see `load_or_skip`).
    """
    records = []
    model = as_predictor(generator, model, score_threshold, max_detections, binarize_threshold)
    for index in progress(range(generator.size()), prefix):
        image = load_or_skip(generator, generator.load_image, index)
        if image is None:
            continue
        annotations = load_or_skip(generator, generator.load_annotations, index)
        if annotations is None:
            continue
        record = ground_truth_record(generator, index, image, annotations)
        record.boxes, record.scores, record.labels, record.rles = detect(
            generator, model, image, score_threshold=score_threshold, max_detections=max_detections,
            binarize_threshold=binarize_threshold)
        records.append(record)
    return records


def class_names(generator):
    """{label: name} of every label of the generator, in label order."""
    return {label: str(generator.label_to_name(label)) for label in range(generator.num_classes())
            if not hasattr(generator, "has_label") or generator.has_label(label)}


def short_name(path):
    """The file name of a path without its folders."""
    return os.path.basename(str(path))
