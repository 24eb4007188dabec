"""Exporting the prediction model with Keras 3's `Model.export`: TensorFlow SavedModel, ONNX, OpenVINO and
LiteRT, each artifact checked against the Keras model when it is written.

    from keras_maskrcnn.models import export_model, load_model
    export_model(load_model("model.keras"), "model.onnx", format="onnx")

The exported graph is the prediction model in a form every converter accepts (`export_form`): the mask
branch without its multi-branch `ops.switch`, RoIAlign with at most 5-D tensors. It gives the same
detections and masks as the Keras model.
"""

import json
import os
import shutil
import time

import keras
import numpy as np

from .. import layers
from ..utils.compare import compare_detections, describe
from ..utils.precision import model_policy
from .maskrcnn import _parts, _prediction_graph, model_settings
from ..runtimes import FORMAT_RUNTIMES, OUTPUTS, RAW_OUTPUTS, load_artifact, metadata_path, require

# format -> the file name ending Keras wants (None: a folder), the export form (see `export_form`), the
# modules converting to it (module, extra). Every format runs the mask head on the bucket's rows only.
FORMATS = {
    "tf_saved_model": dict(suffix=None, form=dict(row_selection="switch"), converters=()),
    "onnx": dict(suffix=".onnx", form=dict(row_selection="slice"), converters=(("tf2onnx", "onnx"),)),
    "openvino": dict(suffix=".xml", form=dict(row_selection="slice", top_k_blocks=8),
                     converters=(("openvino", "openvino"),)),
    "litert": dict(suffix=".tflite", form=dict(row_selection="slice", low_rank=True), converters=()),
}
# What the check accepts (issue #11): the same detections (count, labels), scores within 1e-4, boxes
# within 1e-2 px, masks within 1e-3.
CHECK_TOLERANCES = dict(score_tol=1e-4, box_tol=1e-2, mask_tol=1e-3)
# The environment variable by which tf2onnx's optimizers run on the graph itself, not on copies of it.
TF2ONNX_CATCH_ERRORS = "TF2ONNX_CATCH_ERRORS"


def _settings(model):
    """The `ModelSettings` of a prediction model built here (see `maskrcnn.model_settings`)."""
    masks = next((layer for layer in model.layers if layer.name == "masks"), None)
    missing = [name for name in ("masks", "filtered_detections", "anchors")
               if not any(layer.name == name for layer in model.layers)]
    if missing or not isinstance(masks, layers.DetectionMasks):
        detail = f": it has no layer {missing[0]!r}" if missing else ""
        raise ValueError(f"model {model.name!r} is not a keras_maskrcnn prediction model with masks{detail}")
    return model_settings(model)


def export_form(model, row_selection="slice", low_rank=False, top_k_blocks=0, raw_outputs=False, name=None):
    """The prediction model `model` rebuilt for a converter, sharing every weight: image -> a dict of
    boxes, scores, labels, masks (plus regression and classification with raw_outputs).

    row_selection: the `DetectionMasks` form ("slice": the mask head runs on the bucket's rows, of
    dynamic length; "all": on all rows, static shapes; "switch": as in Keras). low_rank: RoIAlign with
    at most 5-D tensors. top_k_blocks: the pre-NMS top-k of `FilterDetections` by blocks of that size
    (0: one top_k). Same anchors, box decoding, filter settings, buckets and mask dtype as `model`.
    """
    settings = _settings(model)
    settings = settings.replace(roi_alignment=settings.roi_alignment.replace(low_rank=low_rank),
                                row_selection=row_selection, top_k_blocks=top_k_blocks)
    image, features, regression, classification, mask_model, _ = _parts(model)
    graph = _prediction_graph(image, features, regression, classification, mask_model, settings, name or model.name)
    outputs = dict(zip(RAW_OUTPUTS + OUTPUTS, graph.outputs))
    if not raw_outputs:
        outputs = {key: outputs[key] for key in OUTPUTS}
    return keras.Model(inputs=image, outputs=outputs, name=graph.name)


class ExportCheckError(ValueError):
    """The exported artifact does not give the Keras model's detections; the message lists the differences."""


def _artifact_files(path, fmt):
    """Files and folders written for an artifact at `path`."""
    if fmt == "openvino":
        return [path, os.path.splitext(path)[0] + ".bin"]
    return [path]


def _remove(paths):
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def check_input_for(image_size=None, preprocessing="caffe", seed=0):
    """A (1, H, W, 3) float32 input for the export check: a uniform noise BGR image of image_size
    (default 800 x 1024) in [0, 255], preprocessed with `preprocessing`."""
    from ..utils.image import preprocess_image

    height, width = image_size or (800, 1024)
    image = np.random.default_rng(seed).uniform(0.0, 255.0, (1, height, width, 3)).astype(np.float32)
    return preprocess_image(image, preprocessing)


def check_artifact(model, path, check_input, runtime=None, threads=None):
    """Runs the Keras `model` and the artifact at `path` (with its runtime) on check_input (B, H, W, 3)
    and compares their detections image by image (`utils.compare.compare_detections` with
    CHECK_TOLERANCES). Returns dict(same, images: [report], seconds: {keras, artifact})."""
    artifact = load_artifact(path, runtime, threads=threads)
    batch = artifact._fit(check_input)
    started = time.perf_counter()
    reference = [np.asarray(x) for x in model.predict_on_batch(batch)[-4:]]
    middle = time.perf_counter()
    other = artifact.predict_on_batch(batch)
    ended = time.perf_counter()
    reports = [compare_detections(reference, other, image=i, **CHECK_TOLERANCES) for i in range(len(batch))]
    for report in reports:
        report["unmatched"] = [int(i) for i in report["unmatched"]]
    return dict(same=all(r["same"] for r in reports), images=reports, input_shape=list(batch.shape),
                seconds=dict(keras=middle - started, artifact=ended - middle))


class _FreshNodeProtos:
    """While active, tf2onnx writes each node into a new NodeProto when it updates the node's proto.

    tf2onnx's optimizers update every node's proto after each pass (`Node.update_proto`: the attributes
    are deleted and added again). With protobuf's upb implementation (the default since protobuf 4) a
    deleted attribute stays in the message's memory until the message itself is freed, so every pass
    kept one more copy of every constant, the weights included: a ResNet50 model's conversion peaked at
    8.7 GB and kept 8.0 GB after it returned (4.6 GB and 3.5 GB with this). A new NodeProto per update lets the old one, and its
    copies, be freed. Without tf2onnx's `Node` (or a `Node` of another shape) nothing is changed."""

    def __enter__(self):
        self._original = None
        try:
            from tf2onnx.graph import Node
        except ImportError:
            return self
        original = getattr(Node, "update_proto", None)
        if original is None:
            return self

        def update_proto(node, *args, **kwargs):
            old = getattr(node, "_op", None)
            if old is not None and hasattr(old, "attribute"):
                node._op = _without_attributes(old)
            return original(node, *args, **kwargs)

        self._node, self._original = Node, original
        Node.update_proto = update_proto
        return self

    def __exit__(self, *exc):
        if self._original is not None:
            self._node.update_proto = self._original
        return False


def _without_attributes(proto):
    """A new NodeProto with every field of `proto` but its attributes (`proto` is left as it is)."""
    fresh = type(proto)()
    for field, value in proto.ListFields():
        if field.name == "attribute":
            continue
        if hasattr(value, "extend"):  # a repeated field
            getattr(fresh, field.name).extend(value)
        elif hasattr(value, "CopyFrom"):  # a message
            getattr(fresh, field.name).CopyFrom(value)
        else:
            setattr(fresh, field.name, value)
    return fresh


def _export_onnx(form, path, signature, verbose):
    """`form.export` to ONNX with tf2onnx's graph optimizers run on the graph itself. By default
    tf2onnx runs each one on a deep copy of the graph, kept in case it fails, which is a quarter of
    the conversion's time (31.6 s instead of 42.7 s for MobileNetV2 with 100 detections). If the
    conversion fails that way it is done again the default way, which skips a failing optimizer.
    A TF2ONNX_CATCH_ERRORS of the caller's own is left as it is."""
    def export():
        with _FreshNodeProtos():
            return form.export(path, format="onnx", input_signature=signature, verbose=verbose)

    if TF2ONNX_CATCH_ERRORS in os.environ:
        return export()
    os.environ[TF2ONNX_CATCH_ERRORS] = "FALSE"
    try:
        return export()
    except Exception as error:  # reported; the default conversion then succeeds or raises
        print(f"ONNX conversion failed with tf2onnx's optimizers on the graph itself ({type(error).__name__}: "
              f"{error}); converting again with each optimizer on a copy, which skips one that fails")
    finally:
        del os.environ[TF2ONNX_CATCH_ERRORS]
    return export()


def export_model(model, path, format="tf_saved_model", image_size=None, check=True, check_input=None,
                 metadata=None, raw_outputs=False, threads=None, verbose=False, int8=False, calibration=None,
                 calibration_images=None, check_data=None, max_ap_drop=0.01, quantization=None, log=None):
    """Exports the prediction model `model` with `Model.export` and checks the artifact against it.

    format: "tf_saved_model" (a folder), "onnx" (path ends in .onnx), "openvino" (.xml, with a .bin
    beside it) or "litert" (.tflite). image_size: None for any input height and width (every format
    takes them), or (H, W) for an artifact of that fixed size. The signature: input `image` (B, H, W, 3)
    float32 preprocessed as the backbone expects; outputs `boxes`, `scores`, `labels`, `masks` (as the
    Keras model's last four), plus `regression` and `classification` with raw_outputs.

    check: load the artifact with its runtime and run it and `model` on check_input (default
    `check_input_for` at image_size, or 800 x 1024); when the detections differ beyond
    CHECK_TOLERANCES the artifact is removed and ExportCheckError raised. metadata: the model file's
    (`read_metadata`): class names, backbone, image sizes and pad multiple go into the JSON written
    next to the artifact (`keras_maskrcnn.runtimes.metadata_path`). threads: the runtime's threads for the check.

    int8 (onnx and openvino): the artifact is quantized after training with the runtime's own tool
    (`models.quantize`: ONNX Runtime's static quantization, QDQ with per-channel weights; NNCF for
    OpenVINO) from the float one, which is exported and checked first and then removed. calibration: a
    data set generator or a list of BGR uint8 pictures, fed through the Predictor's input transform;
    calibration_images: how many of them (default `quantize.DEFAULT_CALIBRATION_IMAGES`, evenly spaced).
    With check, the int8 artifact's mask and box AP50 are measured beside the float artifact's on
    check_data (a generator; default: a fifth of the calibration generator's pictures, at most 200, kept
    out of calibration; maskrcnn-export passes the calibration set's validation split when it has one);
    when the mask AP50 drops by more than max_ap_drop the artifact is removed and
    `quantize.Int8CheckError` (an ExportCheckError) raised with both numbers. quantization: options of
    `quantize_onnx` / `quantize_openvino`. log: receives progress lines (default: none). The JSON says
    "precision": "int8" or "float32".

    Runs on the TensorFlow backend, with a float32 model. Returns the JSON's content as a dict.
    """
    from .backbone import backbone as get_backbone

    if int8:
        return _export_int8(model, path, format, image_size=image_size, check=check, check_input=check_input,
                            metadata=metadata, raw_outputs=raw_outputs, threads=threads, verbose=verbose,
                            calibration=calibration, calibration_images=calibration_images,
                            check_data=check_data, max_ap_drop=max_ap_drop, quantization=quantization, log=log)

    if format not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {format!r}")
    spec = FORMATS[format]
    path = str(path)
    if spec["suffix"] and not path.lower().endswith(spec["suffix"]):
        raise ValueError(f"a {format} artifact's path must end in {spec['suffix']}, got {path!r}")
    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"exporting runs on the TensorFlow backend (KERAS_BACKEND=tensorflow), not "
                         f"{keras.backend.backend()}")
    try:
        policy = model_policy(model).name
    except ValueError:
        policy = "float32"
    if policy != "float32":
        raise ValueError(f"export a float32 model: this one computes in {policy}; load it with "
                         f"mixed_precision=None from a model saved in float32")
    for module, extra in spec["converters"]:
        require(module, extra, f"exporting to {format}")
    runtime = FORMAT_RUNTIMES[format]
    if check:
        from ..runtimes import RUNTIMES

        _, extra, module = RUNTIMES[runtime]
        require(module, extra, f"checking the {format} artifact")
    metadata = dict(metadata or {})
    backbone_name = metadata.get("backbone") or model.name.split("_maskrcnn")[0]
    try:
        preprocessing = get_backbone(backbone_name).preprocessing
    except ValueError:
        backbone_name, preprocessing = None, None
    if image_size is not None:
        image_size = (int(image_size[0]), int(image_size[1]))

    form = export_form(model, raw_outputs=raw_outputs, **spec["form"])
    height, width = image_size or (None, None)
    signature = [keras.InputSpec(shape=(None, height, width, 3), dtype="float32", name="image")]
    files = _artifact_files(path, format)
    _remove(files)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    started = time.perf_counter()
    if format == "onnx":
        _export_onnx(form, path, signature, verbose)
    else:
        form.export(path, format=format, input_signature=signature, verbose=verbose)
    export_seconds = time.perf_counter() - started

    filters = model.get_layer("filtered_detections")
    masks = model.get_layer("masks")
    info = dict(
        format=format, runtime=runtime, artifact=os.path.basename(path.rstrip("/")),
        input=dict(name="image", shape=[None, height, width, 3], dtype="float32",
                   size=list(image_size) if image_size else None, dynamic_size=image_size is None),
        outputs=list((RAW_OUTPUTS if raw_outputs else ()) + OUTPUTS),
        classes=metadata.get("classes"), num_classes=int(masks.mask_model.output_shape[-1]),
        backbone=backbone_name, preprocessing=preprocessing,
        image_min_side=metadata.get("image_min_side"), image_max_side=metadata.get("image_max_side"),
        pad_multiple=metadata.get("pad_multiple"),
        score_threshold=filters.score_threshold, max_detections=filters.max_detections,
        mask_size=list(masks.mask_model.output_shape[1:3]), export_form=spec["form"], precision="float32",
        settings=_settings(model).to_config(),
        keras_version=keras.__version__, export_seconds=round(export_seconds, 1),
    )
    if metadata.get("legacy"):
        info["legacy"] = metadata["legacy"]
    with open(metadata_path(path), "w") as handle:
        json.dump(info, handle, indent=1)
    if check:
        if check_input is None:
            check_input = check_input_for(image_size, preprocessing or "caffe")
        result = check_artifact(model, path, np.asarray(check_input, np.float32), runtime, threads)
        info["check"] = result
        if not result["same"]:
            _remove(files + [metadata_path(path)])
            lines = [f"image {i}: {describe(r)}" for i, r in enumerate(result["images"])]
            raise ExportCheckError(f"the {format} artifact {path} does not give the Keras model's detections "
                                   f"(removed): " + "; ".join(lines))
        with open(metadata_path(path), "w") as handle:
            json.dump(info, handle, indent=1)
    return info


INT8_FORMATS = ("onnx", "openvino")
"""The formats `export_model(int8=True)` quantizes."""


def _export_int8(model, path, format, check=True, check_input=None, calibration=None, calibration_images=None,
                 check_data=None, max_ap_drop=0.01, quantization=None, log=None, threads=None, **options):
    """export_model(int8=True): the float artifact in a temporary folder beside `path`, checked against
    the Keras model, quantized to `path`, the int8 artifact checked by AP against the float one."""
    import tempfile

    from ..inference.predictor import Predictor
    from . import quantize

    log = log or (lambda line: None)
    if format not in INT8_FORMATS:
        raise ValueError(f"int8 export is for the {' and '.join(INT8_FORMATS)} formats, not {format!r}")
    if calibration is None:
        raise ValueError("int8 export needs calibration pictures: a data set generator or a list of BGR pictures")
    require("onnxruntime" if format == "onnx" else "nncf", "int8", "int8 export")
    count = int(calibration_images or quantize.DEFAULT_CALIBRATION_IMAGES)
    calibration_set = calibration
    if check and check_data is None:
        if not hasattr(calibration, "load_annotations"):
            raise ValueError("the int8 check measures AP on annotated pictures: pass check_data (a data set "
                             "generator), a data set generator as calibration, or check=False")
        calibration_set, check_data = quantize.split_calibration(calibration, count)
        log(f"int8 check on {check_data.size()} pictures of the calibration set kept out of calibration")
    path = str(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    files = _artifact_files(path, format) + [metadata_path(path)]
    _remove(files)
    scratch = tempfile.mkdtemp(prefix=".float-", dir=directory)
    try:
        float_path = os.path.join(scratch, os.path.basename(path))
        log(f"exporting the float {format} artifact" + (" and checking it against the Keras model" if check else ""))
        info = export_model(model, float_path, format, check=check, check_input=check_input, threads=threads,
                            **options)
        float_artifact = load_artifact(float_path, threads=threads)
        transform = Predictor(float_artifact).transform
        batches = quantize.calibration_batches(calibration_set, transform, count)
        log(f"quantizing with {len(batches)} calibration pictures")
        started = time.perf_counter()
        settings = quantize.quantize_artifact(format, float_path, path, batches, **(quantization or {}))
        info.update(artifact=os.path.basename(path), precision="int8", quantization=settings,
                    quantize_seconds=round(time.perf_counter() - started, 1),
                    float_size=quantize.file_size(float_path), size=quantize.file_size(path))
        if "check" in info:
            info["float_check"] = info.pop("check")
        if check:
            log("measuring float and int8 AP on the check pictures")
            result = quantize.check_int8(float_artifact, load_artifact(path, threads=threads), check_data,
                                         max_ap_drop=max_ap_drop)
            info["int8_check"] = result
            if not result["passed"]:
                _remove(files)
                raise quantize.Int8CheckError(f"the int8 {format} artifact {path} loses too much accuracy "
                                              f"(removed): {quantize.describe_check(result)}")
        with open(metadata_path(path), "w") as handle:
            json.dump(info, handle, indent=1)
    except BaseException:
        _remove(files)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return info
