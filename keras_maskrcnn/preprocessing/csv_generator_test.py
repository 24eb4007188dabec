import os
import re

import cv2
import numpy as np
import pytest

from keras_maskrcnn.preprocessing.csv_generator import CSVGenerator, read_classes


def write_image(path, shape=(40, 60), value=100):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.full(shape + (3,), value, dtype=np.uint8))


def write_mask(path, box, shape=(40, 60), foreground=255, channels=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mask = np.zeros(shape, dtype=np.uint8)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = foreground
    if channels:
        mask = np.repeat(mask[:, :, None], channels, axis=2)
    cv2.imwrite(str(path), mask)


@pytest.fixture
def dataset(tmp_path):
    """A valid dataset: two images with masks, one negative, classes cat,0 / dog,1."""
    write_image(tmp_path / "images" / "a.png")
    write_image(tmp_path / "images" / "b.png", shape=(50, 30))
    write_image(tmp_path / "images" / "c.png")
    write_mask(tmp_path / "masks" / "a0.png", (5, 5, 20, 30))
    write_mask(tmp_path / "masks" / "a1.png", (30, 10, 55, 35), foreground=1)
    write_mask(tmp_path / "masks" / "b0.png", (2, 3, 25, 45), shape=(50, 30), channels=3)
    (tmp_path / "classes.csv").write_text("cat,0\ndog,1\n")
    (tmp_path / "annotations.csv").write_text(
        "images/a.png,5,5,20,30,cat,masks/a0.png\n"
        "images/a.png,30,10,55,35,dog,masks/a1.png\n"
        "\n"
        "images/b.png,2,3,25,45,dog,masks/b0.png\n"
        "images/c.png,,,,,,\n"
    )
    return tmp_path


def build(directory, annotations, classes="cat,0\ndog,1\n", **kwargs):
    data = directory / "annotations.csv"
    data.write_text(annotations)
    class_file = directory / "classes.csv"
    class_file.write_text(classes)
    return CSVGenerator(str(data), str(class_file), image_min_side=64, image_max_side=96, **kwargs)


def test_valid_dataset(dataset):
    generator = CSVGenerator(str(dataset / "annotations.csv"), str(dataset / "classes.csv"),
                             image_min_side=64, image_max_side=96, group_method="none", shuffle_groups=False)
    assert generator.size() == 3 and generator.num_classes() == 2
    assert generator.name_to_label("dog") == 1 and generator.label_to_name(0) == "cat"
    assert generator.has_name("cat") and not generator.has_name("cow") and generator.has_label(1)
    assert generator.image_path(0) == str(dataset / "images" / "a.png")
    assert generator.image_aspect_ratio(1) == pytest.approx(30 / 50)
    annotations = generator.load_annotations(0)
    assert annotations["labels"].tolist() == [0, 1]
    np.testing.assert_array_equal(annotations["bboxes"], [[5, 5, 20, 30], [30, 10, 55, 35]])
    for mask, (x1, y1, x2, y2) in zip(annotations["masks"], annotations["bboxes"].astype(int)):
        assert mask.dtype == np.uint8 and mask.shape == (40, 60)
        assert set(np.unique(mask)) == {0, 1} and mask[y1:y2, x1:x2].all() and mask.sum() == (x2 - x1) * (y2 - y1)
    assert generator.load_annotations(1)["masks"][0].sum() == 23 * 42
    negative = generator.load_annotations(2)
    assert negative["bboxes"].shape == (0, 4) and negative["labels"].shape == (0,) and negative["masks"] == []
    image = generator.load_image(0)
    assert image.shape == (40, 60, 3) and image.dtype == np.uint8
    shapes = [generator[index][0]["image"].shape[1:3] for index in range(len(generator))]
    assert shapes == [(64, 96), (96, 64), (64, 96)]
    assert [generator.image_size(i) for i in range(3)] == [(40, 60), (50, 30), (40, 60)]
    assert [generator.annotation_count(i) for i in range(3)] == [2, 1, 0]
    assert [generator.expected_batch_shape([i]) for i in range(3)] == shapes


def test_base_dir_and_absolute_paths(dataset, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    data = other / "annotations.csv"
    data.write_text(f"images/a.png,5,5,20,30,cat,{dataset / 'masks' / 'a0.png'}\n")
    generator = CSVGenerator(str(data), str(dataset / "classes.csv"), base_dir=str(dataset))
    assert generator.image_path(0) == os.path.join(str(dataset), "images/a.png")
    assert generator.load_annotations(0)["masks"][0].sum() == 15 * 25
    with pytest.raises(ValueError, match=re.escape(f"{data}:1: image file")):
        CSVGenerator(str(data), str(dataset / "classes.csv"))


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".tiff"])
def test_mask_formats(tmp_path, suffix):
    write_image(tmp_path / "a.png")
    write_mask(tmp_path / f"m{suffix}", (10, 10, 40, 30))
    generator = build(tmp_path, f"a.png,10,10,40,30,cat,m{suffix}\n")
    mask = generator.load_annotations(0)["masks"][0]
    inside = mask[10:30, 10:40]
    assert inside.mean() > 0.97 and mask.sum() - inside.sum() < 0.03 * inside.size


def test_grey_level_foreground_in_rgba_mask(tmp_path):
    write_image(tmp_path / "a.png")
    write_mask(tmp_path / "m.png", (10, 10, 40, 30), foreground=7, channels=4)
    generator = build(tmp_path, "a.png,10,10,40,30,cat,m.png\n")
    assert generator.load_annotations(0)["masks"][0].sum() == 600


def test_box_outside_image_is_clipped_with_warning(dataset):
    with pytest.warns(UserWarning, match=r"annotations.csv:1: box .* runs outside the 60x40 image .*clipped"):
        generator = build(dataset, "images/a.png,5,5,70,45,cat,masks/a0.png\n")
    np.testing.assert_array_equal(generator.load_annotations(0)["bboxes"], [[5, 5, 60, 40]])


def test_empty_mask_is_dropped_with_warning(dataset):
    generator = build(dataset, "images/a.png,5,5,20,30,cat,masks/a0.png\nimages/a.png,40,30,60,40,dog,masks/a0.png\n")
    with pytest.warns(UserWarning, match=r"a.png'?: annotation 1 dropped \(mask empty inside its box\)"):
        inputs, targets = generator[0]
    assert (targets["masks"][0, :, 0] >= 0).sum() == 2


def test_class_file_without_trailing_newline_and_spaces(tmp_path):
    path = tmp_path / "classes.csv"
    path.write_text("\ufeffcat, 0\n\n dog ,1")
    assert read_classes(str(path)) == {"cat": 0, "dog": 1}


CLASS_ERRORS = [
    ("cat,0\ndog\n", r"classes.csv:2: expected 2 columns"),
    ("cat,0\ndog,1,2\n", r"classes.csv:2: expected 2 columns"),
    ("cat,zero\n", r"classes.csv:1: class id 'zero' is not an integer"),
    ("cat,-1\n", r"classes.csv:1: class id -1 is negative"),
    ("cat,0\n\ncat,1\n", r"classes.csv:3: duplicate class name 'cat' \(first on line 1\)"),
    ("cat,0\ndog,0\n", r"classes.csv:2: duplicate class id 0 \(also 'cat' on line 1\)"),
    (",0\n", r"classes.csv:1: empty class name"),
    ("cat,\"0\n", r"classes.csv:1: malformed row"),
    ("\n\n", r"class file .*classes.csv' lists no classes"),
]


@pytest.mark.parametrize("classes, message", CLASS_ERRORS)
def test_class_file_errors(dataset, classes, message):
    with pytest.raises(ValueError, match=message):
        build(dataset, "images/c.png,,,,,,\n", classes=classes)


ANNOTATION_ERRORS = [
    ('images/a.png,5,5,20,30,cat,masks/a0.png\nimages/a.png,"5,5,20,30,cat,masks/a0.png\n',
     r"annotations.csv:2: malformed row"),
    ("images/a.png,5,5,20,30,cat\n", r"annotations.csv:1: expected 7 columns 'path,x1,y1,x2,y2,class_name,mask_path', "
                                     r"found 6"),
    ("images/c.png,,,,,,\n\nimages/a.png,5,5,20,30,cat,masks/a0.png,extra\n", r"annotations.csv:3: expected 7 columns"),
    ("images/a.png,5,five,20,30,cat,masks/a0.png\n", r"annotations.csv:1: y1 'five' is not a number"),
    ("images/a.png,5,5,nan,30,cat,masks/a0.png\n", r"annotations.csv:1: x2 'nan' is not a finite number"),
    ("images/a.png,-5,5,20,30,cat,masks/a0.png\n", r"annotations.csv:1: x1 '-5' is negative"),
    ("images/a.png,20,5,20,30,cat,masks/a0.png\n", r"annotations.csv:1: x2 \(20\) must be greater than x1 \(20\)"),
    ("images/a.png,5,30,20,10,cat,masks/a0.png\n", r"annotations.csv:1: y2 \(10\) must be greater than y1 \(30\)"),
    ("images/a.png,5,5,20,30,cow,masks/a0.png\n", r"annotations.csv:1: unknown class name 'cow'"),
    ("images/a.png,5,5,20,30,,masks/a0.png\n", r"annotations.csv:1: malformed row: fill in all"),
    ("images/a.png,5,5,20,30,cat,\n", r"annotations.csv:1: malformed row: fill in all"),
    (",5,5,20,30,cat,masks/a0.png\n", r"annotations.csv:1: empty image path"),
    ("images/c.png,,,,,,\nimages/zz.png,5,5,20,30,cat,masks/a0.png\n",
     r"annotations.csv:2: image file '.*images/zz.png' does not exist"),
    ("images/a.png,5,5,20,30,cat,masks/zz.png\n", r"annotations.csv:1: mask file '.*masks/zz.png' does not exist"),
    ("images/broken.png,,,,,,\n", r"annotations.csv:1: image file '.*broken.png' could not be read"),
    ("images/a.png,5,5,20,30,cat,masks/broken.png\n", r"annotations.csv:1: mask file '.*broken.png' could not be read"),
    ("images/a.png,5,5,20,30,cat,masks/b0.png\n",
     r"annotations.csv:1: mask file '.*masks/b0.png' is 30x50 but image file '.*images/a.png' is 60x40"),
]


@pytest.mark.parametrize("annotations, message", ANNOTATION_ERRORS)
def test_annotation_file_errors(dataset, annotations, message):
    (dataset / "images" / "broken.png").write_bytes(b"not an image at all")
    (dataset / "masks" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match=message):
        build(dataset, annotations)


def test_missing_files(dataset):
    with pytest.raises(ValueError, match=r"annotations file '.*nowhere.csv' does not exist"):
        CSVGenerator(str(dataset / "nowhere.csv"), str(dataset / "classes.csv"))
    with pytest.raises(ValueError, match=r"class file '.*nowhere.csv' does not exist"):
        CSVGenerator(str(dataset / "annotations.csv"), str(dataset / "nowhere.csv"))


def test_image_corrupted_after_loading_names_file_and_line(dataset):
    generator = build(dataset, "images/c.png,,,,,,\nimages/a.png,5,5,20,30,cat,masks/a0.png\n",
                      group_method="none")
    data = (dataset / "images" / "a.png").read_bytes()
    (dataset / "images" / "a.png").write_bytes(data[:60])
    with pytest.raises(ValueError, match=r"annotations.csv:2: image file '.*a.png' could not be read"):
        generator.load_image(1)
    (dataset / "masks" / "a0.png").unlink()
    with pytest.raises(ValueError, match=r"annotations.csv:2: mask file '.*a0.png' does not exist"):
        generator.load_annotations(1)


# unreadable images with skip_bad_images

def truncate(path, keep=0.5):
    """Cuts a file to a fraction of its bytes (its header stays readable for keep >= 0.5 of a PNG)."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def shapes_set(tmp_path, images=6):
    from keras_maskrcnn.datasets.shapes import make_shapes_dataset

    annotations, classes = make_shapes_dataset(str(tmp_path / "shapes"), images=images, size=64, seed=1)
    return tmp_path / "shapes", annotations, classes


def test_skip_bad_images_leaves_out_unreadable_headers_and_wrong_mask_sizes(tmp_path):
    folder, annotations, classes = shapes_set(tmp_path)
    (folder / "images" / "empty.jpg").write_bytes(b"")
    (folder / "images" / "text.jpg").write_text("not a picture\n")
    lines = open(annotations).read().splitlines()
    first_mask = lines[0].split(",")[6]
    cv2.imwrite(str(folder / first_mask), np.zeros((32, 48), np.uint8))
    lines += ["images/empty.jpg,,,,,,", "images/text.jpg,,,,,,", "images/missing.png,,,,,,"]
    (folder / "annotations.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"annotations.csv:1: mask file '.*00000_00.png' is 48x32 but image file "
                                         r"'.*00000.png' is 64x64"):
        CSVGenerator(annotations, classes)
    generator = CSVGenerator(annotations, classes, skip_bad_images=True)
    assert generator.size() == 5 and "images/00000.png" not in " ".join(generator.image_names)
    count = len(lines)
    assert list(generator.bad_images.messages().values()) == [
        f"{annotations}:1: mask file '{folder / first_mask}' is 48x32 but image file '{folder / 'images' / '00000.png'}' "
        f"is 64x64",
        f"{annotations}:{count - 2}: image file '{folder / 'images' / 'empty.jpg'}' could not be read: cannot identify "
        f"image file '{folder / 'images' / 'empty.jpg'}'",
        f"{annotations}:{count - 1}: image file '{folder / 'images' / 'text.jpg'}' could not be read: cannot identify "
        f"image file '{folder / 'images' / 'text.jpg'}'",
        f"{annotations}:{count}: image file '{folder / 'images' / 'missing.png'}' does not exist",
    ]
    assert generator.bad_images.events() == []
    assert all(np.isfinite(generator[i][0]["image"]).all() for i in range(len(generator)))


def test_image_that_fails_to_decode_is_replaced_the_same_way_with_the_same_seed(tmp_path):
    folder, annotations, classes = shapes_set(tmp_path)
    truncate(folder / "images" / "00003.png")
    kwargs = dict(skip_bad_images=True, seed=5, batch_size=2, image_min_side=64, image_max_side=64)
    generator = CSVGenerator(annotations, classes, **kwargs)
    assert len(generator.bad_images) == 0  # the header is fine: found only when decoded
    index = next(i for i, group in enumerate(generator.groups) if 3 in group)
    line = generator.image_lines[str(folder / "images" / "00003.png")]
    with pytest.warns(UserWarning, match=r"skipped an unreadable image, replaced in this batch by '.*000\d\d.png': "
                                         rf".*annotations.csv:{line}: image file '.*00003.png' could not be read: "
                                         r"image file is truncated"):
        inputs, targets = generator[index]
    assert list(generator.bad_images.messages()) == [str(folder / "images" / "00003.png")]
    assert generator.bad_images.events() == [str(folder / "images" / "00003.png")]
    again = CSVGenerator(annotations, classes, **kwargs)
    with pytest.warns(UserWarning):
        inputs_again, targets_again = again[index]
    for name in inputs:
        np.testing.assert_array_equal(inputs[name], inputs_again[name])
    for name in targets:
        np.testing.assert_array_equal(targets[name], targets_again[name])
    with pytest.raises(ValueError, match=rf"annotations.csv:{line}: image file '.*00003.png' could not be read"):
        CSVGenerator(annotations, classes, seed=5, batch_size=2)[index]


def test_truncated_mask_replaces_its_image(tmp_path):
    folder, annotations, classes = shapes_set(tmp_path, images=3)
    truncate(folder / "masks" / "00001_00.png", keep=0.6)
    generator = CSVGenerator(annotations, classes, skip_bad_images=True, group_method="none", shuffle_groups=False,
                             batch_size=3, image_min_side=64, image_max_side=64, seed=0)
    with pytest.warns(UserWarning, match=r"mask file '.*00001_00.png' could not be read"):
        generator[0]
    assert list(generator.bad_images.messages()) == [str(folder / "images" / "00001.png")]


def test_no_readable_image_is_an_error(tmp_path):
    folder, annotations, classes = shapes_set(tmp_path, images=2)
    for name in ("00000.png", "00001.png"):
        (folder / "images" / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"none of the 2 images of the data set can be read:\n  .*annotations.csv:1: "):
        CSVGenerator(annotations, classes, skip_bad_images=True)
