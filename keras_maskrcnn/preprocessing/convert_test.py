import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from keras_maskrcnn.preprocessing.coco import CocoGenerator
from keras_maskrcnn.preprocessing.convert import to_coco, to_csv
from keras_maskrcnn.preprocessing.csv_generator import CSVGenerator


def everything(generator):
    """[(file name stem, image size, labels by name, boxes, masks, ignore boxes)] of every image, by file name."""
    items = []
    for index in range(generator.size()):
        annotations = generator.load_annotations_group([index])[0]
        items.append((os.path.splitext(os.path.basename(generator.image_path(index)))[0], generator.image_size(index),
                      [generator.label_to_name(int(label)) for label in annotations["labels"]],
                      annotations["bboxes"], annotations["masks"], annotations["ignore_bboxes"]))
    return sorted(items, key=lambda item: item[0])


def assert_same(first, second, ignore=True):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a[:3] == b[:3]
        np.testing.assert_allclose(a[3], b[3], atol=1e-9)
        assert len(a[4]) == len(b[4])
        for mask_a, mask_b in zip(a[4], b[4]):
            np.testing.assert_array_equal(mask_a, mask_b)
        if ignore:
            np.testing.assert_allclose(a[5], b[5])


def test_csv_to_coco_to_masks(small_shapes, tmp_path):
    source = CSVGenerator(small_shapes["train"], small_shapes["classes"])
    layout = tmp_path / "coco"
    output = layout / "annotations" / "instances_converted.json"
    report = to_coco(source, str(output), images_dir=str(layout / "images" / "converted"), copy_images=True, bar=None)
    assert (report.images, report.rles, report.polygons) == (4, sum(source.annotation_count(i) for i in range(4)), 0)
    assert report.copied == 4
    back = CocoGenerator(str(layout), "converted")
    assert [back.label_to_name(label) for label in range(back.num_classes())] == ["circle", "square", "triangle"]
    assert_same(everything(source), everything(back))
    data = json.loads(output.read_text())
    assert [c["id"] for c in data["categories"]] == [1, 2, 3]
    assert all(isinstance(a["segmentation"]["counts"], str) for a in data["annotations"])


def test_csv_to_coco_refers_to_the_source_images(small_shapes, tmp_path):
    source = CSVGenerator(small_shapes["train"], small_shapes["classes"])
    output = tmp_path / "out" / "data.json"
    report = to_coco(source, str(output), bar=None)
    assert report.copied == 0
    data = json.loads(output.read_text())
    for image, index in zip(data["images"], range(source.size())):
        assert os.path.samefile(os.path.join(output.parent, image["file_name"]), source.image_path(index))
    assert not (tmp_path / "out" / "images").exists()


def polygon_mask(polygons, height, width):
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width)))


@pytest.fixture
def coco_set(tmp_path):
    """A COCO-layout set: 3 images (one negative), polygon objects (one of two parts), an RLE object
    and a crowd region."""
    root = tmp_path / "source"
    (root / "images" / "set").mkdir(parents=True)
    (root / "annotations").mkdir()
    images = []
    for index in range(3):
        name = f"{index}.jpg"
        Image.fromarray(np.full((60, 80, 3), 50 * index, np.uint8)).save(root / "images" / "set" / name)
        images.append({"id": index + 10, "file_name": name, "width": 80, "height": 60})
    rle_mask = np.zeros((60, 80), np.uint8)
    rle_mask[20:40, 50:75] = 1
    rle_mask[25:30, 60:65] = 0
    rle = mask_utils.encode(np.asfortranarray(rle_mask))
    rle["counts"] = rle["counts"].decode("ascii")
    crowd = mask_utils.encode(np.asfortranarray(np.pad(np.ones((10, 10), np.uint8), ((0, 50), (0, 70)))))
    crowd["counts"] = crowd["counts"].decode("ascii")
    annotations = [
        {"id": 1, "image_id": 10, "category_id": 3, "segmentation": [[10.5, 10, 30, 12.25, 20, 30.5]],
         "bbox": [10.5, 10, 19.5, 20.5], "area": 200, "iscrowd": 0},
        {"id": 2, "image_id": 10, "category_id": 7, "segmentation": [[40, 5, 55, 5, 55, 20, 40, 20],
                                                                      [60, 5, 70, 5, 70, 15]],
         "bbox": [40, 5, 30, 15], "area": 280, "iscrowd": 0},
        {"id": 3, "image_id": 11, "category_id": 7, "segmentation": rle, "bbox": [50, 20, 25, 20], "area": 475,
         "iscrowd": 0},
        {"id": 4, "image_id": 11, "category_id": 3, "segmentation": crowd, "bbox": [0, 0, 10, 10], "area": 100,
         "iscrowd": 1},
    ]
    categories = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    (root / "annotations" / "instances_set.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    return root


def test_coco_to_csv_to_masks(coco_set, tmp_path):
    source = CocoGenerator(str(coco_set), "set")
    report = to_csv(source, str(tmp_path / "csv"), bar=None)
    assert (report.images, report.objects, report.left_out_regions) == (3, 3, 1)
    assert "1 crowd / ignore regions left out: the CSV format has no place for them" in report.lines()
    back = CSVGenerator(str(tmp_path / "csv" / "annotations.csv"), str(tmp_path / "csv" / "classes.csv"))
    assert_same(everything(source), everything(back), ignore=False)
    assert (tmp_path / "csv" / "classes.csv").read_text().splitlines() == ["cat,0", "dog,1"]
    negative = [line for line in (tmp_path / "csv" / "annotations.csv").read_text().splitlines()
                if line.endswith(",,,,,,")]
    assert len(negative) == 1 and "2.jpg" in negative[0]
    # the masks are pycocotools' rasterisations of the source polygons
    first = everything(back)[0]
    np.testing.assert_array_equal(first[4][0], polygon_mask([[10.5, 10, 30, 12.25, 20, 30.5]], 60, 80))


def test_coco_to_coco_keeps_polygons_and_crowds(coco_set, tmp_path):
    source = CocoGenerator(str(coco_set), "set")
    output = tmp_path / "copy" / "annotations" / "instances_set.json"
    report = to_coco(source, str(output), images_dir=str(coco_set / "images" / "set"), bar=None)
    assert (report.polygons, report.rles, report.crowds) == (2, 1, 1)
    data = json.loads(output.read_text())
    assert [c["id"] for c in data["categories"]] == [3, 7]
    assert data["annotations"][0]["segmentation"] == [[10.5, 10, 30, 12.25, 20, 30.5]]
    assert [a["iscrowd"] for a in data["annotations"]] == [0, 0, 0, 1]
    os.symlink(coco_set / "images", tmp_path / "copy" / "images")
    back = CocoGenerator(str(tmp_path / "copy"), "set")
    assert_same(everything(source), everything(back))


def test_exif_rotated_and_missing_images_are_written(tmp_path, small_shapes):
    source = CSVGenerator(small_shapes["train"], small_shapes["classes"])

    class Oriented(CSVGenerator):
        """A generator whose image 0 is an EXIF-rotated file, image 1 has no file of its own."""

        def image_path(self, index):
            if index == 0:
                return str(rotated)
            if index == 1:
                return str(tmp_path / "labels.json")
            return super().image_path(index)

    picture = source.load_image(0)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(picture[:, :, ::-1], 1))).save(rotated, exif=exif)
    (tmp_path / "labels.json").write_text("{}")
    generator = Oriented(small_shapes["train"], small_shapes["classes"])
    report = to_csv(generator, str(tmp_path / "out"), bar=None)
    assert report.copied == 2
    written = sorted(os.listdir(tmp_path / "out" / "images"))
    assert written == ["labels.png", "rotated.png"]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out" / "images" / "rotated.png")), picture)


def test_labelme_to_coco_keeps_polygons_and_orients_pictures(tmp_path):
    from keras_maskrcnn.preprocessing.labelme import LabelmeGenerator

    folder = tmp_path / "labelme"
    folder.mkdir()
    # stored 40 wide, 30 high, EXIF orientation 6: labelme shows (and annotates) it 30 wide, 40 high
    stored = np.zeros((30, 40, 3), np.uint8)
    stored[:, :20] = 200
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(folder / "photo.jpg", exif=exif, quality=95)
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(folder / "plain.png")
    shapes = [{"label": "leaf", "points": [[2, 3], [20, 4], [12, 30]], "shape_type": "polygon", "group_id": None},
              {"label": "stem", "points": [[5, 5], [15, 12]], "shape_type": "rectangle", "group_id": None}]
    for name, width, height in [("photo", 30, 40), ("plain", 40, 30)]:
        (folder / f"{name}.json").write_text(json.dumps({
            "version": "5.4.1", "flags": {}, "shapes": shapes,
            "imagePath": f"{name}.{'jpg' if name == 'photo' else 'png'}",
            "imageData": None, "imageHeight": height, "imageWidth": width}))
    source = LabelmeGenerator(str(folder))
    output = tmp_path / "coco" / "data.json"
    report = to_coco(source, str(output), bar=None)
    assert (report.images, report.objects, report.polygons, report.copied) == (2, 4, 4, 1)
    assert sorted(os.listdir(output.parent)) == ["data.json", "photo.png"]
    back = CocoGenerator(annotations=str(output))
    assert_same(everything(source), everything(back))
    index = [os.path.basename(back.image_path(i)) for i in range(back.size())].index("photo.png")
    np.testing.assert_array_equal(back.load_image(index), source.load_image(
        [os.path.basename(source.image_path(i)) for i in range(source.size())].index("photo.jpg")))


def test_yolo_to_coco_keeps_polygons(tmp_path):
    from keras_maskrcnn.preprocessing.yolo import YoloGenerator

    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    Image.fromarray(np.full((50, 100, 3), 120, np.uint8)).save(tmp_path / "images" / "train" / "a.png")
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.1 0.1 0.5 0.12 0.3 0.9\n"
                                                        "0 0.6 0.2 0.9 0.2 0.9 0.8 0.6 0.8\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/train\nnames: [a, b]\n")
    source = YoloGenerator(str(tmp_path / "data.yaml"))
    report = to_coco(source, str(tmp_path / "out.json"), bar=None)
    assert (report.objects, report.polygons, report.rles) == (2, 2, 0)
    back = CocoGenerator(annotations=str(tmp_path / "out.json"))
    assert_same(everything(source), everything(back))


def test_an_image_that_fails_to_decode_is_left_out_and_reported(small_shapes, tmp_path):
    from keras_maskrcnn.utils.image import UnreadableImageError

    class Broken(CSVGenerator):
        """Image 1's file is gone (so it must be decoded to be written) and does not decode."""

        def image_path(self, index):
            return str(tmp_path / "gone.png") if index == 1 else super().image_path(index)

        def load_image(self, index):
            if index == 1:
                raise UnreadableImageError(f"image file {self.image_path(index)!r} could not be read: truncated")
            return super().load_image(index)

    generator = Broken(small_shapes["train"], small_shapes["classes"])
    report = to_csv(generator, str(tmp_path / "out"), bar=None)
    assert report.images == 3 and report.copied == 0
    assert list(report.unreadable) == [generator.image_path(1)]
    assert report.lines()[-2:] == ["1 unreadable images left out:",
                                   f"  image file {generator.image_path(1)!r} could not be read: truncated"]
    back = CSVGenerator(str(tmp_path / "out" / "annotations.csv"), str(tmp_path / "out" / "classes.csv"))
    assert back.size() == 3
