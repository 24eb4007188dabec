"""How often training and prediction trace their graphs over an epoch of images of many sizes.

    .venv/bin/python benchmarks/retracing.py [--data ../shared/data/tinycoco] [--set train2017]
                                             [--pad-multiples 32,128] [--backbone mobilenetv2]
                                             [--image-min-side 800] [--image-max-side 1333]
                                             [--images N] [--no-train] [--no-predict]
    KERAS_BACKEND=jax .venv/bin/python benchmarks/retracing.py ...

For every pad multiple, the COCO set is batched one image at a time (padded to that multiple, as
maskrcnn-train's generator does), a model with random weights (fixed seed) runs one
`train_on_batch` and one `predict_on_batch` per image, and the script counts how many times the
model's `call` was traced by each compiled function (a Python counter around `call`, which runs
only while a graph is being traced on TensorFlow and JAX). It prints the distinct padded shapes,
the traces, the first call's time, the mean time of the calls that traced, the median time of the
calls that did not trace, and the time of all calls together (what an epoch costs).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keras_maskrcnn import losses, models  # noqa: E402
from keras_maskrcnn.preprocessing.coco import CocoGenerator  # noqa: E402


class TraceCounter:
    """Replaces `model.call` by a wrapper that counts its calls (= traces inside compiled functions)."""

    def __init__(self, model):
        self.count = 0
        original = model.call

        def counted(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        model.call = counted


def run(args, pad_multiple):
    backbone = models.backbone(args.backbone)
    generator = CocoGenerator(args.data, args.set, batch_size=1, group_method="none", shuffle_groups=False,
                              image_min_side=args.image_min_side, image_max_side=args.image_max_side,
                              preprocess_image=backbone.preprocess_image, pad_multiple=pad_multiple, seed=0)
    count = min(len(generator), args.images or len(generator))
    batches = [generator[i] for i in range(count)]
    shapes = sorted({tuple(inputs["image"].shape[1:3]) for inputs, _ in batches})
    print(f"pad multiple {pad_multiple}: {count} images, {len(shapes)} distinct padded shapes "
          f"{', '.join(f'{h}x{w}' for h, w in shapes)}", flush=True)
    keras.utils.set_random_seed(0)
    model = backbone.maskrcnn(generator.num_classes(), max_detections=100)
    train = models.training_model(model)
    train.compile(loss=losses.training_losses(), optimizer=keras.optimizers.SGD(1e-5))
    phases = []
    if args.train:
        phases.append(("train_on_batch", train, lambda inputs, targets: train.train_on_batch(inputs, targets)))
    if args.predict:
        phases.append(("predict_on_batch", model, lambda inputs, targets: model.predict_on_batch(inputs["image"])))
    for name, traced_model, step in phases:
        counter = TraceCounter(traced_model)
        times, traced = [], []
        for inputs, targets in batches:
            before = counter.count
            start = time.perf_counter()
            step(inputs, targets)
            times.append(time.perf_counter() - start)
            traced.append(counter.count > before)
        steady = [t for t, was_traced in zip(times, traced) if not was_traced]
        tracing = [t for t, was_traced in zip(times, traced) if was_traced]
        steady_text = f"{statistics.median(steady):.2f} s" if steady else "n/a (every call traced)"
        tracing_text = f"{statistics.fmean(tracing):.2f} s" if tracing else "n/a"
        print(f"  {name:17s} traces {counter.count:3d} (calls that traced: {sum(traced)} of {len(times)}); "
              f"first call {times[0]:.2f} s; mean of calls that traced {tracing_text}; median of calls without "
              f"tracing {steady_text}; all {len(times)} calls {sum(times):.1f} s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                       "tinycoco"))
    parser.add_argument("--set", default="train2017")
    parser.add_argument("--pad-multiples", default="32,128")
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--image-min-side", type=int, default=800)
    parser.add_argument("--image-max-side", type=int, default=1333)
    parser.add_argument("--images", type=int, default=None, help="first N images only")
    parser.add_argument("--no-train", dest="train", action="store_false")
    parser.add_argument("--no-predict", dest="predict", action="store_false")
    args = parser.parse_args()
    if not os.path.isdir(args.data):
        parser.error(f"COCO folder {args.data!r} not found (pass --data)")
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, backbone {args.backbone}, "
          f"{args.set} of {os.path.abspath(args.data)}, sizes {args.image_min_side}/{args.image_max_side}")
    for multiple in (int(m) for m in args.pad_multiples.split(",")):
        run(args, multiple)


if __name__ == "__main__":
    main()
