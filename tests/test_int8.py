"""int8 export: a tiny model quantizes with ONNX Runtime and NNCF, its int8 artifacts load and predict
through the Predictor, and the AP check passes when calibration is sound and fails (naming both
numbers) when it is not.

The model is VGG16 with 32-channel pyramid and heads at 64 px (weights set by
`utils.synthetic.informative_weights` so that scores spread out), on 16 shapes pictures. Its
random weights find nothing real, so the check set's ground truth is the float model's own confident
detections (boxes, classes and masks written as a CSV data set): the float model scores AP50 1 on
it, and the int8 artifact must find the same objects with the same masks.
"""

import json
import os
import re

import cv2
import keras
import numpy as np
import pytest

# onnxruntime, openvino and nncf are in the test extra: a missing one is an error, not a skip
import nncf  # noqa: E402,F401
import onnxruntime  # noqa: E402,F401
import openvino  # noqa: E402,F401

from keras_maskrcnn import Predictor  # noqa: E402
from keras_maskrcnn.bin import export as export_cli  # noqa: E402
from keras_maskrcnn.datasets.shapes import CLASSES, make_shapes_dataset  # noqa: E402
from keras_maskrcnn.models import backbone, export_model, save_model  # noqa: E402
from keras_maskrcnn.models import quantize  # noqa: E402
from keras_maskrcnn.preprocessing.csv_generator import CSVGenerator  # noqa: E402
from keras_maskrcnn.utils.synthetic import informative_weights  # noqa: E402

SIZE = 64
PICTURES = 16
LABEL_SCORE = 0.3  # the float model's detections above this are the check set's ground truth
# A tiny model of random weights loses more to int8 than a trained one (the demo model loses nothing,
# benchmarks/README), so the cases here allow this drop: sound calibration stays within it, calibration
# on blank pictures does not.
MAX_AP_DROP = "0.25"


def _pseudo_labelled(model, images_dir, out_dir):
    """Writes out_dir/annotations.csv and classes.csv whose objects are the model's detections above
    LABEL_SCORE on the pictures of images_dir; returns (annotations, classes, number of objects)."""
    predictor = Predictor(model, score_threshold=LABEL_SCORE, image_min_side=SIZE, image_max_side=SIZE,
                          pad_multiple=32, backbone="vgg16", classes=list(CLASSES))
    os.makedirs(os.path.join(out_dir, "masks"), exist_ok=True)
    rows, objects = [], 0
    for name in sorted(os.listdir(images_dir)):
        path = os.path.join(images_dir, name)
        result = predictor.predict_images([cv2.imread(path)])[0]
        kept = 0
        for index, (label, mask) in enumerate(zip(result.labels, result.masks)):
            ys, xs = np.nonzero(mask)
            if xs.size < 4:
                continue
            mask_file = os.path.join(out_dir, "masks", f"{os.path.splitext(name)[0]}_{index:02d}.png")
            cv2.imwrite(mask_file, mask.astype(np.uint8) * 255)
            rows.append(f"{path},{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1},{CLASSES[label]},{mask_file}")
            kept += 1
        if not kept:
            rows.append(f"{path},,,,,,")
        objects += kept
    annotations = os.path.join(out_dir, "annotations.csv")
    classes = os.path.join(out_dir, "classes.csv")
    with open(annotations, "w") as handle:
        handle.write("\n".join(rows) + "\n")
    with open(classes, "w") as handle:
        handle.write("".join(f"{name},{label}\n" for label, name in enumerate(CLASSES)))
    return annotations, classes, objects


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """dict(model, keras_file, annotations, classes, generator (the pseudo-labelled set), root)."""
    root = tmp_path_factory.mktemp("int8")
    make_shapes_dataset(str(root / "shapes"), images=PICTURES, size=SIZE, seed=3)
    keras.utils.set_random_seed(2)
    net = backbone("vgg16")
    model = net.maskrcnn(num_classes=len(CLASSES), max_detections=16, feature_size=32, mask_feature_size=16)
    images_dir = str(root / "shapes" / "images")
    pictures = np.stack([cv2.imread(os.path.join(images_dir, name)) for name in sorted(os.listdir(images_dir))])
    informative_weights(model, net.preprocess_image(pictures[:8].astype(np.float32)), bias=-1.0)
    keras_file = str(root / "model.keras")
    save_model(model, keras_file, backbone="vgg16", classes=list(CLASSES), image_min_side=SIZE,
               image_max_side=SIZE, pad_multiple=32)
    annotations, classes, objects = _pseudo_labelled(model, images_dir, str(root / "labels"))
    assert objects >= PICTURES, f"the float model found only {objects} objects to check against"
    generator = CSVGenerator(annotations, classes, image_min_side=SIZE, image_max_side=SIZE, pad_multiple=32,
                             preprocess_image=net.preprocess_image, shuffle_groups=False)
    return dict(model=model, keras_file=keras_file, annotations=annotations, classes=classes,
                generator=generator, root=root)


def test_onnx_int8_export_passes_the_ap_check_and_predicts(tiny, capsys):
    out = str(tiny["root"] / "onnx" / "model-int8.onnx")
    code = export_cli.main([tiny["keras_file"], out, "--format", "onnx", "--int8", "--calibration-images", "12",
                            "--max-ap-drop", MAX_AP_DROP,
                            "--calibration", "csv", tiny["annotations"], tiny["classes"],
                            "--check-data", "csv", tiny["annotations"], tiny["classes"]])
    printed = capsys.readouterr().out
    assert code == 0
    with open(out + ".json") as handle:
        info = json.load(handle)
    check = info["int8_check"]
    assert f"int8 check: {quantize.describe_check(check)}" in printed, printed
    assert re.search(r"mask AP50 float (0\.9\d+|1\.0000), int8 \d\.\d{4} \(drop", printed), printed
    assert info["precision"] == "int8"
    assert info["quantization"]["format"] == "QDQ" and info["quantization"]["calibration_images"] == 12
    assert check["float"]["mask_AP50"] >= 0.9, check  # the float model finds its own detections
    assert check["passed"] and check["drop"] <= float(MAX_AP_DROP), check
    assert info["size"] < info["float_size"] / 2  # int8 weights
    assert not [name for name in os.listdir(os.path.dirname(out)) if name.startswith(".float-")]

    import onnx

    graph = onnx.load(out).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    # only convolutions run in int8 (QDQ around them); the post-processing runs float operations
    types = {node.op_type for node in graph.node}
    assert not {t for t in types if t.startswith("QLinear") or t.startswith("QGemm")}
    assert {"Sigmoid", "TopK"} <= types

    predictor = Predictor(out, score_threshold=LABEL_SCORE)
    assert predictor.runtime == "onnxruntime" and predictor.transform.min_side == SIZE
    image = tiny["generator"].load_image(0)
    result = predictor.predict_images([image])[0]
    expected = Predictor(tiny["model"], score_threshold=LABEL_SCORE, image_min_side=SIZE, image_max_side=SIZE,
                         pad_multiple=32, backbone="vgg16").predict_images([image])[0]
    assert len(result) == len(expected) > 0
    assert sorted(result.labels.tolist()) == sorted(expected.labels.tolist())
    assert result.masks.shape == (len(result),) + image.shape[:2]


def test_openvino_int8_quantizes_loads_and_predicts(tiny):
    # No AP check here: NNCF on this random-weights model loses most of its AP50 (on the trained demo
    # model it loses nothing, benchmarks/README); the check itself is tested with ONNX Runtime.
    out = str(tiny["root"] / "openvino" / "model-int8.xml")
    info = export_model(tiny["model"], out, "openvino", int8=True, calibration=tiny["generator"],
                        calibration_images=12, check=False,
                        metadata=dict(backbone="vgg16", classes=list(CLASSES), image_min_side=SIZE,
                                      image_max_side=SIZE, pad_multiple=32))
    assert info["precision"] == "int8" and info["quantization"]["tool"] == "nncf.quantize"
    assert info["quantization"]["calibration_images"] == 12 and "int8_check" not in info
    assert os.path.exists(out[:-4] + ".bin") and info["size"] < info["float_size"] / 2

    import openvino as ov

    types = {op.get_type_name() for op in ov.Core().read_model(out).get_ops()}
    assert "FakeQuantize" in types
    result = Predictor(out, score_threshold=LABEL_SCORE).predict_images([tiny["generator"].load_image(1)])[0]
    assert len(result) > 0 and set(result.names) <= set(CLASSES)


def test_blank_calibration_fails_the_ap_check_with_both_numbers(tiny):
    out = str(tiny["root"] / "blank" / "model-int8.onnx")
    blank = [np.zeros((SIZE, SIZE, 3), np.uint8)] * 8
    with pytest.raises(quantize.Int8CheckError) as caught:
        export_model(tiny["model"], out, "onnx", int8=True, calibration=blank, check_data=tiny["generator"],
                     max_ap_drop=float(MAX_AP_DROP),
                     metadata=dict(backbone="vgg16", image_min_side=SIZE, image_max_side=SIZE, pad_multiple=32))
    message = str(caught.value)
    assert re.search(r"loses too much accuracy \(removed\): mask AP50 float (0\.9\d+|1\.0000), int8 0\.\d{4} "
                     r"\(drop \+0\.\d{4}", message), message
    assert f"allowed {float(MAX_AP_DROP):.4f}" in message
    assert not os.path.exists(out) and not os.path.exists(out + ".json")
    assert not [name for name in os.listdir(os.path.dirname(out)) if name.startswith(".float-")]


def test_int8_argument_errors(tiny, tmp_path, capsys):
    cases = [
        (["--format", "litert", "--int8", "--calibration", "csv", "a.csv", "b.csv"], "out.tflite",
         "--int8 is for the onnx and openvino formats, not litert"),
        (["--format", "onnx", "--int8"], "out.onnx", "--int8 needs --calibration TYPE ..."),
        (["--format", "onnx", "--calibration", "csv", "a.csv", "b.csv"], "out.onnx",
         "--calibration and --check-data go with --int8"),
        (["--format", "onnx", "--int8", "--calibration", "csv", tiny["annotations"], tiny["classes"], "--bogus"],
         "out.onnx", "unrecognized --bogus"),
    ]
    for extra, name, message in cases:
        with pytest.raises(SystemExit) as caught:
            export_cli.parse_args([tiny["keras_file"], str(tmp_path / name)] + extra)
        assert caught.value.code == 2
        assert message in capsys.readouterr().err


def test_split_dataset_arguments_and_held_out_pictures():
    rest, found = export_cli.split_dataset_arguments(
        ["m.keras", "o.onnx", "--int8", "--calibration", "yolo", "d.yaml", "--split", "train",
         "--check-data", "csv", "a.csv", "c.csv"])
    assert rest == ["m.keras", "o.onnx", "--int8"]
    assert found == {"--calibration": ["yolo", "d.yaml", "--split", "train"], "--check-data": ["csv", "a.csv", "c.csv"]}

    class Pictures:
        def size(self):
            return 10

    calibration, check = quantize.split_calibration(Pictures(), count=5)
    assert check.size() == 2 and calibration.size() == 5
    assert not set(calibration._indices) & set(check._indices)
    assert quantize.evenly_spaced(10, 3).tolist() == [0, 3, 6]
    assert quantize.evenly_spaced(2, 5).tolist() == [0, 1]


def _write_yolo(root, splits):
    """root/data.yaml with the splits {name: pictures} (64 px, one square each) under root/images/NAME."""
    for split, count in splits.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for index in range(count):
            image = np.full((SIZE, SIZE, 3), 40, np.uint8)
            image[16:48, 16:48] = 220
            cv2.imwrite(str(root / "images" / split / f"{split}{index}.png"), image)
            (root / "labels" / split / f"{split}{index}.txt").write_text("0 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n")
    entries = "".join(f"{split}: images/{split}\n" for split in splits)
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(CLASSES))
    (root / "data.yaml").write_text(f"path: {root}\n{entries}names:\n{names}")
    return str(root / "data.yaml")


class _Stop(Exception):
    pass


def test_check_data_defaults_to_the_calibration_sets_validation_split(tiny, tmp_path, monkeypatch, capsys):
    from keras_maskrcnn.models import export as export_module

    seen = {}

    def fake_export(model, path, fmt, **options):
        seen.update(options)
        raise _Stop

    monkeypatch.setattr(export_module, "export_model", fake_export)
    data_yaml = _write_yolo(tmp_path / "yolo", {"train": 3, "val": 2})

    def check_data_of(*dataset):
        seen.clear()
        with pytest.raises(_Stop):
            export_cli.main([tiny["keras_file"], str(tmp_path / "out.onnx"), "--format", "onnx", "--int8",
                             "--calibration", *dataset])
        return seen["check_data"], capsys.readouterr().out

    check, printed = check_data_of("yolo", data_yaml)
    assert check.size() == 2 and all("/images/val/" in check.image_path(i) for i in range(2))
    assert f"int8 check on the calibration set's validation split: 2 pictures of the 'val' split of {data_yaml}" in printed
    # calibrating on the val split itself, or on a csv set without --val-annotations: a held-out part
    # of the calibration set (export_model keeps it out and says so)
    assert check_data_of("yolo", data_yaml, "--split", "val")[0] is None
    assert check_data_of("csv", tiny["annotations"], tiny["classes"])[0] is None
    check, printed = check_data_of("csv", tiny["annotations"], tiny["classes"], "--val-annotations", tiny["annotations"])
    assert check.size() == PICTURES and f"{PICTURES} pictures of {tiny['annotations']}" in printed
    # --check-data wins over the validation split
    check, printed = check_data_of("yolo", data_yaml, "--check-data", "csv", tiny["annotations"], tiny["classes"])
    assert check.size() == PICTURES and f"int8 check on the {PICTURES} pictures of --check-data" in printed

    # a COCO folder's val2017 annotations, unless the calibration set is val2017 itself
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations" / "instances_val2017.json").write_text("{}")
    namespace = export_cli.dataset_arguments(export_cli.parse_args([tiny["keras_file"], "o.onnx", "--format", "onnx"])[0],
                                             "--calibration", ["coco", str(coco)])
    assert export_cli.validation_source(namespace)[0] == dict(set_name="val2017")
    namespace.coco_set = "val2017"
    assert export_cli.validation_source(namespace) == (None, None)


def test_calibration_batches_are_made_when_asked_for():
    from keras_maskrcnn.inference.transform import InputTransform

    transform = InputTransform(min_side=SIZE, max_side=SIZE, pad_multiple=32, preprocessing="caffe")
    pictures = [np.full((SIZE, SIZE, 3), value, np.uint8) for value in (0, 50, 100, 150, 200)]
    reads = []

    class Counted(list):
        def __getitem__(self, index):
            reads.append(index)
            return list.__getitem__(self, index)

    batches = quantize.calibration_batches(Counted(pictures), transform, count=3)
    assert len(batches) == 3 and reads == [0, 1, 3]  # each picture read once to check it
    third = batches[2]
    assert reads[-1] == 3 and third.shape == (1, SIZE, SIZE, 3) and third.dtype == np.float32
    np.testing.assert_array_equal(third, transform.prepare([pictures[3]])[0])
    assert [batch[0, 0, 0, 0] for batch in batches] == [batch[0, 0, 0, 0] for batch in batches[:]]
    assert len(list(batches)) == 3


def test_benchmark_writes_a_row_per_format(tiny, tmp_path, capsys):
    """maskrcnn-benchmark, Keras row only (the exports are measured by the tests above): one row of
    4 pictures, written as JSON and printed as a table. Its AP is `quantize.ap_of` of the saved
    model with the model's own 16 detection rows (as its exports have), not the Predictor's 100."""
    from keras_maskrcnn.bin import benchmark

    out = tmp_path / "rows.json"
    assert benchmark.main([tiny["keras_file"], "--formats", "keras", "--images", "4", "--warmup", "1",
                           "--output", str(out), "csv", tiny["annotations"], tiny["classes"]]) == 0
    rows = json.loads(out.read_text())
    assert [(row["format"], row["precision"], row["images"]) for row in rows] == [("keras", "float32", 4)]
    saved = Predictor(tiny["keras_file"], score_threshold=0.05, max_detections=16).model
    reference = quantize.ap_of(quantize.Subset(tiny["generator"], range(4)), saved, max_detections=16)
    assert rows[0]["mask_AP50"] == pytest.approx(reference["mask_AP50"], abs=1e-9)
    assert rows[0]["mask_AP"] == pytest.approx(reference["mask_AP"], abs=1e-9)
    assert rows[0]["median_ms"] > 0 and rows[0]["peak_mb"] > 0
    printed = capsys.readouterr()
    assert re.search(r"^keras\s+float32\s", printed.out, flags=re.M)
