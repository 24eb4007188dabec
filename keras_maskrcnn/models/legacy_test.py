"""Reading old `.h5` files: synthetic ones in both layouts (tests/legacy_h5_writer.py) always, the
files the original code wrote (`make legacy-reference`) when they are there."""

import os

import h5py
import numpy as np
import pytest

from keras_maskrcnn.models import load_model, load_training_model, read_metadata, save_model
from keras_maskrcnn.models.legacy_h5 import LegacyFile
from keras_maskrcnn.utils.anchors import AnchorParameters
from keras_maskrcnn.utils.compare import compare_detections, describe


def _assert_same_detections(got, expected, atol=1e-5):
    """Outputs [..., boxes, scores, labels, masks]: the same detections, values within atol (boxes 100 atol)."""
    report = compare_detections(expected[-4:], got[-4:], score_tol=atol, box_tol=100 * atol, mask_tol=atol)
    assert report["count"] > 0, "the reference has no detections: the test would prove nothing"
    assert report["same"], describe(report)


@pytest.mark.parametrize("layout", ["keras-2.2", "tf-keras"])
def test_reads_what_the_file_holds(legacy_h5, layout):
    legacy = LegacyFile(legacy_h5["maskrcnn"][layout])
    assert legacy.kind == "keras-maskrcnn"
    assert legacy.backbone == "resnet50"
    assert (legacy.num_classes, legacy.num_anchors) == (3, 12)
    assert legacy.anchor_params == AnchorParameters(ratios=(0.5, 1, 2, 3), scales=(1, 1.2, 1.6))
    assert legacy.filter == dict(nms=True, class_specific_filter=True, nms_threshold=0.5, score_threshold=0.05,
                                 max_detections=100)
    assert legacy.regression == dict(mean=[0.0] * 4, std=[0.2] * 4)
    assert legacy.keras_version == ("2.2.4" if layout == "keras-2.2" else "2.15.0")
    assert "keras-maskrcnn 0.2 model" in legacy.describe()


@pytest.mark.parametrize("layout", ["keras-2.2", "tf-keras"])
def test_load_model_gives_the_written_model(legacy_h5, layout):
    model = load_model(legacy_h5["maskrcnn"][layout], backbone_name="resnet50")
    outputs = model.predict_on_batch(legacy_h5["image"])
    assert [tuple(o.shape) for o in outputs[-4:]] == [(1, 100, 4), (1, 100), (1, 100), (1, 100, 28, 28, 3)]
    _assert_same_detections(outputs, legacy_h5["outputs"], atol=1e-6)
    assert model.get_layer("masks").roi_align.sampling == "crop_and_resize"
    assert model.get_layer("clipped_boxes").margin == 1.0


def test_saved_as_keras_it_keeps_the_old_architecture(legacy_h5, tmp_path):
    model = load_model(legacy_h5["maskrcnn"]["keras-2.2"])
    path = str(tmp_path / "converted.keras")
    save_model(model, path, **read_metadata(legacy_h5["maskrcnn"]["keras-2.2"]))
    again = load_model(path)
    assert again.get_layer("masks").roi_align.sampling == "crop_and_resize"
    assert again.get_layer("masks").mask_model.get_layer("roi_mask_features") is not None
    assert again.get_layer("clipped_boxes").margin == 1.0
    assert read_metadata(path)["legacy"]["kind"] == "keras-maskrcnn"
    _assert_same_detections(again.predict_on_batch(legacy_h5["image"]), legacy_h5["outputs"], atol=1e-6)


def test_training_model_of_an_old_file_keeps_its_roi_align(legacy_h5):
    train, metadata = load_training_model(legacy_h5["maskrcnn"]["tf-keras"])
    assert metadata["epoch"] == 0 and metadata["backbone"] == "resnet50"
    assert train.output_names == ["regression", "classification", "masks"]
    assert [t.name for t in train.inputs] == ["image", "rois"]
    assert train.get_layer("roi_align").sampling == "crop_and_resize"
    assert train.optimizer is not None


@pytest.mark.parametrize("kind", ["retinanet_inference", "retinanet_training"])
def test_keras_retinanet_files_give_the_box_model(legacy_h5, kind):
    path = legacy_h5[kind]
    assert LegacyFile(path).kind == ("keras-retinanet-inference" if kind.endswith("inference") else "keras-retinanet")
    with pytest.warns(UserWarning, match="has no mask head"):
        model = load_model(path)
    outputs = model.predict_on_batch(legacy_h5["image"])
    assert len(outputs) == 5
    assert tuple(outputs[-1].shape) == (1, 300)
    expected = legacy_h5["retinanet_outputs"]
    count = int((expected[-2] > -1).sum())
    assert count > 0
    np.testing.assert_array_equal(outputs[-1], expected[-1])
    np.testing.assert_allclose(outputs[-2], expected[-2], atol=1e-6)
    np.testing.assert_allclose(outputs[-3], expected[-3], atol=1e-4)


def test_settings_given_to_load_model_override_the_file(legacy_h5):
    model = load_model(legacy_h5["maskrcnn"]["tf-keras"], clip_margin=0, max_detections=20, pre_nms_top_k=5000)
    assert model.get_layer("clipped_boxes").margin == 0.0
    assert model.get_layer("filtered_detections").max_detections == 20
    assert model.get_layer("filtered_detections").pre_nms_top_k == 5000


def test_a_wrong_backbone_name_is_refused(legacy_h5):
    with pytest.raises(ValueError, match=r"holds a resnet50 backbone, not 'resnet101'"):
        load_model(legacy_h5["maskrcnn"]["keras-2.2"], backbone_name="resnet101")


def _plain_h5(path, layers, keras_version="2.2.4"):
    """An HDF5 model file with these (layer name, [(weight name, array)]) and no model_config."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = keras_version
        group = f.create_group("model_weights")
        for name, weights in layers:
            layer = group.create_group(name)
            layer.attrs["weight_names"] = [w for w, _ in weights]
            for w, a in weights:
                layer.create_dataset(w, data=a)
        group.attrs["layer_names"] = [n for n, _ in layers]
    return str(path)


def test_bad_files_are_refused_naming_the_path(legacy_h5, tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not a model")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(open(legacy_h5["maskrcnn"]["keras-2.2"], "rb").read()[:4096])
    kernel = [("k/kernel:0", np.zeros((3, 3, 3, 8), "float32"))]
    matterport = _plain_h5(tmp_path / "mask_rcnn_coco.h5", [("conv1", kernel), ("res2a_branch2a", kernel),
                                                              ("mrcnn_mask", kernel)])
    classifier = _plain_h5(tmp_path / "classifier.h5", [("dense_1", [("dense_1/kernel:0", np.zeros((4, 2)))])])
    mobilenet = _plain_h5(tmp_path / "mobilenet.h5", [("conv_pw_13_relu", []), ("regression_submodel", kernel)])
    one_head = _plain_h5(tmp_path / "one_head.h5", [("conv1", kernel), ("res2a_branch2a", kernel),
                                                    ("regression_submodel", kernel)])
    cases = [
        (str(text), "is not a readable HDF5 model file"),
        (str(truncated), "is not a readable HDF5 model file"),
        (matterport, "holds matterport's Mask_RCNN"),
        (classifier, r"has no keras-resnet layer 'res2a_branch2a' \(layers found: \['dense_1'\]"),
        (mobilenet, "has a mobilenet backbone"),
        (one_head, "only one of the RetinaNet heads"),
        (str(tmp_path / "missing.h5"), "does not exist"),
    ]
    for path, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            load_model(path)
        assert os.path.basename(path) in str(error.value)


def test_a_file_whose_weights_do_not_fit_loads_nothing(legacy_h5, tmp_path):
    from tests.legacy_h5_writer import write_legacy_h5

    model = legacy_h5["model"]
    bad = write_legacy_h5(model, str(tmp_path / "bad.h5"), "keras-2.2", drop_layers=("res3a_branch2a",),
                          extra_layers=[("res3a_branch2a", [("res3a_branch2a/kernel:0", np.zeros((1, 1, 256, 64), "float32"))])])
    with pytest.raises(ValueError, match=r"res3a_branch2a/kernel has shape \(1, 1, 256, 128\) here and \(1, 1, 256, 64\)"):
        load_model(bad)
