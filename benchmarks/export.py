"""Exported models against Keras and torchvision: prediction time, peak memory and detections.

    make bench-peers                      # once: benchmarks/.venv-peers with torch + torchvision
    nice .venv/bin/python benchmarks/export.py [--pairs 5] [--warmup 1] [--threads 2]
                                               [--formats tf_saved_model,onnx,openvino,litert]
                                               [--height 800] [--width 1024] [--dir DIR] [--reuse]
                                               [--peer-python benchmarks/.venv-peers/bin/python] [--no-peer]

Ours: `backbone('resnet50').maskrcnn(num_classes=80)` (100 detection rows, score threshold 0.05) with
`utils.synthetic.informative_weights` (seed 0), so that the scores fall with the image's contrast. Three
inputs of --height x --width, the same uniform noise image at three contrasts: "max" (full contrast,
more than 100 detections pass the filter, so all 100 rows are detections and get masks), "few" (a
contrast found by bisection that leaves 5 to 13 detections: the mask head's bucket of 13 rows) and
"none" (contrast 0: no detection, no mask computed). A first child process builds the model, finds the
contrasts, saves the model (.keras) and the inputs, and exports every format with
`models.export_model` (dynamic input size, the export check on the "max" input).

Then one long-lived process per runtime (JSON lines, `peers.serve`): Keras (`predict_on_batch` of the
bucketed model, TensorFlow), and `keras_maskrcnn.runtimes.load_artifact` of each artifact (SavedModel on
TensorFlow, ONNX Runtime, OpenVINO in float32, LiteRT), all with --threads threads, plus torchvision's
`maskrcnn_resnet50_fpn` (peers.py, 100 detections forced: box_score_thresh 0, 100 per image) on the same
image with 100 objects' worth of masks. Their calls alternate in rounds (Keras, each runtime,
torchvision; one at a time, each after --pause seconds of idle), --warmup untimed rounds first, then
--pairs timed rounds per input; the torchvision peer runs in the "max" rounds only. Reported: median,
min, max wall seconds and median CPU seconds per runtime and input; the medians of the per-round
ratios to torchvision ("max") and to Keras; peak RSS of each process; and each runtime's detections
on each input against Keras's (`utils.compare.compare_detections`: count, labels, max differences).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from compare import LineProcess, add_peer_flags, check_peer_python, peer_process, save_data, say  # noqa: E402
from predict import load1  # noqa: E402

FORMATS = ("tf_saved_model", "onnx", "openvino", "litert")
FILES = {"tf_saved_model": "saved_model", "onnx": "model.onnx", "openvino": "model.xml", "litert": "model.tflite"}
RUNTIMES = {"tf_saved_model": "saved_model", "onnx": "onnxruntime", "openvino": "openvino", "litert": "litert"}
INPUTS = ("max", "few", "none")
NUM_CLASSES = 80
FEW = (5, 13)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Exported models against Keras and torchvision (see the docstring).")
    parser.add_argument("--pairs", type=int, default=5, help="timed rounds per input (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="threads of every runtime (default 2)")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="seconds of idle before each call, so that the thread pools of the runtime called "
                             "before (ONNX Runtime and OpenVINO spin for a while after a call) are asleep (default 1)")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated export formats (default all)")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="folder for the model, inputs and artifacts (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="use the model, inputs and artifacts already in --dir")
    add_peer_flags(parser, optional=True)
    parser.add_argument("--role", choices=("main", "prepare", "serve"), default="main", help=argparse.SUPPRESS)
    parser.add_argument("--runtime", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.formats = [f for f in args.formats.split(",") if f]
    unknown = sorted(set(args.formats) - set(FORMATS))
    if unknown:
        parser.error(f"unknown formats {unknown}; choose from {', '.join(FORMATS)}")
    if args.role == "main":
        if args.reuse and not args.dir:
            parser.error("--reuse needs --dir")
        check_peer_python(parser, args)
    # peer_process's flags
    args.detections, args.lr, args.objects = 100, 1e-4, 5
    return args


# --------------------------------------------------------------------------------------------
# child: prepare
# --------------------------------------------------------------------------------------------

def setup_tensorflow(threads):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def prepare(args):
    """Builds the model, finds the contrasts, saves model and inputs, exports and checks every format;
    writes DIR/prepared.json."""
    setup_tensorflow(args.threads)
    import keras
    import numpy as np

    from keras_maskrcnn.models import backbone, export_model, save_model
    from keras_maskrcnn.utils.synthetic import informative_weights

    def count(batch):
        return int((np.asarray(model.predict_on_batch(batch)[3]) > -1).sum())

    started = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    resnet = backbone("resnet50")
    model = resnet.maskrcnn(num_classes=NUM_CLASSES)
    raw = np.random.default_rng(args.seed).uniform(0, 255, (1, args.height, args.width, 3)).astype(np.float32)
    gray = np.full_like(raw, 127.5)
    noise = resnet.preprocess_image(raw)
    informative_weights(model, noise, bias=-4.0, seed=args.seed)
    full = count(noise)
    low, high, few, contrast = 0.0, 1.0, None, None
    for _ in range(12):  # bisection on the contrast for FEW[0]..FEW[1] detections
        contrast = (low + high) / 2
        few_input = resnet.preprocess_image(gray + contrast * (raw - gray))
        found = count(few_input)
        say(f"  contrast {contrast:.4f}: {found} detections")
        if FEW[0] <= found <= FEW[1]:
            few = found
            break
        low, high = (contrast, high) if found < FEW[0] else (low, contrast)
    if few is None:
        raise RuntimeError(f"no contrast gave {FEW[0]} to {FEW[1]} detections")
    inputs = dict(max=noise, few=few_input, none=resnet.preprocess_image(gray))
    np.savez(os.path.join(args.dir, "inputs.npz"), **inputs)
    save_model(model, os.path.join(args.dir, "model.keras"), backbone="resnet50")
    info = dict(contrast=contrast, detections=dict(max=full, few=few, none=count(inputs["none"])),
                prepare_seconds=time.perf_counter() - started, exports={})
    for fmt in args.formats:
        path = os.path.join(args.dir, FILES[fmt])
        wall = time.perf_counter()
        result = export_model(model, path, fmt, check_input=inputs["max"], threads=args.threads)
        check = result["check"]["images"][0]
        info["exports"][fmt] = dict(path=path, seconds=time.perf_counter() - wall, check=check,
                                    size_mb=_size_mb(path))
        say(f"  exported {fmt} in {time.perf_counter() - wall:.0f} s, check: same={check['same']}")
    with open(os.path.join(args.dir, "prepared.json"), "w") as handle:
        json.dump(info, handle, indent=1)
    return 0


def _size_mb(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 2 ** 20
    total = os.path.getsize(path)
    if path.endswith(".xml"):
        total += os.path.getsize(path[:-4] + ".bin")
    return total / 2 ** 20


# --------------------------------------------------------------------------------------------
# child: serve one runtime
# --------------------------------------------------------------------------------------------

def serve(args):
    from peers import serve as serve_lines

    def make():
        import numpy as np

        if args.runtime == "keras":
            setup_tensorflow(args.threads)
            import keras

            from keras_maskrcnn.models import load_model

            model = load_model(os.path.join(args.dir, "model.keras"))
            version = f"keras {keras.__version__}"
        else:
            fmt = next(f for f, r in RUNTIMES.items() if r == args.runtime)
            if args.runtime == "saved_model":
                setup_tensorflow(args.threads)
            from keras_maskrcnn.runtimes import load_artifact

            model = load_artifact(os.path.join(args.dir, FILES[fmt]), args.runtime, threads=args.threads)
            version = _version(args.runtime)
        with np.load(os.path.join(args.dir, "inputs.npz")) as data:
            inputs = {name: data[name] for name in INPUTS}
        last = {}

        def infer(name):
            def run():
                wall, cpu = time.perf_counter(), time.process_time()
                outputs = [np.asarray(x) for x in model.predict_on_batch(inputs[name])[-4:]]
                result = dict(seconds=time.perf_counter() - wall, cpu=time.process_time() - cpu,
                              detections=int((outputs[1] > -1).sum()),
                              mask_rows=int(np.any(outputs[3].reshape(outputs[3].shape[1], -1) != 0, axis=1).sum()))
                last[name] = outputs
                return result
            return run

        def save():
            np.savez(os.path.join(args.dir, f"outputs-{args.runtime}.npz"),
                     **{f"{name}_{i}": x for name, outputs in last.items() for i, x in enumerate(outputs)})
            return {}

        requests = {name: infer(name) for name in INPUTS}
        requests["save"] = save
        return dict(ready=True, version=version), requests

    return serve_lines(make)


def _version(runtime):
    if runtime == "saved_model":
        import tensorflow as tf

        return f"tensorflow {tf.__version__}"
    if runtime == "onnxruntime":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"
    if runtime == "openvino":
        import openvino

        return f"openvino {openvino.__version__}"
    import importlib.metadata

    return f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}"


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def child(args, role, runtime=None):
    command = [sys.executable, os.path.abspath(__file__), "--role", role, "--dir", args.dir, "--threads",
               str(args.threads), "--formats", ",".join(args.formats), "--height", str(args.height), "--width",
               str(args.width), "--seed", str(args.seed)]
    if runtime:
        command += ["--runtime", runtime]
    return command


def summarize(values):
    return statistics.median(values), min(values), max(values)


def main(argv=None):
    args = parse_args(argv)
    if args.role == "prepare":
        return prepare(args)
    if args.role == "serve":
        return serve(args)
    started = time.perf_counter()
    say(f"load average (1 min) before: {load1():.2f}   cores: {os.cpu_count()}")
    temporary = None
    if args.dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="export-bench-")
        args.dir = temporary.name
    os.makedirs(args.dir, exist_ok=True)
    try:
        if not args.reuse:
            say(f"[{time.perf_counter() - started:5.0f} s] preparing model, inputs and exports in {args.dir}")
            subprocess.run(child(args, "prepare"), check=True)
        with open(os.path.join(args.dir, "prepared.json")) as handle:
            prepared = json.load(handle)
        say(f"inputs {args.height} x {args.width}: detections by Keras {prepared['detections']} "
            f"(few: contrast {prepared['contrast']:.4f})")
        for fmt, export in prepared["exports"].items():
            say(f"  {fmt}: exported in {export['seconds']:.0f} s, {export['size_mb']:.0f} MB, check against Keras "
                f"on 'max': same={export['check']['same']}, max differences scores {export['check']['max_score']:.1e}, "
                f"boxes {export['check']['max_box']:.1e} px, masks {export['check']['max_mask']:.1e}")
        runtimes = ["keras"] + [RUNTIMES[f] for f in args.formats if f in prepared["exports"]]
        processes = {r: LineProcess(child(args, "serve", r), name=f"the {r} process") for r in runtimes}
        data_path = save_data(args, args.dir)[0]
        if not args.no_peer:
            processes["torchvision"] = peer_process(args.peer_python, data_path, args)
        try:
            for name, process in processes.items():
                info = process.ready()
                say(f"  {name}: ready ({info.get('version') or 'torch ' + str(info.get('torch'))}), "
                    f"peak RSS {info['peak_rss_mb']:.0f} MB")
            answers = {(name, image): [] for name in processes for image in INPUTS}
            for image in INPUTS:
                names = [n for n in processes if n != "torchvision" or image == "max"]
                for round_index in range(args.warmup + args.pairs):
                    for name in names:
                        time.sleep(args.pause)
                        answer = processes[name].request("infer" if name == "torchvision" else image)
                        if round_index >= args.warmup:
                            answers[(name, image)].append(answer)
                    if round_index >= args.warmup:
                        line = ", ".join(f"{n} {answers[(n, image)][-1]['seconds']:.2f} s" for n in names)
                        print(f"  {image} round {round_index + 1 - args.warmup}/{args.pairs}: {line} "
                              f"(load {load1():.2f})", file=sys.stderr, flush=True)
            for name in runtimes:
                processes[name].request("save")
            peaks = {name: max(a["peak_rss_mb"] for image in INPUTS for a in answers[(name, image)])
                     for name in processes}
        finally:
            for process in processes.values():
                process.close()
        report(args, prepared, runtimes, processes, answers, peaks)
    finally:
        if temporary is not None:
            temporary.cleanup()
    say(f"\nload average (1 min) after: {load1():.2f}; total {time.perf_counter() - started:.0f} s")
    return 0


def report(args, prepared, runtimes, processes, answers, peaks):
    import numpy as np

    from keras_maskrcnn.utils.compare import compare_detections, describe

    def outputs(runtime, image):
        with np.load(os.path.join(args.dir, f"outputs-{runtime}.npz")) as data:
            return [data[f"{image}_{i}"] for i in range(4)]

    peer = "torchvision" in processes
    say(f"\nResNet50, {NUM_CLASSES} classes, {args.height} x {args.width}, batch 1, {args.threads} threads, "
        f"{args.pairs} timed rounds after {args.warmup} warm-up; medians of per-round ratios")
    header = "| runtime | input | detections (mask rows) | median s | min s | max s | cpu s | / Keras |"
    header += " / torchvision |" if peer else ""
    header += " peak RSS MB | detections vs Keras |"
    say(header)
    say("|" + " --- |" * (header.count("|") - 1))
    for image in INPUTS:
        reference = outputs("keras", image)
        for name in runtimes + (["torchvision"] if peer and image == "max" else []):
            times = [a["seconds"] for a in answers[(name, image)]]
            median, low, high = summarize(times)
            cpu = statistics.median(a["cpu"] for a in answers[(name, image)])
            last = answers[(name, image)][-1]
            keras_ratio = statistics.median(a["seconds"] / b["seconds"] for a, b in
                                            zip(answers[(name, image)], answers[("keras", image)]))
            row = f"| {name} | {image} | {last['detections']} ({last.get('mask_rows', '-')}) | {median:.3f} | " \
                  f"{low:.3f} | {high:.3f} | {cpu:.2f} | {keras_ratio:.2f} |"
            if peer:
                if image == "max":
                    peer_ratio = statistics.median(a["seconds"] / b["seconds"] for a, b in
                                                   zip(answers[(name, image)], answers[("torchvision", "max")]))
                    row += f" {peer_ratio:.2f} |"
                else:
                    row += " - |"
            if name == "torchvision":
                verdict = "(its own model)"
            elif name == "keras":
                verdict = "(reference)"
            else:
                verdict = describe(compare_detections(reference, outputs(name, image)))
            row += f" {peaks[name]:.0f} | {verdict} |"
            say(row)


if __name__ == "__main__":
    sys.exit(main())
