import contextlib
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from keras_maskrcnn.preprocessing.bad_images import AnnotationWarning
from keras_maskrcnn.preprocessing.coco import BadAnnotationError, CocoGenerator, rle_string_counts, segmentation_problem
from keras_maskrcnn.utils.anchors import compute_overlap
from keras_maskrcnn.utils.image import UnreadableImageError
from keras_maskrcnn.utils.transform import boxes_from_masks

TINYCOCO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tinycoco"
SETS = ("train2017", "val2017")


def tinycoco(set_name, **kwargs):
    if not (TINYCOCO / "annotations" / f"instances_{set_name}.json").is_file():
        pytest.skip(f"tinycoco not found at {TINYCOCO}")
    return CocoGenerator(str(TINYCOCO), set_name, **kwargs)


@pytest.mark.parametrize("set_name", SETS)
def test_tinycoco_images_and_annotations(set_name):
    generator = tinycoco(set_name)
    with open(TINYCOCO / "annotations" / f"instances_{set_name}.json") as handle:
        data = json.load(handle)
    assert generator.size() == len(data["images"]) and generator.num_classes() == len(data["categories"])
    expected = {image["id"]: 0 for image in data["images"]}
    crowds = {image["id"]: 0 for image in data["images"]}
    for annotation in data["annotations"]:
        if annotation["iscrowd"]:
            crowds[annotation["image_id"]] += 1
        elif annotation["bbox"][2] >= 1 and annotation["bbox"][3] >= 1:
            expected[annotation["image_id"]] += 1
    ious, min_sides = [], []
    for index, image_id in enumerate(generator.image_ids):
        info = generator.coco.loadImgs(image_id)[0]
        image = generator.load_image(index)
        assert image.shape == (info["height"], info["width"], 3) and image.dtype == np.uint8
        annotations = generator.load_annotations(index)
        assert len(annotations["labels"]) == len(annotations["masks"]) == expected[image_id]
        assert annotations["ignore_bboxes"].shape == (crowds[image_id], 4)
        if not expected[image_id]:
            continue
        assert all(m.dtype == np.uint8 and m.shape == image.shape[:2] for m in annotations["masks"])
        mask_boxes = boxes_from_masks(annotations["masks"])
        boxes = annotations["bboxes"]
        # masks never leave their COCO box by more than the 1 pixel of rasterisation
        assert (mask_boxes[:, :2] >= boxes[:, :2] - 1).all() and (mask_boxes[:, 2:] <= boxes[:, 2:] + 1).all()
        ious.extend(np.diag(compute_overlap(mask_boxes, boxes)))
        min_sides.extend(np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))
        for label in annotations["labels"]:
            assert generator.coco_label_to_label(generator.label_to_coco_label(label)) == label
    # pycocotools rasterises polygons at pixel resolution: sub-pixel slivers vanish, so a few
    # small or thin objects have mask boxes a pixel or more inside their COCO box
    ious, min_sides = np.array(ious), np.array(min_sides)
    assert (ious >= 0.9).mean() >= 0.9 and ious.mean() >= 0.95
    assert (ious[min_sides >= 16] >= 0.9).mean() >= 0.98 and (ious[min_sides >= 16] >= 0.8).all()


def test_tinycoco_batches_without_dropped_annotations():
    generator = tinycoco("val2017", group_method="none", shuffle_groups=False, image_min_side=400,
                         image_max_side=666, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        inputs, targets = generator[0]
    count = len(generator.load_annotations(generator.groups[0][0])["labels"])
    assert ((targets["masks"][0, :, 0] >= 0).sum()) == min(2 * count, 64)
    assert inputs["image"].shape[1] % 32 == 0 and inputs["image"].shape[2] % 32 == 0


def test_tinycoco_labels():
    generator = tinycoco("val2017")
    assert generator.label_to_coco_label(0) == 1 and generator.coco_label_to_label(90) == 79
    assert generator.label_to_name(0) == "person" and generator.name_to_label("toothbrush") == 79
    assert generator.coco_label_to_name(1) == "person" and generator.has_label(79) and not generator.has_label(80)


def write_coco(directory, images, annotations, categories=((3, "a"), (7, "b"))):
    (directory / "annotations").mkdir()
    (directory / "images" / "demo").mkdir(parents=True)
    infos = []
    for image_id, (name, array) in enumerate(images, start=1):
        Image.fromarray(array).save(directory / "images" / "demo" / name)
        height, width = array.shape[:2]
        infos.append({"id": image_id, "file_name": name, "height": height, "width": width})
    for index, annotation in enumerate(annotations, start=1):
        annotation.setdefault("id", index)
        annotation.setdefault("iscrowd", 0)
        annotation.setdefault("area", 1.0)
    data = {"images": infos, "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": "x"} for i, n in categories]}
    (directory / "annotations" / "instances_demo.json").write_text(json.dumps(data))


def test_synthetic_coco_crowds_small_boxes_negatives_and_modes(tmp_path):
    square = [[10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]]
    images = [
        ("grey.png", np.full((40, 50), 90, np.uint8)),
        ("rgba.png", np.full((40, 50, 4), 200, np.uint8)),
        ("sixteen.png", np.full((40, 50), 40000, np.uint16)),
        ("empty.png", np.zeros((40, 50, 3), np.uint8)),
    ]
    crowd_rle = {"counts": [40 * 5, 40 * 20, 40 * 25], "size": [40, 50]}
    annotations = [
        {"image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20], "segmentation": square},
        {"image_id": 1, "category_id": 3, "bbox": [5, 0, 20, 40], "segmentation": crowd_rle, "iscrowd": 1},
        {"image_id": 2, "category_id": 3, "bbox": [40, 5, 0.5, 10], "segmentation": [[40, 5, 40.5, 5, 40.5, 15]]},
        {"image_id": 3, "category_id": 3, "bbox": [10, 10, 20, 20], "segmentation": square},
    ]
    write_coco(tmp_path, images, annotations)
    generator = CocoGenerator(str(tmp_path), "demo", image_min_side=64, image_max_side=96, group_method="none",
                              shuffle_groups=False, seed=0)
    assert generator.image_ids == [1, 2, 3, 4] and generator.coco.getImgIds()
    assert generator.num_classes() == 2 and generator.label_to_coco_label(1) == 7
    for index in range(4):
        image = generator.load_image(index)
        assert image.shape == (40, 50, 3) and image.dtype == np.uint8
    assert generator.load_image(2)[0, 0].tolist() == [156, 156, 156]
    first = generator.load_annotations(0)
    assert first["labels"].tolist() == [1] and first["masks"][0].sum() > 0
    np.testing.assert_array_equal(first["ignore_bboxes"], [[5, 0, 25, 40]])
    assert len(generator.load_annotations(1)["labels"]) == 0  # 0.5 pixel wide: skipped
    assert len(generator.load_annotations(3)["labels"]) == 0  # no annotations: a negative
    assert [generator.image_size(i) for i in range(4)] == [(40, 50)] * 4
    assert [generator.annotation_count(i) for i in range(4)] == [1, 1, 1, 0]  # crowds are not objects
    # anchors mostly inside the crowd region are ignored, not negatives
    inputs, targets = generator[0]
    classes = targets["classification"][0]
    assert (classes >= 0).any() and (classes == -2).any()
    inputs, targets = generator[3]
    assert (targets["masks"][0, :, 0] == -1).all() and (targets["classification"][0] == -1).any()


def test_missing_annotations_file(tmp_path):
    with pytest.raises(ValueError, match="instances_nope.json' does not exist"):
        CocoGenerator(str(tmp_path), "nope")


def test_unreadable_or_mis_sized_images_raise_or_are_left_out(tmp_path):
    square = [[10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]]
    images = [(name, np.full((40, 50, 3), 90, np.uint8)) for name in ("a.png", "b.png", "c.png", "d.png")]
    annotations = [{"image_id": i, "category_id": 1, "bbox": [10, 10, 20, 20], "segmentation": square}
                   for i in (1, 2, 3, 4)]
    write_coco(tmp_path, images, annotations, categories=[(1, "thing")])
    folder = tmp_path / "images" / "demo"
    (folder / "b.png").write_bytes(b"")
    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(folder / "c.png")
    data = (folder / "d.png").read_bytes()
    (folder / "d.png").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"COCO image 2: image file '.*b.png' could not be read: cannot identify"):
        CocoGenerator(str(tmp_path), "demo")
    generator = CocoGenerator(str(tmp_path), "demo", skip_bad_images=True, group_method="none", shuffle_groups=False,
                              image_min_side=64, image_max_side=96, seed=0)
    assert generator.image_ids == [1, 4]
    assert list(generator.bad_images.messages().values()) == [
        f"COCO image 2: image file '{folder / 'b.png'}' could not be read: cannot identify image file "
        f"'{folder / 'b.png'}'",
        f"COCO image 3: image file '{folder / 'c.png'}' is 50x30 but its annotations say 50x40",
    ]
    with pytest.warns(UserWarning, match=r"replaced in this batch by '.*a.png': COCO image 4: image file '.*d.png' "
                                         r"could not be read: image file is truncated"):
        generator[1]


# a COCO JSON file anywhere (Roboflow, CVAT, Label Studio exports)

SQUARE = [[10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]]


def write_export(json_path, images_dir, annotations, categories=((0, "project"), (1, "a"), (2, "b")),
                 images=("one.png", "two.png"), size=(40, 50)):
    """A COCO JSON at json_path whose images (40x50 grey pictures) are written into images_dir
    under their file_name; annotations get ids from 0 (as Roboflow numbers them) unless they
    have one."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    infos = []
    for image_id, name in enumerate(images):
        (images_dir / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full(size, 60 + image_id, np.uint8)).save(images_dir / name)
        infos.append({"id": image_id, "file_name": name, "height": size[0], "width": size[1]})
    for index, annotation in enumerate(annotations):
        annotation.setdefault("id", index)
        annotation.setdefault("area", 1.0)
    data = {"images": infos, "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": "project"} for i, n in categories]}
    json_path.write_text(json.dumps(data))
    return json_path


def test_roboflow_export_images_beside_the_json_and_its_unused_project_category(tmp_path):
    annotations = [{"image_id": 0, "category_id": 2, "bbox": [10, 10, 20, 20], "segmentation": SQUARE,
                    "iscrowd": 0},
                   {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "segmentation": SQUARE}]
    path = write_export(tmp_path / "train" / "_annotations.coco.json", tmp_path / "train", annotations)
    with pytest.warns(AnnotationWarning) as record:
        generator = CocoGenerator(annotations=str(path))
    assert [str(w.message) for w in record] == [
        f"{path}: 1 of 3 categories have no annotations here (they keep their labels): 0 'project'"]
    assert generator.images_dir == str(tmp_path / "train") and generator.set_name == "_annotations.coco"
    assert generator.size() == 2 and generator.num_classes() == 3
    assert [generator.label_to_name(label) for label in range(3)] == ["project", "a", "b"]
    assert generator.image_path(1) == str(tmp_path / "train" / "two.png")
    assert generator.load_image(1)[0, 0].tolist() == [61, 61, 61]
    first = generator.load_annotations(0)
    assert first["labels"].tolist() == [2] and first["masks"][0].shape == (40, 50)
    # the mask is pycocotools' rasterisation of the polygon
    reference = COCO()
    reference.dataset = json.loads(path.read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        reference.createIndex()
    np.testing.assert_array_equal(first["masks"][0], reference.annToMask(reference.anns[0]))


def test_images_folder_apart_from_the_json_and_the_two_ways_exclusive(tmp_path):
    # CVAT: annotations/instances_default.json, file_name relative to images/
    annotations = [{"image_id": 0, "category_id": 1, "bbox": [10, 10, 20, 20], "segmentation": SQUARE}]
    path = write_export(tmp_path / "annotations" / "instances_default.json", tmp_path / "images", annotations,
                        categories=[(1, "a")], images=("sub/one.png",))
    generator = CocoGenerator(annotations=str(path), images=str(tmp_path / "images"))
    assert generator.image_path(0) == str(tmp_path / "images" / "sub" / "one.png")
    with pytest.raises(UnreadableImageError, match=r"COCO image 0: image file '.*annotations/sub/one.png' does not"):
        CocoGenerator(annotations=str(path))
    with pytest.raises(TypeError, match="not both"):
        CocoGenerator(str(tmp_path), "default", annotations=str(path))
    with pytest.raises(TypeError, match="needs annotations="):
        CocoGenerator()


BAD = {
    # (annotation fields, what the error says, what pycocotools did with it before the check)
    "unknown category": ({"category_id": 99}, r"category_id 99 is not among the categories \(1\)", KeyError),
    "empty segmentation": ({"segmentation": []}, "segmentation is empty", IndexError),
    "two-point polygon": ({"segmentation": [[10, 10, 30, 30]]}, "polygon 0 has 2 points; a polygon needs at least 3",
                          TypeError),
    "odd polygon": ({"segmentation": [[10, 10, 30, 10, 30, 30, 10]]}, "polygon 0 has an odd number of coordinates",
                    None),
    "flat polygon": ({"segmentation": [10, 10, 30, 10, 30, 30]}, "segmentation is not a list of polygons",
                     TypeError),
    "no segmentation": ({"segmentation": None}, "has no segmentation", None),
    "RLE of another size": ({"segmentation": {"size": [20, 20], "counts": [100, 300]}},
                            r"RLE size \[20, 20\] is not the image's \[height, width\] \[40, 50\]", None),
    "RLE counts short": ({"segmentation": {"size": [40, 50], "counts": [100, 300]}},
                         "RLE counts cover 400 pixels", None),
    "box outside": ({"bbox": [40, 10, 20, 20]}, r"bbox \[40, 10, 20, 20\] runs outside the 50x40 image", None),
    "polygon outside": ({"segmentation": [[10, 10, 1e30, 10, 30, 30]]},
                        r"polygon 0 reaches \(10, 10\)-\(1e\+30, 30\), outside the 50x40 image", None),
    "box not 4 numbers": ({"bbox": [10, 10, 20]}, r"bbox \[10, 10, 20\] is not 4 finite numbers", None),
    "unknown image": ({"image_id": 7}, "image_id 7 is not among the images", KeyError),
}


def bad_export(tmp_path, fields):
    good = {"image_id": 0, "category_id": 1, "bbox": [10, 10, 20, 20], "segmentation": SQUARE, "iscrowd": 0}
    annotations = [dict(good, id=10), dict(good, id=11, image_id=1), dict(good, id=12, **fields)]
    return write_export(tmp_path / "export.json", tmp_path, annotations, categories=[(1, "a")])


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_annotation_is_an_error_naming_json_annotation_and_image_or_a_warned_skip(case, tmp_path):
    fields, message, crash = BAD[case]
    path = bad_export(tmp_path, fields)
    if crash is not None:  # what happened before the check: a crash deep inside pycocotools or coco.py
        coco = COCO()
        coco.dataset = json.loads(path.read_text())
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        with pytest.raises(crash):  # the mask, then the label, as load_annotations made them
            coco.annToMask(coco.anns[12])
            {category: label for label, category in enumerate(sorted(coco.cats))}[coco.anns[12]["category_id"]]
    image = "" if case == "unknown image" else r" \(image 'one.png', id 0\)"
    with pytest.raises(BadAnnotationError, match=rf"^{re.escape(str(path))}: annotation 12{image}: {message}"):
        CocoGenerator(annotations=str(path))
    with pytest.warns(AnnotationWarning, match=rf"^{re.escape(str(path))}: 1 of 3 annotations are bad and left out: "
                                               rf"annotation 12{image}: {message}"):
        generator = CocoGenerator(annotations=str(path), skip_bad_annotations=True)
    assert sorted(generator.coco.anns) == [10, 11] and len(generator.bad_annotations) == 1
    assert [len(generator.load_annotations(i)["labels"]) for i in range(2)] == [1, 1]


def test_boxes_within_a_pixel_of_the_image_are_kept(tmp_path):
    path = bad_export(tmp_path, {"bbox": [-0.9, -0.5, 50.8, 40.9]})
    generator = CocoGenerator(annotations=str(path))
    np.testing.assert_allclose(generator.load_annotations(0)["bboxes"][1], [0, 0, 49.9, 40])


def test_many_bad_annotations_one_error_and_one_warning_naming_the_first_few(tmp_path):
    good = {"image_id": 0, "category_id": 1, "bbox": [10, 10, 20, 20], "segmentation": SQUARE}
    annotations = [dict(good)] + [dict(good, category_id=50 + i) for i in range(8)]
    path = write_export(tmp_path / "export.json", tmp_path, annotations, categories=[(1, "a")])
    with pytest.raises(BadAnnotationError, match=r"annotation 1 \(image 'one.png', id 0\): category_id 50 is not "
                                                  r"among the categories \(1\) \(and 7 more bad annotations\)$"):
        CocoGenerator(annotations=str(path))
    with pytest.warns(AnnotationWarning) as record:
        CocoGenerator(annotations=str(path), skip_bad_annotations=True)
    message = str(record[0].message)
    assert len(record) == 1 and "8 of 9 annotations are bad and left out" in message and "\n" not in message
    assert message.count("is not among the categories") == 5 and message.endswith("; ... and 3 more")


@pytest.mark.parametrize("content, message", [
    ("{", r":1: not a COCO JSON file: Expecting property name"),
    ("[1, 2]", "not a COCO JSON file: it holds a list, not an object"),
    ('{"images": []}', "not a COCO instances file: it has no 'annotations' list"),
    ('{"version": "5.4.1", "shapes": [], "imagePath": "a.png"}', "a labelme file, not COCO JSON"),
    ('{"images": [{"id": 1, "file_name": "a.png", "height": 4}], "annotations": [], "categories": []}',
     r"image 1 \('a.png'\): width None is not a positive integer"),
    ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]}',
     "categories 1 and 2 are both named 'a'"),
    ('{"images": [], "annotations": [], "categories": []}', "lists no categories"),
])
def test_files_that_are_not_coco_json(content, message, tmp_path):
    path = tmp_path / "file.json"
    path.write_text(content)
    with pytest.raises(BadAnnotationError, match=rf"^{re.escape(str(path))}{message}" if message.startswith(":")
                       else rf"^{re.escape(str(path))}: {message}"):
        CocoGenerator(annotations=str(path))
    with pytest.raises(BadAnnotationError, match=r"COCO annotations file '.*missing.json' does not exist"):
        CocoGenerator(annotations=str(tmp_path / "missing.json"))


def test_compressed_rle_strings_are_read_as_pycocotools_writes_them():
    rng = np.random.default_rng(0)
    for height, width in ((1, 1), (7, 5), (40, 50), (300, 200)):
        mask = np.asfortranarray(rng.random((height, width)) < rng.random())
        mask[: height // 2, : width // 3] = 1  # long runs, so some counts take several characters
        rle = mask_utils.encode(mask.astype(np.uint8))
        runs = rle_string_counts(rle["counts"])
        assert sum(runs) == height * width and min(runs) >= 0
        flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(np.uint8)
        np.testing.assert_array_equal(flat.reshape(width, height).T, mask_utils.decode(rle))
        assert segmentation_problem({"size": [height, width], "counts": rle["counts"].decode()}, height, width) is None
    assert rle_string_counts("0") == [0] and rle_string_counts("h") is None  # cut inside a number
    assert "RLE counts cover 1 pixels" in segmentation_problem({"size": [2, 2], "counts": "01"}, 2, 2)


def test_boxes_under_a_pixel_are_left_out_with_one_warning_naming_them(tmp_path):
    path = bad_export(tmp_path, {"bbox": [10, 10, 0.5, 20], "segmentation": [[10, 10, 10.5, 10, 10.5, 30]]})
    with pytest.warns(AnnotationWarning, match=r"1 of 3 annotations are under 1 pixel wide or high and are not used "
                                               r"as objects \(neither trained nor evaluated\): annotation 12 \(image "
                                               r"'one.png', id 0\): 0.5x20$"):
        generator = CocoGenerator(annotations=str(path))
    assert len(generator.load_annotations(0)["labels"]) == 1
