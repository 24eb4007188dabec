"""Base data generator: loads, augments, resizes and batches images with their targets.

Subclasses provide the dataset (size, num_classes, name_to_label, label_to_name, has_label,
has_name, image_aspect_ratio, image_path, load_image, load_annotations). Each batch is

    inputs  = {'image': (B, H, W, 3) float32, 'rois': (B, M, 4) float32}
    targets = {'regression': (B, A, 4) float32, 'classification': (B, A) int8 (int16 from 128
               classes), 'masks': (B, M, 1 + S * S) float32}

with H, W the largest resized image of the batch rounded up to `pad_multiple`, A the anchors of
that shape, M the most RoIs of an image of the batch rounded up to `mask_rois_multiple` (at
most mask_rois_per_image) and S = mask_size. 'rois' (x1, y1, x2, y2, resized-image
pixels) are the ground-truth boxes plus jittered copies; row m of 'masks' holds the label of
the ground truth behind RoI m (-1 for padding rows) and that ground truth's mask sampled into
RoI m (0/1, row-major S x S). The anchor targets are compact (utils.anchors.anchor_targets_bbox):
regression holds the deltas of positive anchors and NaN elsewhere, classification each anchor's
class index, -1 for background or -2 for ignored; the losses expand them.
"""

import threading
import warnings

import keras
import numpy as np

from ..defaults import IMAGE_MAX_SIDE, IMAGE_MIN_SIDE, PAD_MULTIPLE
from ..utils.anchors import AnchorParameters, anchor_targets_bbox, anchors_for_shape
from ..utils.image import (
    TransformParameters,
    UnreadableImageError,
    compute_resize_scale,
    apply_transform,
    apply_transform_to_mask,
    preprocess_image as caffe_preprocess_image,
    resize_image as resize_image_to_sides,
    resize_mask,
)
from ..utils.masks import roi_mask_targets
from ..utils.transform import adjust_transform_for_image, boxes_from_masks, transform_aabb
from . import shared_batches
from .batch_processes import BatchProcesses
from .bad_images import BadImages, listing
from .bad_images import warn as warn_bad_image

GROUP_METHODS = ("none", "random", "ratio")


def box_iou_pairwise(boxes_a, boxes_b):
    """IoU (...,) of corresponding boxes (..., 4) in boxes_a and boxes_b."""
    iw = np.minimum(boxes_a[..., 2], boxes_b[..., 2]) - np.maximum(boxes_a[..., 0], boxes_b[..., 0])
    ih = np.minimum(boxes_a[..., 3], boxes_b[..., 3]) - np.maximum(boxes_a[..., 1], boxes_b[..., 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (boxes_a[..., 2] - boxes_a[..., 0]) * (boxes_a[..., 3] - boxes_a[..., 1])
    area_b = (boxes_b[..., 2] - boxes_b[..., 0]) * (boxes_b[..., 3] - boxes_b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def padded_roi_rows(most, limit, multiple):
    """RoI rows M of a batch whose images have at most `most` RoIs: `most` rounded up to
    `multiple` (at least one multiple), capped at `limit`; always `limit` if `multiple` is 0."""
    if multiple == 0:
        return limit
    return min(limit, -(-max(most, 1) // multiple) * multiple)


def jitter_boxes(boxes, copies, image_shape, rng, min_iou=0.5, max_shift=0.25, tries=16):
    """Random boxes near each of boxes (N, 4): (N * copies, 4) float64, box-major order.

    Every coordinate moves by up to max_shift times the box width / height; candidates are
    clipped to the image (H, W) and the first of `tries` with IoU >= min_iou against its box is
    kept (the box itself if none qualifies).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if boxes.shape[0] == 0 or copies <= 0:
        return np.zeros((0, 4), dtype=np.float64)
    base = np.repeat(boxes, copies, axis=0)
    sizes = np.stack([base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]] * 2, axis=1)
    candidates = base[None] + rng.uniform(-max_shift, max_shift, (tries,) + base.shape) * sizes[None]
    height, width = float(image_shape[0]), float(image_shape[1])
    candidates[..., 0::2] = np.clip(candidates[..., 0::2], 0, width)
    candidates[..., 1::2] = np.clip(candidates[..., 1::2], 0, height)
    valid = box_iou_pairwise(candidates, base[None]) >= min_iou
    first = valid.argmax(axis=0)
    chosen = candidates[first, np.arange(base.shape[0])]
    return np.where(valid.any(axis=0)[:, None], chosen, base)


class Generator(keras.utils.PyDataset):
    """Abstract generator of training batches; see the module docstring for the batch format.

    Args:
        transform_generator: iterator of 3x3 affine transforms (e.g. utils.transform.
            random_transform_generator), applied to image and masks; None for no transform.
        visual_effect_generator: iterator of callables on BGR uint8 images (e.g. utils.image.
            random_visual_effect_generator); None for none.
        batch_size: images per batch.
        group_method: 'none' (dataset order), 'random', or 'ratio' (sorted by aspect ratio so
            batches need little padding).
        shuffle_groups: shuffle the order of the batches every epoch.
        image_min_side: images are resized so that their smaller side has this many pixels...
        image_max_side: ...unless their larger side would then exceed this.
        transform_parameters: utils.image.TransformParameters for the warps.
        anchor_params: utils.anchors.AnchorParameters (default: AnchorParameters.default).
        preprocess_image: callable BGR uint8 (H, W, 3) -> float32; default caffe mean subtraction.
        mask_size: S of the S x S mask targets.
        mask_rois_per_image: the most RoIs per image (extra RoIs are dropped, missing rows padded).
        mask_rois_multiple: a batch's M, its most RoIs per image, is rounded up to a multiple of
            this (and capped at mask_rois_per_image), so the mask head does not run on many padding
            rows yet few shapes occur; 0 makes M always mask_rois_per_image.
        roi_jitter: jittered copies (IoU >= 0.5) per ground-truth box.
        pad_multiple: batch height and width are rounded up to a multiple of this.
        seed: int for reproducible batches (shuffling, augmentation and RoIs depend only on
            seed, epoch and batch index); None for fresh randomness on every call.
        skip_bad_images: False: an image or mask that cannot be read raises UnreadableImageError
            (a ValueError naming the file). True: images whose files are missing or have an
            unreadable header are left out when the generator is built (subclasses list them in
            `self.unreadable` before calling this constructor), and an image that fails to
            decode when a batch is built is replaced in that batch by another readable one
            (drawn from the batch's random numbers, so the same with the same seed), with a
            warning. Either way they go into `self.bad_images` (a BadImages record).
        workers: as in keras.utils.PyDataset: batches are built ahead by `workers` threads, or
            with use_multiprocessing by `workers` processes that live as long as the generator
            (batch_processes; Keras then sees workers + 1 threads that hand the batches to them),
            not by a new pool of processes every epoch.
        use_multiprocessing: build batches in processes (see workers).
        max_queue_size: batches built ahead, as in keras.utils.PyDataset.
    """

    def __init__(self, transform_generator=None, visual_effect_generator=None, batch_size=1, group_method="ratio",
                 shuffle_groups=True, image_min_side=IMAGE_MIN_SIDE, image_max_side=IMAGE_MAX_SIDE, transform_parameters=None,
                 anchor_params=None, preprocess_image=None, mask_size=28, mask_rois_per_image=64, roi_jitter=1,
                 mask_rois_multiple=16, pad_multiple=PAD_MULTIPLE, seed=None, skip_bad_images=False, workers=1,
                 use_multiprocessing=False, max_queue_size=10):
        processes = workers if use_multiprocessing and workers > 0 else 0
        super().__init__(workers=processes + 1 if processes else workers, use_multiprocessing=False,
                         max_queue_size=max_queue_size)
        self.processes = BatchProcesses(self, processes) if processes else None
        if group_method not in GROUP_METHODS:
            raise ValueError(f"group_method {group_method!r} is not one of {GROUP_METHODS}")
        for name, value, least in [("batch_size", batch_size, 1), ("image_min_side", image_min_side, 1),
                                   ("image_max_side", image_max_side, 1), ("mask_size", mask_size, 1),
                                   ("mask_rois_per_image", mask_rois_per_image, 1), ("roi_jitter", roi_jitter, 0),
                                   ("mask_rois_multiple", mask_rois_multiple, 0),
                                   ("pad_multiple", pad_multiple, 1)]:
            if int(value) != value or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        self.transform_generator = transform_generator
        self.visual_effect_generator = visual_effect_generator
        self.batch_size = int(batch_size)
        self.group_method = group_method
        self.shuffle_groups = shuffle_groups
        self.image_min_side = int(image_min_side)
        self.image_max_side = int(image_max_side)
        self.transform_parameters = transform_parameters or TransformParameters()
        self.anchor_params = anchor_params or AnchorParameters.default
        self._preprocess = preprocess_image or caffe_preprocess_image
        self.mask_size = int(mask_size)
        self.mask_rois_per_image = int(mask_rois_per_image)
        self.roi_jitter = int(roi_jitter)
        self.mask_rois_multiple = int(mask_rois_multiple)
        self.pad_multiple = int(pad_multiple)
        self.seed = seed
        self.epoch = 0
        self.shard_index, self.num_shards = 0, 1
        self._anchors = {}
        self._lock = threading.Lock()
        self.batch_folder = shared_batches.prepare()  # where process workers put their batches
        self.skip_bad_images = bool(skip_bad_images)
        self.bad_images = BadImages(shared=self.skip_bad_images and use_multiprocessing)
        for key, message in getattr(self, "unreadable", {}).items():
            self.bad_images.add(key, message)
        if self.size() == 0 and len(self.bad_images):
            raise UnreadableImageError(f"none of the {len(self.bad_images)} images of the data set can be read:\n"
                                       f"{listing(self.bad_images.messages().values())}")
        self.group_images()

    # dataset interface, implemented by subclasses

    def size(self):
        """Number of images."""
        raise NotImplementedError("size method not implemented")

    def num_classes(self):
        """Number of object classes; labels are 0 .. num_classes() - 1."""
        raise NotImplementedError("num_classes method not implemented")

    # Subclasses set self.classes (name -> label) and self.labels (label -> name), or override these.

    def has_label(self, label):
        """Whether `label` is a known label."""
        return label in self.labels

    def has_name(self, name):
        """Whether `name` is a known class name."""
        return name in self.classes

    def name_to_label(self, name):
        """Label of a class name."""
        return self.classes[name]

    def label_to_name(self, label):
        """Class name of a label."""
        return self.labels[label]

    def image_aspect_ratio(self, image_index):
        """Width / height of an image."""
        raise NotImplementedError("image_aspect_ratio method not implemented")

    def image_size(self, image_index):
        """(height, width) of an image file in pixels, known without decoding it (for shards)."""
        raise NotImplementedError("image_size method not implemented")

    def annotation_count(self, image_index):
        """Objects (not crowd regions) of an image; subclasses answer without loading masks."""
        return len(self.load_annotations(image_index)["labels"])

    def image_path(self, image_index):
        """File (or other description) of an image, for messages."""
        return f"image {image_index}"

    def load_image(self, image_index):
        """The image as BGR uint8 (H, W, 3)."""
        raise NotImplementedError("load_image method not implemented")

    def load_annotations(self, image_index):
        """Dict: 'labels' (N,) int, 'bboxes' (N, 4) x1, y1, x2, y2 pixels, 'masks' list of N (H, W)
        uint8 0/1 arrays, optionally 'ignore_bboxes' (K, 4) regions whose anchors are ignored."""
        raise NotImplementedError("load_annotations method not implemented")

    # loading and checking

    def load_image_group(self, group):
        """Images of a group (list of image indices)."""
        return [self.load_image(image_index) for image_index in group]

    def _standardize_annotations(self, annotations, image_index):
        if not isinstance(annotations, dict) or not {"labels", "bboxes", "masks"} <= set(annotations):
            raise ValueError(f"load_annotations({image_index}) of {self.image_path(image_index)!r} must return a dict "
                             f"with 'labels', 'bboxes' and 'masks'")
        labels = np.asarray(annotations["labels"]).reshape(-1).astype(np.int64)
        bboxes = np.asarray(annotations["bboxes"], dtype=np.float64).reshape(-1, 4)
        masks = []
        for mask in annotations["masks"]:
            mask = np.asarray(mask)
            if mask.dtype == np.bool_:
                mask = mask.view(np.uint8)
            elif mask.dtype != np.uint8 or (mask.size and mask.max() > 1):
                mask = (mask != 0).astype(np.uint8)
            masks.append(mask)
        if not len(labels) == len(bboxes) == len(masks):
            raise ValueError(f"annotations of {self.image_path(image_index)!r}: {len(labels)} labels, "
                             f"{len(bboxes)} boxes and {len(masks)} masks")
        result = dict(annotations, labels=labels, bboxes=bboxes, masks=masks)
        ignore = annotations.get("ignore_bboxes")
        result["ignore_bboxes"] = np.zeros((0, 4)) if ignore is None else np.asarray(ignore, np.float64).reshape(-1, 4)
        return result

    def load_annotations_group(self, group):
        """Annotations of a group, as standardised dicts (see load_annotations)."""
        return [self._standardize_annotations(self.load_annotations(i), i) for i in group]

    def record_bad_image(self, image_index, error, replaced=False):
        """Notes in bad_images that image `image_index` could not be read (`error`, an
        UnreadableImageError); `replaced`: it was replaced in a batch. True the first time."""
        return self.bad_images.add(self.image_path(image_index), str(error), replaced=replaced)

    def load_group(self, group, rng=None, fits=None):
        """(group, images, standardised annotations) of a list of image indices.

        With skip_bad_images, an image whose file or masks cannot be read is replaced by the
        first readable image of a random order of the data set (drawn from `rng`) for which
        `fits(index)` is true (any, when fits is None); the returned group holds the indices
        actually loaded. Without, UnreadableImageError propagates.
        """
        group = list(group)
        image_group, annotations_group = [], []
        for position, image_index in enumerate(group):
            failures, candidates = [], None
            while True:
                try:
                    image = self.load_image(image_index)
                    annotations = self._standardize_annotations(self.load_annotations(image_index), image_index)
                    break
                except UnreadableImageError as error:
                    if not self.skip_bad_images:
                        raise
                    self.record_bad_image(image_index, error, replaced=True)
                    failures.append(error)
                    if candidates is None:
                        rng = rng if rng is not None else np.random.default_rng()
                        candidates = iter(int(i) for i in rng.permutation(self.size())
                                          if i != group[position] and (fits is None or fits(int(i))))
                    image_index = next(candidates, None)
                    if image_index is None:
                        raise UnreadableImageError(f"no image of the data set can be read; the last error: "
                                                   f"{error}") from None
            for error in failures:
                warn_bad_image(f"skipped an unreadable image, replaced in this batch by {self.image_path(image_index)!r}: "
                               f"{error}")
            group[position] = image_index
            image_group.append(image)
            annotations_group.append(annotations)
        return group, image_group, annotations_group

    @staticmethod
    def _select(annotations, keep):
        keep = np.asarray(keep, dtype=bool)
        result = dict(annotations)
        result["labels"] = annotations["labels"][keep]
        result["bboxes"] = annotations["bboxes"][keep]
        result["masks"] = [m for m, k in zip(annotations["masks"], keep) if k]
        return result

    def filter_annotations(self, image_group, annotations_group, group):
        """Drops, with a warning naming the image and the annotation index, annotations with
        x2 <= x1 or y2 <= y1, coordinates outside the image, an unknown label, a mask of the
        wrong size, or a mask empty inside its box."""
        for index, (image, annotations) in enumerate(zip(image_group, annotations_group)):
            height, width = image.shape[:2]
            boxes = annotations["bboxes"]
            reasons = {}
            rows = zip(boxes, annotations["labels"], annotations["masks"])
            for i, ((x1, y1, x2, y2), label, mask) in enumerate(rows):
                if not np.all(np.isfinite((x1, y1, x2, y2))):
                    reasons[i] = "non-finite box"
                elif x2 <= x1 or y2 <= y1:
                    reasons[i] = f"box {[x1, y1, x2, y2]} has x2 <= x1 or y2 <= y1"
                elif x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                    reasons[i] = f"box {[x1, y1, x2, y2]} lies outside the {width}x{height} image"
                elif not 0 <= label < self.num_classes():
                    reasons[i] = f"label {label} is not in [0, {self.num_classes()})"
                elif mask.shape[:2] != (height, width):
                    reasons[i] = f"mask of shape {mask.shape} for a {width}x{height} image"
                elif not mask[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))].any():
                    reasons[i] = "mask empty inside its box"
            if reasons:
                path = self.image_path(group[index])
                for i, reason in reasons.items():
                    warnings.warn(f"image {path!r}: annotation {i} dropped ({reason})", stacklevel=2)
                annotations_group[index] = self._select(annotations, [i not in reasons for i in range(len(boxes))])
        return image_group, annotations_group

    # augmentation

    def _draw(self, source, rng):
        """Next item of a random source: source.sample(rng) if it has it, else next(source)."""
        if rng is not None and hasattr(source, "sample"):
            return source.sample(rng)
        with self._lock:
            return next(source)

    def random_transform_group_entry(self, image, annotations, transform=None, rng=None):
        """Warps image and masks by `transform` (3x3, or one from transform_generator); boxes are
        recomputed from the warped masks and instances that leave the image are dropped."""
        if transform is None and self.transform_generator is not None:
            transform = self._draw(self.transform_generator, rng)
        if transform is None:
            return image, annotations
        params = self.transform_parameters
        matrix = adjust_transform_for_image(transform, image.shape, params.relative_translation)
        image = apply_transform(matrix, image, params)
        masks = [apply_transform_to_mask(matrix, mask) for mask in annotations["masks"]]
        boxes = boxes_from_masks(masks)
        annotations = self._select(dict(annotations, masks=masks, bboxes=boxes), boxes[:, 2] > boxes[:, 0])
        ignore = annotations.get("ignore_bboxes", np.zeros((0, 4)))
        if len(ignore):
            ignore = transform_aabb(matrix, ignore)
            ignore[:, 0::2] = np.clip(ignore[:, 0::2], 0, image.shape[1])
            ignore[:, 1::2] = np.clip(ignore[:, 1::2], 0, image.shape[0])
            annotations["ignore_bboxes"] = ignore[(ignore[:, 2] > ignore[:, 0]) & (ignore[:, 3] > ignore[:, 1])]
        return image, annotations

    def random_visual_effect_group_entry(self, image, annotations, rng=None):
        """Applies an effect of visual_effect_generator to the image."""
        if self.visual_effect_generator is None:
            return image, annotations
        return self._draw(self.visual_effect_generator, rng)(image), annotations

    def random_transform_group(self, image_group, annotations_group, rng=None):
        """random_transform_group_entry then random_visual_effect_group_entry for each image."""
        for index in range(len(image_group)):
            image, annotations = self.random_transform_group_entry(
                image_group[index], annotations_group[index], rng=rng)
            image_group[index], annotations_group[index] = self.random_visual_effect_group_entry(
                image, annotations, rng)
        return image_group, annotations_group

    # resizing and preprocessing

    def resize_image(self, image):
        """Resizes to image_min_side / image_max_side: (resized image, scale)."""
        return resize_image_to_sides(image, min_side=self.image_min_side, max_side=self.image_max_side)

    def preprocess_image(self, image):
        """The preprocess_image callable (default caffe) applied to a BGR uint8 image."""
        return self._preprocess(image)

    def preprocess_group_entry(self, image, annotations):
        """Resizes image and masks alike, scales the boxes and preprocesses the image."""
        image, scale = self.resize_image(image)
        height, width = image.shape[:2]
        annotations = dict(annotations)
        annotations["masks"] = [resize_mask(mask, (height, width)) for mask in annotations["masks"]]
        for key in ("bboxes", "ignore_bboxes"):
            boxes = np.asarray(annotations[key], dtype=np.float64).reshape(-1, 4) * scale
            boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
            boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
            annotations[key] = boxes
        return self.preprocess_image(image), annotations

    def preprocess_group(self, image_group, annotations_group):
        """preprocess_group_entry for each image."""
        for index in range(len(image_group)):
            image_group[index], annotations_group[index] = self.preprocess_group_entry(
                image_group[index], annotations_group[index])
        return image_group, annotations_group

    # batches

    def compute_mask_rois(self, image_group, annotations_group, rng=None):
        """Chooses the training RoIs of each image: its boxes plus roi_jitter jittered copies
        each, at most mask_rois_per_image (boxes first, then a random subset of the copies, or a
        random subset of the boxes if they alone are too many). Stores 'mask_rois' (K, 4) and
        'mask_roi_indices' (K,) (which annotation each RoI belongs to) in the annotations."""
        rng = rng if rng is not None else np.random.default_rng()
        limit = self.mask_rois_per_image
        for image, annotations in zip(image_group, annotations_group):
            boxes = annotations["bboxes"]
            count = boxes.shape[0]
            if count >= limit:
                indices = np.sort(rng.choice(count, size=limit, replace=False))
                rois = boxes[indices]
            else:
                jittered = jitter_boxes(boxes, self.roi_jitter, image.shape, rng)
                owners = np.repeat(np.arange(count), self.roi_jitter)
                extra = min(limit - count, jittered.shape[0])
                chosen = np.sort(rng.choice(jittered.shape[0], size=extra, replace=False)) if extra else []
                rois = np.concatenate([boxes, jittered[chosen]], axis=0)
                indices = np.concatenate([np.arange(count), owners[chosen]]).astype(np.int64)
            annotations["mask_rois"] = rois.reshape(-1, 4)
            annotations["mask_roi_indices"] = np.asarray(indices, dtype=np.int64)
        return annotations_group

    def batch_shape(self, image_group):
        """(H, W) of the padded batch: the largest image sides rounded up to pad_multiple."""
        multiple = self.pad_multiple
        height = max(image.shape[0] for image in image_group)
        width = max(image.shape[1] for image in image_group)
        return -(-height // multiple) * multiple, -(-width // multiple) * multiple

    def batch_rois(self, annotations_group):
        """M of the batch: its most RoIs per image rounded up to mask_rois_multiple, at least one
        multiple, at most mask_rois_per_image (always mask_rois_per_image if the multiple is 0)."""
        most = max(annotations["mask_rois"].shape[0] for annotations in annotations_group)
        return padded_roi_rows(most, self.mask_rois_per_image, self.mask_rois_multiple)

    def expected_batch_shape(self, group):
        """(H, W) that batch_shape gives for the images of `group` once resized, from their
        file sizes alone (augmentation keeps an image's size)."""
        sides = []
        for image_index in group:
            height, width = self.image_size(image_index)
            scale = compute_resize_scale((height, width), self.image_min_side, self.image_max_side)
            sides.append((int(round(height * scale)), int(round(width * scale))))
        return self.batch_shape([np.empty((h, w, 0)) for h, w in sides])

    def expected_roi_rows(self, group):
        """An M at least batch_rois' for `group`, from the object counts alone: each object
        gives at most 1 + roi_jitter RoIs."""
        most = max(min(self.mask_rois_per_image, self.annotation_count(i) * (1 + self.roi_jitter)) for i in group)
        return padded_roi_rows(most, self.mask_rois_per_image, self.mask_rois_multiple)

    def compute_inputs(self, image_group, annotations_group, shape=None, rois=None):
        """{'image': (B, H, W, 3) float32 zero padded, 'rois': (B, M, 4) float32 zero padded};
        (H, W) is `shape` and M `rois` when given, else batch_shape and batch_rois."""
        height, width = shape or self.batch_shape(image_group)
        images = np.zeros((len(image_group), height, width, 3), dtype=np.float32)
        rois = np.zeros((len(image_group), rois or self.batch_rois(annotations_group), 4), dtype=np.float32)
        for index, (image, annotations) in enumerate(zip(image_group, annotations_group)):
            images[index, :image.shape[0], :image.shape[1]] = image
            boxes = annotations["mask_rois"]
            rois[index, :boxes.shape[0]] = boxes
        return {"image": images, "rois": rois}

    def anchors_for_batch_shape(self, shape):
        """Anchors (A, 4) of a padded batch shape (H, W), cached."""
        key = (int(shape[0]), int(shape[1]))
        anchors = self._anchors.get(key)
        if anchors is None:
            anchors = anchors_for_shape(key, self.anchor_params)
            if len(self._anchors) >= 16:
                self._anchors.clear()
            self._anchors[key] = anchors
        return anchors

    def compute_mask_targets(self, annotations_group, rois=None):
        """(B, M, 1 + S * S) float32: label of each RoI's annotation (-1 for padding rows) and
        its mask sampled into the RoI; M is `rois` when given, else batch_rois."""
        size = self.mask_size
        targets = np.zeros((len(annotations_group), rois or self.batch_rois(annotations_group), 1 + size * size),
                           dtype=np.float32)
        targets[:, :, 0] = -1
        for index, annotations in enumerate(annotations_group):
            rois = annotations["mask_rois"]
            owners = annotations["mask_roi_indices"]
            for owner in np.unique(owners):
                rows = np.flatnonzero(owners == owner)
                sampled = roi_mask_targets(annotations["masks"][owner], rois[rows], size)
                targets[index, rows, 0] = annotations["labels"][owner]
                targets[index, rows, 1:] = sampled.reshape(rows.size, -1)
        return targets

    def compute_targets(self, image_group, annotations_group, shape=None, rois=None):
        """{'regression': (B, A, 4), 'classification': (B, A), 'masks': (B, M, 1 + S * S)};
        `shape` and `rois` as in compute_inputs."""
        anchors = self.anchors_for_batch_shape(shape or self.batch_shape(image_group))
        regression, classification = anchor_targets_bbox(
            anchors, annotations_group, self.num_classes(), [image.shape[:2] for image in image_group])
        return {"regression": regression, "classification": classification,
                "masks": self.compute_mask_targets(annotations_group, rois=rois)}

    def prepare_group(self, group, rng, fits=None):
        """(group, images, annotations) of a group of image indices: loaded, filtered, augmented,
        resized and with their mask RoIs chosen, drawing every random number from `rng`."""
        group, image_group, annotations_group = self.load_group(group, rng, fits=fits)
        image_group, annotations_group = self.filter_annotations(image_group, annotations_group, group)
        image_group, annotations_group = self.random_transform_group(image_group, annotations_group, rng)
        image_group, annotations_group = self.preprocess_group(image_group, annotations_group)
        annotations_group = self.compute_mask_rois(image_group, annotations_group, rng)
        return group, image_group, annotations_group

    def compute_input_output(self, group, rng=None):
        """(inputs, targets) of a group of image indices; rng: numpy Generator for augmentation
        and RoI sampling (fresh randomness when None)."""
        rng = rng if rng is not None else np.random.default_rng()
        _, image_group, annotations_group = self.prepare_group(group, rng)
        return self.compute_inputs(image_group, annotations_group), self.compute_targets(image_group, annotations_group)

    def shard(self, index, count):
        """Makes the generator yield shard `index` of `count` of every batch (compute_shard), for
        training on several workers. Returns the generator."""
        self._check_shard(index, count)
        self.shard_index, self.num_shards = int(index), int(count)
        return self

    def _check_shard(self, index, count):
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"shard {index} of {count} does not exist")
        if self.batch_size % count:
            raise ValueError(f"the batch size {self.batch_size} must be a multiple of the {count} shards")

    def compute_shard(self, index, shard_index, num_shards, group=None):
        """(inputs, targets) of shard `shard_index` of `num_shards` of batch `index`: positions
        [shard_index * k, (shard_index + 1) * k) of its group, k = batch_size / num_shards,
        padded to the shape and RoI rows the whole group needs (from file sizes and object
        counts), so that all shards of a batch have the same shapes. Each image draws its
        randomness from a stream of its own (seed, epoch, batch, position), so a shard does not
        depend on the others. group: the batch's image indices (default self.groups[index])."""
        self._check_shard(shard_index, num_shards)
        group = self.groups[index] if group is None else group
        size = self.batch_size // num_shards
        shape, rows = self.expected_batch_shape(group), self.expected_roi_rows(group)

        def fits(image_index):
            height, width = self.expected_batch_shape([image_index])
            return height <= shape[0] and width <= shape[1] and self.expected_roi_rows([image_index]) <= rows

        image_group, annotations_group = [], []
        for position in range(shard_index * size, (shard_index + 1) * size):
            loaded, images, annotations = self.prepare_group([group[position]], self._rng(2, index, position), fits)
            height, width = images[0].shape[:2]
            count = annotations[0]["mask_rois"].shape[0]
            if height > shape[0] or width > shape[1] or count > rows:
                raise ValueError(f"image {self.image_path(loaded[0])!r} resized to {width}x{height} with {count} RoIs "
                                 f"does not fit the {shape[1]}x{shape[0]} batch with {rows} RoI rows computed "
                                 f"from the file sizes")
            image_group += images
            annotations_group += annotations
        return (self.compute_inputs(image_group, annotations_group, shape, rows),
                self.compute_targets(image_group, annotations_group, shape, rows))

    # grouping and the PyDataset protocol

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_lock"]
        state["processes"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _rng(self, *keys):
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([int(self.seed), self.epoch, *keys])

    def group_images(self):
        """Splits the image indices into batches (self.groups) by group_method; the last batch
        is filled up from the start so every batch has batch_size images."""
        order = list(range(self.size()))
        if self.group_method == "random":
            order = [int(i) for i in self._rng(0).permutation(len(order))]
        elif self.group_method == "ratio":
            order.sort(key=self.image_aspect_ratio)
        self.groups = [[order[x % len(order)] for x in range(start, start + self.batch_size)]
                       for start in range(0, len(order), self.batch_size)]
        if self.shuffle_groups:
            self._rng(1).shuffle(self.groups)

    def __len__(self):
        return len(self.groups)

    def __getitem__(self, index):
        if not 0 <= index < len(self.groups):
            raise IndexError(f"batch {index} out of range for {len(self.groups)} batches")
        return shared_batches.for_transfer(self.call_in_worker("batch", index, self.groups[index]), self.batch_folder)

    def batch(self, index, group):
        """(inputs, targets) of batch `index` made of the images `group` (of this epoch), or
        this generator's shard of it."""
        if self.num_shards > 1:
            return self.compute_shard(index, self.shard_index, self.num_shards, group)
        return self.compute_input_output(group, self._rng(2, index))

    def call_in_worker(self, method, *args):
        """self.<method>(*args), in one of the worker processes if the generator has them (with
        this generator's epoch and shard)."""
        if self.processes is None:
            return getattr(self, method)(*args)
        state = dict(epoch=self.epoch, shard_index=self.shard_index, num_shards=self.num_shards)
        return self.processes.run(method, *args, state=state)

    def on_epoch_end(self):
        """Next epoch: regroups ('random') and reshuffles the batches (shuffle_groups)."""
        self.epoch += 1
        if self.group_method == "random" or self.shuffle_groups:
            self.group_images()
