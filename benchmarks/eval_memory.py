"""Peak resident memory of an evaluation against the number of pictures.

    nice .venv/bin/python benchmarks/eval_memory.py [--counts 500 1000 2000] [--size 128]
                                                    [--detections 30] [--data DIR] [--json FILE]

Writes a synthetic shapes set (`maskrcnn-shapes`) of max(--counts) pictures once, then for each
count evaluates its first pictures in a fresh process, as `maskrcnn-evaluate --save-path` does
(`evaluation.run.evaluate_model` then `write_reports`: COCOeval segm and bbox, the seed's mAP,
metrics.json, detections.json, the plots and the worst pictures). The model is a stand-in that
needs no network: it returns each picture's ground truth plus --detections random boxes with
random 28x28 masks at low scores, so the evaluation holds as many detections as a real model's
would. Reports, per count, the peak RSS (VmHWM) before the evaluation (imports and the data set's
generator), after the pass over the pictures and COCOeval, and after the reports, and the growth
over the baseline: masks are kept as run-length encodings, so the growth follows the number of
objects, not their pixels.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def peak_mb():
    """VmHWM (peak resident set size) of this process in MiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmHWM not in /proc/self/status")


class StandIn:
    """Ground truth plus `extra` random detections per picture, in resized-input pixels."""

    def __init__(self, generator, extra, seed=0):
        import numpy as np

        self.generator = generator
        self.extra = extra
        self.calls = 0
        self.rng = np.random.default_rng(seed)

    def predict_on_batch(self, batch):
        import numpy as np

        from keras_maskrcnn.utils.masks import roi_mask_targets

        index = self.calls % self.generator.size()
        self.calls += 1
        scale = self.generator.resize_image(self.generator.load_image(index))[1]
        truth = self.generator.load_annotations(index)
        count, classes, size = len(truth["labels"]), self.generator.num_classes(), 28
        rows = count + self.extra
        boxes = np.zeros((1, rows, 4), np.float32)
        scores = np.zeros((1, rows), np.float32)
        labels = np.zeros((1, rows), np.int32)
        masks = np.zeros((1, rows, size, size, classes), np.float32)
        for n in range(count):
            boxes[0, n] = truth["bboxes"][n] * scale
            scores[0, n] = 0.9
            labels[0, n] = truth["labels"][n]
            masks[0, n, :, :, labels[0, n]] = roi_mask_targets(truth["masks"][n], truth["bboxes"][n:n + 1], size)[0]
        height, width = batch.shape[1:3]
        corners = self.rng.uniform(0, [width, height], size=(self.extra, 2))
        extents = self.rng.uniform(8, 40, size=(self.extra, 2))
        boxes[0, count:] = np.concatenate([corners, np.minimum(corners + extents, [width, height])], axis=1)
        scores[0, count:] = self.rng.uniform(0.06, 0.5, self.extra)
        labels[0, count:] = self.rng.integers(0, classes, self.extra)
        masks[0, count:] = self.rng.random((self.extra, size, size, classes)) > 0.5
        return [boxes, scores, labels, masks]


def child(args):
    """One count in this process: prints a JSON line of its measurements."""
    from keras_maskrcnn.evaluation.run import evaluate_model, write_reports
    from keras_maskrcnn.preprocessing.csv_generator import CSVGenerator

    with open(os.path.join(args.data, "annotations.csv"), newline="") as handle:
        rows = list(csv.reader(handle))
    images = sorted({row[0] for row in rows})[:args.child]
    chosen = set(images)
    subset = os.path.join(args.data, f"annotations_{args.child}.csv")
    with open(subset, "w", newline="") as handle:
        csv.writer(handle).writerows(row for row in rows if row[0] in chosen)
    generator = CSVGenerator(subset, os.path.join(args.data, "classes.csv"), image_min_side=args.size,
                             image_max_side=args.size)
    baseline = peak_mb()
    start = time.perf_counter()
    evaluation = evaluate_model(generator, StandIn(generator, args.detections))
    evaluated = peak_mb()
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as directory:
        write_reports(directory, generator, evaluation, log=lambda line: None)
    reported = peak_mb()
    detections = sum(len(record.rles) for record in evaluation.records)
    objects = sum(len(record.gt_rles) for record in evaluation.records)
    print(json.dumps({"pictures": len(evaluation.records), "objects": objects, "detections": detections,
                      "baseline_mb": baseline, "evaluated_mb": evaluated, "reported_mb": reported,
                      "evaluation_s": seconds, "mask_AP": evaluation.metrics["segm"]["AP"]}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--size", type=int, default=128, help="picture side in pixels (default 128)")
    parser.add_argument("--detections", type=int, default=30, help="random detections per picture (default 30)")
    parser.add_argument("--data", help="folder for the generated set (default: a temporary folder)")
    parser.add_argument("--json", help="write the measurements there")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    from keras_maskrcnn.datasets.shapes import make_shapes_dataset

    with tempfile.TemporaryDirectory() as scratch:
        data = args.data or os.path.join(scratch, "shapes")
        if not os.path.isfile(os.path.join(data, "annotations.csv")):
            print(f"writing {max(args.counts)} pictures of {args.size} px to {data} ...", flush=True)
            make_shapes_dataset(data, images=max(args.counts), size=args.size, seed=3)
        results = []
        print(f"{'pictures':>8} {'objects':>8} {'detections':>10} {'baseline MB':>12} {'after eval MB':>14} "
              f"{'after reports MB':>17} {'growth MB':>10} {'eval s':>7}", flush=True)
        for count in args.counts:
            output = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(count), "--data", data,
                                     "--size", str(args.size), "--detections", str(args.detections)],
                                    capture_output=True, text=True, check=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            results.append(result)
            growth = max(result["evaluated_mb"], result["reported_mb"]) - result["baseline_mb"]
            print(f"{result['pictures']:>8} {result['objects']:>8} {result['detections']:>10} "
                  f"{result['baseline_mb']:>12.1f} {result['evaluated_mb']:>14.1f} {result['reported_mb']:>17.1f} "
                  f"{growth:>10.1f} {result['evaluation_s']:>7.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
