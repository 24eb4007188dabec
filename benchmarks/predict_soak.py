"""Soak test of prediction: resident memory over thousands of pictures through maskrcnn-predict and the
Predictor.

    nice .venv/bin/python benchmarks/predict_soak.py MODEL [--pictures 5000] [--distinct 200]
                                                     [--sample-every 250] [--warmup 250] [--size 96]
                                                     [--mode cli|predictor|both]

Writes --distinct shapes pictures of --size px (`maskrcnn-shapes`) and a `.txt` list naming them over
and over up to --pictures entries, then predicts them all:
  cli        `maskrcnn-predict MODEL list.txt --output-dir D` in this process (bin/predict.py's main, with
             pictures, results.json and summary.csv written);
  predictor  `Predictor(MODEL)` over the same list with `stream`, each Result's masks, polygons and
             picture computed and dropped.
The resident set size (/proc/self/statm) is sampled every --sample-every pictures; the report gives
the RSS after --warmup pictures, at the end, and the slope of a least-squares line through the samples
after the warm-up (MB per 1000 pictures; a leak shows as a steady positive slope).
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)


def rss_mb():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


class Sampler:
    def __init__(self, every):
        self.every = every
        self.count = 0
        self.samples = []
        self.start = time.perf_counter()

    def tick(self):
        self.count += 1
        if self.count % self.every == 0:
            self.samples.append((self.count, rss_mb(), time.perf_counter() - self.start))

    def report(self, name, warmup):
        after = [(count, rss) for count, rss, _ in self.samples if count >= warmup]
        if len(after) < 2:
            print(f"{name}: too few samples after the warm-up")
            return
        counts = np.array([count for count, _ in after], dtype=np.float64)
        values = np.array([rss for _, rss in after], dtype=np.float64)
        slope = np.polyfit(counts, values, 1)[0] * 1000.0
        seconds = self.samples[-1][2]
        print(f"| {name} | {self.count} | {after[0][1]:.0f} MB (at {int(after[0][0])}) | {values[-1]:.0f} MB | "
              f"{slope:+.2f} MB per 1000 | {self.count / seconds:.1f} pictures/s |")
        print("  samples (pictures: RSS MB): " + ", ".join(f"{int(c)}: {r:.0f}" for c, r, _ in self.samples))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--pictures", type=int, default=5000)
    parser.add_argument("--distinct", type=int, default=200)
    parser.add_argument("--sample-every", type=int, default=250)
    parser.add_argument("--warmup", type=int, default=250)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--mode", choices=("cli", "predictor", "both"), default="both")
    args = parser.parse_args(argv)

    from keras_maskrcnn.datasets.shapes import make_shapes_dataset

    work = tempfile.mkdtemp(prefix="predict-soak-")
    make_shapes_dataset(os.path.join(work, "shapes"), images=args.distinct, size=args.size, seed=5)
    names = sorted(os.listdir(os.path.join(work, "shapes", "images")))
    listing = os.path.join(work, "list.txt")
    with open(listing, "w") as handle:
        for index in range(args.pictures):
            handle.write(os.path.join("shapes", "images", names[index % len(names)]) + "\n")
    print(f"{args.pictures} pictures ({args.distinct} distinct, {args.size} px), model {args.model}")
    print("| path | pictures | RSS after warm-up | RSS at the end | slope | rate |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    if args.mode in ("predictor", "both"):
        from keras_maskrcnn.inference.predictor import Predictor

        sampler = Sampler(args.sample_every)
        predictor = Predictor(args.model)
        for result in predictor.stream(listing):
            result.masks
            result.polygons()
            result.plot()
            sampler.tick()
        sampler.report("Predictor.stream", args.warmup)
    if args.mode in ("cli", "both"):
        from keras_maskrcnn.bin import predict

        sampler = Sampler(args.sample_every)
        original = predict.Outputs.add

        def add(self, result):
            original(self, result)
            sampler.tick()

        predict.Outputs.add = add
        predict.main([args.model, listing, "--output-dir", os.path.join(work, "out")])
        sampler.report("maskrcnn-predict", args.warmup)


if __name__ == "__main__":
    main()
