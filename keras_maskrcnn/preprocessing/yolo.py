"""Generator for ultralytics YOLO segmentation data sets (a data.yaml, pictures and label .txt files).

The data.yaml (read with PyYAML's safe_load) gives

    path:  the data set's root; relative to the data.yaml's folder (default: that folder)
    train, val, test: each a folder of pictures (searched recursively, hidden folders left out, as
           ultralytics' glob does), a list of folders, or a .txt file listing pictures; relative to
           `path` (a listed picture starting with "./" is relative to the .txt file's folder, as
           ultralytics reads it); an entry "../x" that does not exist is also tried as "x", as
           ultralytics does (Roboflow's exports write "../train/images")
    names: the class names, a list or a mapping {index: name} with indices 0 .. N - 1

Each picture's label file follows ultralytics' rule: the last "/images/" of the picture's path
becomes "/labels/" and the suffix ".txt" (data/images/train/a.jpg -> data/labels/train/a.txt). A
line is one object, `class x1 y1 x2 y2 ...`: a class index and a polygon whose coordinates are
fractions (0..1) of the picture's width and height. A missing or empty label file makes the picture
a negative. Polygons are rasterised as COCO rasterises them (preprocessing.polygons).

Pictures are read in their EXIF orientation, as ultralytics reads them (OpenCV's imread turns
them, and its label check takes the turned size), unless orient=False.

Every label file and picture header is read when the generator is built (with a progress bar from
PROGRESS_IMAGES pictures on). Errors in data.yaml or the label files are ValueErrors naming the
file (and the line); a missing or unreadable picture raises UnreadableImageError, or with
skip_bad_images=True is left out (listed in `unreadable`).
"""

import os
import warnings

import numpy as np
import yaml

from ..utils.image import UnreadableImageError, image_size, read_image_bgr
from ..utils.progress import progress
from .bad_images import AnnotationWarning
from .generator import Generator
from .polygons import check_polygon, polygon_box, polygons_to_mask

PROGRESS_IMAGES = 1000
"""From this many pictures on, reading their labels and headers shows a progress bar."""

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp")
"""Picture files a split folder contributes (ultralytics' formats that Pillow reads)."""

TOLERANCE = 0.01
"""Normalised coordinates may stray this far outside 0..1 (ultralytics allows the same)."""

PIXEL_DECIMALS = 9
"""Denormalised coordinates are rounded to this many decimals of a pixel (see pixel_polygons)."""


def label_path(image_path):
    """The label file of a picture by ultralytics' rule: the last "/images/" of the path becomes
    "/labels/", the suffix ".txt"."""
    marker, replacement = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    path = replacement.join(image_path.rsplit(marker, 1))
    return os.path.splitext(path)[0] + ".txt"


def _class_names(names, data_yaml):
    """The class names in index order from data.yaml's `names` (a list or {index: name})."""
    if isinstance(names, (list, tuple)):
        result = [str(name) for name in names]
    elif isinstance(names, dict):
        indexed = {}
        for key, name in names.items():
            try:
                index = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"{data_yaml}: 'names' key {key!r} is not a class index") from None
            if index != key and str(index) != str(key).strip():
                raise ValueError(f"{data_yaml}: 'names' key {key!r} is not a class index")
            indexed[index] = str(name)
        missing = sorted(set(range(len(indexed))) - set(indexed))
        if missing:
            raise ValueError(f"{data_yaml}: 'names' must have the indices 0..{len(indexed) - 1}; "
                             f"{missing[0]} is missing (it has {sorted(indexed)})")
        result = [indexed[index] for index in range(len(indexed))]
    else:
        raise ValueError(f"{data_yaml}: 'names' must be a list or a mapping {{index: name}}, "
                         f"found {type(names).__name__}")
    if not result:
        raise ValueError(f"{data_yaml}: 'names' lists no classes")
    return result


def _folder_images(folder):
    images = []
    for root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]  # as ultralytics' glob
        images += [os.path.join(root, name) for name in files if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES]
    return sorted(images)


def _listed_images(list_file, root):
    images = []
    with open(list_file, encoding="utf-8-sig") as handle:
        for line in handle:
            entry = line.strip()
            if not entry:
                continue
            if entry.startswith("./"):
                entry = os.path.join(os.path.dirname(list_file), entry[2:])
            elif not os.path.isabs(entry):
                entry = os.path.join(root, entry)
            images.append(os.path.normpath(entry))
    return images


def read_data_yaml(data_yaml, split="train"):
    """(class names, picture files of the split) of an ultralytics data.yaml (see the module docstring).

    Args:
        data_yaml: the data.yaml file.
        split: the split to list ('train', 'val', 'test' or any other key of the file).

    Returns:
        (list of class names in index order, sorted list of absolute picture paths).

    Raises:
        ValueError: naming the file for a missing or invalid file, missing 'names', a missing split,
            a split folder or list that does not exist, or a split without pictures.
    """
    if not os.path.isfile(data_yaml):
        raise ValueError(f"YOLO data file {data_yaml!r} does not exist")
    try:
        with open(data_yaml, encoding="utf-8-sig") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{data_yaml}:{mark.line + 1}" if mark is not None else data_yaml
        raise ValueError(f"{where}: not valid YAML: {getattr(error, 'problem', None) or error}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{data_yaml}: not a UTF-8 text file ({error.reason})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{data_yaml} is not a YOLO data file: it holds a YAML {type(data).__name__}, "
                         f"not a mapping with 'names' and 'train'/'val' entries")
    if data.get("names") is None:
        hint = " ('nc' alone gives no class names)" if "nc" in data else ""
        raise ValueError(f"{data_yaml}: no 'names' entry (the class names, a list or a mapping "
                         f"{{index: name}}){hint}")
    names = _class_names(data["names"], data_yaml)
    if data.get("nc") is not None and data["nc"] != len(names):
        raise ValueError(f"{data_yaml}: 'nc' is {data['nc']} but 'names' lists {len(names)} classes")
    base = os.path.dirname(os.path.abspath(data_yaml))
    root = data.get("path") or ""
    root = os.path.normpath(os.path.join(base, str(root)))
    if data.get(split) is None:
        present = [key for key in ("train", "val", "test") if data.get(key) is not None]
        raise ValueError(f"{data_yaml}: no {split!r} split (it has: {', '.join(present) or 'none'})")
    entries = data[split] if isinstance(data[split], (list, tuple)) else [data[split]]
    images = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            raise ValueError(f"{data_yaml}: the {split!r} split must be a folder, a list of folders or a .txt file, "
                             f"found {entry!r}")
        location = os.path.normpath(os.path.join(root, entry))
        if not os.path.exists(location) and entry.startswith("../"):
            location = os.path.normpath(os.path.join(root, entry[3:]))
        if os.path.isdir(location):
            images += _folder_images(location)
        elif os.path.isfile(location) and location.lower().endswith(".txt"):
            images += _listed_images(location, root)
        elif os.path.isfile(location):
            raise ValueError(f"{data_yaml}: the {split!r} split {location!r} is a file but not a .txt list of pictures")
        else:
            raise ValueError(f"{data_yaml}: the {split!r} split folder {os.path.normpath(os.path.join(root, entry))!r} "
                             f"does not exist")
    if not images:
        raise ValueError(f"{data_yaml}: the {split!r} split holds no pictures ({', '.join(map(str, entries))} under "
                         f"{root!r}; picture suffixes: {' '.join(IMAGE_SUFFIXES)})")
    return names, sorted(dict.fromkeys(images))


def read_label_file(path, num_classes, names_file="data.yaml"):
    """The objects of one label file: a list of (class index, (2 K,) float64 normalised polygon, line).

    Args:
        path: the label .txt file; missing or empty: no objects.
        num_classes: how many names the data set has.
        names_file: the data.yaml, for messages.

    Returns:
        list of (int, ndarray, int).

    Raises:
        ValueError: naming file and line for a box-only line, pixel coordinates, a class index beyond
            the names, an odd number of coordinates or fewer than 3 points.
    """
    if not os.path.isfile(path):
        return []
    objects, seen, duplicates = [], set(), 0
    try:
        with open(path, encoding="utf-8-sig") as handle:
            lines = handle.read().splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file ({error.reason})") from None
    for number, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{path}:{number}"
        try:
            values = [float(token) for token in tokens]
        except ValueError:
            bad = next(t for t in tokens if not _is_number(t))
            raise ValueError(f"{where}: {bad!r} is not a number") from None
        label = values[0]
        if not np.isfinite(label) or label != int(label) or label < 0:
            raise ValueError(f"{where}: class {tokens[0]!r} is not a class index (0, 1, 2...)")
        label = int(label)
        if label >= num_classes:
            raise ValueError(f"{where}: class index {label} is beyond the {num_classes} names of {names_file} "
                             f"(0..{num_classes - 1})")
        if len(values) == 5:
            raise ValueError(f"{where}: box only (class x_centre y_centre width height): this data set has no masks; "
                             f"instance segmentation needs polygon labels (class x1 y1 x2 y2 ...)")
        polygon = check_polygon(values[1:], where)
        if polygon.max() > 1 + TOLERANCE:
            raise ValueError(f"{where}: coordinate {polygon.max():g} is above 1: these look like pixels, not "
                             f"normalised 0..1 (YOLO labels give x and y as fractions of the picture's width and "
                             f"height)")
        if polygon.min() < -TOLERANCE:
            raise ValueError(f"{where}: coordinate {polygon.min():g} is negative; YOLO labels are normalised 0..1")
        key = tuple(tokens)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        objects.append((label, polygon, number))
    if duplicates:
        warnings.warn(f"{path}: {duplicates} duplicate line(s) left out", AnnotationWarning, stacklevel=2)
    return objects


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


class YoloGenerator(Generator):
    """Generator over one split of an ultralytics YOLO segmentation data set (see the module docstring).

    Args:
        data_yaml: the data set's data.yaml.
        split: 'train', 'val', 'test' (or another key of data.yaml naming pictures).
        orient: read pictures in their EXIF orientation, as ultralytics does (True), or as stored.
        **kwargs: Generator arguments (batch_size, image_min_side, skip_bad_images, ...).

    Attributes:
        classes: {class name: label}; labels: {label: class name}; label_names: names in label order.
        image_names: the picture files in generator order; label_files: their label files.
        unreadable: {picture file: message} of the pictures left out (skip_bad_images=True).
    """

    def __init__(self, data_yaml, split="train", orient=True, **kwargs):
        self.data_yaml = data_yaml
        self.split = split
        self.orient = bool(orient)
        self.label_names, images = read_data_yaml(data_yaml, split)
        self.classes = {name: label for label, name in enumerate(self.label_names)}
        if len(self.classes) != len(self.label_names):
            duplicate = next(n for n in self.label_names if self.label_names.count(n) > 1)
            raise ValueError(f"{data_yaml}: class name {duplicate!r} appears twice in 'names'")
        self.labels = dict(enumerate(self.label_names))
        self.unreadable = {}
        skip = kwargs.get("skip_bad_images", False)
        self.image_names, self.label_files, self.image_sizes, self.objects = [], [], [], []
        for path in progress(images, "Reading YOLO labels: ", least=PROGRESS_IMAGES):
            try:
                width, height = image_size(path, orient=self.orient)
            except UnreadableImageError as error:
                message = f"{data_yaml} ({split}): {error}"
                if not skip:
                    raise UnreadableImageError(message) from None
                self.unreadable[path] = message
                continue
            labels = label_path(path)
            self.image_names.append(path)
            self.label_files.append(labels)
            self.image_sizes.append((height, width))
            self.objects.append(read_label_file(labels, len(self.label_names), data_yaml))
        super().__init__(**kwargs)

    def size(self):
        return len(self.image_names)

    def num_classes(self):
        return len(self.label_names)

    def image_path(self, image_index):
        return self.image_names[image_index]

    def image_size(self, image_index):
        height, width = self.image_sizes[image_index]
        return int(height), int(width)

    def image_aspect_ratio(self, image_index):
        height, width = self.image_sizes[image_index]
        return float(width) / float(height)

    def annotation_count(self, image_index):
        return len(self.objects[image_index])

    def negatives(self):
        """Indices of the pictures without objects (missing or empty label files)."""
        return [index for index, objects in enumerate(self.objects) if not objects]

    def load_image(self, image_index):
        """The picture as BGR uint8 (H, W, 3) (in its EXIF orientation unless orient=False)."""
        path = self.image_names[image_index]
        image = read_image_bgr(path, orient=self.orient)
        if image.shape[:2] != tuple(self.image_sizes[image_index]):
            height, width = self.image_sizes[image_index]
            raise UnreadableImageError(f"image file {path!r} is {image.shape[1]}x{image.shape[0]}, but was "
                                       f"{width}x{height} when the data set was read")
        return image

    def pixel_polygons(self, image_index):
        """The objects' polygons in pixels: list of (label, (2 K,) float64, label file line).

        Coordinates are x * width and y * height rounded to PIXEL_DECIMALS decimals: the rounding
        removes the floating-point noise of the product (342.29999999999995 for 342.3), which
        pycocotools would otherwise round to the other side of a pixel boundary, so that a polygon
        exported at full precision rasterises as the original does.
        """
        height, width = self.image_sizes[image_index]
        scale = np.array([float(width), float(height)])
        return [(label, np.round((polygon.reshape(-1, 2) * scale).reshape(-1), PIXEL_DECIMALS), line)
                for label, polygon, line in self.objects[image_index]]

    def annotation_polygons(self, image_index):
        """The source polygon of each object of load_annotations(image_index), in pixels: a list of
        one-polygon lists [[x1, y1, x2, y2, ...]]."""
        return [[polygon.tolist()] for _, polygon, _ in self.pixel_polygons(image_index)]

    def load_annotations(self, image_index):
        """{'labels': (N,) int64, 'bboxes': (N, 4) float64 x1 y1 x2 y2, 'masks': N (H, W) uint8 0/1,
        'ignore_bboxes': (0, 4)} of a picture."""
        height, width = self.image_sizes[image_index]
        labels, boxes, masks = [], [], []
        for label, polygon, _ in self.pixel_polygons(image_index):
            box = polygon_box([polygon])
            box[0::2] = np.clip(box[0::2], 0, width)
            box[1::2] = np.clip(box[1::2], 0, height)
            labels.append(label)
            boxes.append(box)
            masks.append(polygons_to_mask([polygon], height, width))
        return {
            "labels": np.array(labels, dtype=np.int64),
            "bboxes": np.array(boxes, dtype=np.float64).reshape(-1, 4),
            "masks": masks,
            "ignore_bboxes": np.zeros((0, 4), dtype=np.float64),
        }
