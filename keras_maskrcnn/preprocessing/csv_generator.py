"""Generator for datasets described by CSV files.

Annotations, one instance per line (negatives: an image with no instances):

    path/to/image.jpg,x1,y1,x2,y2,class_name,path/to/mask.png
    path/to/negative.jpg,,,,,,

Classes, one per line, ids from 0:

    class_name,id

Relative paths are resolved against the annotations file's folder, or against base_dir when
given. Masks may be PNG, JPEG, BMP or TIFF of the image's size; any nonzero pixel is foreground.
Errors name the file and the 1-based line.
"""

import csv
import os
import warnings

import numpy as np

from ..utils.progress import progress
from ..utils.image import UnreadableImageError, image_size, read_image_bgr, read_mask
from .generator import Generator

PROGRESS_ROWS = 1000
"""From this many annotation rows on, checking the image files shows a progress bar."""


def _open_csv(path, what):
    if not os.path.isfile(path):
        raise ValueError(f"{what} file {path!r} does not exist")
    return open(path, newline="", encoding="utf-8-sig")


def _rows(path, what):
    """(1-based line where the row starts, stripped fields) of every non-blank row; ValueError
    naming file and line on unparsable input (e.g. a stray or unterminated quote)."""
    with _open_csv(path, what) as handle:
        reader = csv.reader(handle, strict=True)
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise ValueError(f"{path}:{start}: malformed row: {error}") from None
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{start}: malformed row: not UTF-8 text ({error.reason})") from None
            fields = [field.strip() for field in row]
            if any(fields):
                yield start, fields


def read_classes(csv_class_file):
    """{name: id} from a `name,id` file; ValueError naming file and line on any problem."""
    classes = {}
    lines = {}
    for line, fields in _rows(csv_class_file, "class"):
        where = f"{csv_class_file}:{line}"
        if len(fields) != 2:
            raise ValueError(f"{where}: expected 2 columns 'class_name,class_id', found {len(fields)}")
        name, text = fields
        if not name:
            raise ValueError(f"{where}: empty class name")
        try:
            class_id = int(text)
        except ValueError:
            raise ValueError(f"{where}: class id {text!r} is not an integer") from None
        if class_id < 0:
            raise ValueError(f"{where}: class id {class_id} is negative")
        if name in classes:
            raise ValueError(f"{where}: duplicate class name {name!r} (first on line {lines[name]})")
        if class_id in classes.values():
            other = next(n for n, i in classes.items() if i == class_id)
            raise ValueError(f"{where}: duplicate class id {class_id} (also {other!r} on line {lines[other]})")
        classes[name] = class_id
        lines[name] = line
    if not classes:
        raise ValueError(f"class file {csv_class_file!r} lists no classes")
    return classes


def _number(text, name, where):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {name} {text!r} is not a number") from None
    if not np.isfinite(value):
        raise ValueError(f"{where}: {name} {text!r} is not a finite number")
    if value < 0:
        raise ValueError(f"{where}: {name} {text!r} is negative")
    return value


class CSVGenerator(Generator):
    """Generator over a CSV annotations file and a CSV class file (see the module docstring).

    Files are checked when the generator is built: every image and mask must exist and have a
    readable header, and every mask must have its image's size (with a progress bar from
    PROGRESS_ROWS rows on). The first file that fails raises UnreadableImageError naming file
    and line, or, with skip_bad_images=True, every image that fails is left out and listed in
    `unreadable` ({image file: message}). Boxes running outside their image are clipped with a
    warning.
    """

    def __init__(self, csv_data_file, csv_class_file, base_dir=None, **kwargs):
        self.csv_data_file = csv_data_file
        self.base_dir = base_dir if base_dir is not None else os.path.dirname(os.path.abspath(csv_data_file))
        self.classes = read_classes(csv_class_file)
        self.labels = {class_id: name for name, class_id in self.classes.items()}
        self.image_names = []
        self.image_data = {}
        self.image_sizes = {}
        self.unreadable = {}
        self._read_annotations(csv_data_file, kwargs.get("skip_bad_images", False))
        super().__init__(**kwargs)

    def _resolve(self, path):
        return path if os.path.isabs(path) else os.path.join(self.base_dir, path)

    def _unreadable(self, path, message, skip):
        """An image (or one of its masks) that is missing or unreadable: raise, or note it."""
        if not skip:
            raise UnreadableImageError(message)
        self.unreadable.setdefault(path, message)

    def _read_annotations(self, csv_data_file, skip_bad_images=False):
        image_lines = {}
        rows = list(_rows(csv_data_file, "annotations"))
        for line, fields in progress(rows, "Checking images: ", least=PROGRESS_ROWS):
            where = f"{csv_data_file}:{line}"
            if len(fields) != 7:
                raise ValueError(f"{where}: expected 7 columns 'path,x1,y1,x2,y2,class_name,mask_path', "
                                 f"found {len(fields)}")
            image_file, x1, y1, x2, y2, class_name, mask_file = fields
            if not image_file:
                raise ValueError(f"{where}: empty image path")
            path = self._resolve(image_file)
            if path not in self.image_data:
                self.image_data[path] = []
                self.image_names.append(path)
                image_lines[path] = line
                try:
                    self.image_sizes[path] = image_size(path)
                except UnreadableImageError as error:
                    self._unreadable(path, f"{where}: {error}", skip_bad_images)
            if not any((x1, y1, x2, y2, class_name, mask_file)):
                continue
            if not all((x1, y1, x2, y2, class_name, mask_file)):
                raise ValueError(f"{where}: malformed row: fill in all of x1,y1,x2,y2,class_name,mask_path "
                                 f"or none of them (a negative image)")
            box = [_number(x1, "x1", where), _number(y1, "y1", where), _number(x2, "x2", where),
                   _number(y2, "y2", where)]
            if box[2] <= box[0]:
                raise ValueError(f"{where}: x2 ({x2}) must be greater than x1 ({x1})")
            if box[3] <= box[1]:
                raise ValueError(f"{where}: y2 ({y2}) must be greater than y1 ({y1})")
            if class_name not in self.classes:
                raise ValueError(f"{where}: unknown class name {class_name!r} (known: {sorted(self.classes)})")
            mask_path = self._resolve(mask_file)
            if path in self.unreadable:
                continue
            if not os.path.isfile(mask_path):
                self._unreadable(path, f"{where}: mask file {mask_path!r} does not exist", skip_bad_images)
                continue
            try:
                mask_size = image_size(mask_path)
            except UnreadableImageError as error:
                message = str(error).replace("image file", "mask file", 1)
                self._unreadable(path, f"{where}: {message}", skip_bad_images)
                continue
            width, height = self.image_sizes[path]
            if mask_size != (width, height):
                self._unreadable(path, f"{where}: mask file {mask_path!r} is {mask_size[0]}x{mask_size[1]} but "
                                       f"image file {path!r} is {width}x{height}", skip_bad_images)
                continue
            clipped = [min(box[0], width), min(box[1], height), min(box[2], width), min(box[3], height)]
            if clipped != box:
                warnings.warn(f"{where}: box {box} runs outside the {width}x{height} image {path!r}; "
                              f"clipped to {clipped}", stacklevel=2)
            self.image_data[path].append({"bbox": clipped, "label": self.classes[class_name],
                                          "mask_path": mask_path, "line": line})
        for path in self.unreadable:
            self.image_names.remove(path)
            del self.image_data[path]
        self.image_lines = image_lines

    def size(self):
        return len(self.image_names)

    def num_classes(self):
        return max(self.classes.values()) + 1

    def image_path(self, image_index):
        return self.image_names[image_index]

    def image_aspect_ratio(self, image_index):
        width, height = self.image_sizes[self.image_names[image_index]]
        return float(width) / float(height)

    def image_size(self, image_index):
        width, height = self.image_sizes[self.image_names[image_index]]
        return int(height), int(width)

    def annotation_count(self, image_index):
        return len(self.image_data[self.image_names[image_index]])

    def load_image(self, image_index):
        path = self.image_names[image_index]
        try:
            return read_image_bgr(path)
        except UnreadableImageError as error:
            raise UnreadableImageError(f"{self.csv_data_file}:{self.image_lines[path]}: {error}") from None

    def load_annotations(self, image_index):
        path = self.image_names[image_index]
        entries = self.image_data[path]
        masks = []
        for entry in entries:
            where = f"{self.csv_data_file}:{entry['line']}"
            try:
                mask = read_mask(entry["mask_path"])
            except UnreadableImageError as error:
                raise UnreadableImageError(f"{where}: {error}") from None
            width, height = self.image_sizes[path]
            if mask.shape != (height, width):
                raise UnreadableImageError(f"{where}: mask file {entry['mask_path']!r} is "
                                           f"{mask.shape[1]}x{mask.shape[0]} but image file {path!r} is "
                                           f"{width}x{height}")
            masks.append(mask)
        return {
            "labels": np.array([entry["label"] for entry in entries], dtype=np.int64),
            "bboxes": np.array([entry["bbox"] for entry in entries], dtype=np.float64).reshape(-1, 4),
            "masks": masks,
        }
