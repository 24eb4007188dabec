import base64
import contextlib
import io
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_maskrcnn.preprocessing.labelme import LabelmeGenerator, LabelmeSkippedShapesWarning, read_labelme_classes
from keras_maskrcnn.preprocessing.polygons import PolygonClippedWarning, circle_to_polygon, polygon_box
from keras_maskrcnn.preprocessing.polygons_test import coco_masks
from keras_maskrcnn.utils.image import UnreadableImageError

HEIGHT, WIDTH = 48, 64


def picture(path, height=HEIGHT, width=WIDTH, seed=0, exif=None, fmt=None):
    """Writes a random RGB picture; returns it as RGB (H, W, 3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    kwargs = {"exif": exif} if exif is not None else {}
    Image.fromarray(array).save(path, fmt, **kwargs)
    return array


def png_b64(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def shape(label, points, shape_type="polygon", group_id=None, **extra):
    return dict(label=label, points=[list(p) for p in points], group_id=group_id,
                description="", shape_type=shape_type, flags={}, **extra)


def write_labelme(path, image_name, shapes, height=HEIGHT, width=WIDTH, image_data=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dict(version="5.5.0", flags={}, shapes=shapes, imagePath=image_name, imageData=image_data,
                imageHeight=height, imageWidth=width)
    path.write_text(json.dumps(data))
    return path


def build(folder, **kwargs):
    return LabelmeGenerator(str(folder), image_min_side=64, image_max_side=96, group_method="none",
                            shuffle_groups=False, **kwargs)


PATCH = np.zeros((10, 12), np.uint8)
PATCH[2:8, 3:11] = 1
PATCH[4, 0] = 1

SHAPES = [
    shape("cat", [(2, 3), (20, 4.5), (15.5, 25)]),                        # 0 polygon
    shape("dog", [(40, 20), (30, 5)], "rectangle"),                       # 1 rectangle (corners in any order)
    shape("cat", [(50, 35), (50, 42)], "circle"),                         # 2 circle of radius 7
    shape("dog", [(5, 30), (16, 39)], "mask", mask=png_b64(PATCH * 255)),  # 3 mask, its box
    shape("cat", [(1, 1), (5, 5)], "line"),                               # 4 skipped
    shape("dog", [(9, 9)], "point"),                                      # 5 skipped
    shape("cat", [(22, 30), (28, 30), (28, 36), (22, 36)], group_id=7),   # 6 one object ...
    shape("cat", [(30, 40), (36, 40), (33, 46)], group_id=7),             # 7 ... with this one
    shape("dog", [(22, 40), (26, 40), (24, 46)], group_id=7),             # 8 same group, other label
]


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "labelme"
    picture(folder / "a.png")
    write_labelme(folder / "a.json", "a.png", SHAPES)
    # a picture kept only in its JSON's imageData, one folder down
    buffer = io.BytesIO()
    embedded = picture(tmp_path / "scratch.png", seed=1)
    Image.fromarray(embedded).save(buffer, "PNG")
    write_labelme(folder / "sub" / "b.json", "../gone/b.png", [shape("dog", [(10, 10), (30, 10), (20, 30)])],
                  image_data=base64.b64encode(buffer.getvalue()).decode("ascii"))
    return folder, embedded


def test_every_shape_type_group_ids_and_image_data(dataset, capsys):
    folder, embedded = dataset
    with pytest.warns(LabelmeSkippedShapesWarning) as caught:
        generator = build(folder)
    skipped = [w for w in caught if issubclass(w.category, LabelmeSkippedShapesWarning)]
    assert len(skipped) == 1
    assert str(skipped[0].message).startswith(f"{folder / 'a.json'}: skipped 2 shape(s)")
    assert "1 line, 1 point" in str(skipped[0].message)
    assert "labelme: 2 classes: cat, dog" in capsys.readouterr().out
    assert generator.classes == {"cat": 0, "dog": 1} and generator.label_names == ["cat", "dog"]
    assert generator.num_classes() == 2 and generator.label_to_name(1) == "dog"
    assert generator.size() == 2 and generator.json_files == [str(folder / "a.json"), str(folder / "sub" / "b.json")]
    assert generator.image_path(0) == str(folder / "a.png")
    assert generator.image_path(1) == str(folder / "sub" / "b.json")

    annotations = generator.load_annotations(0)
    assert annotations["labels"].tolist() == [0, 1, 0, 1, 0, 1] and generator.annotation_count(0) == 6
    masks = annotations["masks"]
    assert all(m.shape == (HEIGHT, WIDTH) and m.dtype == np.uint8 for m in masks)
    polygons = [[2, 3, 20, 4.5, 15.5, 25], [30, 5, 40, 5, 40, 20, 30, 20], circle_to_polygon(50, 35, 7).tolist(),
                [22, 30, 28, 30, 28, 36, 22, 36], [30, 40, 36, 40, 33, 46], [22, 40, 26, 40, 24, 46]]
    reference = coco_masks([[polygons[0]], [polygons[1]], [polygons[2]], [polygons[3], polygons[4]], [polygons[5]]],
                           HEIGHT, WIDTH)
    np.testing.assert_array_equal(masks[0], reference[0])
    np.testing.assert_array_equal(masks[1], reference[1])
    assert masks[1].sum() == 10 * 15 and masks[1][5:20, 30:40].all()
    np.testing.assert_array_equal(masks[2], reference[2])
    assert abs(masks[2].sum() - math.pi * 49) < 0.1 * math.pi * 49
    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected[30:40, 5:17] = PATCH
    np.testing.assert_array_equal(masks[3], expected)
    np.testing.assert_array_equal(masks[4], reference[3])  # group 7's two cat shapes: one mask
    np.testing.assert_array_equal(masks[5], reference[4])  # group 7's dog shape stays its own object
    np.testing.assert_allclose(annotations["bboxes"][0], [2, 3, 20, 25])
    np.testing.assert_allclose(annotations["bboxes"][1], [30, 5, 40, 20])
    np.testing.assert_allclose(annotations["bboxes"][2], polygon_box([polygons[2]]))
    np.testing.assert_allclose(annotations["bboxes"][3], [5, 32, 16, 38])  # the patch's nonzero pixels
    np.testing.assert_allclose(annotations["bboxes"][4], [22, 30, 36, 46])
    assert annotations["ignore_bboxes"].shape == (0, 4)
    sources = generator.annotation_polygons(0)
    assert sources[0] == [polygons[0]] and sources[1] == [polygons[1]] and sources[3] is None
    assert sources[4] == [polygons[3], polygons[4]] and len(sources) == 6

    image = generator.load_image(1)
    np.testing.assert_array_equal(image, embedded[:, :, ::-1])
    second = generator.load_annotations(1)
    np.testing.assert_array_equal(second["masks"][0], coco_masks([[[10, 10, 30, 10, 20, 30]]], HEIGHT, WIDTH)[0])
    np.testing.assert_array_equal(generator.load_image(0), np.asarray(Image.open(folder / "a.png"))[:, :, ::-1])

    inputs, targets = generator[0]
    assert inputs["image"].shape[0] == 1 and inputs["image"].shape[1] % 32 == 0
    labels = targets["masks"][0, :, 0]
    assert sorted(set(labels[labels >= 0].astype(int).tolist())) == [0, 1]


def test_labels_txt_with_ignore_and_background(dataset, tmp_path, capsys):
    folder, _ = dataset
    write_labelme(folder / "c.json", "a.png", [
        shape("__ignore__", [(0, 0), (10, 8)], "rectangle"),
        shape("_background_", [(0, 0), (60, 0), (60, 40)]),
        shape("cat", [(20, 20), (30, 20), (25, 30)]),
    ])
    labels = tmp_path / "labels.txt"
    labels.write_text("__ignore__\n_background_\ndog\n\ncat\n")
    assert read_labelme_classes(str(labels)) == (["dog", "cat"], True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelmeSkippedShapesWarning)
        generator = build(folder, classes=str(labels))
    assert "classes:" not in capsys.readouterr().out
    assert generator.classes == {"dog": 0, "cat": 1} and generator.size() == 3
    annotations = generator.load_annotations(1)
    assert annotations["labels"].tolist() == [1]
    np.testing.assert_allclose(annotations["ignore_bboxes"], [[0, 0, 10, 8]])
    assert generator.load_annotations(0)["labels"].tolist() == [1, 0, 1, 0, 1, 0]

    # a list of names, as a validation set takes the training set's label_names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelmeSkippedShapesWarning)
        assert build(folder, classes=generator.label_names).classes == {"dog": 0, "cat": 1}
        with pytest.raises(ValueError, match=r"a\.json: shapes\[0\] \('cat', polygon\): label 'cat' is not in the "
                                             r"classes given \(it lists: dog\)"):
            build(folder, classes=["dog"])
    labels.write_text("dog\n")
    with pytest.raises(ValueError, match=r"a\.json: shapes\[0\] \('cat', polygon\): label 'cat' is not in the "
                                         r"classes file .*labels\.txt' \(it lists: dog\)"):
        build(folder, classes=str(labels))
    labels.write_text("dog\ncat\ndog\n")
    with pytest.raises(ValueError, match=r"labels\.txt:3: duplicate label 'dog' \(first on line 1\)"):
        build(folder, classes=str(labels))
    labels.write_text("__ignore__\n")
    with pytest.raises(ValueError, match="lists no classes"):
        build(folder, classes=str(labels))


def test_exif_orientation_6(tmp_path):
    """A phone picture stored 64 wide x 32 high, shown (orientation 6) 32 wide x 64 high."""
    folder = tmp_path / "phone"
    folder.mkdir()
    shown = np.zeros((64, 32, 3), np.uint8)
    shown[40:56, 4:20] = 255
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    assert stored.size == (64, 32)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(folder / "photo.jpg", quality=95, exif=exif.tobytes())
    square = [(4, 40), (20, 40), (20, 56), (4, 56)]
    write_labelme(folder / "photo.json", "photo.jpg", [shape("square", square)], height=64, width=32)
    generator = build(folder)
    image = generator.load_image(0)
    assert image.shape == (64, 32, 3) and generator.image_size(0) == (64, 32)
    mask = generator.load_annotations(0)["masks"][0]
    expected = np.zeros((64, 32), np.uint8)
    expected[40:56, 4:20] = 1
    np.testing.assert_array_equal(mask, expected)
    # the polygon lands on the bright square of the picture as shown
    assert image[mask == 1].mean() > 240 and image[mask == 0].mean() < 15
    generator[0]

    # a file whose size is the stored one (the picture's orientation ignored) is an error naming both sizes
    write_labelme(folder / "photo.json", "photo.jpg", [shape("square", square)], height=32, width=64)
    with pytest.raises(UnreadableImageError, match=r"photo\.json: the labelme file says imageWidth x imageHeight "
                                                   r"64x32, but picture .*photo\.jpg' is 32x64 as shown \(EXIF "
                                                   r"orientation 6; 64x32 as stored"):
        build(folder)


def test_bad_files_are_clear_errors(tmp_path):
    folder = tmp_path / "bad"
    picture(folder / "a.png")

    def error_of(shapes, **kwargs):
        write_labelme(folder / "a.json", "a.png", shapes, **kwargs)
        with pytest.raises(ValueError) as caught:
            build(folder)
        return str(caught.value)

    prefix = f"{folder / 'a.json'}: shapes[1] ('cat', polygon): "
    ok = shape("cat", [(1, 1), (9, 1), (5, 9)])
    assert error_of([ok, shape("cat", [(1, 1), (9, 1)])]) == (
        prefix + "polygon has 2 point(s); a polygon needs at least 3")
    assert error_of([ok, shape("cat", [(1, 1, 2), (9, 1, 3), (5, 9, 4)])]) == (
        prefix + "'points' must be a list of [x, y] pairs of numbers")
    assert error_of([ok, shape("cat", [[1, 1], [9, 1], [5, "x"]])]) == (
        prefix + "'points' must be a list of [x, y] pairs of numbers")
    assert error_of([ok, shape("cat", [(1, 1), (9, float("nan")), (5, 9)])]) == (
        prefix + "'points' holds a coordinate that is not a finite number")
    assert error_of([ok, shape("cat", [(1, 1), (2, 2), (3, 1)], "circle")]).endswith(
        "a circle needs 2 points (centre, a point on it), found 3")
    assert "shapes[0] ('cat', mask): a 'mask' shape needs its 'mask'" in error_of(
        [shape("cat", [(1, 1), (4, 4)], "mask")])
    assert "'mask' could not be decoded" in error_of([shape("cat", [(1, 1), (4, 4)], "mask", mask="aGVsbG8=")])
    assert "a.json: shapes[0]: shape has no label" in error_of([dict(points=[[1, 1], [2, 2], [1, 2]])])

    # a COCO file passed as labelme
    (folder / "a.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(ValueError, match=r"a\.json is not a labelme file: it looks like a COCO annotations file"):
        build(folder)
    (folder / "a.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"a\.json is not a labelme file: it holds a JSON list of 2 items"):
        build(folder)
    (folder / "a.json").write_text('{"version": "5",\n "shapes": [}')
    with pytest.raises(ValueError, match=r"a\.json:2: not a valid JSON file"):
        build(folder)
    with pytest.raises(ValueError, match="holds no .json files"):
        build(_empty(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        build(tmp_path / "nowhere")

    # a size that disagrees with the picture
    write_labelme(folder / "a.json", "a.png", [ok], height=40)
    with pytest.raises(UnreadableImageError, match=r"says imageWidth x imageHeight 64x40, but picture .*a\.png' "
                                                   r"is 64x48 as shown$"):
        build(folder)


def _empty(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "note.txt").write_text("no labelme files here")
    return empty


def test_points_outside_are_clipped_with_a_warning_and_empty_shapes_skipped(tmp_path):
    folder = tmp_path / "outside"
    picture(folder / "a.png")
    write_labelme(folder / "a.json", "a.png", [shape("cat", [(-4, 2), (20, 2), (20, 60)]),
                                               shape("cat", [(70, 1), (80, 1), (75, 9)])])
    with pytest.warns(UserWarning) as caught:
        generator = build(folder)
    messages = [str(w.message) for w in caught]
    assert any(m.startswith(f"{folder / 'a.json'}: shapes[0] ('cat', polygon): 2 point(s) of the polygon lie outside "
                            f"the 64x48 picture; clipped") for m in messages)
    assert any(m.startswith(f"{folder / 'a.json'}: shapes[1] ('cat', polygon): the shape has no area inside")
               for m in messages)
    annotations = generator.load_annotations(0)
    np.testing.assert_allclose(annotations["bboxes"], [[0, 2, 20, 48]])
    # the mask is the polygon's part inside the picture, as pycocotools rasterises it
    np.testing.assert_array_equal(annotations["masks"][0], coco_masks([[[-4, 2, 20, 2, 20, 60]]], HEIGHT, WIDTH)[0])


def test_absolute_image_path_and_hidden_folders(tmp_path):
    folder = tmp_path / "moved"
    picture(folder / "a.png")
    write_labelme(folder / "a.json", "C:\\Users\\someone\\labels\\a.png", [shape("cat", [(1, 1), (9, 1), (5, 9)])])
    write_labelme(folder / ".ipynb_checkpoints" / "a-checkpoint.json", "../a.png",
                  [shape("cat", [(1, 1), (9, 1), (5, 9)])])
    generator = build(folder)
    assert generator.size() == 1 and generator.image_path(0) == str(folder / "a.png")
    assert generator.load_image(0).shape == (HEIGHT, WIDTH, 3)


def test_missing_pictures_raise_or_are_left_out(tmp_path):
    folder = tmp_path / "missing"
    picture(folder / "a.png")
    write_labelme(folder / "a.json", "a.png", [shape("cat", [(1, 1), (9, 1), (5, 9)])])
    write_labelme(folder / "b.json", "b.png", [shape("dog", [(1, 1), (9, 1), (5, 9)])])
    (folder / "c.png").write_bytes(b"not a picture")
    write_labelme(folder / "c.json", "c.png", [shape("dog", [(1, 1), (9, 1), (5, 9)])])
    with pytest.raises(UnreadableImageError, match=r"b\.json: image file .*b\.png' does not exist \(and the labelme "
                                                   r"file holds no imageData\)"):
        build(folder)
    generator = build(folder, skip_bad_images=True)
    assert generator.size() == 1 and generator.image_path(0) == str(folder / "a.png")
    assert set(generator.unreadable) == {str(folder / "b.png"), str(folder / "c.png")}
    assert "c.json: image file" in generator.unreadable[str(folder / "c.png")]
    assert len(generator.bad_images) == 2


TINYCOCO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tinycoco"


def test_tinycoco_as_labelme_gives_cocos_masks(tmp_path):
    """COCO's val set written as labelme files (a polygon shape per polygon, the polygons of one
    object sharing a group_id, crowds as __ignore__ rectangles): every object, class and mask is
    COCO's, every mask equal to pycocotools' annToMask."""
    annotations_file = TINYCOCO / "annotations" / "instances_val2017.json"
    if not annotations_file.is_file():
        pytest.skip(f"tinycoco not found at {TINYCOCO}")
    coco = json.loads(annotations_file.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    reference = {}
    for image in coco["images"]:
        shapes, expected = [], []
        for annotation in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            if annotation["iscrowd"]:
                x, y, w, h = annotation["bbox"]
                shapes.append(shape("__ignore__", [(x, y), (x + w, y + h)], "rectangle"))
                continue
            group = annotation["id"] if len(annotation["segmentation"]) > 1 else None
            for polygon in annotation["segmentation"]:
                shapes.append(shape(names[annotation["category_id"]], np.reshape(polygon, (-1, 2)).tolist(),
                                    group_id=group))
            expected.append(annotation)
        picture_file = TINYCOCO / "images" / "val2017" / image["file_name"]
        json_file = tmp_path / "lm" / (Path(image["file_name"]).stem + ".json")
        write_labelme(json_file, os.path.relpath(picture_file, json_file.parent), shapes,
                      height=image["height"], width=image["width"])
        reference[str(json_file)] = (image, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PolygonClippedWarning)
        generator = build(tmp_path / "lm")
    assert generator.size() == len(coco["images"])
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO(str(annotations_file))
    objects = 0
    for index, json_file in enumerate(generator.json_files):
        image, expected = reference[json_file]
        loaded = generator.load_annotations(index)
        assert [generator.label_to_name(label) for label in loaded["labels"]] == [
            names[a["category_id"]] for a in expected]
        for mask, annotation in zip(loaded["masks"], expected):
            np.testing.assert_array_equal(mask, api.annToMask(annotation))
        objects += len(expected)
        crowds = [a for a in api.loadAnns(api.getAnnIds(imgIds=image["id"])) if a["iscrowd"]]
        assert len(loaded["ignore_bboxes"]) == len(crowds)
    assert objects == sum(1 for a in coco["annotations"] if not a["iscrowd"])
