"""int8 artifacts by post-training quantization with the runtimes' own tools, and the check that
measures what users care about: mask and box AP of the int8 artifact against the float one.

    from keras_maskrcnn.models.quantize import quantize_onnx, quantize_openvino
    quantize_onnx("model.onnx", "model-int8.onnx", batches)      # ONNX Runtime, QDQ, per-channel
    quantize_openvino("model.xml", "model-int8.xml", batches)    # OpenVINO through NNCF

`batches` are calibration inputs: (1, H, W, 3) float32 arrays made by the `Predictor`'s input
transform (`calibration_batches`), so calibration sees exactly what prediction feeds the model.

Only the convolutions are quantized (backbone, pyramid, the box and class heads, the mask head);
everything after them stays float: the sigmoid outputs, box decoding, the score filter, top-k and
NMS, RoIAlign and the mask probabilities. ONNX Runtime is told so by `op_types_to_quantize`; NNCF
quantizes the inputs of convolutions and of a few element-wise operations by its own patterns, and
the element-wise and pooling operations of the post-processing are put in its `ignored_scope` by type.
"""

import os
from collections.abc import Sequence

import numpy as np

from .export import ExportCheckError

DEFAULT_CALIBRATION_IMAGES = 300
"""Pictures for calibration unless told otherwise (ONNX Runtime's and NNCF's usual few hundred)."""
ONNX_OP_TYPES = ("Conv", "ConvTranspose")
"""The ONNX operations ONNX Runtime quantizes (QDQ around their inputs, per-channel int8 weights)."""
OPENVINO_IGNORED_TYPES = ("Multiply", "Add", "Subtract", "Divide", "Sigmoid", "MaxPool", "AvgPool",
                          "Concat", "ReduceMax", "ReduceMean", "Interpolate")
"""OpenVINO operation types NNCF leaves float: it then quantizes only the convolutions' inputs
(and their weights), as ONNX Runtime does."""
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class Int8CheckError(ExportCheckError):
    """The int8 artifact's mask AP50 on the check pictures dropped more than allowed below the float
    artifact's; the message gives both numbers."""


def calibration_batches(pictures, transform, count=DEFAULT_CALIBRATION_IMAGES):
    """Up to `count` (1, H, W, 3) float32 inputs: each BGR uint8 picture through `transform.prepare`.

    Args:
        pictures: a sequence of BGR uint8 pictures (H, W, 3), or a data set generator (its
            `load_image(i)`; unreadable pictures are skipped with a warning).
        transform: the `keras_maskrcnn.inference.transform.InputTransform` of prediction.
        count: the most pictures taken (evenly spaced over the data set when it has more).

    Returns:
        A `CalibrationBatches`: a sequence of the inputs, each made when it is asked for (300 inputs
        of 800 x 1024 would hold 2.9 GB at once). Every picture is read once here, so that unreadable
        ones are left out and counted now.
    """
    if hasattr(pictures, "load_image"):
        from ..evaluation.records import load_or_skip

        total = pictures.size()
        load = lambda index: load_or_skip(pictures, pictures.load_image, index)  # noqa: E731
    else:
        total = len(pictures)
        load = lambda index: pictures[index]  # noqa: E731
    if total == 0 or count < 1:
        raise ValueError("calibration needs at least one picture")
    readable = [int(index) for index in evenly_spaced(total, count) if load(int(index)) is not None]
    if not readable:
        raise ValueError("none of the calibration pictures could be read")
    return CalibrationBatches(load, readable, transform)


class CalibrationBatches(Sequence):
    """The calibration inputs of `calibration_batches`: item i is picture `indices[i]` (read by `load`)
    through `transform.prepare`, a (1, H, W, 3) float32 array made anew at each access."""

    def __init__(self, load, indices, transform):
        self._load, self._indices, self._transform = load, list(indices), transform

    def __len__(self):
        return len(self._indices)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        picture = self._load(self._indices[index])
        if picture is None:
            raise ValueError(f"calibration picture {self._indices[index]} could be read before but not now")
        return self._transform.prepare([np.asarray(picture)])[0]


def evenly_spaced(total, count):
    """(min(total, count),) int64 indices spread evenly over range(total), first index 0."""
    count = min(int(total), int(count))
    return np.unique(np.floor(np.arange(count) * (total / count)).astype(np.int64))


class _BatchReader:
    """ONNX Runtime's CalibrationDataReader over a list of batches (made lazily a subclass, so that
    importing this module does not import onnxruntime)."""

    def __new__(cls, name, batches):
        from onnxruntime.quantization import CalibrationDataReader

        class Reader(CalibrationDataReader):
            def __init__(self):
                self._batches = iter(batches)

            def get_next(self):
                batch = next(self._batches, None)
                return None if batch is None else {name: np.ascontiguousarray(batch, np.float32)}

            def rewind(self):
                self._batches = iter(batches)

        return Reader()


def _calibration_session(path, providers):
    """ONNX Runtime's calibration session over the augmented model at `path`, as its calibrators make
    it (graph optimizations off), but run in priority-based order.

    The calibrator adds a ReduceMin and a ReduceMax after every tensor it measures, whose outputs are
    outputs of the model. In ONNX Runtime's default order those reductions run late, so that every
    measured tensor of a picture is alive at once: 5.3 GB above the process's start for a ResNet50 at
    800 x 1024, against 2.0 GB in priority-based order, which runs each reduction as soon as its tensor is made."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.execution_order = onnxruntime.ExecutionOrder.PRIORITY_BASED
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)


def onnx_ranges(float_path, batches, calibration_method="minmax", op_types=ONNX_OP_TYPES, cache_path=None):
    """The calibration of `quantize_onnx`: ONNX Runtime's calibrator for `calibration_method` over the
    inputs and outputs of the `op_types` nodes of the float model, run on `batches` in a session of
    `_calibration_session`. Returns its TensorsData; with cache_path, also writes them there as
    ONNX Runtime's calibration cache (`quantize_static(calibration_cache_path=...)` reads it)."""
    import tempfile
    from pathlib import Path

    import onnxruntime
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    session = onnxruntime.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    del session
    with tempfile.TemporaryDirectory(prefix="calibration-") as scratch:
        augmented = Path(scratch) / "augmented.onnx"
        calibrator = create_calibrator(Path(float_path), list(op_types), augmented_model_path=str(augmented),
                                       calibrate_method=_onnx_methods()[calibration_method])
        calibrator.infer_session = _calibration_session(augmented, calibrator.execution_providers)
        # No CalibMaxIntermediateOutputs: ONNX Runtime 1.32's MinMax calibrator drops (does not merge) the
        # ranges collected when that many batches are reached. Its outputs are per-tensor minima and maxima.
        calibrator.collect_data(_BatchReader(name, batches))
        ranges = calibrator.compute_data()
        del calibrator
    if cache_path is not None:
        save_tensors_data(ranges, cache_path)
    return ranges


def _onnx_methods():
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}


def quantize_onnx(float_path, int8_path, batches, calibration_method="minmax", nodes_to_exclude=(),
                  op_types=ONNX_OP_TYPES):
    """Writes the int8 ONNX model of the float one at `float_path` to `int8_path` with ONNX Runtime's
    static quantization; returns the settings used (a dict for the export JSON).

    QDQ format, activations uint8 (asymmetric) and weights int8 per output channel (the u8s8 form
    that ONNX Runtime runs with VNNI instructions on x86). Only `op_types` are quantized. The ranges
    come from `onnx_ranges` (ONNX Runtime's calibrator in a session that keeps few tensors alive) and
    reach `quantize_static` as its calibration cache.

    Args:
        float_path: the float ONNX model (as `export_model` writes it).
        int8_path: the int8 model's file.
        batches: calibration inputs (1, H, W, 3) float32 (`calibration_batches`).
        calibration_method: "minmax", "entropy" or "percentile" (ONNX Runtime's CalibrationMethod).
        nodes_to_exclude: names of ONNX nodes to keep float.
        op_types: the ONNX operation types to quantize.
    """
    import tempfile

    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    methods = _onnx_methods()
    if calibration_method not in methods:
        raise ValueError(f"calibration method must be one of {', '.join(methods)}, got {calibration_method!r}")
    with tempfile.TemporaryDirectory(prefix="calibration-") as scratch:
        cache = os.path.join(scratch, "ranges.json")
        onnx_ranges(float_path, batches, calibration_method, op_types, cache_path=cache)
        quantize_static(str(float_path), str(int8_path), None, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(op_types), per_channel=True, reduce_range=False,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(nodes_to_exclude), calibrate_method=methods[calibration_method],
                        calibration_cache_path=cache)
    return dict(tool="onnxruntime.quantization.quantize_static", onnxruntime=onnxruntime.__version__,
                format="QDQ", activations="uint8", weights="int8 per channel", op_types=list(op_types),
                nodes_excluded=list(nodes_to_exclude), calibration_method=calibration_method,
                calibration_images=len(batches))


def quantize_openvino(float_path, int8_path, batches, ignored_types=OPENVINO_IGNORED_TYPES, ignored_names=(),
                      preset="performance", fast_bias_correction=True):
    """Writes the int8 OpenVINO model of the float one at `float_path` (.xml) to `int8_path` (.xml
    and .bin) with `nncf.quantize`; returns the settings used (a dict for the export JSON).

    Args:
        float_path: the float OpenVINO model (as `export_model` writes it).
        int8_path: the int8 model's .xml file.
        batches: calibration inputs (1, H, W, 3) float32 (`calibration_batches`).
        ignored_types: OpenVINO operation types left float (NNCF's ignored_scope by type).
        ignored_names: OpenVINO node names left float.
        preset: NNCF's "performance" (symmetric activations) or "mixed" (asymmetric activations).
        fast_bias_correction: NNCF's bias correction (fast: one pass).
    """
    import logging

    import nncf
    import openvino as ov
    from nncf.common.logging import nncf_logger

    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    if preset not in presets:
        raise ValueError(f"preset must be one of {', '.join(presets)}, got {preset!r}")
    model = ov.Core().read_model(str(float_path))
    present = {op.get_type_name() for op in model.get_ops()}
    names = {op.get_friendly_name() for op in model.get_ops()}
    scope = nncf.IgnoredScope(types=[t for t in ignored_types if t in present],
                              names=[n for n in ignored_names if n in names], validate=False)
    dataset = nncf.Dataset(batches)
    # NNCF logs a line per operation it leaves float (hundreds here); its warnings still show.
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)
    try:
        quantized = nncf.quantize(model, dataset, preset=presets[preset], subset_size=len(batches),
                                  fast_bias_correction=fast_bias_correction, ignored_scope=scope)
    finally:
        nncf_logger.setLevel(level)
    ov.save_model(quantized, str(int8_path), compress_to_fp16=False)
    return dict(tool="nncf.quantize", nncf=nncf.__version__, openvino=ov.__version__, preset=preset,
                ignored_types=list(scope.types), ignored_names=list(scope.names),
                fast_bias_correction=fast_bias_correction, calibration_images=len(batches))


def quantize_artifact(format, float_path, int8_path, batches, **options):
    """`quantize_onnx` or `quantize_openvino` by export format ("onnx" or "openvino")."""
    if format == "onnx":
        return quantize_onnx(float_path, int8_path, batches, **options)
    if format == "openvino":
        return quantize_openvino(float_path, int8_path, batches, **options)
    raise ValueError(f"int8 export is for the onnx and openvino formats, not {format!r}")


class Subset:
    """The pictures `indices` of a data set generator as a generator of their own (for a check set
    kept out of calibration): size, load_image, load_annotations, image_path and image_ids follow the
    indices; everything else is the generator's."""

    def __init__(self, generator, indices):
        self._generator = generator
        self._indices = [int(i) for i in indices]

    def size(self):
        return len(self._indices)

    def load_image(self, index):
        return self._generator.load_image(self._indices[index])

    def load_annotations(self, index):
        return self._generator.load_annotations(self._indices[index])

    def image_path(self, index):
        return self._generator.image_path(self._indices[index])

    @property
    def image_ids(self):
        ids = getattr(self._generator, "image_ids", None)
        return None if ids is None else [ids[i] for i in self._indices]

    def __getattr__(self, name):
        return getattr(self._generator, name)


def split_calibration(generator, count=DEFAULT_CALIBRATION_IMAGES, check_fraction=0.2, check_max=200):
    """(calibration Subset, check Subset) of one generator: every k-th picture kept out for the check
    (a `check_fraction` of the set, at most `check_max`, at least 1), up to `count` of the others for
    calibration. A set of one picture is used for both."""
    total = generator.size()
    if total < 2:
        return generator, generator
    held = min(check_max, max(1, int(round(total * check_fraction))))
    check = set(evenly_spaced(total, held).tolist())
    rest = [index for index in range(total) if index not in check]
    chosen = [rest[i] for i in evenly_spaced(len(rest), count)]
    return Subset(generator, chosen), Subset(generator, sorted(check))


def ap_of(generator, model, score_threshold=0.05, max_detections=100):
    """{'mask_AP', 'mask_AP50', 'box_AP', 'box_AP50'} (fractions 0..1, None without objects) of a Keras
    model or a loaded artifact on the generator's pictures (`evaluation.run.evaluate_model`)."""
    from ..evaluation.run import evaluate_model

    evaluation = evaluate_model(generator, model, score_threshold=score_threshold, max_detections=max_detections)
    segm, bbox = evaluation.metrics["segm"], evaluation.metrics["bbox"]
    return dict(mask_AP=segm["AP"], mask_AP50=segm["AP50"], box_AP=bbox["AP"], box_AP50=bbox["AP50"])


def check_int8(float_model, int8_model, generator, max_ap_drop=0.01, **options):
    """The AP check of an int8 artifact: mask and box AP of both models on the generator's pictures.

    Returns dict(float=..., int8=... (as `ap_of`), drop (float mask AP50 - int8 mask AP50),
    max_ap_drop, images, passed). `passed` is False when the drop exceeds max_ap_drop.
    """
    reference = ap_of(generator, float_model, **options)
    quantized = ap_of(generator, int8_model, **options)
    drop = (reference["mask_AP50"] or 0.0) - (quantized["mask_AP50"] or 0.0)
    return dict(float=reference, int8=quantized, drop=drop, max_ap_drop=float(max_ap_drop),
                images=int(generator.size()), passed=bool(drop <= max_ap_drop + 1e-12))


def describe_check(check):
    """One line: float and int8 mask AP50 and box AP50 and the drop against the allowed one."""
    def number(value):
        return "n/a" if value is None else f"{value:.4f}"

    reference, quantized = check["float"], check["int8"]
    return (f"mask AP50 float {number(reference['mask_AP50'])}, int8 {number(quantized['mask_AP50'])} "
            f"(drop {check['drop']:+.4f}, allowed {check['max_ap_drop']:.4f}); box AP50 float "
            f"{number(reference['box_AP50'])}, int8 {number(quantized['box_AP50'])}; on {check['images']} pictures")


def file_size(path):
    """Bytes of an artifact: a file, a folder (all files in it), or an OpenVINO .xml with its .bin."""
    path = str(path)
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name)) for root, _, files in os.walk(path) for name in files)
    size = os.path.getsize(path)
    if path.lower().endswith(".xml") and os.path.exists(os.path.splitext(path)[0] + ".bin"):
        size += os.path.getsize(os.path.splitext(path)[0] + ".bin")
    return size
