"""Generator for COCO instance segmentation data sets: a COCO JSON file and its images.

Two ways to name the data:

    CocoGenerator(annotations="path/file.json", images="dir")   # any tool's export
    CocoGenerator(data_dir, set_name)                           # the COCO layout:
        DATA_DIR/annotations/instances_SET.json
        DATA_DIR/images/SET/<file_name>

`images` defaults to the JSON file's folder: Roboflow exports `train/_annotations.coco.json`
beside the pictures, and Label Studio writes `file_name` relative to the JSON's folder; CVAT
writes it relative to its `images` folder (pass that folder).

Polygon and RLE segmentations are decoded with pycocotools. Crowd annotations are not trained
as objects: their boxes become 'ignore_bboxes', so anchors inside them are ignored rather than
trained as background. Boxes under 1 pixel wide or high are left out (named in one
AnnotationWarning); images without annotations are kept as negatives. Labels are 0 .. C - 1 in
order of the category ids, for every category of the file: a category without annotations
(Roboflow adds one, id 0, named after the project) keeps its label, so that the numbering is
the same in every file of a data set, and is named in one AnnotationWarning.

Every annotation is checked when the generator is built (see `check_annotations`): its image
and category exist, its segmentation is a non-empty list of polygons of at least 3 points (an
even count of finite numbers) or an RLE of its image's size, its box and polygons lie inside
its image (within TOLERANCE pixels). A bad one raises BadAnnotationError naming the JSON file,
the annotation id and the image (file name and id), or with skip_bad_annotations=True is left
out with one AnnotationWarning counting them and naming the first few.

Every image's header is read when the generator is built (with a progress bar from
PROGRESS_IMAGES images on): a missing or unreadable file, or one whose size is not the size
the annotations give, raises UnreadableImageError, or with skip_bad_images=True is left out
(listed in `unreadable`).
"""

import contextlib
import io
import json
import math
import numbers
import os
import warnings

import numpy as np
from pycocotools.coco import COCO

from ..utils.image import UnreadableImageError, image_size, read_image_bgr
from .bad_images import AnnotationWarning
from .generator import Generator

try:
    from ..utils.progress import progress
except ImportError:  # before progress bars had a module of their own
    from ..utils.eval import progress

PROGRESS_IMAGES = 1000
"""From this many images on, checking their headers shows a progress bar."""
TOLERANCE = 1.0
"""How far (pixels) a box may run outside its image before the annotation is bad."""
SHOWN = 5
"""The most bad annotations or unused categories a warning names one by one."""


class BadAnnotationError(ValueError):
    """A COCO JSON file, or one of its annotations, is not what COCO's format allows; the message
    names the file and the annotation id and image."""


def _integral(value):
    """int(value) for an integral number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if not math.isfinite(value) or value != int(value):
        return None
    return int(value)


def _finite_numbers(values):
    """Whether every item of `values` is an int or a float (not a bool) and their sum is finite
    (so each is; JSON gives no other number types)."""
    if not all(type(v) is float or type(v) is int for v in values):
        return False
    total = sum(values)
    return total - total == 0


def rle_string_counts(counts):
    """The run lengths (list of int) of a compressed COCO RLE string (pycocotools' format: 5 bits
    per character from '0', a continuation bit, a sign bit, runs after the second as differences
    from the run two before); None when the string is cut inside a number or not ASCII."""
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            return None
    runs, value, shift = [], 0, 0
    for char in counts:
        code = ord(char) - 48
        if not 0 <= code < 64:
            return None
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:
            continue
        if code & 0x10:
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value, shift = 0, 0
    return None if shift else runs


def segmentation_problem(segmentation, height, width, tolerance=TOLERANCE):
    """Why `segmentation` is no mask of a height x width image (a phrase), or None if it is one:
    an RLE of that size, or a non-empty list of polygons of at least 3 points (an even number of
    finite coordinates) inside the image (`tolerance` pixels outside allowed)."""
    if segmentation is None:
        return "has no segmentation (a box-only data set: masks are needed)"
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not isinstance(size, (list, tuple)) or len(size) != 2 or [_integral(v) for v in size] != list(size):
            return f"RLE size {size!r} is not [height, width]"
        if list(size) != [height, width]:
            return f"RLE size {list(size)} is not the image's [height, width] [{height}, {width}]"
        if isinstance(counts, (str, bytes)):
            runs = rle_string_counts(counts)
            if runs is None:
                return "RLE counts is not a valid compressed RLE string"
        elif isinstance(counts, list):
            if not all(type(v) is int for v in counts) and not all(_integral(v) is not None for v in counts):
                return "RLE counts holds values that are not integers"
            runs = counts
        else:
            return f"RLE counts is a {type(counts).__name__}, not a list or a string"
        if any(v < 0 for v in runs) or sum(runs) != height * width:
            return (f"RLE counts cover {sum(runs)} pixels with {sum(v < 0 for v in runs)} negative runs; "
                    f"a {width}x{height} image has {height * width}")
        return None
    if not isinstance(segmentation, list):
        return f"segmentation is a {type(segmentation).__name__}, not a list of polygons or an RLE"
    if not segmentation:
        return "segmentation is empty"
    if not all(isinstance(polygon, list) for polygon in segmentation):
        return "segmentation is not a list of polygons (lists of x y numbers)"
    for index, polygon in enumerate(segmentation):
        if not _finite_numbers(polygon):
            return f"polygon {index} holds values that are not finite numbers"
        if len(polygon) % 2:
            return f"polygon {index} has an odd number of coordinates ({len(polygon)})"
        if len(polygon) < 6:
            return f"polygon {index} has {len(polygon) // 2} points; a polygon needs at least 3"
        xs, ys = polygon[0::2], polygon[1::2]
        if min(xs) < -tolerance or min(ys) < -tolerance or max(xs) > width + tolerance or max(ys) > height + tolerance:
            return (f"polygon {index} reaches ({min(xs):g}, {min(ys):g})-({max(xs):g}, {max(ys):g}), outside the "
                    f"{width}x{height} image")
    return None


def box_problem(bbox, height, width, tolerance=TOLERANCE):
    """Why `bbox` ([x, y, w, h]) is no box inside a height x width image (a phrase), or None."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not _finite_numbers(bbox):
        return f"bbox {bbox!r} is not 4 finite numbers [x, y, width, height]"
    x, y, w, h = bbox
    if w < 0 or h < 0:
        return f"bbox {list(bbox)} has a negative width or height"
    if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
        return f"bbox {list(bbox)} runs outside the {width}x{height} image"
    return None


def _load_json(path):
    """The parsed JSON of a COCO file; BadAnnotationError naming the file when it is none."""
    if not os.path.isfile(path):
        raise BadAnnotationError(f"COCO annotations file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except UnicodeDecodeError as error:
        raise BadAnnotationError(f"{path}: not a COCO JSON file: not UTF-8 text ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise BadAnnotationError(f"{path}:{error.lineno}: not a COCO JSON file: {error.msg}") from None
    if not isinstance(data, dict):
        raise BadAnnotationError(f"{path}: not a COCO JSON file: it holds a {type(data).__name__}, not an object")
    if "shapes" in data and "imagePath" in data:
        raise BadAnnotationError(f"{path}: a labelme file, not COCO JSON (use the labelme data set type with its "
                                 f"folder)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise BadAnnotationError(f"{path}: not a COCO instances file: it has no {key!r} list")
    return data


def _check_images_and_categories(path, data):
    """{image id: image entry}, {category id: category entry}; BadAnnotationError naming the
    entry when one lacks what COCO requires or repeats an id or a category name."""
    images = {}
    for index, image in enumerate(data["images"]):
        where = f"{path}: images[{index}]"
        if not isinstance(image, dict):
            raise BadAnnotationError(f"{where} is not an object")
        image_id = image.get("id")
        if _integral(image_id) is None and not isinstance(image_id, str):
            raise BadAnnotationError(f"{where} has no id")
        where = f"{path}: image {image_id!r}"
        if image_id in images:
            raise BadAnnotationError(f"{where} is listed twice")
        if not isinstance(image.get("file_name"), str) or not image["file_name"]:
            raise BadAnnotationError(f"{where} has no file_name")
        for key in ("width", "height"):
            value = _integral(image.get(key))
            if value is None or value < 1:
                raise BadAnnotationError(f"{where} ({image['file_name']!r}): {key} {image.get(key)!r} "
                                         f"is not a positive integer")
            image[key] = value
        images[image_id] = image
    categories, names = {}, {}
    for index, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or _integral(category.get("id")) is None:
            raise BadAnnotationError(f"{path}: categories[{index}] has no integer id")
        if not isinstance(category.get("name"), str):
            raise BadAnnotationError(f"{path}: category {category['id']} has no name")
        if category["id"] in categories:
            raise BadAnnotationError(f"{path}: category id {category['id']} is listed twice")
        if category["name"] in names:
            raise BadAnnotationError(f"{path}: categories {names[category['name']]} and {category['id']} are both "
                                     f"named {category['name']!r}")
        categories[category["id"]] = category
        names[category["name"]] = category["id"]
    if not categories:
        raise BadAnnotationError(f"{path}: lists no categories")
    return images, categories


def check_annotations(path, data, tolerance=TOLERANCE):
    """(good annotations, messages about the bad ones) of a parsed COCO file `data` (read from
    `path`, named in errors). Image and category entries are checked first: a broken one raises
    BadAnnotationError. An annotation is bad when it lacks an id or repeats one, or its image or
    category is unknown, or its segmentation or box is not one of its image (see
    `segmentation_problem` and `box_problem`, boxes `tolerance` pixels outside allowed). Each
    message reads "annotation ID (image 'FILE', id N): what is wrong". A missing iscrowd is
    set to 0 in the good annotations."""
    images, categories = _check_images_and_categories(path, data)
    good, bad, seen = [], [], set()
    for index, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, dict):
            bad.append(f"annotations[{index}]: is a {type(annotation).__name__}, not an object")
            continue
        annotation_id = annotation.get("id")
        image_id = annotation.get("image_id")
        image = images.get(image_id) if isinstance(image_id, (numbers.Real, str)) else None
        name = f"annotation {annotation_id!r}" if annotation_id is not None else f"annotations[{index}]"
        where = f"{name} (image {image['file_name']!r}, id {image_id!r})" if image else name
        if _integral(annotation_id) is None and not isinstance(annotation_id, str):
            problem = "has no id"
        elif annotation_id in seen:
            problem = "repeats the id of an earlier annotation"
        elif image is None:
            problem = f"image_id {image_id!r} is not among the images"
        elif not isinstance(annotation.get("category_id"), numbers.Real) or annotation["category_id"] not in categories:
            known = sorted(categories)
            shown = ", ".join(map(str, known[:10])) + (", ..." if len(known) > 10 else "")
            problem = f"category_id {annotation.get('category_id')!r} is not among the categories ({shown})"
        elif annotation.get("iscrowd", 0) not in (0, 1):
            problem = f"iscrowd {annotation['iscrowd']!r} is not 0 or 1"
        else:
            problem = (segmentation_problem(annotation.get("segmentation"), image["height"], image["width"],
                                            tolerance)
                       or box_problem(annotation.get("bbox"), image["height"], image["width"], tolerance))
        if isinstance(annotation_id, (numbers.Real, str)):
            seen.add(annotation_id)
        if problem:
            bad.append(f"{where}: {problem}")
            continue
        annotation.setdefault("iscrowd", 0)
        good.append(annotation)
    return good, bad


def unused_categories(data):
    """The category entries of a parsed COCO file that no annotation uses, by id."""
    used = {annotation["category_id"] for annotation in data["annotations"]}
    return sorted((c for c in data["categories"] if c["id"] not in used), key=lambda c: c["id"])


def tiny_annotations(data):
    """'annotation ID (image 'FILE', id N): W x H' of the non-crowd annotations of a checked COCO
    file whose box is under 1 pixel wide or high: load_annotations leaves them out."""
    images = {image["id"]: image for image in data["images"]}
    return [f"annotation {a['id']} (image {images[a['image_id']]['file_name']!r}, id {a['image_id']!r}): "
            f"{a['bbox'][2]:g}x{a['bbox'][3]:g}"
            for a in data["annotations"] if not a.get("iscrowd", 0) and (a["bbox"][2] < 1 or a["bbox"][3] < 1)]


def _named(items, shown=SHOWN):
    items = list(items)
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


class CocoGenerator(Generator):
    """Generator over one COCO JSON file and its images (see the module docstring).

    Args:
        data_dir: a data set folder in the COCO layout (annotations/instances_SET.json,
            images/SET/), with
        set_name: its set (SET); or
        annotations: a COCO JSON file, with
        images: the folder `file_name` is relative to (default: the JSON file's folder).
        skip_bad_annotations: leave out bad annotations with one warning instead of raising
            BadAnnotationError.
        kwargs: the Generator's (batch_size, skip_bad_images, ...).

    `coco` is the pycocotools COCO object of the checked annotations, `image_ids` the COCO ids
    of the images in generator order, `annotations_file` and `images_dir` the paths used,
    `bad_annotations` the messages about annotations left out.
    """

    def __init__(self, data_dir=None, set_name=None, annotations=None, images=None, skip_bad_annotations=False,
                 **kwargs):
        if annotations is None:
            if data_dir is None or set_name is None:
                raise TypeError("CocoGenerator needs annotations='file.json' or data_dir and set_name")
            annotations = os.path.join(data_dir, "annotations", f"instances_{set_name}.json")
            if images is None:
                images = os.path.join(data_dir, "images", set_name)
        elif data_dir is not None or set_name is not None:
            raise TypeError("CocoGenerator takes annotations='file.json' or data_dir and set_name, not both")
        else:
            set_name = os.path.splitext(os.path.basename(annotations))[0]
            if images is None:
                images = os.path.dirname(os.path.abspath(annotations))
        self.data_dir = data_dir
        self.set_name = set_name
        self.annotations_file = annotations
        self.images_dir = images
        data = _load_json(annotations)
        good, self.bad_annotations = check_annotations(annotations, data)
        if self.bad_annotations and not skip_bad_annotations:
            count = len(self.bad_annotations)
            raise BadAnnotationError(f"{annotations}: {self.bad_annotations[0]}"
                                     + (f" (and {count - 1} more bad annotations)" if count > 1 else ""))
        if self.bad_annotations:
            warnings.warn(f"{annotations}: {len(self.bad_annotations)} of {len(data['annotations'])} annotations "
                          f"are bad and left out: {'; '.join(self.bad_annotations[:SHOWN])}"
                          + (f"; ... and {len(self.bad_annotations) - SHOWN} more"
                             if len(self.bad_annotations) > SHOWN else ""), AnnotationWarning, stacklevel=2)
        data["annotations"] = good
        unused = unused_categories(data)
        if unused:
            warnings.warn(f"{annotations}: {len(unused)} of {len(data['categories'])} categories have no annotations "
                          f"here (they keep their labels): "
                          f"{_named(str(c['id']) + ' ' + repr(c['name']) for c in unused)}",
                          AnnotationWarning, stacklevel=2)
        tiny = tiny_annotations(data)
        if tiny:
            warnings.warn(f"{annotations}: {len(tiny)} of {len(good)} annotations are under 1 pixel wide or high and "
                          f"are not used as objects (neither trained nor evaluated): {_named(tiny)}",
                          AnnotationWarning, stacklevel=2)
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
        self.image_ids = sorted(self.coco.getImgIds(), key=lambda i: (isinstance(i, str), i))
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
        return self.coco.imgs[self.image_ids[image_index]]

    def image_path(self, image_index):
        return os.path.join(self.images_dir, self.image_info(image_index)["file_name"])

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
