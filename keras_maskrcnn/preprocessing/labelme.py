"""Generator for folders of labelme files (one `.json` per picture, as the labelme tool saves them).

Every `*.json` under the folder (recursively, in sorted order; hidden folders left out) is one
picture: its `imagePath` (relative to the JSON file) names the picture; when that file is missing
and the JSON holds the picture in `imageData` (base64), that is used, else a picture of the same
file name beside the JSON (an absolute imagePath from the machine the labels were drawn on).
Shapes become objects:

    polygon, rectangle, circle   rasterised as COCO rasterises polygons (preprocessing.polygons):
                                 a rectangle is the polygon of its 4 corners, a circle (centre and
                                 a point on it) a polygon with a vertex every few pixels
    mask                         labelme 5.3+'s base64 PNG of the shape's box, its top-left pixel at
                                 the box's first corner (rounded)
    line, linestrip, point       not regions: skipped, with one warning per file

Shapes with the same non-null `group_id` and the same label are parts of one object (one mask,
their union). The label `__ignore__` marks regions whose anchors are ignored in training (like
COCO's crowds: 'ignore_bboxes'); `_background_` is not a class and its shapes are not objects.

Classes: `classes` names labelme's `labels.txt` (one name per line, `__ignore__` and
`_background_` entries allowed; labels 0, 1, ... in file order) or is a list of names (e.g. the
training set's `label_names`, for its validation set), and a shape label it does not list is an
error naming file and shape index. Without it the classes are the sorted labels found, printed
when the generator is built.

labelme shows and annotates a photo in its EXIF orientation, so pictures are read in that
orientation (utils.image.read_image_bgr(path, orient=True)); `imageHeight` and `imageWidth` must
be the size of the oriented picture. Every file is read and checked when the generator is built
(with a progress bar from PROGRESS_IMAGES files on): a missing or unreadable picture, or one of
another size than its JSON says, raises UnreadableImageError, or with skip_bad_images=True is left
out (listed in `unreadable`). Errors in the JSON files are ValueErrors naming file and shape index.
"""

import base64
import binascii
import io
import json
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from ..utils.image import UnreadableImageError, exif_orientation, image_size, pil_to_bgr_uint8, read_image_bgr
from ..utils.progress import progress
from .bad_images import AnnotationWarning
from .generator import Generator
from .polygons import (
    check_polygon,
    circle_to_polygon,
    clip_polygon,
    polygon_box,
    polygons_to_mask,
    rectangle_to_polygon,
)

PROGRESS_IMAGES = 1000
"""From this many labelme files on, reading them shows a progress bar."""

IGNORE = "__ignore__"
"""labelme's label of regions to ignore."""

BACKGROUND = "_background_"
"""labelme's label of the background (not a class)."""

REGION_TYPES = ("polygon", "rectangle", "circle", "mask", "oriented_rectangle")
"""Shape types that become objects."""

SKIPPED_TYPES = ("line", "linestrip", "point", "points")
"""Shape types that mark no region: skipped with a warning."""


class LabelmeSkippedShapesWarning(AnnotationWarning):
    """A labelme file holds shapes that are not regions (lines, points); the message names the file."""


def read_labelme_classes(path):
    """(class names in label order, whether `__ignore__` is listed) from labelme's labels.txt.

    Args:
        path: a text file with one label per line; blank lines are skipped; `__ignore__` and
            `_background_` are labelme's special labels and not classes.

    Returns:
        (list of names, bool).

    Raises:
        ValueError: naming file and line for a missing file, a duplicate name, or no class at all.
    """
    if not os.path.isfile(path):
        raise ValueError(f"labelme classes file {path!r} does not exist")
    names, lines, ignore = [], {}, False
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            name = line.strip()
            if not name:
                continue
            if name in lines:
                raise ValueError(f"{path}:{number}: duplicate label {name!r} (first on line {lines[name]})")
            lines[name] = number
            if name == IGNORE:
                ignore = True
            elif name != BACKGROUND:
                names.append(name)
    if not names:
        raise ValueError(f"labelme classes file {path!r} lists no classes")
    return names, ignore


def _decode_image_bytes(data, where):
    """BGR uint8 (H, W, 3) of encoded picture bytes, in their EXIF orientation."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if exif_orientation(image) != 1:
                image = ImageOps.exif_transpose(image)
            return pil_to_bgr_uint8(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise UnreadableImageError(f"{where}: imageData could not be decoded: {error}") from None


def _image_bytes_size(data, where):
    """(width, height) of encoded picture bytes as a viewer shows them (EXIF orientation)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            return (height, width) if exif_orientation(image) >= 5 else (width, height)
    except (OSError, ValueError, SyntaxError) as error:
        raise UnreadableImageError(f"{where}: imageData could not be decoded: {error}") from None


def _b64decode(text, where, what):
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError, TypeError) as error:
        raise ValueError(f"{where}: {what} is not valid base64: {error}") from None


def _decode_mask_patch(text, where):
    """(h, w) bool array of a mask shape's base64 PNG."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"{where}: a 'mask' shape needs its 'mask' (a base64 PNG), found {type(text).__name__}")
    try:
        with Image.open(io.BytesIO(_b64decode(text, where, "'mask'"))) as image:
            array = np.asarray(image.convert("L") if image.mode == "P" else image)
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(f"{where}: 'mask' could not be decoded as a picture: {error}") from None
    if array.ndim == 3:
        array = array[:, :, :3].max(axis=2) if array.shape[2] != 2 else array[:, :, 0]
    return array != 0


def _paste(mask, patch, x0, y0):
    """ORs a (h, w) bool patch into mask (H, W) with its top-left pixel at column x0, row y0 (clipped)."""
    height, width = mask.shape
    top, left = max(y0, 0), max(x0, 0)
    bottom, right = min(y0 + patch.shape[0], height), min(x0 + patch.shape[1], width)
    if top < bottom and left < right:
        mask[top:bottom, left:right] |= patch[top - y0:bottom - y0, left - x0:right - x0].astype(np.uint8)
    return mask


def _json_files(folder):
    """The `*.json` files under folder, recursively, sorted; hidden folders (".name", e.g. Jupyter's
    .ipynb_checkpoints copies) are left out."""
    files = []
    for root, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        files += [os.path.join(root, name) for name in names if name.lower().endswith(".json")]
    return sorted(files)


def _describe(data):
    """What a JSON document that is not a labelme file looks like, for the error."""
    if isinstance(data, dict) and {"images", "annotations"} <= set(data):
        return ("it looks like a COCO annotations file ('images', 'annotations'): read it with the coco "
                "data set type (CocoGenerator)")
    if isinstance(data, list):
        return f"it holds a JSON list of {len(data)} items (labelme writes one object per picture)"
    if isinstance(data, dict):
        keys = ", ".join(repr(k) for k in list(data)[:8])
        return f"it has no 'shapes' list (its keys: {keys})"
    return f"it holds a JSON {type(data).__name__}"


class LabelmeGenerator(Generator):
    """Generator over a folder of labelme files (see the module docstring).

    Args:
        folder: folder searched recursively for `*.json` labelme files.
        classes: labelme's labels.txt (one name per line), or a list of class names in label order;
            None: the sorted labels found.
        **kwargs: Generator arguments (batch_size, image_min_side, skip_bad_images, ...).

    Attributes:
        classes: {class name: label}; labels: {label: class name}; label_names: names in label order.
        json_files: the labelme file of each image, in generator order.
        unreadable: {image file: message} of the pictures left out (skip_bad_images=True).
    """

    def __init__(self, folder, classes=None, **kwargs):
        self.folder = folder
        self.classes_file = classes
        if not os.path.isdir(folder):
            raise ValueError(f"labelme folder {folder!r} does not exist")
        files = _json_files(folder)
        if not files:
            raise ValueError(f"labelme folder {folder!r} holds no .json files")
        self.ignore_listed = False
        fixed = None
        if isinstance(classes, (list, tuple)):
            fixed = [str(name) for name in classes if name not in (IGNORE, BACKGROUND)]
            if not fixed or len(set(fixed)) != len(fixed):
                raise ValueError(f"classes must list distinct class names, got {list(classes)!r}")
        elif classes is not None:
            fixed, self.ignore_listed = read_labelme_classes(classes)
        self.unreadable = {}
        skip = kwargs.get("skip_bad_images", False)
        records = []
        for path in progress(files, "Reading labelme files: ", least=PROGRESS_IMAGES):
            record = self._read_file(path, fixed, skip)
            if record is not None:
                records.append(record)
        if fixed is None:
            found = sorted({obj["name"] for record in records for obj in record["objects"]})
            if not found and not self.unreadable:
                raise ValueError(f"the {len(files)} labelme files under {folder!r} hold no labelled regions; "
                                 f"nothing to learn (give classes=labels.txt for a fixed class list)")
            print(f"labelme: {len(found)} classes: {', '.join(found)}")
            fixed = found
        self.label_names = list(fixed)
        self.classes = {name: label for label, name in enumerate(self.label_names)}
        self.labels = {label: name for name, label in self.classes.items()}
        for record in records:
            for obj in record["objects"]:
                obj["label"] = self.classes[obj.pop("name")]
        self.records = records
        self.json_files = [record["json"] for record in records]
        super().__init__(**kwargs)

    # reading the files

    def _unreadable(self, key, message, skip):
        if not skip:
            raise UnreadableImageError(message)
        self.unreadable.setdefault(key, message)

    def _read_file(self, path, fixed, skip):
        """The record of one labelme file, or None if its picture cannot be read and skip is set."""
        try:
            with open(path, encoding="utf-8-sig") as handle:
                data = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{error.lineno}: not a valid JSON file: {error.msg}") from None
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not a UTF-8 text file ({error.reason})") from None
        if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
            raise ValueError(f"{path} is not a labelme file: {_describe(data)}")
        record = {"json": path, "image": None, "data": None}
        image_path = data.get("imagePath")
        embedded = data.get("imageData")
        if image_path is not None and not isinstance(image_path, str):
            raise ValueError(f"{path}: 'imagePath' must be a string, found {image_path!r}")
        beside = None
        if image_path:
            image_path = image_path.replace("\\", "/")
            beside = os.path.join(os.path.dirname(path), os.path.basename(image_path))
            image_path = os.path.normpath(os.path.join(os.path.dirname(path), image_path))
        key = image_path or path
        try:
            if image_path and os.path.isfile(image_path):
                width, height = image_size(image_path, orient=True)
                record["image"] = image_path
            elif embedded:
                if not isinstance(embedded, str):
                    raise ValueError(f"{path}: 'imageData' must be a base64 string")
                record["data"] = embedded
                width, height = _image_bytes_size(_b64decode(embedded, path, "'imageData'"), path)
            elif beside is not None and os.path.isfile(beside):  # moved with its picture from another machine
                width, height = image_size(beside, orient=True)
                record["image"] = key = beside
            elif image_path:
                raise UnreadableImageError(f"{path}: image file {image_path!r} does not exist (and the labelme "
                                           f"file holds no imageData)")
            else:
                raise ValueError(f"{path}: the labelme file names no picture (no imagePath, no imageData)")
            self._check_size(path, data, record, width, height)
        except UnreadableImageError as error:
            message = str(error) if str(error).startswith(path) else f"{path}: {error}"
            self._unreadable(key, message, skip)
            return None
        record["size"] = (height, width)
        self._read_shapes(path, data["shapes"], record, fixed)
        return record

    @staticmethod
    def _check_size(path, data, record, width, height):
        said = data.get("imageHeight"), data.get("imageWidth")
        if said[0] is None or said[1] is None or (said[0], said[1]) == (height, width):
            return
        picture = record["image"] or "its imageData"
        detail = ""
        if record["image"] is not None:
            stored = image_size(record["image"])
            if stored != (width, height):
                with Image.open(record["image"]) as image:
                    detail = (f" (EXIF orientation {exif_orientation(image)}; {stored[0]}x{stored[1]} as stored: "
                              f"labelme annotates the picture as shown)")
        raise UnreadableImageError(f"{path}: the labelme file says imageWidth x imageHeight {said[1]}x{said[0]}, "
                                   f"but picture {picture!r} is {width}x{height} as shown{detail}")

    def _read_shapes(self, path, shapes, record, fixed):
        height, width = record["size"]
        objects, groups, ignore, skipped = [], {}, [], {}
        for index, shape in enumerate(shapes):
            where = f"{path}: shapes[{index}]"
            if not isinstance(shape, dict):
                raise ValueError(f"{where}: a shape must be a JSON object, found {shape!r}")
            label = shape.get("label")
            shape_type = shape.get("shape_type") or "polygon"
            if not isinstance(label, str) or not label:
                raise ValueError(f"{where}: shape has no label")
            if not isinstance(shape_type, str):
                raise ValueError(f"{where}: shape_type {shape_type!r} is not the name of a shape type")
            where = f"{path}: shapes[{index}] ({label!r}, {shape_type})"
            if shape_type in SKIPPED_TYPES or shape_type not in REGION_TYPES:
                skipped[shape_type] = skipped.get(shape_type, 0) + 1
                continue
            if label == BACKGROUND:
                continue
            if fixed is not None and label != IGNORE and label not in fixed:
                source = (f"the classes file {self.classes_file!r}" if isinstance(self.classes_file, (str, os.PathLike))
                          else "the classes given")
                raise ValueError(f"{where}: label {label!r} is not in {source} (it lists: {', '.join(fixed)})")
            polygon, patch, box = self._read_shape(shape, shape_type, where, height, width)
            if box[2] <= box[0] or box[3] <= box[1]:
                warnings.warn(f"{where}: the shape has no area inside the {width}x{height} picture; skipped",
                              AnnotationWarning, stacklevel=3)
                continue
            if label == IGNORE:
                ignore.append(box)
                continue
            group = shape.get("group_id")
            if group is not None and (isinstance(group, bool) or not isinstance(group, (int, str))):
                raise ValueError(f"{where}: group_id {group!r} is not a number")
            obj = groups.get((label, group)) if group is not None else None
            if obj is None:
                obj = {"name": label, "polygons": [], "patches": [], "box": box, "shapes": []}
                objects.append(obj)
                if group is not None:
                    groups[(label, group)] = obj
            else:
                obj["box"] = [min(obj["box"][0], box[0]), min(obj["box"][1], box[1]),
                              max(obj["box"][2], box[2]), max(obj["box"][3], box[3])]
            if polygon is not None:
                obj["polygons"].append(polygon)
            else:
                obj["patches"].append(patch)
            obj["shapes"].append(index)
        if skipped:
            kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(skipped.items()))
            warnings.warn(f"{path}: skipped {sum(skipped.values())} shape(s) that mark no region or are of an "
                          f"unknown type ({kinds}); objects need polygon, rectangle, circle or mask shapes",
                          LabelmeSkippedShapesWarning, stacklevel=3)
        record["objects"] = objects
        record["ignore"] = np.array(ignore, dtype=np.float64).reshape(-1, 4)

    @staticmethod
    def _read_shape(shape, shape_type, where, height, width):
        """(flat polygon or None, (x0, y0, base64 PNG) or None, box [x1, y1, x2, y2] inside the picture)."""
        try:
            points = np.asarray(shape.get("points"), dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: 'points' must be a list of [x, y] pairs of numbers") from None
        if points.ndim != 2 or points.shape[1] != 2 or not len(points):
            raise ValueError(f"{where}: 'points' must be a list of [x, y] pairs of numbers")
        if not np.isfinite(points).all():
            raise ValueError(f"{where}: 'points' holds a coordinate that is not a finite number")
        if shape_type in ("polygon", "oriented_rectangle"):
            polygon = check_polygon(points.reshape(-1), where)
        elif shape_type == "rectangle":
            if len(points) < 2:
                raise ValueError(f"{where}: a rectangle needs 2 points (opposite corners), found {len(points)}")
            polygon = rectangle_to_polygon(*points.min(axis=0), *points.max(axis=0))
        elif shape_type == "circle":
            if len(points) != 2:
                raise ValueError(f"{where}: a circle needs 2 points (centre, a point on it), found {len(points)}")
            (cx, cy), (px, py) = points
            polygon = circle_to_polygon(cx, cy, float(np.hypot(px - cx, py - cy)))
        else:  # mask
            patch = _decode_mask_patch(shape.get("mask"), where)
            x0, y0 = (int(v) for v in np.round(points.min(axis=0)))
            placed = _paste(np.zeros((height, width), np.uint8), patch, x0, y0)
            rows, cols = np.flatnonzero(placed.any(axis=1)), np.flatnonzero(placed.any(axis=0))
            if not len(rows):
                return None, (x0, y0, shape["mask"]), [0.0, 0.0, 0.0, 0.0]
            box = [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]
            return None, (x0, y0, shape["mask"]), box
        box = polygon_box([clip_polygon(polygon, height, width, where)]).tolist()
        return polygon, None, box

    # the data set interface

    def size(self):
        return len(self.records)

    def num_classes(self):
        return len(self.label_names)

    def image_path(self, image_index):
        """The picture's file, or the labelme file when the picture comes from its imageData."""
        record = self.records[image_index]
        return record["image"] or record["json"]

    def image_size(self, image_index):
        height, width = self.records[image_index]["size"]
        return int(height), int(width)

    def image_aspect_ratio(self, image_index):
        height, width = self.records[image_index]["size"]
        return float(width) / float(height)

    def annotation_count(self, image_index):
        return len(self.records[image_index]["objects"])

    def annotation_polygons(self, image_index):
        """The source polygons of each object of load_annotations(image_index): a list of lists of
        flat [x1, y1, x2, y2, ...] pixel polygons (rectangles and circles as their polygons), or None
        for an object drawn (partly) with a mask shape."""
        return [None if obj["patches"] else [polygon.tolist() for polygon in obj["polygons"]]
                for obj in self.records[image_index]["objects"]]

    def load_image(self, image_index):
        """The picture as BGR uint8 (H, W, 3), in its EXIF orientation (as labelme shows it)."""
        record = self.records[image_index]
        if record["image"] is not None:
            try:
                image = read_image_bgr(record["image"], orient=True)
            except UnreadableImageError as error:
                raise UnreadableImageError(f"{record['json']}: {error}") from None
        else:
            image = _decode_image_bytes(_b64decode(record["data"], record["json"], "'imageData'"), record["json"])
        if image.shape[:2] != tuple(record["size"]):
            raise UnreadableImageError(f"{record['json']}: picture {self.image_path(image_index)!r} is "
                                       f"{image.shape[1]}x{image.shape[0]}, but was {record['size'][1]}x"
                                       f"{record['size'][0]} when the data set was read")
        return image

    def load_annotations(self, image_index):
        """{'labels': (N,) int64, 'bboxes': (N, 4) float64 x1 y1 x2 y2, 'masks': N (H, W) uint8 0/1,
        'ignore_bboxes': (K, 4) float64} of a picture (the `__ignore__` regions in ignore_bboxes)."""
        record = self.records[image_index]
        height, width = record["size"]
        masks = []
        for obj in record["objects"]:
            mask = polygons_to_mask(obj["polygons"], height, width)
            for x0, y0, text in obj["patches"]:
                _paste(mask, _decode_mask_patch(text, f"{record['json']}: shapes{obj['shapes']}"), x0, y0)
            masks.append(mask)
        return {
            "labels": np.array([obj["label"] for obj in record["objects"]], dtype=np.int64),
            "bboxes": np.array([obj["box"] for obj in record["objects"]], dtype=np.float64).reshape(-1, 4),
            "masks": masks,
            "ignore_bboxes": record["ignore"].copy(),
        }
