"""Predict time of the original keras-maskrcnn 0.2.2 beside ours, on the same legacy `.h5` file and input.

    make legacy-reference                   # once: benchmarks/.venv-legacy and the reference files
    .venv/bin/python benchmarks/legacy/compare.py [--model benchmarks/legacy-reference/maskrcnn_resnet50.h5]
                                                  [--key photo] [--pairs 5] [--warmup 1] [--threads 2]

Theirs: benchmarks/legacy/serve.py in the legacy venv (tf_keras, the original code patched at run time),
`keras_maskrcnn.models.load_model` of the original on the file, `predict_on_batch` timed. Ours:
`keras_maskrcnn.models.load_model` of the same file (the architecture rebuilt in Keras 3; backend from
KERAS_BACKEND, TensorFlow by default), `predict_on_batch` timed. Same preprocessed input (the
reference's inputs.npz, --key). Both on --threads intra- and inter-op threads. After --warmup untimed
rounds, --pairs rounds alternate ours, theirs, ours, ...; printed per pair with CPU seconds, the
medians and the per-pair ratio ours / original, the detection counts and each side's peak RSS.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from compare import LineProcess, print_pairs, run_rounds, say  # noqa: E402
from predict import load1, peak_rss_mb  # noqa: E402

REFERENCE = os.path.join(os.path.dirname(HERE), "legacy-reference")
LEGACY_PYTHON = os.path.join(os.path.dirname(HERE), ".venv-legacy", "bin", "python")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(REFERENCE, "maskrcnn_resnet50.h5"), help="the legacy .h5 file")
    parser.add_argument("--input", default=os.path.join(REFERENCE, "inputs.npz"), help="npz of preprocessed inputs")
    parser.add_argument("--key", default="photo", help="which input of --input (default photo, 800 x 1067)")
    parser.add_argument("--pairs", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="intra- and inter-op threads of each side (default 2)")
    parser.add_argument("--legacy-python", default=LEGACY_PYTHON, help="python of the legacy venv")
    args = parser.parse_args(argv)
    for path, what in ((args.model, "--model"), (args.input, "--input")):
        if not os.path.isfile(path):
            parser.error(f"{what} {path} does not exist: run `make legacy-reference` first")
    if not os.access(args.legacy_python, os.X_OK):
        parser.error(f"no legacy python at {args.legacy_python}: run `make legacy-reference` first")
    return args


class Ours:
    def __init__(self, args):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import numpy as np

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        from keras_maskrcnn.models import load_model

        self.np = np
        self.image = np.load(args.input)[args.key]
        started = time.perf_counter()
        self.model = load_model(args.model)
        self.load_seconds = time.perf_counter() - started
        self.versions = f"keras {keras.__version__}, {keras.backend.backend()}"

    def predict(self):
        wall, cpu = time.perf_counter(), time.process_time()
        outputs = self.model.predict_on_batch(self.image)
        answer = dict(seconds=time.perf_counter() - wall, cpu=time.process_time() - cpu)
        return dict(answer, detections=int((self.np.asarray(outputs[-2]) != -1).sum()), peak_rss_mb=peak_rss_mb())


def main(argv=None):
    args = parse_args(argv)
    theirs = LineProcess([args.legacy_python, os.path.join(HERE, "serve.py"), "--model", args.model, "--input",
                          args.input, "--key", args.key, "--threads", str(args.threads)], name="the legacy process")
    try:
        info = theirs.ready()
        ours = Ours(args)
        say(f"model {args.model}, input {args.key}; ours {ours.versions} (load {ours.load_seconds:.1f} s); "
            f"original {info.get('versions')} (load {info.get('load_seconds', float('nan')):.1f} s); "
            f"{args.threads} threads each; load {load1():.2f}")
        answers = run_rounds([("ours", ours.predict), ("original", lambda: theirs.request("predict"))], args)
    finally:
        theirs.close()
    print_pairs(f"predict_on_batch, {args.key}", "ours", answers["ours"], "original", answers["original"])
    say(f"  detections: ours {answers['ours'][-1]['detections']}, original {answers['original'][-1]['detections']}")
    say(f"  peak RSS MB: ours {answers['ours'][-1]['peak_rss_mb']:.0f}, original "
        f"{answers['original'][-1]['peak_rss_mb']:.0f}; load {load1():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
