import csv
import os
import warnings

import numpy as np
import pytest

from keras_maskrcnn.bin.shapes import main
from keras_maskrcnn.datasets.shapes import make_shapes_dataset
from keras_maskrcnn.preprocessing.csv_generator import CSVGenerator


def files(directory):
    result = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                result[os.path.relpath(path, directory)] = handle.read()
    return result


def test_identical_arguments_identical_output(tmp_path):
    first = make_shapes_dataset(str(tmp_path / "a"), images=6, size=64, seed=3)
    make_shapes_dataset(str(tmp_path / "b"), images=6, size=64, seed=3)
    make_shapes_dataset(str(tmp_path / "c"), images=6, size=64, seed=4)
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert a == b
    assert a["annotations.csv"] != c["annotations.csv"]
    assert first == (str(tmp_path / "a" / "annotations.csv"), str(tmp_path / "a" / "classes.csv"))
    assert a["classes.csv"] == b"circle,0\nsquare,1\ntriangle,2\n"
    assert sum(name.startswith("images") for name in a) == 6


def test_command_line(tmp_path, capsys):
    assert main([str(tmp_path / "out"), "--images", "3", "--size", "48", "--seed", "1"]) == 0
    assert "annotations.csv" in capsys.readouterr().out
    assert files(tmp_path / "out") == files(_make(tmp_path / "api", images=3, size=48, seed=1))
    assert main([str(tmp_path / "bad"), "--images", "0"]) == 2


def _make(directory, **kwargs):
    make_shapes_dataset(str(directory), **kwargs)
    return directory


def test_dataset_is_valid_and_learnable(tmp_path):
    annotations, classes = make_shapes_dataset(str(tmp_path), images=30, size=96, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generator = CSVGenerator(annotations, classes, image_min_side=96, image_max_side=96, seed=0)
        inputs, targets = generator[0]
    assert generator.size() == 30 and generator.num_classes() == 3
    counts = np.zeros(3, dtype=int)
    for index in range(generator.size()):
        image = generator.load_image(index)
        data = generator.load_annotations(index)
        assert image.shape == (96, 96, 3) and 1 <= len(data["labels"]) <= 4
        counts += np.bincount(data["labels"], minlength=3)
        for (x1, y1, x2, y2), mask in zip(data["bboxes"].astype(int), data["masks"]):
            assert max(x2 - x1, y2 - y1) >= 0.15 * 96
            assert mask[y1:y2, x1:x2].sum() == mask.sum() >= 0.7 * (0.2 * 96) ** 2 / 2
    assert (counts > 5).all()


def test_negatives_when_min_objects_is_zero(tmp_path):
    annotations, classes = make_shapes_dataset(str(tmp_path), images=20, size=32, seed=2, min_objects=0,
                                               max_objects=1)
    with open(annotations) as handle:
        rows = list(csv.reader(handle))
    assert any(row[1:] == [""] * 6 for row in rows)
    CSVGenerator(annotations, classes)


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="size"):
        make_shapes_dataset(str(tmp_path), images=2, size=8)
    with pytest.raises(ValueError, match="min_objects"):
        make_shapes_dataset(str(tmp_path), images=2, min_objects=3, max_objects=2)


def test_object_size_options(tmp_path):
    assert main([str(tmp_path / "small"), "--images", "12", "--size", "256", "--seed", "1",
                 "--min-object-size", "8", "--max-object-size", "20"]) == 0
    generator = CSVGenerator(str(tmp_path / "small" / "annotations.csv"), str(tmp_path / "small" / "classes.csv"))
    sides = []
    for index in range(generator.size()):
        for mask in generator.load_annotations(index)["masks"]:
            ys, xs = np.nonzero(mask)
            sides.append(max(xs.max() - xs.min(), ys.max() - ys.min()) + 1)
    assert len(sides) >= 12 and 7 <= min(sides) and max(sides) <= 21
    with pytest.raises(ValueError, match="object sizes 30 to 20 pixels do not fit 256 pixel images"):
        make_shapes_dataset(str(tmp_path / "bad"), images=1, size=256, min_object_size=30, max_object_size=20)
    assert main([str(tmp_path / "bad"), "--size", "64", "--max-object-size", "80"]) == 2
