"""The original keras-maskrcnn 0.2.2 / keras-retinanet 1.0.0 as a timing peer: JSON lines on stdin/stdout.

    benchmarks/.venv-legacy/bin/python benchmarks/legacy/serve.py --model PATH.h5 --input NPZ --key NAME
                                                                  [--threads 2] [--backbone resnet50]
                                                                  [--kind auto|maskrcnn|retinanet] [--save OUT.npz]

Runs in the legacy venv (`make legacy-reference` makes it; benchmarks/legacy/patches.py is imported
first). Meant to be driven by a parent process in our venv, like benchmarks/peers.py, whose JSON-lines
loop (peers.serve) it uses; it can be run by hand too: type one request per line, read one answer per line.

--model: an .h5 model file of the original code (one written by reference.py, a keras-maskrcnn
snapshot, a converted keras-retinanet model). --kind auto reads the file's model_config: a RoiAlign
layer means keras-maskrcnn, loaded with `keras_maskrcnn.models.load_model(path, backbone_name=--backbone)`;
anything else is loaded with `keras_retinanet.models.load_model(path, backbone_name=--backbone)`.
--input NPZ --key NAME: the array to predict on, as stored (e.g. reference.py's inputs.npz, key
'photo': (1, 800, 1067, 3) float32, already preprocessed; a 3-d array gets a batch axis).
--threads N: tf.config.threading intra-op and inter-op threads (as benchmarks/predict.py's
--backend-threads sets them for ours).

Protocol: on start one line {"ready": true, ...} (versions, model name, kind, output names, input
shape, threads, "load_seconds"); then, per request line, one answer line.
  {"cmd": "predict"}            model.predict_on_batch(input), timed. Answer {"seconds", "cpu",
                                "detections", "peak_rss_mb"} and "outputs" (shape of each output).
                                "detections": rows with label != -1 for maskrcnn and retinanet
                                inference models; for a retinanet training model, the anchor-class
                                scores above 0.05; for a classifier, null.
  {"cmd": "save"}               one predict_on_batch, its outputs written to --save (.npz) with the names of
                                reference.py (maskrcnn: regression, classification, boxes, scores,
                                labels, masks; retinanet inference: boxes, scores, labels; training:
                                regression, classification). Answer {"path", "keys", "seconds", ...}.
  {"cmd": "quit"}               answers {"bye": true} and exits.
Errors answer {"error": message}. "seconds" is the wall time (time.perf_counter) of predict_on_batch
alone, "cpu" the process CPU time of the same call; "peak_rss_mb" in every answer, the ready line
included, is the process's peak resident memory so far (resource.getrusage). The first "predict"
includes tf.function tracing: send a warm-up request first. Anything TensorFlow prints goes to stderr.
"""

import sys

import patches  # noqa: F401  (first: TF_USE_LEGACY_KERAS, keras -> tf_keras, and the fixes)

import argparse
import json
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.dirname(HERE))  # benchmarks/: peers.serve and predict.peak_rss_mb (standard library only)

from peers import serve  # noqa: E402
from predict import peak_rss_mb  # noqa: E402,F401

import reference  # noqa: E402  (output names, shared with the reference files)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="original keras-maskrcnn / keras-retinanet timing peer "
                                                 "(JSON lines on stdin/stdout)")
    parser.add_argument("--model", required=True, help=".h5 model file of the original code")
    parser.add_argument("--input", required=True, help="npz holding the input array")
    parser.add_argument("--key", required=True, help="name of the input array in --input")
    parser.add_argument("--threads", type=int, default=2, help="TF intra-op and inter-op threads (default 2)")
    parser.add_argument("--backbone", default="resnet50", help="backbone_name of load_model (default resnet50)")
    parser.add_argument("--save", default=None, help="npz path that the 'save' request writes")
    parser.add_argument("--kind", choices=["auto", "maskrcnn", "retinanet"], default="auto",
                        help="which package's load_model (default: from the file's model_config)")
    return parser.parse_args(argv)


def file_kind(path):
    """'maskrcnn' if the h5 model_config has keras-maskrcnn's RoiAlign layer, else 'retinanet'."""
    import h5py
    with h5py.File(path, "r") as f:
        config = f.attrs.get("model_config")
    if config is None:
        raise ValueError(f"{path}: no model_config attribute (a weights-only file?)")
    config = config.decode() if isinstance(config, bytes) else config
    return "maskrcnn" if '"class_name": "RoiAlign"' in config else "retinanet"


class Legacy:
    """The loaded original model and its input; one method per request."""

    def __init__(self, args):
        import numpy as np
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        import tf_keras

        with np.load(args.input) as data:
            x = np.asarray(data[args.key], dtype=np.float32)
        self.x = x[None] if x.ndim == 3 else x
        kind = file_kind(args.model) if args.kind == "auto" else args.kind
        start = time.perf_counter()
        if kind == "maskrcnn":
            import keras_maskrcnn.models
            self.model = keras_maskrcnn.models.load_model(args.model, backbone_name=args.backbone)
        else:
            import keras_retinanet.models
            self.model = keras_retinanet.models.load_model(args.model, backbone_name=args.backbone)
        load_seconds = time.perf_counter() - start
        self.kind = reference.model_kind(self.model)
        self.info = dict(
            ready=True, tensorflow=tf.__version__, tf_keras=tf_keras.__version__,
            versions=reference.versions(), model=os.path.abspath(args.model), model_name=self.model.name,
            loader=f"keras_{kind}.models.load_model", kind=self.kind, output_names=list(self.model.output_names),
            input=os.path.abspath(args.input), key=args.key, input_shape=list(self.x.shape),
            threads=dict(intra=tf.config.threading.get_intra_op_parallelism_threads(),
                         inter=tf.config.threading.get_inter_op_parallelism_threads()),
            load_seconds=load_seconds, patches=sorted(patches.PATCHES),
        )

    def _run(self):
        start, start_cpu = time.perf_counter(), time.process_time()
        outputs = self.model.predict_on_batch(self.x)
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        outputs = outputs if isinstance(outputs, list) else [outputs]
        return outputs, seconds, cpu

    def _detections(self, arrays):
        import numpy as np
        if "labels" in arrays:
            return int(np.sum(arrays["labels"][0] != -1))
        if "classification" in arrays:
            return int(np.sum(arrays["classification"] > reference.SCORE_THRESHOLD))
        return None

    def predict(self):
        outputs, seconds, cpu = self._run()
        arrays = reference.output_arrays(self.kind, outputs)
        return dict(seconds=seconds, cpu=cpu, detections=self._detections(arrays),
                    outputs=[list(o.shape) for o in outputs])

    def save(self, path):
        import numpy as np
        if not path:
            raise ValueError("no --save path was given")
        outputs, seconds, cpu = self._run()
        arrays = reference.output_arrays(self.kind, outputs)
        np.savez_compressed(path, **arrays)
        return dict(path=os.path.abspath(path), keys=sorted(arrays), seconds=seconds, cpu=cpu,
                    detections=self._detections(arrays))


def main(argv=None):
    args = parse_args(argv)

    def make():
        legacy = Legacy(args)
        return legacy.info, {"predict": legacy.predict, "save": lambda: legacy.save(args.save)}

    return serve(make)


if __name__ == "__main__":
    sys.exit(main())
