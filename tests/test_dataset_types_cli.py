"""The command-line tools on every data set type (coco JSON anywhere, csv, labelme, yolo): their
data set options, the errors they stop with before any model is built, the COCO annotation
checks, and the README's one command per format, run as written on tiny exports of the shapes
set (VGG16 at 64 px, one step).
"""

import csv
import json
import os
import re
import shlex
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from keras_maskrcnn.bin import common, debug, evaluate, train
from keras_maskrcnn.datasets.shapes import CLASSES
from keras_maskrcnn.models import read_metadata
from keras_maskrcnn.models.backbone import Backbone
from keras_maskrcnn.preprocessing.bad_images import AnnotationWarning

README = Path(__file__).resolve().parents[1] / "README.md"
SIZE = ["--image-min-side", "64", "--image-max-side", "64"]
CHEAP = ["--backbone", "vgg16", "--epochs", "1", "--steps", "1", "--feature-size", "32", "--mask-feature-size", "16",
         "--mask-rois", "2", "--max-detections", "5", "--tensorboard-dir", "", "--seed", "0", "--run-eagerly"] + SIZE
"""Options appended to the README's commands: the smallest model, one step (not compiled), 64 px pictures."""


# tiny exports of the shapes set in each tool's format

def shapes_objects(annotations_csv):
    """[(image file, [(class name, 0/1 mask), ...]), ...] of a shapes CSV data set."""
    folder = os.path.dirname(annotations_csv)
    images = {}
    with open(annotations_csv) as handle:
        for path, *_, name, mask_path in csv.reader(handle):
            mask = (cv2.imread(os.path.join(folder, mask_path), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8)
            images.setdefault(os.path.join(folder, path), []).append((name, mask))
    return list(images.items())


def outline(mask):
    """The largest outer contour of a 0/1 mask as (N, 2) float pixel corners, N >= 3."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    points = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(float)
    assert len(points) >= 3
    return points


def write_roboflow(folder, annotations_csv):
    """A Roboflow COCO export of one split: folder/_annotations.coco.json beside the pictures,
    ids from 0, category 0 named after the project without annotations."""
    folder.mkdir(parents=True)
    categories = [{"id": 0, "name": "shapes", "supercategory": "none"}] + [
        {"id": i + 1, "name": name, "supercategory": "shapes"} for i, name in enumerate(CLASSES)]
    images, annotations = [], []
    for image_id, (path, objects) in enumerate(shapes_objects(annotations_csv)):
        shutil.copy(path, folder / os.path.basename(path))
        height, width = objects[0][1].shape
        images.append({"id": image_id, "license": 1, "file_name": os.path.basename(path), "height": height,
                       "width": width, "date_captured": "2024-01-01T00:00:00+00:00"})
        for name, mask in objects:
            points = outline(mask)
            x1, y1 = points.min(axis=0)
            x2, y2 = points.max(axis=0)
            annotations.append({"id": len(annotations), "image_id": image_id, "category_id": CLASSES.index(name) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(mask.sum()),
                                "segmentation": [points.ravel().tolist()], "iscrowd": 0})
    data = {"info": {"description": "shapes"}, "licenses": [{"id": 1, "name": "CC BY 4.0"}],
            "categories": categories, "images": images, "annotations": annotations}
    (folder / "_annotations.coco.json").write_text(json.dumps(data))
    return folder / "_annotations.coco.json"


def write_labelme(folder, annotations_csv):
    """A folder of labelme files (polygons), each beside its picture."""
    folder.mkdir(parents=True)
    for path, objects in shapes_objects(annotations_csv):
        shutil.copy(path, folder / os.path.basename(path))
        height, width = objects[0][1].shape
        shapes = [{"label": name, "points": outline(mask).tolist(), "group_id": None, "description": "",
                   "shape_type": "polygon", "flags": {}} for name, mask in objects]
        document = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": os.path.basename(path),
                    "imageData": None, "imageHeight": height, "imageWidth": width}
        (folder / (Path(path).stem + ".json")).write_text(json.dumps(document))


def write_yolo(root, splits):
    """An ultralytics YOLO segmentation data set: root/data.yaml, root/images/SPLIT/*.png and
    root/labels/SPLIT/*.txt (class and normalised polygon per line)."""
    for split, annotations_csv in splits.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for path, objects in shapes_objects(annotations_csv):
            shutil.copy(path, root / "images" / split / os.path.basename(path))
            height, width = objects[0][1].shape
            lines = []
            for name, mask in objects:
                points = outline(mask) / [width, height]
                lines.append(" ".join([str(CLASSES.index(name))] + [f"{v:.6f}" for v in points.ravel()]))
            (root / "labels" / split / (Path(path).stem + ".txt")).write_text("\n".join(lines) + "\n")
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(CLASSES))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return root / "data.yaml"


@pytest.fixture(scope="module")
def exports(small_shapes, tmp_path_factory):
    """The shapes train (4 images) and val (2 images) sets as the README's my-roboflow/,
    my-labelme/ and my-yolo/ in a folder of their own (the README commands' working folder)."""
    root = tmp_path_factory.mktemp("exports")
    write_roboflow(root / "my-roboflow" / "train", small_shapes["train"])
    write_roboflow(root / "my-roboflow" / "valid", small_shapes["val"])
    write_labelme(root / "my-labelme" / "train", small_shapes["train"])
    write_labelme(root / "my-labelme" / "val", small_shapes["val"])
    (root / "my-labelme" / "labels.txt").write_text("__ignore__\n_background_\n" + "\n".join(CLASSES) + "\n")
    write_yolo(root / "my-yolo", {"train": small_shapes["train"], "val": small_shapes["val"]})
    return dict(small_shapes, exports=root)


def error_of(main, args, capsys):
    """The one-line argparse error of main(args) (which must exit with status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: ")
    return error.splitlines()[-1]


def generators(args):
    """maskrcnn-train's (training, validation) generators for args (VGG16 preprocessing)."""
    parser, parsed = train.parse_args(args)
    return train.create_generators(parser, parsed, Backbone("vgg16"), None)


# data set options

def test_coco_json_anywhere_with_its_validation_json(exports, capsys, no_model_building):
    root = exports["exports"]
    with pytest.warns(AnnotationWarning, match="1 of 4 categories have no annotations here .*: 0 'shapes'"):
        training, validation = generators(SIZE + ["coco", str(root / "my-roboflow/train/_annotations.coco.json"),
                                                  "--val-annotations",
                                                  str(root / "my-roboflow/valid/_annotations.coco.json")])
    assert (training.size(), validation.size()) == (4, 2)
    assert common.class_names(training) == common.class_names(validation) == ["shapes"] + list(CLASSES)
    assert validation.image_path(0) == str(root / "my-roboflow/valid/00000.png")
    labels = np.concatenate([training.load_annotations(i)["labels"] for i in range(4)])
    assert labels.min() >= 1 and set(labels) == {1, 2, 3}  # label 0, the project, has no objects
    inputs, _ = training[0]
    assert inputs["image"].shape[1:3] == (64, 64)


def test_coco_json_with_an_images_folder_elsewhere(exports, tmp_path, no_model_building):
    source = exports["exports"] / "my-roboflow" / "train"
    shutil.copytree(source, tmp_path / "images")
    (tmp_path / "annotations").mkdir()
    shutil.move(tmp_path / "images" / "_annotations.coco.json", tmp_path / "annotations" / "instances_default.json")
    with pytest.warns(AnnotationWarning):
        training, validation = generators(SIZE + ["--no-evaluation", "coco", str(tmp_path / "annotations" /
                                                                                "instances_default.json"),
                                                  "--images", str(tmp_path / "images")])
    assert training.size() == 4 and validation is None and training.load_image(0).shape == (64, 64, 3)


def test_coco_folder_trains_without_a_validation_set(exports, tmp_path, capsys, no_model_building):
    """maskrcnn-train coco DIR --no-evaluation needs no instances_val2017.json; without
    --no-evaluation a line says there is no evaluation."""
    shutil.copytree(exports["exports"] / "my-roboflow" / "train", tmp_path / "images" / "train2017")
    (tmp_path / "annotations").mkdir()
    shutil.move(tmp_path / "images" / "train2017" / "_annotations.coco.json",
                tmp_path / "annotations" / "instances_train2017.json")
    with pytest.warns(AnnotationWarning):
        training, validation = generators(SIZE + ["--no-evaluation", "coco", str(tmp_path)])
    assert training.size() == 4 and validation is None
    assert "no evaluation" not in capsys.readouterr().out
    with pytest.warns(AnnotationWarning):
        training, validation = generators(SIZE + ["coco", str(tmp_path)])
    assert validation is None
    assert (f"maskrcnn-train: {tmp_path}/annotations/instances_val2017.json does not exist and no --val-annotations "
            f"given, so there is no validation set and no evaluation after each epoch") in capsys.readouterr().out
    error = error_of(train.main, SIZE + ["--compute-val-loss", "coco", str(tmp_path)], capsys)
    assert error.endswith("--compute-val-loss needs --val-annotations (a validation set)")


def test_labelme_folders_and_their_classes(exports, tmp_path, capsys, no_model_building):
    root = exports["exports"] / "my-labelme"
    training, validation = generators(SIZE + ["labelme", str(root / "train"), "--classes", str(root / "labels.txt"),
                                              "--val-folder", str(root / "val")])
    assert (training.size(), validation.size()) == (4, 2)
    assert common.class_names(training) == common.class_names(validation) == list(CLASSES)
    # without labels.txt each folder's classes are the labels it holds: a validation folder
    # without triangles would number the classes otherwise, and is refused
    shutil.copytree(root / "val", tmp_path / "val")
    for path in (tmp_path / "val").glob("*.json"):
        document = json.loads(path.read_text())
        document["shapes"] = [shape for shape in document["shapes"] if shape["label"] != "triangle"]
        path.write_text(json.dumps(document))
    error = error_of(train.main, SIZE + ["labelme", str(root / "train"), "--val-folder", str(tmp_path / "val")],
                     capsys)
    assert re.search(r"the validation set has [12] class(es)?, the training set 3 \(give both the same --classes "
                     r"labels.txt\)$", error)


@pytest.mark.parametrize("args, message", [
    (["coco", "/no/such.json"], "COCO annotations file '/no/such.json' does not exist"),
    (["coco", "/no/such"], "COCO data set folder '/no/such' does not exist (PATH is a COCO JSON file or a folder"),
    (["coco", "ROBOFLOW"], "COCO data set folder 'ROBOFLOW' has no annotations/instances_train2017.json; it holds "
                           "_annotations.coco.json: pass that file as PATH"),
    (["coco", "ROBOFLOW/_annotations.coco.json", "--images", "/no/dir"], "--images folder '/no/dir' does not exist"),
    (["coco", "ROBOFLOW/_annotations.coco.json", "--val-images", "ROBOFLOW"],
     "--val-images goes with --val-annotations FILE.json"),
    (["coco", "ROBOFLOW/_annotations.coco.json", "--val-annotations", "/no/val.json"],
     "validation annotations file '/no/val.json' does not exist"),
    (["coco", "ROBOFLOW/_annotations.coco.json", "--val-annotations", "ROBOFLOW/_annotations.coco.json",
      "--val-images", "/no/dir"], "--val-images folder '/no/dir' does not exist"),
    (["labelme", "/no/folder"], "labelme folder '/no/folder' does not exist"),
    (["labelme", "LABELME", "--classes", "/no/labels.txt"], "--classes file '/no/labels.txt' does not exist"),
    (["labelme", "LABELME", "--val-folder", "/no/folder"], "--val-folder '/no/folder' does not exist"),
    (["yolo", "/no/data.yaml"], "YOLO data set file '/no/data.yaml' does not exist"),
    (["yolo", "YOLO", "--split", "dev"], "argument --split: invalid choice: 'dev'"),
    (["--skip-bad-annotations", "labelme", "LABELME"], "--skip-bad-annotations is for coco data sets"),
])
def test_train_data_set_argument_errors(args, message, exports, capsys, no_model_building):
    root = exports["exports"]
    places = {"ROBOFLOW": str(root / "my-roboflow" / "train"), "LABELME": str(root / "my-labelme" / "train"),
              "YOLO": str(root / "my-yolo" / "data.yaml")}
    args = [re.sub(r"^(ROBOFLOW|LABELME|YOLO)", lambda m: places[m.group(1)], arg) for arg in args]
    message = re.sub(r"ROBOFLOW", places["ROBOFLOW"], message)
    assert message in error_of(train.main, args, capsys)


# COCO annotations checked at start-up

def broken_export(exports, tmp_path, **fields):
    """A copy of the Roboflow train export whose annotation 2 (image 00000.png, id 0) has `fields`."""
    shutil.copytree(exports["exports"] / "my-roboflow" / "train", tmp_path / "train")
    path = tmp_path / "train" / "_annotations.coco.json"
    data = json.loads(path.read_text())
    assert data["annotations"][2]["image_id"] == 0
    data["annotations"][2].update(fields)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("fields, message", [
    ({"category_id": 99}, r"category_id 99 is not among the categories \(0, 1, 2, 3\)"),
    ({"segmentation": []}, "segmentation is empty"),
    ({"segmentation": [[10, 10, 20, 20]]}, "polygon 0 has 2 points; a polygon needs at least 3"),
    ({"segmentation": [[10, 10, 20, 20, 30]]}, "polygon 0 has an odd number of coordinates"),
    ({"segmentation": {"size": [32, 32], "counts": [1024]}}, r"RLE size \[32, 32\] is not the image's"),
    ({"bbox": [60, 10, 20, 20]}, r"bbox \[60, 10, 20, 20\] runs outside the 64x64 image"),
])
def test_bad_coco_annotations_stop_train_and_debug_before_a_model(fields, message, exports, tmp_path, capsys,
                                                                   no_model_building):
    path = broken_export(exports, tmp_path, **fields)
    expected = (rf"^maskrcnn-(train|debug): error: {re.escape(str(path))}: annotation 2 \(image '00000.png', id 0\): "
                rf"{message}.* \(--skip-bad-annotations leaves the bad annotations out with a warning\)$")
    assert re.match(expected, error_of(train.main, SIZE + ["coco", str(path)], capsys))
    assert re.match(expected, error_of(debug.main, ["--output-dir", str(tmp_path / "out"), "coco", str(path)],
                                       capsys))
    assert not (tmp_path / "out").exists()


def test_skip_bad_annotations_leaves_them_out_with_one_warning(exports, tmp_path, capsys, no_model_building):
    path = broken_export(exports, tmp_path, category_id=99)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        training, _ = generators(SIZE + ["--no-evaluation", "--skip-bad-annotations", "coco", str(path)])
    messages = [str(w.message) for w in record if issubclass(w.category, AnnotationWarning)]
    assert f"{path}: 1 of 10 annotations are bad and left out: annotation 2 (image '00000.png', id 0): " \
           f"category_id 99 is not among the categories (0, 1, 2, 3)" in messages
    assert 2 not in training.coco.anns and len(training.coco.anns) == 9
    # the same flag after the data set type; the warning shows as one plain line
    _, args = train.parse_args(["coco", str(path), "--skip-bad-annotations"])
    assert args.skip_bad_annotations
    original = warnings.formatwarning
    try:
        common.plain_bad_image_warnings("maskrcnn-train")
        line = warnings.formatwarning(messages[0], AnnotationWarning, "coco.py", 1)
    finally:
        warnings.formatwarning = original
    assert line == f"maskrcnn-train: warning: {messages[0]}\n"


# the README's commands

def readme_commands():
    """The commands of the README's bash block under 'labelme, YOLO, Roboflow: your own data'."""
    section = README.read_text().split("### labelme, YOLO, Roboflow: your own data", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_has_one_training_command_per_format():
    commands = readme_commands()
    assert [shlex.split(command)[:2] for command in commands] == [
        ["maskrcnn-train", "labelme"], ["maskrcnn-train", "yolo"], ["maskrcnn-train", "coco"]]


def test_yolo_splits_of_one_yaml(exports, no_model_building):
    training, validation = generators(SIZE + ["yolo", str(exports["exports"] / "my-yolo" / "data.yaml")])
    assert (training.size(), validation.size()) == (4, 2)
    assert common.class_names(training) == common.class_names(validation) == list(CLASSES)
    training, validation = generators(SIZE + ["--no-evaluation", "yolo", str(exports["exports"] / "my-yolo" /
                                                                             "data.yaml"), "--split", "val"])
    assert training.size() == 2 and validation is None


def test_yolo_without_a_val_split_trains_without_evaluation(exports, tmp_path, capsys, no_model_building):
    data_yaml = tmp_path / "data.yaml"
    text = (exports["exports"] / "my-yolo" / "data.yaml").read_text()
    data_yaml.write_text(text.replace("val: images/val\n", ""))
    training, validation = generators(SIZE + ["yolo", str(data_yaml)])
    assert training.size() == 4 and validation is None
    assert (f"maskrcnn-train: {data_yaml} has no 'val' split (--val-split), so there is no validation set and no "
            f"evaluation after each epoch (--no-evaluation silences this)") in capsys.readouterr().out
    error = error_of(train.main, SIZE + ["--compute-val-loss", "yolo", str(data_yaml)], capsys)
    assert error.endswith("--compute-val-loss needs --val-split (a validation set)")


@pytest.mark.parametrize("kind", ["labelme", "yolo"])
def test_unreadable_pictures_are_listed_and_left_out_as_for_csv(kind, exports, tmp_path, capsys, no_model_building):
    root = exports["exports"]
    if kind == "labelme":
        shutil.copytree(root / "my-labelme" / "train", tmp_path / "train")
        picture, args = tmp_path / "train" / "00002.png", ["labelme", str(tmp_path / "train")]
    else:
        shutil.copytree(root / "my-yolo", tmp_path / "yolo")
        data_yaml = tmp_path / "yolo" / "data.yaml"
        data_yaml.write_text(data_yaml.read_text().replace(str(root / "my-yolo"), str(tmp_path / "yolo")))
        picture, args = tmp_path / "yolo" / "images" / "train" / "00002.png", ["yolo", str(data_yaml)]
    picture.write_bytes(b"")
    training, _ = generators(SIZE + ["--no-evaluation"] + args)
    assert training.size() == 3
    error = capsys.readouterr().err
    assert "maskrcnn-train: warning: training set: 1 of 4 images cannot be read and is left out (at most 1 may be bad)" \
        in error and f"{picture}" in error
    (picture.parent / "00003.png").write_bytes(b"not a picture")
    with pytest.raises(SystemExit) as exit_info:
        train.main(SIZE + ["--no-evaluation"] + args)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and str(picture.parent / "00003.png") in error
    assert "maskrcnn-train: error: training set: 2 of 4 images cannot be read, more than --max-bad-images 1 allows" \
        in error


@pytest.fixture(scope="module")
def readme_runs(exports):
    """The README's training commands run in the exports folder, with CHEAP and the shapes'
    anchors appended; then their snapshots copied to the names the README's evaluate commands
    use, and a Roboflow test split. Returns the folder."""
    root = exports["exports"]
    shutil.copytree(root / "my-roboflow" / "valid", root / "my-roboflow" / "test")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for command in readme_commands():
            assert train.main(shlex.split(command)[1:] + CHEAP + ["--config", exports["config"]]) == 0
    finally:
        os.chdir(cwd)
    for kind in ("labelme", "yolo", "coco"):
        shutil.copy(root / "snapshots" / f"vgg16_{kind}_01.keras", root / "snapshots" / f"resnet50_{kind}_50.keras")
    return root


def test_readme_training_commands_run_as_written_and_evaluate_every_epoch(readme_runs):
    for kind, classes in (("labelme", list(CLASSES)), ("yolo", list(CLASSES)), ("coco", ["shapes"] + list(CLASSES))):
        metadata = read_metadata(str(readme_runs / "snapshots" / f"vgg16_{kind}_01.keras"))
        assert metadata["dataset"] == kind and metadata["classes"] == classes
        with open(readme_runs / "snapshots" / f"vgg16_{kind}.csv") as handle:
            row = next(csv.DictReader(handle))
        assert 0.0 <= float(row["mAP"]) <= 1.0  # the validation set was evaluated


def test_readme_evaluate_commands_run_as_written(readme_runs, capsys, monkeypatch):
    monkeypatch.chdir(readme_runs)
    section = README.read_text().split("### labelme, YOLO, Roboflow: your own data", 1)[1]
    block = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[1]
    commands = [shlex.split(line) for line in block.splitlines() if line.strip()]
    assert [command[:2] for command in commands] == [["maskrcnn-evaluate", kind] for kind in ("labelme", "yolo",
                                                                                               "coco")]
    for command in commands:
        assert evaluate.main(command[1:] + ["--max-detections", "5"]) == 0
        output = capsys.readouterr().out
        assert "mAP: " in output
        for name in CLASSES:
            assert f"instances of class {name} with average precision: " in output


def test_evaluate_stops_on_a_bad_coco_annotation_unless_told_to_skip_it(readme_runs, exports, tmp_path, capsys,
                                                                       no_model_building):
    path = broken_export(exports, tmp_path, segmentation=[])
    snapshot = str(readme_runs / "snapshots" / "vgg16_coco_01.keras")
    error = error_of(evaluate.main, ["coco", str(path), snapshot], capsys)
    assert error == (f"maskrcnn-evaluate: error: {path}: annotation 2 (image '00000.png', id 0): segmentation is empty "
                     f"(--skip-bad-annotations leaves the bad annotations out with a warning)")


def test_evaluate_skips_a_bad_coco_annotation_with_a_warning(readme_runs, exports, tmp_path, capsys):
    path = broken_export(exports, tmp_path, segmentation=[])
    snapshot = str(readme_runs / "snapshots" / "vgg16_coco_01.keras")
    with pytest.warns(AnnotationWarning, match=r"1 of 10 annotations are bad and left out: annotation 2 \(image "
                                               r"'00000.png', id 0\): segmentation is empty"):
        assert evaluate.main(["--skip-bad-annotations", "coco", str(path), snapshot, "--max-detections", "5"]) == 0
    assert "mAP: " in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["coco", "labelme", "yolo"])
def test_debug_draws_every_type(kind, exports, tmp_path):
    root = exports["exports"]
    args = {"coco": ["coco", str(root / "my-roboflow" / "valid" / "_annotations.coco.json")],
            "labelme": ["labelme", str(root / "my-labelme" / "val"), "--classes", str(root / "my-labelme" /
                                                                                     "labels.txt")],
            "yolo": ["yolo", str(root / "my-yolo" / "data.yaml")]}[kind]
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        assert debug.main(["--masks", "--annotations", "--output-dir", str(out)] + SIZE + args) == 0
    assert sorted(os.listdir(out)) == ["00000.png", "00001.png"]
    picture = cv2.imread(str(out / "00000.png"))
    original = cv2.imread(str(exports["root"] / "val" / "images" / "00000.png"))
    assert picture.shape == (64, 64, 3) and not np.array_equal(picture, original)
    shutil.copy(out / "00000.png", exports["root"] / f"debug_{kind}.png")


def test_the_four_generators_are_exported_lazily():
    import subprocess
    import sys

    code = ("import sys, keras_maskrcnn.preprocessing as p; print('keras' in sys.modules, sorted(p.__all__)); "
            "print([getattr(p, name).__module__ for name in p.__all__])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = result.stdout.splitlines()
    assert first == "False ['CSVGenerator', 'CocoGenerator', 'LabelmeGenerator', 'YoloGenerator']"
    assert second == str([f"keras_maskrcnn.preprocessing.{name}" for name in ("csv_generator", "coco", "labelme",
                                                                              "yolo")])
