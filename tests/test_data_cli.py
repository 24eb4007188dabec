"""maskrcnn-data check / anchors / convert, run in-process on small files the tests write."""

import json
import os

import numpy as np
import pytest

from keras_maskrcnn.bin.data import main
from keras_maskrcnn.preprocessing.anchor_coverage import collect_objects, covered_objects
from keras_maskrcnn.preprocessing.coco import CocoGenerator
from keras_maskrcnn.preprocessing.csv_generator import CSVGenerator
from keras_maskrcnn.utils.anchors import AnchorParameters
from keras_maskrcnn.utils.config import anchor_parameters_from_file


@pytest.fixture(scope="module")
def small_objects(tmp_path_factory):
    """A shapes set of 8-16 px objects in 128 px images (most miss the default anchors)."""
    from keras_maskrcnn.datasets.shapes import make_shapes_dataset

    root = tmp_path_factory.mktemp("small_objects")
    return make_shapes_dataset(str(root), images=10, size=128, seed=5, min_object_size=8, max_object_size=16)


def csv_args(paths):
    return ["csv", paths[0], paths[1]]


def test_check_prints_counts_sizes_and_coverage(small_objects, capsys, tmp_path):
    assert main(["check", "--image-min-side", "128", "--image-max-side", "128", *csv_args(small_objects)]) == 0
    out = capsys.readouterr().out
    generator = CSVGenerator(*small_objects, image_min_side=128, image_max_side=128)
    objects = collect_objects(generator)
    covered = covered_objects(objects, AnchorParameters.default)
    assert f"images: {generator.size()} read (0 negatives without objects)" in out
    assert f"objects: {len(objects)}\n" in out
    assert f"  small    {len(objects):7d}" in out
    assert f"  all      {len(objects):7d}" in out and f"{100 * covered.mean():.1f}% ({covered.sum()})" in out
    assert "smaller than the smallest anchor (32 px) can match" in out
    assert "problems: none found" in out
    assert "plots: skipped (--plots DIR writes them)" in out


def test_check_plots(small_shapes, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    plots = tmp_path / "plots"
    assert main(["check", "csv", small_shapes["train"], small_shapes["classes"], "--config", small_shapes["config"],
                 "--image-min-side", "64", "--image-max-side", "64", "--plots", str(plots),
                 "--mosaic-images", "3"]) == 0
    out = capsys.readouterr().out
    assert "anchors of " + small_shapes["config"] in out
    assert sorted(os.listdir(plots)) == ["box_sizes.png", "classes.png", "mosaic.png"]
    import cv2

    mosaic = cv2.imread(str(plots / "mosaic.png"))
    assert mosaic.shape == (512, 512, 3)  # 3 images in a 2 x 2 grid of 256 px tiles
    assert all(cv2.imread(str(plots / name)) is not None for name in ("box_sizes.png", "classes.png"))


def test_anchors_writes_a_config_that_covers_more(small_objects, capsys, tmp_path):
    output = tmp_path / "anchors.ini"
    assert main(["anchors", "csv", *small_objects, "--image-min-side", "128", "--image-max-side", "128",
                 "--output", str(output), "--generations", "300"]) == 0
    out = capsys.readouterr().out
    fitted = anchor_parameters_from_file(str(output))
    assert fitted.num_anchors() == 9 and fitted.strides == AnchorParameters.default.strides
    objects = collect_objects(CSVGenerator(*small_objects), 128, 128)
    before, after = covered_objects(objects, AnchorParameters.default), covered_objects(objects, fitted)
    assert after.sum() > before.sum()
    row = [line for line in out.splitlines() if line.startswith("  all ")][0].split()
    assert row[1] == str(len(objects)) and row[3] == f"({before.sum()})" and row[5] == f"({after.sum()})"
    assert f"written: {output} (pass it to maskrcnn-train --config)" in out
    assert output.read_text().startswith("# anchors fitted by maskrcnn-data anchors to csv ")


def test_anchors_with_other_counts(small_objects, capsys, tmp_path):
    output = tmp_path / "four.ini"
    assert main(["anchors", "csv", *small_objects, "--num-scales", "2", "--num-ratios", "2", "--generations", "20",
                 "--output", str(output)]) == 0
    assert "anchors per location: 9 -> 4" in capsys.readouterr().out
    assert anchor_parameters_from_file(str(output)).num_anchors() == 4


def test_convert_csv_to_coco_and_back(small_shapes, capsys, tmp_path):
    root = tmp_path / "coco"
    output = root / "annotations" / "instances_train.json"
    assert main(["convert", "csv", small_shapes["train"], small_shapes["classes"], "--to", "coco", str(output),
                 "--coco-images", str(root / "images" / "train"), "--copy-images"]) == 0
    out = capsys.readouterr().out
    assert f"written: {output}" in out and "4 images written beside the annotations" in out
    source = CSVGenerator(small_shapes["train"], small_shapes["classes"])
    back = CocoGenerator(str(root), "train")
    for index in range(source.size()):
        a, b = source.load_annotations(index), back.load_annotations(index)
        assert len(a["masks"]) == len(b["masks"])
        for mask_a, mask_b in zip(a["masks"], b["masks"]):
            np.testing.assert_array_equal(mask_a, mask_b)
    assert main(["convert", "coco", str(root), "--coco-set", "train", "--to", "csv", str(tmp_path / "csv")]) == 0
    again = CSVGenerator(str(tmp_path / "csv" / "annotations.csv"), str(tmp_path / "csv" / "classes.csv"))
    for index in range(source.size()):
        for mask_a, mask_b in zip(source.load_annotations(index)["masks"], again.load_annotations(index)["masks"]):
            np.testing.assert_array_equal(mask_a, mask_b)
    assert json.loads(output.read_text())["categories"][0] == {"id": 1, "name": "circle"}


@pytest.mark.parametrize("arguments, message", [
    (["convert", "--to", "xml", "out.xml"], "--to: format 'xml' is not 'coco' or 'csv'"),
    (["convert", "--to", "coco", "out.txt"], "--to coco: 'out.txt' is not a .json file name"),
    (["convert"], "--to coco OUT.json or --to csv OUT_DIR is required"),
    (["anchors"], "--output FILE.ini is required"),
    (["check", "--config", "missing.ini"], "config file 'missing.ini' does not exist"),
])
def test_argument_errors(small_shapes, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments + ["csv", small_shapes["train"], small_shapes["classes"]])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_imports_no_keras():
    import subprocess
    import sys

    code = ("import sys, contextlib, io\nfrom keras_maskrcnn.bin import data\n"
            "for args in (['--help'], ['check', '--help'], ['anchors', 'csv', '--help'], ['convert', '--help']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n            data.main(args)\n        except SystemExit:\n            pass\n"
            "print(sorted(n for n in ('keras', 'tensorflow', 'jax', 'torch') if n in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
