"""Time per picture of int8 artifacts against the Keras float32 model (and torchvision when its venv is there).

    nice .venv/bin/python benchmarks/int8.py [--pairs 5] [--warmup 1] [--threads 2] [--height 800] [--width 1024]
                                             [--calibration-images 8] [--dir DIR] [--reuse]

Ours: `backbone('resnet50').maskrcnn(num_classes=80)` (100 detection rows, score threshold 0.05) with
`utils.synthetic.informative_weights` (seed 0) on a uniform noise image of --height x --width, so that
all 100 rows are detections and get masks. Exported with `models.export_model` to ONNX and OpenVINO,
then quantized (`export_model(int8=True)`, no AP check: random weights) on --calibration-images noise
pictures of falling contrast fed through the Predictor's input transform. The Keras model
(`predict_on_batch`, TensorFlow), ONNX Runtime int8 and OpenVINO int8 then run the same preprocessed
noise image in one process, alternating call by call (--warmup untimed rounds, then --pairs timed
rounds), each with --threads threads. torchvision's `maskrcnn_resnet50_fpn` is not run here: its
alternating comparison with our Keras path is benchmarks/compare.py (the peer venv of `make bench-peers`). Reported: median, min and max seconds per runtime and the medians of the per-round ratios
to Keras (and torchvision), with the processor's name and int8 instructions from /proc/cpuinfo.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

NUM_CLASSES = 80
PEER_PYTHON = os.path.join(HERE, ".venv-peers", "bin", "python")


def processor():
    """'model name (int8 instructions: avx512_vnni, ...)' from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as handle:
            text = handle.read()
    except OSError:
        return "unknown processor"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = [flag for flag in flags if "vnni" in flag or flag.startswith("amx") or flag == "avx512_bf16"]
    return f"{name} ({os.cpu_count()} cores; int8 instructions: {', '.join(sorted(set(wanted))) or 'none'})"


def parse_args(argv):
    parser = argparse.ArgumentParser(description="int8 artifacts against Keras float32 (see the docstring).")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--calibration-images", type=int, default=8)
    parser.add_argument("--dir", default=None, help="folder of the artifacts (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="use the artifacts already in --dir")
    parser.add_argument("--peer-python", default=PEER_PYTHON)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_maskrcnn.models import backbone, export_model, load_model, save_model
    from keras_maskrcnn.runtimes import load_artifact
    from keras_maskrcnn.utils.synthetic import informative_weights

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(f"processor: {processor()}; threads {args.threads}; {args.height} x {args.width}", flush=True)
    folder = args.dir or tempfile.mkdtemp(prefix="int8-bench-")
    os.makedirs(folder, exist_ok=True)
    net = backbone("resnet50")
    raw = np.random.default_rng(args.seed).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    image = net.preprocess_image(raw[None].astype(np.float32))
    keras_file = os.path.join(folder, "model.keras")
    paths = {"onnxruntime int8": os.path.join(folder, "int8.onnx"), "openvino int8": os.path.join(folder, "int8.xml")}
    if not (args.reuse and os.path.exists(keras_file) and all(map(os.path.exists, paths.values()))):
        keras.utils.set_random_seed(args.seed)
        model = net.maskrcnn(num_classes=NUM_CLASSES)
        informative_weights(model, image)
        save_model(model, keras_file, backbone="resnet50", image_min_side=args.height, image_max_side=args.width,
                   pad_multiple=32)
        gray = np.full_like(raw, 128)
        calibration = [np.clip(gray + (raw.astype(np.float32) - 128) * contrast, 0, 255).astype(np.uint8)
                       for contrast in np.linspace(1.0, 0.3, args.calibration_images)]
        metadata = dict(backbone="resnet50", image_min_side=args.height, image_max_side=args.width, pad_multiple=32)
        for (name, path), fmt in zip(paths.items(), ("onnx", "openvino")):
            started = time.perf_counter()
            export_model(model, path, fmt, metadata=metadata, check=False, int8=True, calibration=calibration,
                         calibration_images=len(calibration))
            print(f"{name}: exported and quantized in {time.perf_counter() - started:.0f} s", flush=True)
        del model
    keras.backend.clear_session()
    runners = {"keras fp32": load_model(keras_file)}
    runners.update({name: load_artifact(path, threads=args.threads) for name, path in paths.items()})
    calls = {name: (lambda runner=runner: runner.predict_on_batch(image)) for name, runner in runners.items()}
    for name, call in calls.items():
        outputs = call()
        print(f"{name}: {int((np.asarray(outputs[-3]) > -1).sum())} detections", flush=True)

    if os.path.exists(args.peer_python):
        print(f"torchvision peer: {args.peer_python} exists; this script does not run it, benchmarks/compare.py does")
    else:
        print(f"torchvision peer left out: {args.peer_python} does not exist (make bench-peers builds it)")

    times = {name: [] for name in calls}
    for round_index in range(args.warmup + args.pairs):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            if round_index >= args.warmup:
                times[name].append(time.perf_counter() - started)
        print(f"round {round_index + 1}/{args.warmup + args.pairs}", file=sys.stderr, flush=True)
    reference = times["keras fp32"]
    print(f"{'runtime':<18}{'median s':>10}{'min s':>8}{'max s':>8}{'/ keras':>9}")
    for name, values in times.items():
        ratio = statistics.median(v / k for v, k in zip(values, reference))
        print(f"{name:<18}{statistics.median(values):>10.3f}{min(values):>8.3f}{max(values):>8.3f}{ratio:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
