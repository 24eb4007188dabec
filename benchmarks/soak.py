"""Soak test of training: resident memory and NaN over a long run.

    nice .venv/bin/python benchmarks/soak.py [--steps 2000] [--sample-every 100] [--baseline-step 200]
                                             [--batch-size 2] [--images 200] [--size 96]
                                             [--backbone mobilenetv2] [--json FILE]

Trains from random weights on a synthetic shapes set (`maskrcnn-shapes`, 96 px) through
maskrcnn-train's own code (`bin/train.py`: argument parsing, generators with
`--random-transform`, model building and compiling) with the demo's settings (FPN 128 / mask
head 64 channels, Adam 1e-3 clipped at norm 1), in epochs of --sample-every steps, and samples
the resident set size (/proc/self/statm) after every --sample-every steps. Reports the RSS table,
the growth from step --baseline-step to the end and the largest RSS after it (goal: at most 5 %
above the baseline), and every step whose loss was not finite.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from predict import rss_mb  # noqa: E402  (benchmarks/predict.py)

GOAL_GROWTH = 0.05
ANCHORS = ("[anchor_parameters]\nsizes = 16 32 64 128 256\nstrides = 8 16 32 64 128\n"
           "ratios = 0.5 1 2\nscales = 1 1.26 1.59\n")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    parser.add_argument("--sample-every", type=int, default=100, help="steps between RSS samples (default 100)")
    parser.add_argument("--baseline-step", type=int, default=200,
                        help="growth is measured from the sample at this step (default 200)")
    parser.add_argument("--batch-size", type=int, default=2, help="images per step (default 2)")
    parser.add_argument("--images", type=int, default=200, help="images in the shapes set (default 200)")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels (default 96)")
    parser.add_argument("--backbone", default="mobilenetv2", help="backbone (default mobilenetv2)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.steps % args.sample_every or args.baseline_step % args.sample_every:
        parser.error("--steps and --baseline-step must be multiples of --sample-every")
    if not 0 < args.baseline_step < args.steps:
        parser.error("--baseline-step must lie between 0 and --steps")
    return args


def train_arguments(args, folder, annotations, classes):
    """maskrcnn-train's command line for this run (parsed by its own parser)."""
    config = os.path.join(folder, "anchors.ini")
    with open(config, "w") as handle:
        handle.write(ANCHORS)
    return ["--backbone", args.backbone, "--feature-size", "128", "--mask-feature-size", "64", "--lr", "1e-3",
            "--clipnorm", "1", "--batch-size", str(args.batch_size), "--random-transform",
            "--image-min-side", str(args.size), "--image-max-side", str(args.size), "--max-detections", "10",
            "--config", config, "--seed", "0", "--no-snapshots", "--no-evaluation", "--tensorboard-dir", "",
            "csv", annotations, classes]


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from keras_maskrcnn.bin import common, train
    from keras_maskrcnn.datasets.shapes import make_shapes_dataset
    from keras_maskrcnn.models import backbone as get_backbone
    from keras_maskrcnn.preprocessing.epoch_data import EpochData

    started = time.time()
    samples, bad_losses = [], []

    class Sampler(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step = 0

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            loss = float((logs or {}).get("loss", float("nan")))
            if not math.isfinite(loss):
                bad_losses.append((self.step, loss))
            if self.step % args.sample_every == 0:
                samples.append({"step": self.step, "rss_mb": round(rss_mb(), 1), "loss": loss,
                                "seconds": round(time.time() - started, 1)})
                print(f"step {self.step:5d}  RSS {samples[-1]['rss_mb']:8.1f} MB  loss {loss:.4f}  "
                      f"{samples[-1]['seconds']:7.1f} s", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        annotations, classes = make_shapes_dataset(os.path.join(folder, "shapes"), images=args.images,
                                                   size=args.size, seed=1)
        parser, train_args = train.parse_args(train_arguments(args, folder, annotations, classes))
        backbone = get_backbone(train_args.backbone)
        anchor_params = common.anchor_parameters(parser, train_args.config)
        generator, _ = train.create_generators(parser, train_args, backbone, anchor_params)
        keras.utils.set_random_seed(0)
        model, _ = train.create_models(parser, train_args, backbone, generator.num_classes(), anchor_params)
        print(f"{keras.backend.backend()}, {args.backbone}, batch {args.batch_size}, {args.size} px, "
              f"{args.steps} steps; RSS before training {rss_mb():.1f} MB", flush=True)
        model.fit(EpochData(generator, args.sample_every), epochs=args.steps // args.sample_every,
                  callbacks=[Sampler()], verbose=0)

    baseline = next(sample["rss_mb"] for sample in samples if sample["step"] == args.baseline_step)
    after = [sample["rss_mb"] for sample in samples if sample["step"] >= args.baseline_step]
    growth = after[-1] / baseline - 1.0
    peak_growth = max(after) / baseline - 1.0
    print("\n| step | RSS MB | loss |\n| ---: | ---: | ---: |")
    for sample in samples:
        print(f"| {sample['step']} | {sample['rss_mb']:.1f} | {sample['loss']:.4f} |")
    print(f"\nRSS growth from step {args.baseline_step} to {args.steps}: {100 * growth:+.1f} % "
          f"(largest after step {args.baseline_step}: {100 * peak_growth:+.1f} %; goal at most "
          f"{100 * GOAL_GROWTH:.0f} %): {'ok' if peak_growth <= GOAL_GROWTH else 'ABOVE GOAL'}")
    print(f"steps with a non-finite loss: {len(bad_losses)}" +
          (f" (first at step {bad_losses[0][0]})" if bad_losses else ""))
    print(f"total {time.time() - started:.0f} s")
    result = dict(vars(args), samples=samples, growth=growth, peak_growth=peak_growth,
                  non_finite_steps=[step for step, _ in bad_losses])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0 if peak_growth <= GOAL_GROWTH and not bad_losses else 1


if __name__ == "__main__":
    sys.exit(main())
