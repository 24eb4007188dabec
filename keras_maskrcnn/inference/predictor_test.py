import json

import cv2
import keras
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from keras_maskrcnn.inference.predictor import Predictor, Result, export_settings, mask_polygons
from keras_maskrcnn.inference.transform import InputTransform, round_up
from keras_maskrcnn.models import backbone, save_model
from keras_maskrcnn.models.maskrcnn import model_settings
from keras_maskrcnn.runtimes import metadata_path, read_export_metadata
from keras_maskrcnn.utils.eval import encode_masks
from keras_maskrcnn.utils.image import preprocess_image, read_image_bgr, resize_image
from keras_maskrcnn.utils.masks import paste_mask


@pytest.fixture(scope="module")
def model():
    """MobileNetV2 with narrow heads whose untrained scores pass a 0 threshold and differ from each other:
    20 detections a picture."""
    keras.utils.set_random_seed(3)
    model = backbone("mobilenetv2").maskrcnn(num_classes=2, score_threshold=0.0, max_detections=20, feature_size=32,
                                             mask_feature_size=32)
    for layer in model.get_layer("classification_submodel").layers:  # scores spread out: no ties to order
        weights = layer.get_weights()
        if len(weights) == 2:
            bias = np.full_like(weights[1], -3.0) if layer.name == "pyramid_classification" else weights[1]
            layer.set_weights([weights[0] * 30.0, bias])
    return model


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "photo.png"
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (75, 110, 3), dtype=np.uint8), (7, 7), 3)
    cv2.imwrite(str(path), image)
    return str(path)


def _low_level_chain(model, path, min_side, max_side):
    """What the README used to show: read, resize, preprocess, pad, predict, unscale, paste."""
    image = read_image_bgr(path)
    resized, scale = resize_image(image, min_side=min_side, max_side=max_side)
    x = preprocess_image(resized, "tf")
    batch = np.zeros((1, round_up(x.shape[0], 32), round_up(x.shape[1], 32), 3), np.float32)
    batch[0, :x.shape[0], :x.shape[1]] = x
    boxes, scores, labels, masks = (np.asarray(o) for o in model.predict_on_batch(batch)[-4:])
    keep = scores[0] > 0
    boxes = boxes[0][keep].astype(np.float64) / scale
    scores, labels, masks = scores[0][keep], labels[0][keep], masks[0][keep]
    pasted = np.stack([paste_mask(m[:, :, l], b, image.shape[:2]) for m, l, b in zip(masks, labels, boxes)])
    return boxes, scores, labels, pasted.astype(bool)


def test_predictor_on_a_file_equals_the_low_level_chain(model, picture):
    predictor = Predictor(model, score_threshold=0.0, image_min_side=64, image_max_side=96, classes=["a", "b"])
    assert predictor.backbone == "mobilenetv2" and predictor.transform.preprocessing == "tf"
    [result] = predictor.predict_images([read_image_bgr(picture)], [picture])
    boxes, scores, labels, masks = _low_level_chain(model, picture, 64, 96)
    order = np.argsort(-scores, kind="stable")
    height, width = 75, 110
    expected_boxes = boxes[order].astype(np.float64)
    expected_boxes[:, 0::2] = np.clip(expected_boxes[:, 0::2], 0, width)
    expected_boxes[:, 1::2] = np.clip(expected_boxes[:, 1::2], 0, height)
    assert len(result) == 20
    np.testing.assert_allclose(result.boxes, expected_boxes, atol=1e-4)
    np.testing.assert_allclose(result.scores, scores[order], atol=1e-6)
    np.testing.assert_array_equal(result.labels, labels[order])
    assert result.names == [["a", "b"][label] for label in labels[order]]
    np.testing.assert_array_equal(result.masks, masks[order])
    np.testing.assert_array_equal(result.areas, masks[order].sum(axis=(1, 2)))
    assert result.masks.shape == (20, height, width) and result.masks.dtype == bool


def test_batches_give_the_results_of_single_pictures(model, picture):
    image = read_image_bgr(picture)
    other = np.ascontiguousarray(image[:60, :90])
    single = Predictor(model, score_threshold=0.0, image_min_side=64, image_max_side=96)
    batched = Predictor(model, score_threshold=0.0, image_min_side=64, image_max_side=96, batch_size=2)
    one = single.predict_images([image]) + single.predict_images([other])
    both = batched.predict_images([image, other])
    for a, b in zip(one, both):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


def test_settings_saved_with_the_model_are_the_defaults(model, picture, tmp_path):
    path = str(tmp_path / "model.keras")
    save_model(model, path, backbone="mobilenetv2", image_min_side=64, image_max_side=80, pad_multiple=32,
               classes=["circle", "square"])
    predictor = Predictor(path, score_threshold=0.0)
    assert predictor.transform == InputTransform(64, 80, 32, "tf")
    assert predictor.runtime == "keras" and predictor.classes == {0: "circle", 1: "square"}
    [result] = predictor.predict_images([read_image_bgr(picture)])
    assert set(result.names) <= {"circle", "square"}
    assert Predictor(path, score_threshold=0.0, image_min_side=96, image_max_side=128).transform.max_side == 128


def test_settings_are_those_the_model_runs_with(model, tmp_path):
    """A Keras model's settings read back from its layers: a bare model's as built, a file's as the
    Predictor rebuilds it (its score threshold and detection count); a stand-in for a model has none."""
    built = model_settings(model)
    assert built.detection_filter.max_detections == 20 and built.mask_head.feature_size == 32
    assert Predictor(model).settings == built
    path = str(tmp_path / "model.keras")
    save_model(model, path, backbone="mobilenetv2")
    loaded = Predictor(path, score_threshold=0.25, max_detections=7)
    assert loaded.settings == built.replace(score_threshold=0.25, max_detections=7)
    stand_in = _StandIn(metadata={}, runtime="keras")
    assert Predictor(stand_in, backbone="mobilenetv2").settings is None


class _StandIn:
    """An object with what the Predictor reads of a loaded model or artifact (never run here)."""

    def __init__(self, metadata, runtime):
        self.metadata, self.runtime = metadata, runtime


def test_an_exports_json_settings_round_trip(model, tmp_path):
    """The "settings" entry `export_model` writes beside an artifact (`ModelSettings.to_config()` through
    JSON) reads back as the same `ModelSettings`, legacy settings and low-rank RoI alignment included."""
    settings = model_settings(model)
    settings = settings.replace(roi_align=settings.roi_alignment.replace(low_rank=True), clip_margin=1.0,
                                buckets=(0, 4, 20), top_k_blocks=512)
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"")
    with open(metadata_path(str(artifact)), "w") as handle:
        json.dump(dict(backbone="mobilenetv2", classes=["a", "b"], settings=settings.to_config()), handle)
    metadata = read_export_metadata(str(artifact))
    assert export_settings(metadata) == settings
    assert Predictor(_StandIn(metadata, "onnxruntime")).settings == settings
    assert Predictor(_StandIn({"backbone": "mobilenetv2"}, "onnxruntime")).settings is None
    broken = dict(metadata, settings=dict(metadata["settings"], detection_filter={"min_size": 4}))
    with pytest.raises(ValueError, match="the export's settings cannot be read: DetectionFilter has no setting "
                                         "'min_size'"):
        Predictor(_StandIn(broken, "onnxruntime"))


def test_score_threshold_and_max_detections_filter(model, picture):
    image = read_image_bgr(picture)
    everything = Predictor(model, score_threshold=0.0, image_min_side=64, image_max_side=96).predict_images([image])[0]
    cut = float(np.median(everything.scores))
    fewer = Predictor(model, score_threshold=cut, image_min_side=64, image_max_side=96).predict_images([image])[0]
    assert np.all(fewer.scores > cut) and len(fewer) == int(np.sum(everything.scores > cut))
    top = Predictor(model, score_threshold=0.0, max_detections=3, image_min_side=64, image_max_side=96)
    np.testing.assert_allclose(top.predict_images([image])[0].scores, everything.scores[:3])


def test_bad_settings_are_one_line_errors(model, tmp_path):
    with pytest.raises(ValueError, match="score_threshold 1.5 must lie in"):
        Predictor(model, score_threshold=1.5)
    with pytest.raises(ValueError, match="does not exist"):
        Predictor(str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match="backbone 'alexnet' is not supported"):
        Predictor(model, backbone="alexnet")


def _rle(mask):
    return encode_masks([mask])[0]


def _ring(height=60, width=80):
    """A ring (a disc with a hole) and a square: masks with and without a hole."""
    yy, xx = np.mgrid[:height, :width]
    distance = np.hypot(xx - 25, yy - 30)
    ring = ((distance < 20) & (distance >= 8)).astype(np.uint8)
    square = np.zeros((height, width), np.uint8)
    square[10:40, 50:75] = 1
    return ring, square


def test_polygons_rasterised_again_match_the_masks():
    """Polygons through pycocotools' rasterisation give back the masks: IoU >= 0.98 for the square and the
    filled ring (a polygon has no holes, so the ring comes back as a disc: IoU with the ring is lower)."""
    ring, square = _ring()
    result = Result("x.png", np.zeros((60, 80, 3), np.uint8), boxes=[[5, 10, 45, 50], [50, 10, 75, 40]],
                    scores=[0.9, 0.8], labels=[0, 1], rles=[_rle(ring), _rle(square)])
    polygons = result.polygons(tolerance=0.5)
    assert len(polygons) == 2 and all(len(p) == 1 for p in polygons)
    back = [mask_utils.merge(mask_utils.frPyObjects(p, 60, 80)) for p in polygons]
    disc = ((np.hypot(*np.mgrid[:60, :80][::-1] - np.array([25, 30])[:, None, None]) < 20)).astype(np.uint8)
    iou_square = mask_utils.iou([back[1]], [_rle(square)], [0])[0, 0]
    iou_disc = mask_utils.iou([back[0]], [_rle(disc)], [0])[0, 0]
    print(f"polygon IoU: square {iou_square:.4f}, filled ring {iou_disc:.4f}")
    assert iou_square >= 0.98 and iou_disc >= 0.98, (iou_square, iou_disc)
    coco = result.to_coco(image_id=7, polygons=True, tolerance=0.5)
    assert [entry["area"] for entry in coco] == [int(ring.sum()), int(square.sum())]
    assert coco[0]["image_id"] == 7 and coco[0]["polygons"] == polygons[0]
    assert json.loads(result.to_json())[1]["category_id"] == 1


def test_mask_polygons_of_an_empty_mask_and_tolerance():
    assert mask_polygons(np.zeros((5, 5), np.uint8)) == []
    _, square = _ring()
    exact = mask_polygons(square, tolerance=0)
    simple = mask_polygons(square, tolerance=1.0)
    assert len(simple[0]) == 8 and len(exact[0]) > len(simple[0])  # a rectangle: 4 corners


def test_result_counts_areas_and_a_picture():
    ring, square = _ring()
    result = Result("x.png", np.full((60, 80, 3), 90, np.uint8), boxes=[[5, 10, 45, 50], [50, 10, 75, 40]],
                    scores=[0.9, 0.8], labels=[0, 0], names=["cell", "cell"],
                    rles=[_rle(ring), _rle(square)])
    assert result.counts() == {"cell": 2}
    assert result.class_areas() == {"cell": int(ring.sum() + square.sum())}
    picture = result.plot()
    assert picture.shape == (60, 80, 3) and picture.dtype == np.uint8
    assert not np.array_equal(picture, result.image)


def test_areas_of_more_than_255_detections_equal_pycocotools_one_by_one():
    """pycocotools' area() fails on lists of more than 255 masks under NumPy 2; a tiled picture can have more."""
    rng = np.random.default_rng(4)
    masks = [(rng.uniform(size=(20, 30)) > 0.5).astype(np.uint8) for _ in range(300)]
    result = Result("x.png", np.zeros((20, 30, 3), np.uint8), boxes=np.tile([0, 0, 30, 20], (300, 1)),
                    scores=np.linspace(1, 0.1, 300), labels=np.zeros(300), rles=[_rle(m) for m in masks])
    assert result.areas.tolist() == [int(mask_utils.area(_rle(m))) for m in masks]
    assert Result("y.png", np.zeros((4, 4, 3), np.uint8)).areas.shape == (0,)
