"""Prediction latency in float32 against mixed_bfloat16 (or mixed_float16), same weights, one process.

    .venv/bin/python benchmarks/precision.py [--policy mixed_bfloat16] [--pairs 5] [--warmup 1]
                                             [--detections 100] [--height 800] [--width 1024]
                                             [--backbone resnet50] [--classes 80] [--seed 0]
                                             [--backend-threads N]

Builds the prediction model twice, (A) float32 and (B) under --policy, copies A's random weights
(fixed seed) into B, and times `predict_on_batch` on one random image (batch 1), calls alternating
A B A B ... for --pairs pairs after --warmup untimed pairs, so both see the same machine load.
score_threshold 0 and max_detections k (--detections) make FilterDetections return k real
detections from random weights, so the mask head runs on k rows in both models.

Prints per model the median and min wall time, the median process CPU time (all threads) per call,
B / A as the median of the per-pair ratios and the speed-up A / B, the detections and mask rows
of each model, how far B's P3 features and classification output are from A's, and the load average (uptime) at
start and end: the timings depend on what else runs on the machine.
"""

import argparse
import os
import platform
import statistics
import sys
import time

from predict import count_mask_rows, make_image, setup_backend


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def build(args):
    """(backbone, float32 model, reduced-precision model with the float32 model's weights)."""
    from keras_maskrcnn import models

    options = dict(num_classes=args.classes, score_threshold=0.0, max_detections=args.detections)
    backbone = models.backbone(args.backbone)
    reference = backbone.maskrcnn(**options)
    reduced = backbone.maskrcnn(mixed_precision=args.policy, **options)
    reduced.set_weights(reference.get_weights())
    return backbone, reference, reduced


def time_pairs(models, image, pairs, warmup):
    """Calls models[0], models[1], models[0], ... ; returns (walls, cpus, last outputs) per model."""
    walls = [[], []]
    cpus = [[], []]
    outputs = [None, None]
    for pair in range(warmup + pairs):
        for index, model in enumerate(models):
            wall, cpu = time.perf_counter(), time.process_time()
            outputs[index] = model.predict_on_batch(image)
            if pair >= warmup:
                walls[index].append(time.perf_counter() - wall)
                cpus[index].append(time.process_time() - cpu)
    return walls, cpus, outputs


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="mixed_bfloat16", choices=("mixed_bfloat16", "mixed_float16"),
                        help="dtype policy of model B (default mixed_bfloat16)")
    parser.add_argument("--pairs", type=int, default=5, help="timed A B pairs (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed A B pairs first (default 1)")
    parser.add_argument("--detections", type=int, default=100,
                        help="max_detections k; score_threshold 0 gives k detections (default 100)")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend-threads", type=int, default=0,
                        help="intra- and inter-op threads of the backend (default: the backend's own)")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.warmup < 0 or args.detections < 1:
        parser.error("--pairs and --detections must be >= 1, --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    start_load = load_average()
    started = time.perf_counter()
    keras = setup_backend(args)
    import numpy as np

    backbone, reference, reduced = build(args)
    image = make_image(args, backbone)
    (walls_a, walls_b), (cpus_a, cpus_b), (out_a, out_b) = time_pairs(
        (reference, reduced), image, args.pairs, args.warmup)
    ratios = [b / a for a, b in zip(walls_a, walls_b)]

    print("keras-maskrcnn precision benchmark (benchmarks/precision.py)")
    print(f"  backend {keras.backend.backend()}, keras {keras.__version__}; python {platform.python_version()}; "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); backend threads "
          f"{args.backend_threads or 'default'}")
    print(f"  {args.backbone}, {args.classes} classes, input 1x{args.height}x{args.width}x3 (random, seed "
          f"{args.seed}), random weights shared by A and B; score_threshold 0, max_detections {args.detections}")
    print(f"  A float32 (P3 computes in {reference.get_layer('P3').compute_dtype}); B {args.policy} "
          f"(P3 computes in {reduced.get_layer('P3').compute_dtype}, variables "
          f"{reduced.get_layer('P3').variable_dtype})")
    print(f"  predict_on_batch alternating A B, {args.warmup} warm-up pair(s), {args.pairs} timed pairs")
    print()
    head = f"{'model':<24} {'median s':>9} {'min s':>7} {'cpu s':>7} {'dets':>5} {'mask rows':>9}  per call s"
    print(head)
    print("-" * len(head))
    for name, walls, cpus, out in (("A float32", walls_a, cpus_a, out_a), (f"B {args.policy}", walls_b, cpus_b, out_b)):
        detections = int(np.sum(np.asarray(out[3]) > -1.0))
        print(f"{name:<24} {statistics.median(walls):>9.3f} {min(walls):>7.3f} {statistics.median(cpus):>7.3f} "
              f"{detections:>5} {count_mask_rows(out[5]):>9}  " + " ".join(f"{w:.2f}" for w in walls))
    print("-" * len(head))
    ratio = statistics.median(ratios)
    print(f"B / A (median of per-pair ratios): {ratio:.3f}   speed-up A / B: {1.0 / ratio:.2f}x   "
          f"per pair: " + " ".join(f"{r:.2f}" for r in ratios))
    print(f"B / A cpu time: {statistics.median(cpus_b) / statistics.median(cpus_a):.3f}")
    features = [keras.Model(m.inputs[0], m.get_layer("P3").output).predict_on_batch(image)
                for m in (reference, reduced)]
    reduced_dtype = keras.backend.standardize_dtype(features[1].dtype)
    features = [np.asarray(f, np.float64) for f in features]
    relative = np.linalg.norm(features[1] - features[0]) / np.linalg.norm(features[0])
    difference = np.abs(np.asarray(out_a[1], np.float64) - np.asarray(out_b[1], np.float64))
    print(f"B vs A: P3 features ({reduced_dtype} in B) relative L2 error {relative:.2e}; "
          f"classification output max |diff| {difference.max():.2e}")
    print(f"output dtypes B: " + ", ".join(str(np.asarray(o).dtype) for o in out_b))
    print(f"load average (1, 5, 15 min): start {start_load}, end {load_average()}; "
          f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
