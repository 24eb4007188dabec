"""Writing a data set, read by any generator, as COCO JSON or as the seed's CSV with mask PNGs.

COCO JSON: one file with `images`, `categories` and `annotations`. An object's segmentation is
its source polygons when the generator has them (`annotation_polygons(image_index)`, see
`source_polygons`) and they rasterise (pycocotools) to exactly the mask the generator gives;
otherwise the mask as a compressed RLE. Either way reading the file back gives the same masks.
`file_name` is relative to the images folder (default: the JSON's folder, as Roboflow exports).
Category ids are the source's COCO ids, else label + 1.

CSV: OUTPUT_DIR/annotations.csv (path,x1,y1,x2,y2,class_name,mask_path; a negative image is a row
with only its path), OUTPUT_DIR/classes.csv (name,label) and one 0/255 PNG per object in
OUTPUT_DIR/masks/. Crowd and ignore regions have no place in it and are counted as left out.

Images stay where they are and are referred to by relative paths, except that an image is written
(as PNG, into the output's images folder) when its file does not exist as such (e.g. labelme's
embedded imageData) or carries an EXIF orientation, since the readers of these formats take the
stored pixels and the annotations refer to the pixels the generator returns; `copy_images=True`
writes every image.
"""

import os

import numpy as np
from pycocotools import mask as mask_utils

from ..utils.files import write_bytes, write_csv, write_image, write_json
from ..utils.progress import progress
from ..utils.image import EXIF_ORIENTATION, UnreadableImageError, image_size


def source_polygons(generator, image_index):
    """The source polygons of each object of an image, or None where there are none.

    A generator that keeps its objects' polygons offers `annotation_polygons(image_index)`: a list,
    in the order of load_annotations' objects, of lists of flat [x1, y1, x2, y2, ...] polygons
    (or None). A CocoGenerator's are read from its COCO object, a LabelmeGenerator's from its
    records. Callers use a polygon only when it rasterises to the generator's mask.
    """
    if hasattr(generator, "annotation_polygons"):
        return generator.annotation_polygons(image_index)
    records = getattr(generator, "records", None)
    if isinstance(records, list) and image_index < len(records) and isinstance(records[image_index], dict):
        # LabelmeGenerator: objects drawn only with polygon shapes (a mask patch has no polygon)
        objects = records[image_index].get("objects") or []
        return [obj.get("polygons") or None if isinstance(obj, dict) and not obj.get("patches") else None
                for obj in objects]
    coco = getattr(generator, "coco", None)
    if coco is None or not hasattr(generator, "image_info"):
        return None
    info = generator.image_info(image_index)
    polygons = []
    for annotation in coco.loadAnns(coco.getAnnIds(imgIds=info["id"], iscrowd=None)):
        x, y, w, h = annotation["bbox"]
        if annotation.get("iscrowd", 0) or w < 1 or h < 1:
            continue
        segmentation = annotation.get("segmentation")
        polygons.append(segmentation if isinstance(segmentation, list) and segmentation else None)
    return polygons


def _source_crowds(generator, image_index):
    """COCO crowd annotations of an image when the source is COCO, else None."""
    coco = getattr(generator, "coco", None)
    if coco is None or not hasattr(generator, "image_info"):
        return None
    return coco.loadAnns(coco.getAnnIds(imgIds=generator.image_info(image_index)["id"], iscrowd=True))


def _rle(mask):
    """COCO compressed RLE dict of a (H, W) 0/1 mask, counts as text."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _polygon_matches(polygons, mask):
    """Whether pycocotools rasterises `polygons` to exactly `mask`."""
    height, width = mask.shape
    try:
        flat = [[float(v) for v in np.asarray(p, dtype=np.float64).reshape(-1)] for p in polygons]
        if any(len(p) < 6 or len(p) % 2 for p in flat):
            return False
        rle = mask_utils.merge(mask_utils.frPyObjects(flat, height, width))
    except (ValueError, TypeError):
        return False
    return bool(np.array_equal(mask_utils.decode(rle), mask))


def _orientation(path):
    """EXIF orientation of an image file (1 when none or unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            value = int(image.getexif().get(EXIF_ORIENTATION, 1))
    except (OSError, ValueError, TypeError, SyntaxError):
        return 1
    return value if 1 <= value <= 8 else 1


def _plain_image_file(path):
    """Whether `path` is an image file whose stored pixels are the picture (no EXIF orientation)."""
    if not os.path.isfile(path):
        return False
    try:
        image_size(path)
    except UnreadableImageError:
        return False
    return _orientation(path) == 1


class _Images:
    """Where each converted image's file is: the source file, or a copy in `folder`."""

    def __init__(self, generator, folder, relative_to, copy_images):
        self.generator, self.folder, self.relative_to, self.copy_images = generator, folder, relative_to, copy_images
        self.written = 0
        self.names = set()

    def _name(self, index, path):
        stem = os.path.splitext(os.path.basename(path))[0] or f"image_{index}"
        name = f"{stem}.png"
        if name in self.names:
            name = f"{stem}_{index}.png"
        self.names.add(name)
        return name

    def path(self, index):
        """Path of image `index` relative to relative_to (writing a copy when needed)."""
        source = self.generator.image_path(index)
        plain = _plain_image_file(source)
        if plain and not self.copy_images:
            return os.path.relpath(os.path.abspath(source), os.path.abspath(self.relative_to))
        target = os.path.join(self.folder, self._name(index, source))
        if plain:
            extension = os.path.splitext(source)[1]
            target = os.path.splitext(target)[0] + extension
            with open(source, "rb") as handle:
                write_bytes(target, handle.read())
        else:
            write_image(target, self.generator.load_image(index))
        self.written += 1
        return os.path.relpath(os.path.abspath(target), os.path.abspath(self.relative_to))


def _number(value):
    """A coordinate as CSV text: integers without a decimal point, others exactly (repr)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _labels(generator):
    return [label for label in range(generator.num_classes()) if generator.has_label(label)]


class ConversionReport:
    """What a conversion wrote: images, objects, polygons / RLE counts, images copied, regions and
    images left out (with reasons)."""

    def __init__(self):
        self.images = self.objects = self.polygons = self.rles = self.copied = self.crowds = 0
        self.left_out_regions = 0
        self.unreadable = {}

    def lines(self):
        """Human-readable lines."""
        lines = [f"{self.images} images, {self.objects} objects"]
        if self.polygons or self.rles:
            lines[0] += f" ({self.polygons} as polygons, {self.rles} as RLE)"
        if self.crowds:
            lines.append(f"{self.crowds} crowd / ignore regions written as iscrowd annotations")
        if self.left_out_regions:
            lines.append(f"{self.left_out_regions} crowd / ignore regions left out: the CSV format has no place "
                         f"for them")
        if self.copied:
            lines.append(f"{self.copied} images written beside the annotations (no file as such, an EXIF "
                         f"orientation, or --copy-images)")
        if self.unreadable:
            lines.append(f"{len(self.unreadable)} unreadable images left out:")
            lines += [f"  {message}" for message in self.unreadable.values()]
        return lines


def _read(generator, index, report, images):
    """(standardised annotations, image path for the output) of image `index`, or (None, None)
    (noted in report) when its masks or picture cannot be read."""
    try:
        return generator.load_annotations_group([index])[0], images.path(index)
    except UnreadableImageError as error:
        report.unreadable[generator.image_path(index)] = str(error)
        return None, None


def to_coco(generator, output_file, images_dir=None, copy_images=False, bar="Converting: "):
    """Writes the generator's data set as a COCO JSON file; returns a ConversionReport.

    Args:
        generator: any preprocessing Generator.
        output_file: the .json to write (written completely or not at all).
        images_dir: the folder `file_name` is relative to, where copied images go (default: the
            JSON's folder).
        copy_images: write every image into images_dir (default: only those that need it).
        bar: progress bar prefix, or None.
    """
    images_dir = images_dir or os.path.dirname(os.path.abspath(output_file))
    images = _Images(generator, images_dir, images_dir, copy_images)
    report = ConversionReport()
    report.unreadable.update(getattr(generator, "bad_images", None) and generator.bad_images.messages() or {})
    coco_ids = getattr(generator, "coco_labels", None)
    category = {label: int(coco_ids[label]) if coco_ids else label + 1 for label in _labels(generator)}
    data = {"info": {"description": "written by keras-maskrcnn's maskrcnn-data convert"}, "images": [],
            "annotations": [],
            "categories": [{"id": category[label], "name": generator.label_to_name(label)} for label in category]}
    indices = range(generator.size())
    for index in progress(list(indices), bar) if bar else indices:
        annotations, file_name = _read(generator, index, report, images)
        if annotations is None:
            continue
        height, width = generator.image_size(index)
        image_id = len(data["images"]) + 1
        data["images"].append({"id": image_id, "file_name": file_name, "width": int(width),
                               "height": int(height)})
        polygons = source_polygons(generator, index) or []
        for number, (box, label, mask) in enumerate(zip(annotations["bboxes"], annotations["labels"],
                                                        annotations["masks"])):
            source = polygons[number] if number < len(polygons) else None
            if source and _polygon_matches(source, mask):
                segmentation = [[float(v) for v in np.asarray(p, dtype=np.float64).reshape(-1)] for p in source]
                report.polygons += 1
            else:
                segmentation = _rle(mask)
                report.rles += 1
            x1, y1, x2, y2 = (float(v) for v in box)
            data["annotations"].append({
                "id": len(data["annotations"]) + 1, "image_id": image_id, "category_id": category[int(label)],
                "segmentation": segmentation, "area": float(np.count_nonzero(mask)),
                "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})
            report.objects += 1
        crowds = _source_crowds(generator, index)
        if crowds is not None:
            regions = [(c["bbox"], c.get("segmentation"), c["category_id"]) for c in crowds]
        else:
            first = next(iter(category.values()), 1)
            regions = [([b[0], b[1], b[2] - b[0], b[3] - b[1]], None, first) for b in annotations["ignore_bboxes"]]
        for bbox, segmentation, category_id in regions:
            if segmentation is None:
                x, y, w, h = (float(v) for v in bbox)
                box_mask = np.zeros((int(height), int(width)), dtype=np.uint8)
                box_mask[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = 1
                segmentation = _rle(box_mask)
            data["annotations"].append({
                "id": len(data["annotations"]) + 1, "image_id": image_id, "category_id": int(category_id),
                "segmentation": segmentation, "area": float(bbox[2] * bbox[3]),
                "bbox": [float(v) for v in bbox], "iscrowd": 1})
            report.crowds += 1
        report.images += 1
    report.copied = images.written
    write_json(output_file, data)
    return report


def to_csv(generator, output_dir, copy_images=False, bar="Converting: "):
    """Writes the generator's data set as the seed's CSV with mask PNGs; returns a ConversionReport.

    Args:
        generator: any preprocessing Generator.
        output_dir: folder for annotations.csv, classes.csv, masks/ (and images/ for copies).
        copy_images: write every image into output_dir/images (default: only those that need it).
        bar: progress bar prefix, or None.
    """
    images = _Images(generator, os.path.join(output_dir, "images"), output_dir, copy_images)
    report = ConversionReport()
    report.unreadable.update(getattr(generator, "bad_images", None) and generator.bad_images.messages() or {})
    rows = []
    indices = range(generator.size())
    for index in progress(list(indices), bar) if bar else indices:
        annotations, image = _read(generator, index, report, images)
        if annotations is None:
            continue
        if not len(annotations["labels"]):
            rows.append([image, "", "", "", "", "", ""])
        for number, (box, label, mask) in enumerate(zip(annotations["bboxes"], annotations["labels"],
                                                        annotations["masks"])):
            mask_file = os.path.join("masks", f"{report.images:05d}_{number:03d}.png")
            write_image(os.path.join(output_dir, mask_file), mask.astype(np.uint8) * 255)
            rows.append([image] + [_number(v) for v in box] + [generator.label_to_name(int(label)), mask_file])
            report.objects += 1
        report.left_out_regions += len(annotations["ignore_bboxes"])
        report.images += 1
    report.copied = images.written
    write_csv(os.path.join(output_dir, "classes.csv"), [[generator.label_to_name(label), label]
                                                        for label in _labels(generator)])
    write_csv(os.path.join(output_dir, "annotations.csv"), rows)
    return report
