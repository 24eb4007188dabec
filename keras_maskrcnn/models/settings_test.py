import json

import keras
import numpy as np
import pytest

from keras_maskrcnn.models import load_model, save_model
from keras_maskrcnn.models.maskrcnn import maskrcnn, model_settings
from keras_maskrcnn.models.settings import (LEGACY, BoxDecoding, DetectionFilter, MaskHead, ModelSettings,
                                            RoiAlignment)
from keras_maskrcnn.utils.anchors import AnchorParameters

CUSTOM = ModelSettings(
    anchors=AnchorParameters(sizes=(16, 32, 64, 128, 256)),
    detection_filter=DetectionFilter(score_threshold=0.0, max_detections=6, class_specific_filter=False,
                                     pre_nms_top_k=50),
    box_decoding=BoxDecoding(regression_std=(0.1, 0.1, 0.2, 0.2), clip_margin=1.0),
    roi_alignment=RoiAlignment(sampling_ratio=1),
    mask_head=MaskHead(feature_size=8, upsampling="nearest", mask_dtype="float16", buckets=(0, 3, 6)),
)


@pytest.mark.parametrize("part", [DetectionFilter(nms=False, top_k_blocks=8), BoxDecoding(regression_mean=(0, 0, 0, 0)),
                                  RoiAlignment(crop_size=(7, 7), sampling="crop_and_resize"),
                                  MaskHead(row_selection="slice", buckets=[0, 5])])
def test_each_part_round_trips_through_json(part):
    config = json.loads(json.dumps(part.to_config()))
    assert type(part).from_config(config) == part


def test_settings_round_trip_through_json_and_say_what_is_unknown():
    assert ModelSettings.from_config(json.loads(json.dumps(CUSTOM.to_config()))) == CUSTOM
    assert ModelSettings.from_config({}) == ModelSettings()
    with pytest.raises(ValueError, match="DetectionFilter has no setting 'min_size'"):
        DetectionFilter.from_config({"min_size": 2})
    with pytest.raises(ValueError, match="no part 'filters'"):
        ModelSettings.from_config({"filters": {}})
    with pytest.raises(TypeError, match="unknown model setting 'score_treshold'"):
        ModelSettings().replace(score_treshold=0.1)


def test_flat_options_of_earlier_versions_build_the_same_settings():
    settings = ModelSettings().replace(
        anchor_params=CUSTOM.anchors.get_config(), score_threshold=0.0, max_detections=6, class_specific_filter=False,
        pre_nms_top_k=50, regression_std=[0.1, 0.1, 0.2, 0.2], clip_margin=1, roi_align=dict(sampling_ratio=1, name="x"),
        mask_feature_size=8, mask_upsampling="nearest", mask_dtype="float16", buckets=[0, 3, 6])
    assert settings == CUSTOM
    assert ModelSettings().replace(score_threshold=None) == ModelSettings()  # None leaves a setting as it is


def test_legacy_settings_are_the_defaults_with_other_values():
    assert LEGACY.replace(clip_margin=0.0, roi_align=dict(sampling="aligned"), mask_upsampling="transposed") \
        == ModelSettings().replace(mask_upsampling="transposed")
    assert ModelSettings().resolved_upsampling() == "transposed" and LEGACY.resolved_upsampling() == "nearest"


def test_metadata_of_snapshots_gives_anchors_and_filter():
    metadata = dict(anchor_params=CUSTOM.anchors.get_config(), filter=dict(class_specific_filter=False, max_detections=6))
    settings = ModelSettings.from_metadata(metadata)
    assert settings.anchors == CUSTOM.anchors
    assert settings.detection_filter == DetectionFilter(class_specific_filter=False, max_detections=6)
    assert ModelSettings.from_metadata(dict(metadata, settings=CUSTOM.to_config())) == CUSTOM


def _tiny(settings=None, **options):
    keras.utils.set_random_seed(2)
    image = keras.Input((None, None, 3), name="image")
    x, features = image, []
    for i in range(5):
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name=f"tiny_{i}")(x)
        features.append(x)
    return maskrcnn(image, features[2:], 2, feature_size=8, settings=settings, **options)


@pytest.fixture(scope="module")
def custom_model():
    return _tiny(CUSTOM)


def test_a_model_is_built_as_its_settings_say_and_reads_them_back(custom_model):
    assert model_settings(custom_model) == CUSTOM
    assert custom_model.get_layer("masks").mask_model.get_layer("roi_mask_upsample") is not None
    outputs = custom_model.predict_on_batch(np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)).astype("float32"))
    assert outputs[2].shape == (1, 6, 4) and outputs[-1].dtype == np.float16


def test_keyword_arguments_and_settings_build_the_same_model(custom_model):
    flat = _tiny(anchor_params=CUSTOM.anchors, score_threshold=0.0, max_detections=6, class_specific_filter=False,
                 pre_nms_top_k=50, regression_std=[0.1, 0.1, 0.2, 0.2], clip_margin=1.0, roi_align=dict(sampling_ratio=1),
                 mask_feature_size=8, mask_upsampling="nearest", mask_dtype="float16", buckets=[0, 3, 6])
    assert model_settings(flat) == CUSTOM
    assert model_settings(_tiny(legacy=True)) == LEGACY.replace(mask_feature_size=256)


def test_settings_round_trip_through_a_keras_file(custom_model, tmp_path):
    """save_model stores settings.to_config() as metadata; load_model reads them back when it rebuilds
    the prediction model, and options given to load_model still win."""
    path = str(tmp_path / "custom.keras")
    save_model(custom_model, path, settings=CUSTOM.to_config())
    assert model_settings(load_model(path)) == CUSTOM
    rebuilt = load_model(path, max_detections=4)
    assert model_settings(rebuilt) == CUSTOM.replace(max_detections=4)
