"""Generator for datasets in the COCO layout.

    DATA_DIR/annotations/instances_SET.json
    DATA_DIR/images/SET/<file_name>

Polygon and RLE segmentations are decoded with pycocotools. Crowd annotations are not trained
as objects: their boxes become 'ignore_bboxes', so anchors inside them are ignored rather than
trained as background. Boxes under 1 pixel wide or high are skipped; images without
annotations are kept as negatives. Labels are 0 .. C - 1 in order of the category ids.

Every image's header is read when the generator is built (with a progress bar from
PROGRESS_IMAGES images on): a missing or unreadable file, or one whose size is not the size
the annotations give, raises UnreadableImageError, or with skip_bad_images=True is left out
(listed in `unreadable`).
"""

import contextlib
import io
import os

import numpy as np
from pycocotools.coco import COCO

from ..utils.eval import progress
from ..utils.image import UnreadableImageError, image_size, read_image_bgr
from .generator import Generator

PROGRESS_IMAGES = 1000
"""From this many images on, checking their headers shows a progress bar."""


class CocoGenerator(Generator):
    """Generator over one set of a COCO-layout dataset; `coco` is the pycocotools COCO object
    and `image_ids` the COCO ids of the images in generator order."""

    def __init__(self, data_dir, set_name, **kwargs):
        self.data_dir = data_dir
        self.set_name = set_name
        annotations_file = os.path.join(data_dir, "annotations", f"instances_{set_name}.json")
        if not os.path.isfile(annotations_file):
            raise ValueError(f"COCO annotations file {annotations_file!r} does not exist")
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(annotations_file)
        self.image_ids = sorted(self.coco.getImgIds())
        self._load_classes()
        self.unreadable = {}
        self._check_images(kwargs.get("skip_bad_images", False))
        super().__init__(**kwargs)

    def _check_images(self, skip_bad_images):
        """Reads every image's header; leaves out (or raises on) the files that fail."""
        readable = []
        for index in progress(range(len(self.image_ids)), "Checking images: ", least=PROGRESS_IMAGES):
            info = self.image_info(index)
            path = self.image_path(index)
            try:
                size = image_size(path)
                if size != (info["width"], info["height"]):
                    raise UnreadableImageError(f"image file {path!r} is {size[0]}x{size[1]} but its annotations "
                                               f"say {info['width']}x{info['height']}")
            except UnreadableImageError as error:
                if not skip_bad_images:
                    raise UnreadableImageError(f"COCO image {info['id']}: {error}") from None
                self.unreadable[path] = f"COCO image {info['id']}: {error}"
                continue
            readable.append(self.image_ids[index])
        self.image_ids = readable

    def _load_classes(self):
        categories = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        self.classes = {}
        self.coco_labels = {}
        self.coco_labels_inverse = {}
        for category in categories:
            label = len(self.classes)
            self.classes[category["name"]] = label
            self.coco_labels[label] = category["id"]
            self.coco_labels_inverse[category["id"]] = label
        self.labels = {label: name for name, label in self.classes.items()}

    def size(self):
        return len(self.image_ids)

    def num_classes(self):
        return len(self.classes)

    def coco_label_to_label(self, coco_label):
        """Label (0 .. C - 1) of a COCO category id."""
        return self.coco_labels_inverse[coco_label]

    def coco_label_to_name(self, coco_label):
        return self.label_to_name(self.coco_label_to_label(coco_label))

    def label_to_coco_label(self, label):
        """COCO category id of a label."""
        return self.coco_labels[label]

    def image_info(self, image_index):
        return self.coco.loadImgs(self.image_ids[image_index])[0]

    def image_path(self, image_index):
        return os.path.join(self.data_dir, "images", self.set_name, self.image_info(image_index)["file_name"])

    def image_aspect_ratio(self, image_index):
        info = self.image_info(image_index)
        return float(info["width"]) / float(info["height"])

    def image_size(self, image_index):
        info = self.image_info(image_index)
        return int(info["height"]), int(info["width"])

    def annotation_count(self, image_index):
        return len(self.coco.getAnnIds(imgIds=self.image_info(image_index)["id"], iscrowd=False))

    def load_image(self, image_index):
        try:
            return read_image_bgr(self.image_path(image_index))
        except UnreadableImageError as error:
            raise UnreadableImageError(f"COCO image {self.image_ids[image_index]}: {error}") from None

    def load_annotations(self, image_index):
        info = self.image_info(image_index)
        width, height = info["width"], info["height"]
        annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=info["id"], iscrowd=None))
        labels, bboxes, masks, ignore = [], [], [], []
        for annotation in annotations:
            x, y, w, h = annotation["bbox"]
            box = [max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)]
            if annotation.get("iscrowd", 0):
                ignore.append(box)
                continue
            if w < 1 or h < 1:
                continue
            labels.append(self.coco_label_to_label(annotation["category_id"]))
            bboxes.append(box)
            masks.append(self.coco.annToMask(annotation))
        return {
            "labels": np.array(labels, dtype=np.int64),
            "bboxes": np.array(bboxes, dtype=np.float64).reshape(-1, 4),
            "masks": masks,
            "ignore_bboxes": np.array(ignore, dtype=np.float64).reshape(-1, 4),
        }
