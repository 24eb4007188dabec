"""Prediction latency and memory: RetinaNet detections alone against the full Mask R-CNN with masks.

    .venv/bin/python benchmarks/predict.py [--detections 0,25,50,100] [--runs 3] [--warmup 1]
                                           [--rss-detections 0,100] [--rss-runs 1]
                                           [--breakdown-detections 100] [--breakdown-runs 2]
                                           [--no-breakdown] [--no-rss] [--no-paired]
                                           [--pooled-variant] [--height 800] [--width 1024]
                                           [--backbone resnet50] [--classes 80] [--backend-threads N]
                                           [--seed 0]

One random image (fixed seed), random weights (fixed seed), batch 1, `model.predict_on_batch`.
The prediction model's mask branch (`DetectionMasks`) runs the mask head only on the leading rows
that hold detections, in static-shape buckets, so its cost depends on the number of detections k.
For every k of --detections:
  k = 0: the library's defaults (score_threshold 0.05, max_detections 100); random weights give no
         detection (the classification prior is 0.01), so the mask head does not run at all;
  k > 0: score_threshold 0.0 and max_detections k for both models, so FilterDetections returns
         exactly k real detections (after NMS) and the mask head runs on k rows;
and measures
  (a) `retinanet_bbox(model, ...)`: image -> [regression, classification, boxes, scores, labels];
  (b) the prediction model `model`, with masks;
  b / a, from one process per k in which (a) and (b) share weights and their calls alternate
  (a b, b a, ...), so both see the same load: the headline ratio, the median of per-pair ratios.
Unless --no-rss, (a) and (b) also run each in a process of its own for every k of --rss-detections,
for the peak RSS of each variant (resource.getrusage) and a rough second timing. Unless
--no-breakdown, the mask branch at k = --breakdown-detections is split into sub-models sharing the
model's layers and fed with its real P3..P7 and detections: the `masks` layer (DetectionMasks) as a
whole, its RoiAlign, its mask head and the head's parts. --pooled-variant adds, per RSS k, a
process timing image -> RoiAlign's pooled features.

Timings are the median (and min) of --runs (paired), --rss-runs or --breakdown-runs calls after
--warmup calls; "cpu s" is the process CPU time per call (all threads), less sensitive than wall
time to other processes on the machine; "load" is the 1-minute load average when a process
started and ended. The defaults take about 13-15 minutes on a loaded 2-core machine.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

MB = 1024.0 * 1024.0
RESULT_TAG = "RESULT-JSON "
DEFAULT_THRESHOLD = 0.05
DEFAULT_MAX_DETECTIONS = 100

# Reference points of the issue (other implementations, other hardware; for orientation only).
REFERENCES = [
    ("keras-maskrcnn 0.2.2 (original), masks", 2.93),
    ("keras-retinanet (original), boxes only", 2.11),
    ("torchvision maskrcnn_resnet50_fpn, without mask pasting", 3.55),
]
REFERENCE_RATIO = 2.93 / 2.11
GOAL_RATIO = 1.3


def filter_options(k):
    """FilterDetections options giving k real detections: k = 0 the defaults, k > 0 threshold 0, max k."""
    if k == 0:
        return dict(score_threshold=DEFAULT_THRESHOLD, max_detections=DEFAULT_MAX_DETECTIONS)
    return dict(score_threshold=0.0, max_detections=k)


# --------------------------------------------------------------------------------------------
# measurement helpers (child process)
# --------------------------------------------------------------------------------------------

def rss_mb():
    """Current resident set size of this process in MB (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MB
    except (OSError, ValueError):
        return peak_rss_mb()


def peak_rss_mb():
    """Peak resident set size of this process in MB (ru_maxrss: KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024.0


def load1():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def time_calls(fn, runs, warmup):
    """(wall seconds, process CPU seconds) of `runs` calls of fn after `warmup` calls; last output."""
    out = None
    for _ in range(warmup):
        out = fn()
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, out


def summary(walls, cpus):
    return dict(median=statistics.median(walls), min=min(walls), max=max(walls), walls=walls,
                cpu=statistics.median(cpus))


def setup_backend(args):
    """Seeds and threads; returns keras. Must run before any model is built."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    if args.backend_threads:
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(args.backend_threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.backend_threads)
        elif backend == "torch":
            import torch

            torch.set_num_threads(args.backend_threads)
        else:
            print(f"--backend-threads is not applied on the {backend} backend", file=sys.stderr)
    keras.utils.set_random_seed(args.seed)
    np.random.seed(args.seed)
    return keras


def make_image(args, backbone):
    import numpy as np

    rng = np.random.default_rng(args.seed)
    image = rng.uniform(0.0, 255.0, size=(1, args.height, args.width, 3)).astype(np.float32)
    return backbone.preprocess_image(image)


def build(args, k):
    """(backbone, prediction model with masks, retinanet_bbox sharing its weights) for k detections."""
    from keras_maskrcnn import models

    options = filter_options(k)
    backbone = models.backbone(args.backbone)
    model = backbone.maskrcnn(num_classes=args.classes, **options)
    bbox = models.retinanet_bbox(model, **options)
    return backbone, model, bbox


def count_detections(scores):
    import numpy as np

    return int(np.sum(np.asarray(scores) > -1.0))


def count_mask_rows(masks):
    """Rows of (B, N, h, w, C) masks that are not all zero (the rows the mask head ran on and kept)."""
    import numpy as np

    masks = np.asarray(masks)
    return int(np.sum(np.any(masks.reshape(masks.shape[0], masks.shape[1], -1) != 0, axis=-1)))


def pyramid_outputs(model):
    return [model.get_layer(level).output for level in ("P3", "P4", "P5", "P6", "P7")]


# --------------------------------------------------------------------------------------------
# variants (child process)
# --------------------------------------------------------------------------------------------

def run_variant(args):
    """Times one model variant in a process of its own (for its peak RSS); returns a dict for the parent."""
    start_load = load1()
    keras = setup_backend(args)
    result = dict(rss_import=rss_mb(), peak_import=peak_rss_mb())
    backbone, model, bbox = build(args, args.k)

    if args.variant == "bbox":
        net = bbox
    elif args.variant == "full":
        net = model
    elif args.variant == "pooled":
        detections = model.get_layer("filtered_detections").output
        pooled = model.get_layer("masks").roi_align([detections[0]] + pyramid_outputs(model))
        net = keras.Model(model.inputs[0], [pooled, detections[1]], name="image_to_pooled")
    else:
        raise ValueError(args.variant)
    image = make_image(args, backbone)
    result.update(rss_built=rss_mb(), peak_built=peak_rss_mb(), outputs=len(net.outputs))

    walls, cpus, out = time_calls(lambda: net.predict_on_batch(image), args.runs, args.warmup)
    result.update(summary(walls, cpus))
    scores = out[1] if args.variant == "pooled" else out[3]
    result.update(rss_end=rss_mb(), peak_end=peak_rss_mb(), detections=count_detections(scores),
                  load=(start_load, load1()))
    if args.variant == "full":
        result["mask_rows"] = count_mask_rows(out[-1])
        result["masks_shape"] = list(out[-1].shape)
    return result


def run_paired(args):
    """(a) and (b) sharing weights in one process, calls alternating a b / b a: the ratio under one load."""
    start_load = load1()
    setup_backend(args)
    backbone, model, bbox = build(args, args.k)
    image = make_image(args, backbone)
    outputs = {}

    def call(name, net):
        def fn():
            outputs[name] = net.predict_on_batch(image)
        return fn

    calls = {"bbox": call("bbox", bbox), "full": call("full", model)}
    for run in range(args.warmup):
        for name in (("bbox", "full") if run % 2 == 0 else ("full", "bbox")):
            calls[name]()
    times = {"bbox": [], "full": []}
    cpus = {"bbox": [], "full": []}
    for run in range(args.runs):
        for name in (("bbox", "full") if run % 2 == 0 else ("full", "bbox")):
            wall, cpu = time.perf_counter(), time.process_time()
            calls[name]()
            times[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
    ratios = [b / a for a, b in zip(times["bbox"], times["full"])]
    return dict(bbox=summary(times["bbox"], cpus["bbox"]), full=summary(times["full"], cpus["full"]),
                ratio=statistics.median(ratios), ratios=ratios, load=(start_load, load1()),
                detections_a=count_detections(outputs["bbox"][3]),
                detections_b=count_detections(outputs["full"][3]),
                mask_rows=count_mask_rows(outputs["full"][-1]), masks_shape=list(outputs["full"][-1].shape),
                peak_end=peak_rss_mb())


def run_breakdown(args):
    """Mask-branch parts as sub-models sharing the model's layers, fed with its real intermediates."""
    start_load = load1()
    keras = setup_backend(args)
    import numpy as np

    backbone, model, _ = build(args, args.k)
    image = make_image(args, backbone)
    detections_t = model.get_layer("filtered_detections").output
    intermediates = keras.Model(model.inputs[0], [detections_t[0], detections_t[1]] + pyramid_outputs(model)
                                ).predict_on_batch(image)
    boxes, scores, features = intermediates[0], intermediates[1], list(intermediates[2:])
    valid = count_detections(scores)

    masks_layer = model.get_layer("masks")
    roi_layer = masks_layer.roi_align
    mask_model = masks_layer.mask_model
    count = boxes.shape[1]
    box_input = keras.Input(shape=(count, 4))
    score_input = keras.Input(shape=(count,))
    feature_inputs = [keras.Input(shape=(None, None, f.shape[-1])) for f in features]
    branch_model = keras.Model([box_input, score_input] + feature_inputs,
                               masks_layer([box_input, score_input] + feature_inputs))
    roi_model = keras.Model([box_input] + feature_inputs, roi_layer([box_input] + feature_inputs))

    def sub_model(first, last, shape):
        inputs = keras.Input(shape=shape)
        x = inputs
        active = False
        for layer in mask_model.layers[1:]:
            active = active or layer.name == first
            if active:
                x = layer(x)
            if layer.name == last:
                break
        return keras.Model(inputs, x)

    rows = []

    def measure(name, fn, flops=None, note=""):
        walls, cpus, out = time_calls(fn, args.runs, args.warmup)
        rows.append(dict(name=name, flops=flops, note=note, **summary(walls, cpus)))
        print(f"  measured {name.strip()}: {statistics.median(walls):.3f} s", file=sys.stderr, flush=True)
        return out

    pooled = np.asarray(roi_model.predict_on_batch([boxes] + features))
    flat = pooled.reshape((-1,) + pooled.shape[2:])
    rois, ph, pw, channels = flat.shape
    mid = mask_model.get_layer("roi_mask_0").filters
    classes = mask_model.get_layer("roi_mask").filters
    conv14 = 2.0 * rois * ph * pw * 9 * (channels * mid + 3 * mid * mid)
    transposed = any(layer.name == "roi_mask_deconv" for layer in mask_model.layers)
    conv28 = 2.0 * rois * (2 * ph) * (2 * pw) * (1 if transposed else 9) * mid * mid
    conv1 = 2.0 * rois * (2 * ph) * (2 * pw) * mid * classes

    measure("`masks` layer (DetectionMasks), whole", lambda: branch_model.predict_on_batch([boxes, scores] + features),
            flops=conv14 + conv28 + conv1, note=f"what (b) adds to (a); {valid} real detections")
    measure("  its RoiAlign (real P3..P7, detected boxes)", lambda: roi_model.predict_on_batch([boxes] + features),
            note=f"{rois} boxes")
    measure("  its mask head, whole (mask_submodel)", lambda: mask_model.predict_on_batch(flat),
            flops=conv14 + conv28 + conv1, note=f"{rois} RoIs")
    convs14 = sub_model("roi_mask_0", "roi_mask_3", flat.shape[1:])
    if transposed:
        up28, up_name = sub_model("roi_mask_deconv", "roi_mask_deconv", flat.shape[1:]), \
            "roi_mask_deconv: transposed conv2x2 s2 256 -> 28x28"
    else:
        up28, up_name = sub_model("roi_mask_upsample", "roi_mask_4", flat.shape[1:]), \
            "upsample 2x + roi_mask_4: conv3x3 256 at 28x28"
    cls = sub_model("roi_mask", "roi_mask", (2 * ph, 2 * pw, mid))
    measure("    roi_mask_0..3: 4 x conv3x3 256 at 14x14", lambda: convs14.predict_on_batch(flat), flops=conv14)
    measure(f"    {up_name}", lambda: up28.predict_on_batch(flat), flops=conv28)
    up = np.zeros((rois, 2 * ph, 2 * pw, mid), np.float32) + np.abs(flat).mean()
    measure(f"    roi_mask: conv1x1 -> {classes} + sigmoid at 28x28", lambda: cls.predict_on_batch(up), flops=conv1)

    return dict(rows=rows, rois=int(rois), count=int(count), valid=valid, load=(start_load, load1()),
                peak_end=peak_rss_mb())


# --------------------------------------------------------------------------------------------
# parent: run the children, print the tables
# --------------------------------------------------------------------------------------------

def child(args, variant, k, runs):
    command = [sys.executable, os.path.abspath(__file__), "--_child", variant, "--_k", str(k),
               "--runs", str(runs), "--warmup", str(args.warmup), "--height", str(args.height),
               "--width", str(args.width), "--backbone", args.backbone, "--classes", str(args.classes),
               "--seed", str(args.seed)]
    if args.backend_threads:
        command += ["--backend-threads", str(args.backend_threads)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    started = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
            result["elapsed"] = time.perf_counter() - started
            for message in proc.stderr.splitlines():
                if message.startswith("  measured "):
                    print(message, file=sys.stderr, flush=True)
            return result
    sys.stderr.write(proc.stderr[-4000:])
    raise RuntimeError(f"variant {variant} (k={k}) failed with exit code {proc.returncode}")


def fmt_load(load):
    return f"{load[0]:.1f}->{load[1]:.1f}"


def describe_k(k):
    options = filter_options(k)
    return f"thr {options['score_threshold']:.2f}, max {options['max_detections']}"


def print_header(args):
    import importlib.metadata as md

    def version(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "-"

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print("keras-maskrcnn prediction benchmark (benchmarks/predict.py)")
    print(f"  backend {backend}; keras {version('keras')}, tensorflow {version('tensorflow')}, "
          f"keras-maskrcnn {version('keras-maskrcnn')}; python {platform.python_version()}")
    print(f"  {args.backbone}, {args.classes} classes, input 1x{args.height}x{args.width}x3 (random, seed "
          f"{args.seed}), random weights (seed {args.seed}); predict_on_batch after {args.warmup} warm-up "
          f"call(s); backend threads {args.backend_threads or 'default'}")
    print(f"  host: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; load average at start "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"  k detections: k=0 score_threshold {DEFAULT_THRESHOLD} (library default, max_detections "
          f"{DEFAULT_MAX_DETECTIONS}; random weights give no detection); k>0 max_detections=k, score_threshold 0")
    print(flush=True)


def verdict(ratio):
    return "meets" if ratio <= GOAL_RATIO else "misses"


def print_paired(paired, runs):
    print(f"b/a by number of detections k -- paired: per k one process, (a) and (b) sharing weights, calls "
          f"alternating (a b, b a, ...) so both see the same load; {runs} pairs after the warm-up; b/a = median "
          f"of the per-pair ratios (the headline ratio)")
    head = (f"{'k':>4} {'filter':<17} {'dets a/b':>8} {'mask rows':>9} {'a median s':>10} {'b median s':>10} "
            f"{'b-a s':>6} {'b/a':>5} {'b/a cpu':>7} {'goal':>6}  {'per-pair b/a':<20} {'peak RSS':>9} {'load':>9}")
    print(head)
    print("-" * len(head))
    for k, r in paired.items():
        pairs = " ".join(f"{x:.2f}" for x in r["ratios"])
        print(f"{k:>4} {describe_k(k):<17} {r['detections_a']:>3}/{r['detections_b']:<4} {r['mask_rows']:>9} "
              f"{r['bbox']['median']:>10.3f} {r['full']['median']:>10.3f} "
              f"{r['full']['median'] - r['bbox']['median']:>6.2f} {r['ratio']:>5.2f} "
              f"{r['full']['cpu'] / r['bbox']['cpu']:>7.2f} {verdict(r['ratio']):>6}  {pairs:<20} "
              f"{r['peak_end']:>6.0f} MB {fmt_load(r['load']):>9}")
    print("-" * len(head))
    print("k detections: max_detections=k, score_threshold 0 (k=0: score_threshold 0.05, max_detections 100);")
    print("  dets a/b = detections returned (score > -1) by (a) / (b); mask rows = rows of (b)'s masks that are not")
    print(f"  all zero (the rows the mask head ran on); goal: b/a <= {GOAL_RATIO}; b/a cpu = ratio of median process")
    print("  CPU time per call; peak RSS = ru_maxrss of the paired process (a and b built and run together)")
    print(flush=True)


def print_rss_table(results, ks, runs, warmup):
    print(f"separate processes, one per variant and k, for each variant's own peak RSS ({runs} timed call(s) after "
          f"{warmup} warm-up; timings rough)")
    head = (f"{'variant':<32} {'k':>4} {'median s':>9} {'min s':>7} {'cpu s':>7} {'dets':>5} "
            f"{'peak RSS':>9} {'build +':>8} {'predict +':>10} {'load':>9}")
    print(head)
    print("-" * len(head))
    names = {"bbox": "(a) retinanet_bbox(model)", "pooled": "    image -> RoiAlign pooled",
             "full": "(b) model, with masks"}
    for k in ks:
        for variant in ("bbox", "pooled", "full"):
            r = results.get((variant, k))
            if r is None:
                continue
            print(f"{names[variant]:<32} {k:>4} {r['median']:>9.3f} {r['min']:>7.3f} {r['cpu']:>7.3f} "
                  f"{r['detections']:>5d} {r['peak_end']:>6.0f} MB {r['rss_built'] - r['rss_import']:>5.0f} MB "
                  f"{r['peak_end'] - r['rss_built']:>7.0f} MB {fmt_load(r['load']):>9}")
        a, b = results.get(("bbox", k)), results.get(("full", k))
        if a and b:
            ratio = b["median"] / a["median"]
            print(f"{'    b/a (separate processes)':<32} {k:>4} {ratio:>9.2f} {b['min'] / a['min']:>7.2f} "
                  f"{b['cpu'] / a['cpu']:>7.2f}   (mask branch +{b['median'] - a['median']:.3f} s, "
                  f"+{b['peak_end'] - a['peak_end']:.0f} MB peak RSS)")
        print("-" * len(head))
    print("k detections: max_detections=k, score_threshold 0 (k=0: library defaults); peak RSS = ru_maxrss of the")
    print("  variant's process; build + = RSS added by building the model; predict + = peak RSS during warm-up and")
    print("  runs above the built model; load = 1-min load average at start -> end of the process")
    print(flush=True)


def print_breakdown(breakdown, k, runs, warmup):
    print(f"mask branch breakdown (k={k}: {describe_k(k)}; {breakdown['valid']} real detections of "
          f"{breakdown['count']} rows, {breakdown['rois']} RoIs through the head; sub-models sharing the model's "
          f"layers, fed with its real P3..P7 and detections; median of {runs} calls after {warmup} warm-up; "
          f"GFLOP counts the mask head's convolutions only; load {fmt_load(breakdown['load'])})")
    head = f"{'part':<52} {'median s':>9} {'min s':>7} {'cpu s':>7} {'GFLOP':>7} {'GFLOP/s':>8}  note"
    print(head)
    print("-" * len(head))
    for row in breakdown["rows"]:
        flops = row["flops"]
        gflop = f"{flops / 1e9:7.1f}" if flops else f"{'':>7}"
        rate = f"{flops / 1e9 / row['median']:8.1f}" if flops else f"{'':>8}"
        print(f"{row['name']:<52} {row['median']:>9.3f} {row['min']:>7.3f} {row['cpu']:>7.3f} {gflop} {rate}  "
              f"{row['note']}")
    print("-" * len(head))
    print(flush=True)


def print_references(paired):
    print("reference points from the issue (other hardware and implementations; compare ratios, not seconds):")
    for name, seconds in REFERENCES:
        print(f"  {name:<58} {seconds:5.2f} s")
    print(f"  {'original ratio keras-maskrcnn / keras-retinanet':<58} {REFERENCE_RATIO:5.2f}")
    for k, r in paired.items():
        print(f"  {f'this library, k={k} detections: b / a paired':<58} {r['ratio']:5.2f}"
              f"   ({r['full']['median']:.2f} s / {r['bbox']['median']:.2f} s; {verdict(r['ratio'])} goal)")
    print(f"  goal: b / a <= {GOAL_RATIO}")


def parse_ks(text, parser, option):
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        parser.error(f"{option} takes comma-separated integers")
    if any(k < 0 for k in ks):
        parser.error(f"{option}: k must be >= 0")
    return ks


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", default="0,25,50,100",
                        help="comma-separated k: numbers of real detections to measure b/a at (k=0: default "
                             "score threshold 0.05; k>0: max_detections=k, score_threshold 0)")
    parser.add_argument("--runs", type=int, default=3, help="timed pairs per k (paired)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls (pairs) before the timed ones")
    parser.add_argument("--rss-detections", default="0,100",
                        help="k at which (a) and (b) also run in processes of their own, for peak RSS")
    parser.add_argument("--rss-runs", type=int, default=1, help="timed calls in the RSS processes")
    parser.add_argument("--breakdown-detections", type=int, default=100, help="k of the mask-branch breakdown")
    parser.add_argument("--breakdown-runs", type=int, default=2, help="timed calls per breakdown part")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the mask-branch breakdown")
    parser.add_argument("--no-rss", action="store_true", help="skip the separate per-variant processes")
    parser.add_argument("--no-paired", action="store_true", help="skip the paired runs")
    parser.add_argument("--pooled-variant", action="store_true",
                        help="also time image -> RoiAlign pooled features in a process of its own per RSS k")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--backend-threads", type=int, default=0,
                        help="intra- and inter-op threads of the backend (default: the backend's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--_child", dest="variant", help=argparse.SUPPRESS)
    parser.add_argument("--_k", dest="k", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.runs, args.rss_runs, args.breakdown_runs) < 1 or args.warmup < 0:
        parser.error("--runs, --rss-runs and --breakdown-runs must be >= 1 and --warmup >= 0")
    args.ks = parse_ks(args.detections, parser, "--detections")
    args.rss_ks = parse_ks(args.rss_detections, parser, "--rss-detections")
    if args.breakdown_detections < 1:
        parser.error("--breakdown-detections must be >= 1 (at k=0 the mask head does not run)")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.variant:
        runner = {"breakdown": run_breakdown, "paired": run_paired}.get(args.variant, run_variant)
        result = runner(args)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    started = time.perf_counter()

    def progress(message):
        print(f"[{time.perf_counter() - started:6.0f} s] {message} (load {load1():.1f}) ...", file=sys.stderr,
              flush=True)

    print_header(args)
    paired, results, breakdown = {}, {}, None
    if not args.no_paired:
        for k in args.ks:
            progress(f"running paired a/b, k={k} ({describe_k(k)})")
            paired[k] = child(args, "paired", k, args.runs)
    if not args.no_rss:
        variants = ("bbox", "pooled", "full") if args.pooled_variant else ("bbox", "full")
        for k in args.rss_ks:
            for variant in variants:
                progress(f"running {variant} alone, k={k} ({describe_k(k)})")
                results[(variant, k)] = child(args, variant, k, args.rss_runs)
    if not args.no_breakdown:
        k = args.breakdown_detections
        progress(f"running mask-branch breakdown, k={k} ({describe_k(k)})")
        breakdown = child(args, "breakdown", k, args.breakdown_runs)
    progress("done")

    if paired:
        print_paired(paired, args.runs)
    if results:
        print_rss_table(results, args.rss_ks, args.rss_runs, args.warmup)
    if breakdown:
        print_breakdown(breakdown, args.breakdown_detections, args.breakdown_runs, args.warmup)
    if paired:
        print_references(paired)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    print(f"\nlargest peak RSS of any child process: {children:.0f} MB; total {time.perf_counter() - started:.0f} s; "
          f"load average at end " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
