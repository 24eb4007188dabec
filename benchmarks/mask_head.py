"""The mask head alone, nearest upsampling + conv3x3 against the 2x2 stride-2 transposed conv.

    .venv/bin/python benchmarks/mask_head.py [--rois 100] [--classes 80] [--width 256] [--pairs 7] [--threads 2]

`mask_submodel(classes, feature_size=width, upsampling=...)` on (rois, 14, 14, 256) random
features, `predict_on_batch`, after one warm-up call each; the calls alternate nearest, transposed,
nearest, ... Prints each mode's median, min and max wall seconds, the per-pair ratio and the
multiply-adds (GMAC) of each head.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from predict import load1  # noqa: E402


def gmac(mode, width, classes, channels=256):
    convs = 14 * 14 * 9 * channels * width + 3 * 14 * 14 * 9 * width * width
    up = 28 * 28 * 9 * width * width if mode == "nearest" else 28 * 28 * width * width
    return (convs + up + 28 * 28 * width * classes) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=100)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from keras_maskrcnn.models.mask_head import MASK_UPSAMPLINGS, mask_submodel

    x = np.random.default_rng(0).normal(size=(args.rois, 14, 14, 256)).astype("float32")
    heads = {mode: mask_submodel(args.classes, feature_size=args.width, upsampling=mode) for mode in MASK_UPSAMPLINGS}
    for head in heads.values():
        head.predict_on_batch(x)
    times = {mode: [] for mode in heads}
    for _ in range(args.pairs):
        for mode, head in heads.items():
            started = time.perf_counter()
            head.predict_on_batch(x)
            times[mode].append(time.perf_counter() - started)
    print(f"mask head on {args.rois} RoIs, width {args.width}, {args.classes} classes, {keras.backend.backend()}, "
          f"{args.threads} threads, {args.pairs} pairs, load {load1():.2f}")
    for mode, values in times.items():
        print(f"  {mode:10s} median {statistics.median(values):.3f} s  min {min(values):.3f}  max {max(values):.3f}  "
              f"{gmac(mode, args.width, args.classes) * args.rois:.1f} GMAC")
    ratios = [t / n for t, n in zip(times["transposed"], times["nearest"])]
    print(f"  transposed / nearest: per pair median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
