"""Time per picture of int8 artifacts against the Keras float32 model and torchvision, alternating.

    make bench-peers        # once: benchmarks/.venv-peers with torch + torchvision
    nice .venv/bin/python benchmarks/int8.py [--pairs 5] [--warmup 1] [--threads 2] [--height 800] [--width 1024]
                                             [--calibration-images 8] [--fp32] [--dir DIR] [--reuse]
                                             [--peer-python PYTHON | --no-peer]

Ours: `backbone('resnet50').maskrcnn(num_classes=80, score_threshold=0, max_detections=100)` with
`utils.synthetic.informative_weights` (seed 0) on a uniform noise image of --height x --width: every
artifact, int8 ones included, gives 100 detections with masks, as benchmarks/compare.py forces them.
It is exported with `models.export_model` to float ONNX and OpenVINO (no check) in a process of its
own, and each float artifact is quantized with the library's own functions
(`models.quantize.quantize_onnx`, `quantize_openvino`: what `export_model(int8=True)` runs) on
--calibration-images noise pictures of falling contrast fed through the prediction input transform.
Random weights have no accuracy to keep, so a few calibration pictures (default 8) are enough for timing:
the quantized graph and its speed do not depend on how many pictures set the ranges. Each quantization
runs in a process of its own, whose peak resident memory (VmHWM) is printed.

Then, in one process, the Keras model (`predict_on_batch`, TensorFlow), ONNX Runtime int8, OpenVINO int8
(and with --fp32 the float ONNX and OpenVINO artifacts) run the same preprocessed noise image, and
torchvision's `maskrcnn_resnet50_fpn` (benchmarks/peers.py in the peer venv, as benchmarks/compare.py
runs it: 100 detections forced, masks of the detections, no pasting) runs the same pixels; the calls
alternate (ours, ..., torchvision) round by round: --warmup untimed rounds, then --pairs timed rounds,
each runtime on --threads threads. Reported: median, min and max wall seconds per runtime and the
medians of the per-round ratios to torchvision and to Keras, the same for process CPU seconds (less
sensitive to other jobs), the processor's name and int8 instructions from /proc/cpuinfo, and the
1-minute load average.
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from keras_maskrcnn.bin.benchmark import peak_memory_mb  # noqa: E402
from predict import load1  # noqa: E402

NUM_CLASSES = 80
DETECTIONS = 100
PEER_PYTHON = os.path.join(HERE, ".venv-peers", "bin", "python")
FLOAT = {"onnx": "float.onnx", "openvino": "float.xml"}
INT8 = {"onnx": "int8.onnx", "openvino": "int8.xml"}


def processor():
    """'model name (N cores; avx512f; int8 instructions: avx512_vnni, ...)' from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as handle:
            text = handle.read()
    except OSError:
        return "unknown processor"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = [flag for flag in flags if "vnni" in flag or flag.startswith("amx") or flag == "avx512_bf16"]
    wide = "avx512f" if "avx512f" in flags else ("avx2" if "avx2" in flags else "no avx2")
    return f"{name} ({os.cpu_count()} cores; {wide}; int8 instructions: {', '.join(sorted(set(wanted))) or 'none'})"


def noise_image(args):
    import numpy as np

    return np.random.default_rng(args.seed).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)


def transform_for(args):
    from keras_maskrcnn.inference.transform import InputTransform

    return InputTransform(min_side=args.height, max_side=args.width, pad_multiple=32, preprocessing="caffe")


def export_float(args, folder):
    """The Keras model (informative random weights) saved to folder/model.keras and exported to float
    ONNX and OpenVINO in folder."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from keras_maskrcnn.models import backbone, export_model, save_model
    from keras_maskrcnn.utils.synthetic import informative_weights

    net = backbone("resnet50")
    image = net.preprocess_image(noise_image(args)[None].astype(np.float32))
    keras.utils.set_random_seed(args.seed)
    model = net.maskrcnn(num_classes=NUM_CLASSES, score_threshold=0.0, max_detections=DETECTIONS)
    informative_weights(model, image)
    metadata = dict(backbone="resnet50", image_min_side=args.height, image_max_side=args.width, pad_multiple=32)
    save_model(model, os.path.join(folder, "model.keras"), backbone="resnet50", image_min_side=args.height,
               image_max_side=args.width, pad_multiple=32)
    for fmt, name in FLOAT.items():
        started = time.perf_counter()
        export_model(model, os.path.join(folder, name), fmt, metadata=metadata, check=False)
        print(f"float {fmt}: exported in {time.perf_counter() - started:.0f} s", flush=True)


def _quantize_child(fmt, float_path, int8_path, args, queue):
    """In a process of its own: quantize, then report the seconds and the process's peak memory."""
    import numpy as np

    from keras_maskrcnn.models.quantize import calibration_batches, quantize_artifact

    raw = noise_image(args).astype(np.float32)
    pictures = [np.clip(128 + (raw - 128) * contrast, 0, 255).astype(np.uint8)
                for contrast in np.linspace(1.0, 0.3, args.calibration_images)]
    batches = calibration_batches(pictures, transform_for(args), len(pictures))
    before = peak_memory_mb()
    started = time.perf_counter()
    settings = quantize_artifact(fmt, float_path, int8_path, batches)
    queue.put(dict(seconds=time.perf_counter() - started, peak_mb=peak_memory_mb(), before_mb=before,
                   settings=settings))


def in_own_process(function, *args):
    """function(*args) in a spawned process (what it leaves in memory goes with it)."""
    process = multiprocessing.get_context("spawn").Process(target=function, args=args)
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"{function.__name__} failed (exit code {process.exitcode})")


def quantize(args, folder, fmt):
    """Quantizes folder's float artifact of fmt in a spawned process; prints its time and peak memory."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_quantize_child, args=(fmt, os.path.join(folder, FLOAT[fmt]),
                                                            os.path.join(folder, INT8[fmt]), args, queue))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"quantizing {fmt} failed (exit code {process.exitcode})")
    result = queue.get()
    print(f"int8 {fmt}: quantized with {args.calibration_images} calibration pictures in {result['seconds']:.0f} s; "
          f"peak resident memory of the quantizing process {result['peak_mb']:.0f} MB "
          f"({result['before_mb']:.0f} MB before quantizing)", flush=True)
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(description="int8 artifacts against Keras float32 and torchvision (see the docstring).")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--calibration-images", type=int, default=8)
    parser.add_argument("--fp32", action="store_true", help="also time the float ONNX and OpenVINO artifacts")
    parser.add_argument("--dir", default=None, help="folder of the artifacts (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="use the artifacts already in --dir")
    parser.add_argument("--only", choices=("export", "quantize"), default=None,
                        help="stop after exporting, or after quantizing")
    parser.add_argument("--peer-python", default=PEER_PYTHON)
    parser.add_argument("--no-peer", action="store_true", help="leave torchvision out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.warmup < 0 or args.threads < 1 or args.calibration_images < 1:
        parser.error("--pairs, --threads and --calibration-images must be >= 1, --warmup >= 0")
    if not (args.no_peer or args.only or os.access(args.peer_python, os.X_OK)):
        parser.error(f"no peer python at {args.peer_python}: run `make bench-peers` first, or pass --no-peer")
    return args


def report(times, reference, title):
    """Rows: median, min, max seconds and the median of the per-round ratios to `reference` (a name)."""
    names = list(times)
    print(f"\n{title}")
    heads = "".join(f"{'/ ' + r:>14}" for r in reference)
    print(f"{'runtime':<20}{'median s':>10}{'min s':>8}{'max s':>8}{heads}")
    for name in names:
        values = times[name]
        ratios = "".join(f"{statistics.median(v / k for v, k in zip(values, times[r])):>14.3f}" for r in reference)
        print(f"{name:<20}{statistics.median(values):>10.3f}{min(values):>8.3f}{max(values):>8.3f}{ratios}")


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"processor: {processor()}; threads {args.threads}; {args.height} x {args.width}; "
          f"load average (1 min) {load1():.2f}", flush=True)
    folder = args.dir or tempfile.mkdtemp(prefix="int8-bench-")
    os.makedirs(folder, exist_ok=True)
    keras_file = os.path.join(folder, "model.keras")
    have = lambda *names: all(os.path.exists(os.path.join(folder, n)) for n in names)  # noqa: E731
    if not (args.reuse and have("model.keras", *FLOAT.values())):
        in_own_process(export_float, args, folder)
    if args.only == "export":
        return 0
    for fmt in ("onnx", "openvino"):
        if not (args.reuse and have(INT8[fmt])):
            quantize(args, folder, fmt)
    if args.only == "quantize":
        return 0

    import numpy as np
    import tensorflow as tf

    from compare import peer_process, save_data
    from keras_maskrcnn.models import load_model
    from keras_maskrcnn.runtimes import load_artifact

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    image = transform_for(args).prepare([noise_image(args)])[0]
    runners = {"keras fp32": load_model(keras_file)}
    if args.fp32:
        runners["onnxruntime fp32"] = load_artifact(os.path.join(folder, FLOAT["onnx"]), threads=args.threads)
        runners["openvino fp32"] = load_artifact(os.path.join(folder, FLOAT["openvino"]), threads=args.threads)
    runners["onnxruntime int8"] = load_artifact(os.path.join(folder, INT8["onnx"]), threads=args.threads)
    runners["openvino int8"] = load_artifact(os.path.join(folder, INT8["openvino"]), threads=args.threads)
    calls = {name: (lambda runner=runner: runner.predict_on_batch(image)) for name, runner in runners.items()}
    for name, call in calls.items():
        outputs = call()
        print(f"{name}: {int((np.asarray(outputs[-3]) > -1).sum())} detections", flush=True)

    peer = None
    scratch = tempfile.TemporaryDirectory(prefix="int8-peer-")
    try:
        if not args.no_peer:
            peer_args = argparse.Namespace(height=args.height, width=args.width, seed=args.seed, objects=5,
                                           threads=args.threads, detections=DETECTIONS, lr=1e-4)
            data_path = save_data(peer_args, scratch.name)[0]
            peer = peer_process(args.peer_python, data_path, peer_args)
            info = peer.ready()
            print(f"torchvision {info['torchvision']} maskrcnn_resnet50_fpn(num_classes=81), torch {info['torch']}, "
                  f"{info['threads']} threads, {DETECTIONS} detections forced; its transform makes the image "
                  f"{info['transformed'][0]} x {info['transformed'][1]}", flush=True)
            calls["torchvision fp32"] = lambda: peer.request("infer")
        times = {name: [] for name in calls}
        cpu = {name: [] for name in calls}
        for round_index in range(args.warmup + args.pairs):
            for name, call in calls.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                answer = call()
                seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
                if name == "torchvision fp32":  # the network's time in the peer, without the pipe
                    seconds, cpu_seconds = answer["seconds"], answer["cpu"]
                if round_index >= args.warmup:
                    times[name].append(seconds)
                    cpu[name].append(cpu_seconds)
            line = ", ".join(f"{n} {v[-1]:.2f}" for n, v in times.items() if v)
            print(f"round {round_index + 1}/{args.warmup + args.pairs} (load {load1():.2f}){': ' + line if line else ''}",
                  file=sys.stderr, flush=True)
    finally:
        if peer is not None:
            peer.close()
        scratch.cleanup()
    reference = ["torchvision fp32", "keras fp32"] if peer is not None else ["keras fp32"]
    report(times, reference, f"wall seconds per picture, {args.pairs} rounds after {args.warmup} warm-up "
                             f"(ratios: medians of the per-round ratios); load average (1 min) {load1():.2f}")
    report(cpu, reference, "process CPU seconds per picture (the same calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
