"""Running an exported model with its own runtime: TensorFlow (SavedModel), ONNX Runtime, OpenVINO, LiteRT.

    from keras_maskrcnn.runtimes import load_artifact
    model = load_artifact("model.onnx")                 # the runtime is inferred from the path
    boxes, scores, labels, masks = model.predict_on_batch(batch)

`predict_on_batch` takes what the prediction model takes, (B, H, W, 3) float32 preprocessed as the
backbone expects, and returns numpy [boxes, scores, labels, masks] as the Keras model's last four
outputs; so the `Predictor`, `maskrcnn-predict` and `utils.compare` take an artifact
where they take a Keras model. An artifact of fixed size gets smaller inputs padded with zeros at the
bottom and right (boxes are in input pixels, so they stay where they are); larger ones are an error.

The runtimes are optional dependencies: a missing one raises `MissingRuntime` (an ImportError) with
a one-line message naming the extra to install.
"""

import json
import os

import numpy as np

OUTPUTS = ("boxes", "scores", "labels", "masks")
RAW_OUTPUTS = ("regression", "classification")

# runtime -> (export format, the package extra that installs it, the module to import)
RUNTIMES = {
    "keras": (None, "tensorflow", "keras"),
    "saved_model": ("tf_saved_model", "tensorflow", "tensorflow"),
    "onnxruntime": ("onnx", "onnx", "onnxruntime"),
    "openvino": ("openvino", "openvino", "openvino"),
    "litert": ("litert", "litert", "ai_edge_litert.interpreter"),
}
FORMAT_RUNTIMES = {fmt: runtime for runtime, (fmt, _, _) in RUNTIMES.items() if fmt}


class MissingRuntime(ImportError):
    """A runtime or converter that is not installed; the message says which extra installs it."""


def require(module, extra, what=None):
    """`importlib.import_module(module)`, or MissingRuntime: "<what> needs <module>: pip install 'keras-maskrcnn[extra]'"."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise MissingRuntime(f"{what or top} needs the {top} package, which is not installed: "
                             f"pip install 'keras-maskrcnn[{extra}]'") from None


def runtime_for_path(path):
    """The runtime that runs the file or folder `path`: keras (.keras, .h5, .hdf5), saved_model (a folder
    with saved_model.pb), onnxruntime (.onnx), openvino (.xml), litert (.tflite); ValueError otherwise."""
    lower = str(path).lower().rstrip("/")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return "saved_model"
        raise ValueError(f"{path!r} is a folder without saved_model.pb, not a TensorFlow SavedModel")
    for suffixes, runtime in (((".keras", ".h5", ".hdf5"), "keras"), ((".onnx",), "onnxruntime"),
                              ((".xml",), "openvino"), ((".tflite",), "litert")):
        if lower.endswith(suffixes):
            return runtime
    raise ValueError(f"cannot tell the runtime of {path!r} from its name: expected a .keras or .h5 model, a SavedModel "
                     f"folder, or a .onnx, .xml (OpenVINO) or .tflite (LiteRT) file")


def metadata_path(path):
    """Where `export_model` writes the JSON next to an artifact: the artifact's path + '.json'."""
    return str(path).rstrip("/").rstrip(os.sep) + ".json"


def read_export_metadata(path):
    """The JSON `export_model` wrote next to the artifact `path`, or {} when there is none."""
    json_path = metadata_path(path)
    try:
        with open(json_path, encoding="utf-8") as handle:
            metadata = json.load(handle)
    except FileNotFoundError:
        return {}
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"export metadata {json_path!r} is not a JSON file: {' '.join(str(error).split())}") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"export metadata {json_path!r} holds a {type(metadata).__name__}, not a JSON object")
    return metadata


class Artifact:
    """An exported model loaded with its runtime. Subclasses implement `_run(batch) -> {name: array}`.

    fixed_size: (H, W) of an artifact exported at a fixed size, else None. outputs: the output names."""

    runtime = None

    def __init__(self, path, metadata=None):
        self.path = str(path)
        self.metadata = read_export_metadata(path) if metadata is None else metadata
        size = (self.metadata.get("input") or {}).get("size")
        self.fixed_size = tuple(size) if size else None

    def _fit(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.fixed_size is None:
            return batch
        height, width = self.fixed_size
        if batch.shape[1] > height or batch.shape[2] > width:
            raise ValueError(f"{self.path}: input of {batch.shape[1]} x {batch.shape[2]} does not fit the artifact's "
                             f"fixed size {height} x {width}; resize images to at most that (or export again "
                             f"with another --fixed-size)")
        padded = np.zeros((batch.shape[0], height, width, batch.shape[3]), np.float32)
        padded[:, :batch.shape[1], :batch.shape[2]] = batch
        return padded

    def outputs(self, batch):
        """{name: numpy array} of every output for a (B, H, W, 3) float32 batch."""
        return {name: np.asarray(value) for name, value in self._run(self._fit(batch)).items()}

    def predict_on_batch(self, batch):
        """[boxes, scores, labels, masks] like the Keras prediction model's last four outputs."""
        outputs = self.outputs(batch)
        return [outputs[name] for name in OUTPUTS]

    def __call__(self, batch):
        return self.predict_on_batch(batch)


class SavedModelArtifact(Artifact):
    runtime = "saved_model"

    def __init__(self, path, metadata=None, threads=None):
        super().__init__(path, metadata)
        tf = require("tensorflow", "tensorflow", "running a SavedModel")
        if threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
            except RuntimeError:  # already initialised: keep its threads
                pass
        self._tf = tf
        self._loaded = tf.saved_model.load(self.path)
        self._function = self._loaded.signatures["serving_default"]

    def _run(self, batch):
        result = self._function(image=self._tf.constant(batch))
        return {name: value.numpy() for name, value in result.items()}


class OnnxArtifact(Artifact):
    runtime = "onnxruntime"

    def __init__(self, path, metadata=None, threads=None):
        super().__init__(path, metadata)
        ort = require("onnxruntime", "onnx", "running an ONNX model")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._names = [o.name for o in self._session.get_outputs()]

    def _run(self, batch):
        return dict(zip(self._names, self._session.run(None, {self._input: batch})))


class OpenVinoArtifact(Artifact):
    """OpenVINO on the CPU in float32: its default on CPUs with bfloat16 support (AVX512_BF16, AMX) is
    bfloat16 arithmetic, whose scores differ from the Keras model's by about 1e-3. (An int8 artifact's
    quantized convolutions still run in int8.)

    Its threads are not pinned to cores unless pin_threads (OpenVINO's CPU default pins them): a
    pinned thread waits for its own core while other processes run there, as they do on shared
    servers and in containers. A ResNet50 at 800 x 1024 on 2 cores shared with other jobs took 12.6 to
    17.7 s per picture pinned and 4.9 to 6.0 s not pinned, for the same 5.0 s of CPU time; ONNX Runtime
    and TensorFlow do not pin either."""

    runtime = "openvino"

    def __init__(self, path, metadata=None, threads=None, device="CPU", pin_threads=False):
        super().__init__(path, metadata)
        ov = require("openvino", "openvino", "running an OpenVINO model")
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if not pin_threads and "ENABLE_CPU_PINNING" in core.get_property(device, "SUPPORTED_PROPERTIES"):
            config["ENABLE_CPU_PINNING"] = False
        self._compiled = core.compile_model(self.path, device, config)
        self._request = self._compiled.create_infer_request()
        self._names = [next(iter(sorted(o.get_names())), str(i)) for i, o in enumerate(self._compiled.outputs)]

    def _run(self, batch):
        result = self._request.infer({0: batch})
        return {name: np.array(result[output]) for name, output in zip(self._names, self._compiled.outputs)}


class LiteRtArtifact(Artifact):
    runtime = "litert"

    def __init__(self, path, metadata=None, threads=None):
        super().__init__(path, metadata)
        interpreter = require("ai_edge_litert.interpreter", "litert", "running a LiteRT model")
        self._interpreter = interpreter.Interpreter(model_path=self.path, num_threads=threads)
        signatures = self._interpreter.get_signature_list()
        self._key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
        self._input = signatures[self._key]["inputs"][0]
        self._runner = self._interpreter.get_signature_runner(self._key)

    def _run(self, batch):
        return {name: np.array(value) for name, value in self._runner(**{self._input: batch}).items()}


ARTIFACTS = {"saved_model": SavedModelArtifact, "onnxruntime": OnnxArtifact, "openvino": OpenVinoArtifact,
             "litert": LiteRtArtifact}


def load_artifact(path, runtime=None, threads=None):
    """The exported model at `path` with its runtime (default: `runtime_for_path`); threads: intra-op
    threads of the runtime (default: its own choice)."""
    runtime = runtime or runtime_for_path(path)
    if runtime not in ARTIFACTS:
        raise ValueError(f"runtime {runtime!r} does not run exported models; choose one of {', '.join(ARTIFACTS)}")
    if not os.path.exists(path):
        raise ValueError(f"exported model {path!r} does not exist")
    return ARTIFACTS[runtime](path, threads=threads)
