import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_maskrcnn.preprocessing.polygons_test import coco_masks
from keras_maskrcnn.preprocessing.yolo import YoloGenerator, label_path, read_data_yaml
from keras_maskrcnn.utils.image import UnreadableImageError

HEIGHT, WIDTH = 48, 64

A_LINES = ["0 0.1 0.1 0.5 0.125 0.3 0.6", "1 0.5 0.5 0.9 0.5 0.9 0.9 0.5 0.9"]


def picture(path, height=HEIGHT, width=WIDTH, seed=0, **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path, **save)
    return array


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "ds"
    picture(root / "images" / "train" / "a.png")
    write(root / "labels" / "train" / "a.txt", "\n".join(A_LINES) + "\n")
    picture(root / "images" / "train" / "c.png", seed=2)
    write(root / "labels" / "train" / "c.txt", "\n")                # empty: a negative
    picture(root / "images" / "train" / "sub" / "b.jpg", seed=1)    # no label file: a negative
    picture(root / "images" / "val" / "d.png", seed=3)
    picture(root / "images" / "train" / ".cache" / "e.png", seed=4)  # hidden: not part of the split
    write(root / "labels" / "val" / "d.txt", "1 0 0 1 0 1 1 0 1\n")
    write(root / "test.txt", "./images/val/d.png\nimages/train/a.png\n\n")
    data = write(tmp_path / "data.yaml", "path: ds\ntrain: images/train\nval: [images/val, images/train/sub]\n"
                                         "test: test.txt\nnames: [cat, dog]\n")
    return root, data


def build(data, split="train", **kwargs):
    return YoloGenerator(str(data), split, image_min_side=64, image_max_side=96, group_method="none",
                         shuffle_groups=False, **kwargs)


def test_folder_split_masks_against_pycocotools_and_negatives(dataset):
    root, data = dataset
    generator = build(data)
    assert generator.label_names == ["cat", "dog"] and generator.classes == {"cat": 0, "dog": 1}
    assert generator.num_classes() == 2 and generator.label_to_name(1) == "dog" and generator.name_to_label("cat") == 0
    assert generator.image_names == [str(root / "images" / "train" / name) for name in ("a.png", "c.png", "sub/b.jpg")]
    assert generator.label_files[0] == str(root / "labels" / "train" / "a.txt")
    assert generator.negatives() == [1, 2] and generator.annotation_count(0) == 2
    assert generator.image_size(0) == (HEIGHT, WIDTH) and generator.load_image(0).shape == (HEIGHT, WIDTH, 3)

    annotations = generator.load_annotations(0)
    assert annotations["labels"].tolist() == [0, 1] and annotations["ignore_bboxes"].shape == (0, 4)
    polygons = [[float(v) * (WIDTH if i % 2 == 0 else HEIGHT) for i, v in enumerate(line.split()[1:])]
                for line in A_LINES]
    reference = coco_masks([[p] for p in polygons], HEIGHT, WIDTH)
    for mask, expected in zip(annotations["masks"], reference):
        assert mask.dtype == np.uint8 and mask.shape == (HEIGHT, WIDTH) and mask.any()
        np.testing.assert_array_equal(mask, expected)
    np.testing.assert_allclose(annotations["bboxes"], [[6.4, 4.8, 32, 28.8], [32, 24, 57.6, 43.2]])
    sources = generator.annotation_polygons(0)
    assert len(sources) == 2 and all(len(s) == 1 for s in sources)
    np.testing.assert_allclose(sources[0][0], polygons[0])
    np.testing.assert_allclose(sources[1][0], polygons[1])
    assert generator.load_annotations(1)["masks"] == [] and generator.load_annotations(2)["bboxes"].shape == (0, 4)

    inputs, targets = generator[0]
    assert inputs["image"].shape == (1, 64, 96, 3)
    labels = targets["masks"][0, :, 0]
    assert sorted(set(labels[labels >= 0].astype(int).tolist())) == [0, 1]


def test_list_and_txt_splits_and_names_mapping(dataset, tmp_path):
    root, data = dataset
    val = build(data, "val")
    assert val.image_names == [str(root / "images" / "train" / "sub" / "b.jpg"), str(root / "images" / "val" / "d.png")]
    whole = val.load_annotations(1)
    assert whole["labels"].tolist() == [1] and whole["masks"][0].all()  # the polygon covers the whole picture
    test = build(data, "test")
    assert test.image_names == [str(root / "images" / "train" / "a.png"), str(root / "images" / "val" / "d.png")]
    assert test.annotation_count(0) == 2 and test.annotation_count(1) == 1

    # names as a mapping, written in any order; no `path`: the data.yaml's folder
    mapping = write(root / "data.yaml", "train: images/train\nnames:\n  1: dog\n  0: cat\nnc: 2\n")
    generator = build(mapping)
    assert generator.label_names == ["cat", "dog"] and generator.size() == 3
    generator[0]
    # Roboflow's layout: data.yaml inside the data set, splits written as "../train/images"
    flow = tmp_path / "flow"
    picture(flow / "train" / "images" / "x.jpg")
    write(flow / "train" / "labels" / "x.txt", "0 0.2 0.2 0.8 0.2 0.5 0.9\n")
    roboflow = write(flow / "data.yaml", "train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['thing']\n")
    generator = build(roboflow)
    assert generator.image_names == [str(flow / "train" / "images" / "x.jpg")] and generator.annotation_count(0) == 1


def test_label_path_rule():
    sep = os.sep
    assert label_path(f"{sep}d{sep}images{sep}x{sep}images{sep}a.b.jpg") == (
        f"{sep}d{sep}images{sep}x{sep}labels{sep}a.b.txt")
    assert label_path(f"{sep}d{sep}pics{sep}a.png") == f"{sep}d{sep}pics{sep}a.txt"


def test_label_errors_name_file_and_line(dataset):
    root, data = dataset
    label = root / "labels" / "train" / "a.txt"

    def error_of(text):
        write(label, text)
        with pytest.raises(ValueError) as caught:
            build(data)
        return str(caught.value)

    where = f"{label}:2: "
    good = A_LINES[0] + "\n"
    assert error_of(good + "0 0.5 0.5 0.2 0.3\n") == where + (
        "box only (class x_centre y_centre width height): this data set has no masks; instance segmentation needs "
        "polygon labels (class x1 y1 x2 y2 ...)")
    assert error_of(good + "0 12 10 40 10 30 30\n").startswith(
        where + "coordinate 40 is above 1: these look like pixels, not normalised 0..1")
    assert error_of(good + "2 0.1 0.1 0.5 0.1 0.3 0.6\n") == where + "class index 2 is beyond the 2 names of " \
                                                                     f"{data} (0..1)"
    assert error_of(good + "0 0.1 0.1 0.5 0.1 0.3\n") == where + ("polygon has an odd number of coordinates (5); "
                                                                  "expected x1 y1 x2 y2 ... pairs")
    assert error_of(good + "0 0.1 0.1 0.5 0.1 0.3 0.6 0.2\n").startswith(where + "polygon has an odd number")
    assert error_of(good + "1 0.1 0.1\n") == where + "polygon has 1 point(s); a polygon needs at least 3"
    assert error_of(good + "1 0.1 0.1 0.5 x 0.3 0.6\n") == where + "'x' is not a number"
    assert error_of(good + "1.5 0.1 0.1 0.5 0.1 0.3 0.6\n") == where + "class '1.5' is not a class index (0, 1, 2...)"
    assert error_of(good + "0 -0.2 0.1 0.5 0.1 0.3 0.6\n").startswith(where + "coordinate -0.2 is negative")
    # within ultralytics' 1 % tolerance: accepted, and the mask stays inside the picture
    write(label, "0 -0.005 0 1.005 0 1.005 1.0 0 1.0\n0 -0.005 0 1.005 0 1.005 1.0 0 1.0\n")
    with pytest.warns(UserWarning, match=r"a\.txt: 1 duplicate line\(s\) left out"):
        generator = build(data)
    annotations = generator.load_annotations(0)
    assert annotations["masks"][0].all() and len(annotations["masks"]) == 1
    np.testing.assert_allclose(annotations["bboxes"], [[0, 0, WIDTH, HEIGHT]])


def test_data_yaml_errors(dataset, tmp_path):
    root, data = dataset

    def error_of(text, split="train"):
        path = write(tmp_path / "bad.yaml", text)
        with pytest.raises(ValueError) as caught:
            build(path, split)
        return str(caught.value)

    bad = tmp_path / "bad.yaml"
    assert error_of("path: ds\ntrain: images/train\nnc: 2\n") == (
        f"{bad}: no 'names' entry (the class names, a list or a mapping {{index: name}}) "
        f"('nc' alone gives no class names)")
    assert error_of("path: ds\ntrain: images/train\nnames: [a]\n", "val") == f"{bad}: no 'val' split (it has: train)"
    assert error_of("path: ds\ntrain: images/nowhere\nnames: [a]\n") == (
        f"{bad}: the 'train' split folder {str(root / 'images' / 'nowhere')!r} does not exist")
    assert error_of("path: ds\ntrain: [images/train, gone]\nnames: [a]\n").endswith(
        f"{str(root / 'gone')!r} does not exist")
    assert error_of("path: ds\ntrain: images/train\nnames: {0: a, 2: b}\n").startswith(
        f"{bad}: 'names' must have the indices 0..1; 1 is missing")
    assert error_of("path: ds\ntrain: images/train\nnames: [a, b]\nnc: 3\n") == (
        f"{bad}: 'nc' is 3 but 'names' lists 2 classes")
    assert error_of("train: [unclosed\n").startswith(f"{bad}:2: not valid YAML")
    assert error_of("- just\n- a list\n").startswith(f"{bad} is not a YOLO data file: it holds a YAML list")
    assert error_of("path: ds/labels\ntrain: train\nnames: [a]\n").startswith(
        f"{bad}: the 'train' split holds no pictures")
    with pytest.raises(ValueError, match="YOLO data file .* does not exist"):
        read_data_yaml(str(tmp_path / "none.yaml"))


def test_missing_or_broken_pictures_raise_or_are_left_out(dataset):
    root, data = dataset
    write(root / "test.txt", "./images/val/d.png\nimages/val/gone.jpg\n")
    (root / "images" / "train" / "broken.png").write_bytes(b"not a picture")
    with pytest.raises(UnreadableImageError, match=r"data\.yaml \(test\): image file .*gone\.jpg' does not exist"):
        build(data, "test")
    generator = build(data, "test", skip_bad_images=True)
    assert generator.size() == 1 and list(generator.unreadable) == [str(root / "images" / "val" / "gone.jpg")]
    with pytest.raises(UnreadableImageError, match=r"broken\.png' could not be read"):
        build(data)
    assert build(data, skip_bad_images=True).size() == 3


def test_exif_orientation(tmp_path):
    """A picture stored 64 wide x 32 high with EXIF orientation 6 (shown 32 x 64): normalised
    coordinates refer to the picture as shown, as ultralytics reads it; orient=False: as stored."""
    root = tmp_path / "exif"
    exif = Image.Exif()
    exif[0x0112] = 6
    shown = np.zeros((64, 32, 3), np.uint8)
    shown[32:64, 0:16] = 255  # bottom-left quarter of the picture as shown
    (root / "images").mkdir(parents=True)
    Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90).save(root / "images" / "p.jpg", quality=95,
                                                                     exif=exif.tobytes())
    write(root / "labels" / "p.txt", "0 0 0.5 0.5 0.5 0.5 1 0 1\n")
    data = write(root / "data.yaml", "train: images\nnames: [square]\n")
    generator = build(data)
    image, mask = generator.load_image(0), generator.load_annotations(0)["masks"][0]
    assert image.shape == (64, 32, 3) and mask.sum() == 32 * 16
    assert image[mask == 1].mean() > 240 and image[mask == 0].mean() < 15
    stored = build(data, orient=False)
    assert stored.load_image(0).shape == (32, 64, 3) and stored.load_annotations(0)["masks"][0].shape == (32, 64)


TINYCOCO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tinycoco"


def test_tinycoco_as_yolo_gives_cocos_masks(tmp_path):
    """COCO's val set written as ultralytics segment labels (its objects of one polygon, normalised
    by COCO's image size, the pictures linked into images/val): every object, class and mask is
    COCO's, every mask equal to pycocotools' annToMask."""
    annotations_file = TINYCOCO / "annotations" / "instances_val2017.json"
    if not annotations_file.is_file():
        pytest.skip(f"tinycoco not found at {TINYCOCO}")
    coco = json.loads(annotations_file.read_text())
    categories = sorted(c["id"] for c in coco["categories"])
    index_of = {category: index for index, category in enumerate(categories)}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    root = tmp_path / "yolo"
    expected = {}
    for image in coco["images"]:
        picture_file = root / "images" / "val" / image["file_name"]
        picture_file.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(TINYCOCO / "images" / "val2017" / image["file_name"], picture_file)
        kept = [a for a in coco["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"]
                and len(a["segmentation"]) == 1]
        lines = []
        for annotation in kept:
            scale = np.tile([image["width"], image["height"]], len(annotation["segmentation"][0]) // 2)
            normalised = np.asarray(annotation["segmentation"][0]) / scale
            lines.append(" ".join([str(index_of[annotation["category_id"]])] + [repr(float(v)) for v in normalised]))
        write(root / "labels" / "val" / (Path(image["file_name"]).stem + ".txt"), "\n".join(lines) + "\n")
        expected[str(picture_file)] = kept
    names_yaml = "".join(f"  {index}: {names[category]}\n" for index, category in enumerate(categories))
    data = write(root / "data.yaml", f"path: .\nval: images/val\nnames:\n{names_yaml}")
    generator = build(data, "val")
    assert generator.size() == len(coco["images"])
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO(str(annotations_file))
    objects = 0
    for index, picture_file in enumerate(generator.image_names):
        kept = expected[picture_file]
        loaded = generator.load_annotations(index)
        assert [generator.label_to_name(label) for label in loaded["labels"]] == [names[a["category_id"]] for a in kept]
        for mask, annotation in zip(loaded["masks"], kept):
            np.testing.assert_array_equal(mask, api.annToMask(annotation))
        objects += len(kept)
    assert objects > 100
