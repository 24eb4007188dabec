import inspect
import subprocess
import sys

from keras_maskrcnn import defaults
from keras_maskrcnn.bin import train
from keras_maskrcnn.inference.predictor import Predictor
from keras_maskrcnn.inference.transform import InputTransform, select_detections
from keras_maskrcnn.models.settings import DetectionFilter
from keras_maskrcnn.preprocessing.generator import Generator


def _defaults(function, *names):
    parameters = inspect.signature(function).parameters
    return tuple(parameters[name].default for name in names)


def test_the_detection_filters_fields_are_the_defaults():
    fields = DetectionFilter()
    assert (fields.score_threshold, fields.nms_threshold, fields.max_detections, fields.pre_nms_top_k) == (
        defaults.SCORE_THRESHOLD, defaults.NMS_THRESHOLD, defaults.MAX_DETECTIONS, defaults.PRE_NMS_TOP_K) == (
        0.05, 0.5, 100, 1000)
    assert _defaults(select_detections, "score_threshold", "max_detections") == (0.05, 100)
    max_detections = next(action.default for action in train.build_parser()._actions
                          if action.dest == "max_detections")
    assert max_detections == fields.max_detections


def test_sizes_and_the_predictors_thresholds_have_one_source():
    transform = InputTransform()
    assert (transform.min_side, transform.max_side, transform.pad_multiple) == (
        defaults.IMAGE_MIN_SIDE, defaults.IMAGE_MAX_SIDE, defaults.PAD_MULTIPLE) == (800, 1333, 32)
    assert _defaults(Generator.__init__, "image_min_side", "image_max_side", "pad_multiple") == (800, 1333, 32)
    assert _defaults(Predictor.__init__, "score_threshold", "max_detections", "binarize_threshold") == (
        defaults.PREDICT_SCORE_THRESHOLD, DetectionFilter().max_detections, defaults.BINARIZE_THRESHOLD) == (
        0.5, 100, 0.5)


def test_the_tools_help_shows_the_defaults_without_loading_keras():
    """The command-line tools read their defaults without Keras, so --help stays fast."""
    code = ("import sys\n"
            "from keras_maskrcnn.bin import convert, evaluate, predict, train\n"
            "for tool in (train, evaluate, predict, convert):\n"
            "    try:\n"
            "        tool.parse_args(['--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(name for name in ('keras', 'tensorflow', 'jax', 'torch') if name in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "[]"
    text = " ".join(done.stdout.split())
    assert "kept by the prediction model (default 100)" in text  # maskrcnn-train
    assert "minimum detection score (default 0.05)" in text  # maskrcnn-evaluate
    assert "minimum score of the detections kept (default 0.5)" in text  # maskrcnn-predict
    assert "score threshold of the filter (default: the file's, 0.05)" in text  # maskrcnn-convert
    assert "as the model was trained, else 800)" in text and "as the model was trained, else 1333)" in text
