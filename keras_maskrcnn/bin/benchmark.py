"""`maskrcnn-benchmark`: accuracy, speed, size and memory of a trained model in every export format.

    maskrcnn-benchmark [options] MODEL TYPE ... [--calibration TYPE ...]   # options before MODEL
    maskrcnn-benchmark --images 40 --output bench.json model.keras csv val/annotations.csv val/classes.csv

The model is exported to every format whose runtime is installed (--formats: tf_saved_model, onnx,
openvino, litert), in float32 and, for onnx and openvino, in int8 (`export_model(int8=True)`,
calibrated on --calibration TYPE ... given last on the line, else on the benchmark's own pictures). Each
row then runs in a fresh process: the Keras model first, then each artifact through the `Predictor`
with --threads threads. A row gives the file size, COCO mask AP and AP50 and box AP50 on the first
--images pictures of the data set (`evaluation.run.evaluate_model`, score threshold 0.05), the median
and 90th percentile of the time per picture through `Predictor.predict_images` (reading excluded;
resize, model, mask pasting included) after --warmup untimed pictures, and the process's peak resident
memory. The rows are printed as a table and written to --output FILE.json (a list of objects).
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time

from .. import defaults
from . import common, quiet
from .export import dataset_arguments, dataset_generator, split_dataset_arguments

FORMATS = ("keras", "tf_saved_model", "onnx", "openvino", "litert")
FILES = {"tf_saved_model": "saved_model", "onnx": "model.onnx", "openvino": "model.xml", "litert": "model.tflite"}
INT8_FORMATS = ("onnx", "openvino")
COLUMNS = (("format", "format", "{}"), ("precision", "precision", "{}"), ("size_mb", "size MB", "{:.1f}"),
           ("mask_AP", "mask AP", "{:.4f}"), ("mask_AP50", "mask AP50", "{:.4f}"), ("box_AP50", "box AP50", "{:.4f}"),
           ("median_ms", "median ms", "{:.1f}"), ("p90_ms", "p90 ms", "{:.1f}"), ("peak_mb", "peak MB", "{:.0f}"))


def parse_args(args):
    """(parser, arguments, the argument list a row's process parses again)."""
    parser = argparse.ArgumentParser(
        prog="maskrcnn-benchmark",
        description="Export a model to every installed format (float32, and int8 for onnx and openvino) and "
                    "print accuracy, time per picture, file size and peak memory of each.")
    parser.add_argument("model", help=common.MODEL_HELP)
    common.dataset_subparsers(parser, coco_set="val2017")
    flags = common.FlagAdder(parser, [])  # before TYPE: coco's own --images is its pictures' folder
    flags.add("--formats", default=",".join(FORMATS),
              help=f"comma-separated formats to run (default {','.join(FORMATS)}; those whose runtime is not "
                   f"installed are left out with a note)")
    flags.add("--no-int8", dest="int8", action="store_false", help="float32 rows only")
    flags.add("--images", type=common.positive_int, default=100,
              help="the first N pictures of the data set are evaluated and timed (default 100)")
    flags.add("--warmup", type=common.non_negative_int, default=3,
              help="untimed pictures before the timing (default 3)")
    flags.add("--threads", type=common.positive_int, default=None,
              help="threads of every runtime (default: each runtime's choice)")
    flags.add("--calibration-images", type=common.positive_int, default=300,
              help="pictures for int8 calibration (default 300)")
    flags.add("--output", metavar="FILE.json", help="write the rows to this JSON file")
    flags.add("--dir", help="folder for the exported artifacts (default: a temporary one, removed afterwards)")
    common.add_backbone(flags, default=None)
    common.add_image_size(flags, None, None)
    common.add_pad_multiple(flags)
    quiet.add_verbose_option(flags)
    argv = common.argv(args)
    rest, datasets = split_dataset_arguments(argv, ("--calibration",))
    args = parser.parse_args(rest)
    args.quieted = quiet.quiet_startup(args.verbose)
    args.calibration = (dataset_arguments(parser, "--calibration", datasets["--calibration"])
                        if "--calibration" in datasets else None)
    common.check_dataset(parser, args)
    common.check_file(parser, args.model, "model file")
    args.formats = [name.strip() for name in args.formats.split(",") if name.strip()]
    unknown = [name for name in args.formats if name not in FORMATS]
    if unknown:
        parser.error(f"unknown format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if args.output and not args.output.lower().endswith(".json"):
        parser.error(f"--output must end in .json, got {args.output!r}")
    args.metadata = common.model_metadata(parser, args.model)
    common.apply_model_defaults(args, args.metadata)
    return parser, args, rest


def installed(fmt):
    """Whether the converter and runtime of an export format can be imported."""
    import importlib.util

    from ..runtimes import FORMAT_RUNTIMES, RUNTIMES

    if fmt == "keras":
        return True
    module = RUNTIMES[FORMAT_RUNTIMES[fmt]][2]
    needed = [module] + (["tf2onnx"] if fmt == "onnx" else [])
    try:
        return all(importlib.util.find_spec(name) is not None for name in needed)
    except ModuleNotFoundError:
        return False


def measure_row(argv, fmt, precision, path, quieted=False):
    """One row, run in a fresh process: AP on the data set, time per picture and peak memory of
    `path` (the .keras model for fmt 'keras'). quieted: the tool hid TensorFlow's start-up notices
    (`quiet.quiet_startup`), so this process hides them too."""
    import numpy as np

    if quieted:  # the inherited TF_CPP_MIN_LOG_LEVEL is the tool's own, not the user's
        os.environ.pop(quiet.LOG_LEVEL_VARIABLE, None)
    parser, args, _ = parse_args(argv)
    if args.threads and fmt == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from .. import Predictor
    from ..models import backbone as get_backbone
    from ..models.quantize import Subset, ap_of

    common.plain_bad_image_warnings(parser.prog)
    generator = common.create_generator(parser, args, get_backbone(args.backbone), shuffle_groups=False,
                                        skip_bad_images=True)
    subset = Subset(generator, range(min(args.images, generator.size())))
    # The Keras row keeps the model's own detection count, as its exports do (a Predictor's default is 100).
    model, max_detections = path, defaults.MAX_DETECTIONS
    if fmt == "keras":
        from ..models import load_model
        from ..models.maskrcnn import model_settings

        model = load_model(path, backbone_name=args.backbone)
        max_detections = model_settings(model).detection_filter.max_detections
    predictor = Predictor(model, score_threshold=defaults.SCORE_THRESHOLD, max_detections=max_detections,
                          threads=args.threads, backbone=args.backbone, image_min_side=args.image_min_side,
                          image_max_side=args.image_max_side, pad_multiple=args.pad_multiple)
    accuracy = ap_of(subset, predictor.model, max_detections=max_detections)
    pictures = [subset.load_image(index) for index in range(subset.size())]
    for index in range(args.warmup):
        predictor.predict_images([pictures[index % len(pictures)]])
    seconds = []
    for picture in pictures:
        started = time.perf_counter()
        predictor.predict_images([picture])
        seconds.append(time.perf_counter() - started)
    peak = peak_memory_mb()
    return dict(accuracy, median_ms=1000 * statistics.median(seconds),
                p90_ms=1000 * float(np.percentile(seconds, 90)), peak_mb=peak, images=len(pictures))


def peak_memory_mb():
    """This process's peak resident memory in MB: VmHWM of /proc/self/status (getrusage's ru_maxrss
    keeps the parent's peak across exec on Linux, so a new process would report its parent's), else
    ru_maxrss."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _run_row(argv, fmt, precision, path, quieted=False):
    """measure_row in a new process (so that peak memory is the row's own)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure_row, argv, fmt, precision, path, quieted).result()


def format_table(rows):
    """The rows as a fixed-width text table (n/a for missing values)."""
    def cell(row, key, pattern):
        value = row.get(key)
        return "n/a" if value is None else pattern.format(value)

    table = [[title for _, title, _ in COLUMNS]] + [[cell(row, key, pattern) for key, _, pattern in COLUMNS]
                                                    for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(text.rjust(width) if i > 1 else text.ljust(width)
                               for i, (text, width) in enumerate(zip(line, widths))) for line in table)


def export_rows(parser, args, folder):
    """[(format, precision, path)] of the artifacts exported into folder (the .keras file first)."""
    from ..models import backbone as get_backbone
    from ..models import load_model
    from ..models.export import export_model
    from ..models.quantize import file_size  # noqa: F401  (imported here so a broken install fails early)

    rows = [("keras", "float32", args.model)]
    exports = [fmt for fmt in args.formats if fmt != "keras"]
    if not exports:
        return rows
    model = load_model(args.model, backbone_name=args.backbone)
    backbone = get_backbone(args.backbone)
    metadata = dict(args.metadata, backbone=args.backbone, image_min_side=args.image_min_side,
                    image_max_side=args.image_max_side, pad_multiple=args.pad_multiple)
    calibration = None
    for fmt in exports:
        path = os.path.join(folder, FILES[fmt])
        print(f"Exporting to {fmt}...", flush=True)
        export_model(model, path, fmt, metadata=metadata, check=True)
        rows.append((fmt, "float32", path))
        if args.int8 and fmt in INT8_FORMATS:
            if calibration is None:
                if args.calibration is not None:
                    calibration = dataset_generator(parser, args, args.calibration, backbone)
                else:
                    print("int8 calibration on the benchmark's own pictures (pass --calibration TYPE ... last on "
                          "the line to calibrate on others)")
                    calibration = common.create_generator(parser, args, backbone, shuffle_groups=False,
                                                          skip_bad_images=True)
            int8_path = os.path.join(folder, "int8", FILES[fmt])
            print(f"Exporting to {fmt} int8...", flush=True)
            export_model(model, int8_path, fmt, metadata=metadata, check=False, int8=True, calibration=calibration,
                         calibration_images=args.calibration_images)
            rows.append((fmt, "int8", int8_path))
    return rows


def main(args=None):
    """maskrcnn-benchmark; returns 0 (exits with status 2 on bad arguments)."""
    parser, args, argv = parse_args(args)
    from ..models.quantize import file_size

    missing = [fmt for fmt in args.formats if not installed(fmt)]
    for fmt in missing:
        print(f"{fmt}: left out, its runtime or converter is not installed")
    args.formats = [fmt for fmt in args.formats if fmt not in missing]
    folder = args.dir or tempfile.mkdtemp(prefix="maskrcnn-benchmark-")
    os.makedirs(folder, exist_ok=True)
    rows = []
    try:
        for fmt, precision, path in export_rows(parser, args, folder):
            if fmt == "keras" and "keras" not in args.formats:
                continue
            print(f"Measuring {fmt} {precision}...", flush=True)
            row = dict(format=fmt, precision=precision, file=path, size_mb=file_size(path) / 1e6)
            row.update(_run_row(argv, fmt, precision, path, args.quieted))
            rows.append(row)
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print(format_table(rows))
    if args.output:
        from ..evaluation.reports import write_json

        for row in rows:
            if not args.dir:
                row.pop("file")
        write_json(args.output, rows)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
