import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_maskrcnn.preprocessing.coco import CocoGenerator
from keras_maskrcnn.utils.anchors import compute_overlap
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
