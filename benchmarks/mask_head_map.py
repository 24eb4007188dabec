"""Mask mAP@0.5 of the shapes demo recipe with each mask head upsampling, over several seeds.

    .venv/bin/python benchmarks/mask_head_map.py [--seeds 0 1 2] [--modes nearest transposed]
                                                 [--epochs 6] [--steps 200] [--work-dir DIR]

Runs `make demo`'s recipe (the same shapes data: 400 training images with --seed 1, 40 held-out
with --seed 2, the same maskrcnn-train flags) once per mode and training seed, adding only
`--mask-upsampling MODE --seed SEED`, then maskrcnn-evaluate on the held-out images. Prints
each run's mask mAP@0.5 and training time, then mean and spread per mode, and whether
'transposed' is within 0.01 of 'nearest' (the rule of issue #13 for changing the default).
"""

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from soak import ANCHORS  # benchmarks/soak.py: the demo's anchors.ini

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# The demo target of the Makefile, flag for flag.
MODEL_FLAGS = ["--backbone", "mobilenetv2", "--image-min-side", "96", "--image-max-side", "96"]
TRAIN_FLAGS = ["--feature-size", "128", "--mask-feature-size", "64", "--lr", "1e-3", "--clipnorm", "1",
               "--batch-size", "4", "--mask-rois", "2", "--max-detections", "10",
               "--tensorboard-dir", "", "--no-evaluation"]


def run(command, log):
    """Runs a command with its output appended to `log`; its stdout, or an error naming the log."""
    with open(log, "a") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        handle.write(result.stdout)
    if result.returncode:
        raise SystemExit(f"{command[0]} exited with {result.returncode}; see {log}")
    return result.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=["nearest", "transposed"], choices=["nearest", "transposed"])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--work-dir", default=str(REPO / "benchmarks" / "mask-head-map"))
    args = parser.parse_args(argv)

    work = Path(args.work_dir)
    data = work / "data"
    log = work / "log.txt"
    work.mkdir(parents=True, exist_ok=True)
    config = work / "anchors.ini"
    config.write_text(ANCHORS)
    if not (data / "val" / "annotations.csv").exists():
        run([str(BIN / "maskrcnn-shapes"), str(data / "train"), "--images", "400", "--size", "96", "--seed", "1"], log)
        run([str(BIN / "maskrcnn-shapes"), str(data / "val"), "--images", "40", "--size", "96", "--seed", "2"], log)
    flags = MODEL_FLAGS + ["--config", str(config)]

    print(f"demo recipe: {args.epochs} epochs x {args.steps} steps, batch 4, mobilenetv2 at 96 px; log {log}")
    print(f"{'upsampling':<12} {'seed':>4} {'mask mAP@0.5':>13} {'train s':>8}", flush=True)
    scores = {mode: [] for mode in args.modes}
    for seed in args.seeds:
        for mode in args.modes:
            snapshots = work / f"{mode}-seed{seed}"
            start = time.perf_counter()
            run([str(BIN / "maskrcnn-train"), *flags, *TRAIN_FLAGS, "--epochs", str(args.epochs),
                 "--steps", str(args.steps), "--seed", str(seed), "--mask-upsampling", mode,
                 "--snapshot-path", str(snapshots),
                 "csv", str(data / "train" / "annotations.csv"), str(data / "train" / "classes.csv")], log)
            seconds = time.perf_counter() - start
            snapshot = snapshots / f"mobilenetv2_csv_{args.epochs:02d}.keras"
            output = run([str(BIN / "maskrcnn-evaluate"), *flags, "--max-detections", "10",
                          "csv", str(data / "val" / "annotations.csv"), str(data / "val" / "classes.csv"),
                          str(snapshot)], log)
            found = re.findall(r"^mAP: ([0-9.]+)$", output, flags=re.M)
            if not found:
                raise SystemExit(f"no mAP line in maskrcnn-evaluate's output; see {log}")
            scores[mode].append(float(found[-1]))
            print(f"{mode:<12} {seed:>4} {scores[mode][-1]:13.4f} {seconds:8.0f}", flush=True)

    print(f"\n{'upsampling':<12} {'mean':>7} {'min':>7} {'max':>7}  seeds")
    for mode, values in scores.items():
        print(f"{mode:<12} {statistics.mean(values):7.4f} {min(values):7.4f} {max(values):7.4f}  {args.seeds}")
    if {"nearest", "transposed"} <= set(scores):
        gap = statistics.mean(scores["transposed"]) - statistics.mean(scores["nearest"])
        verdict = "within" if gap >= -0.01 else "not within"
        print(f"transposed - nearest: {gap:+.4f} mean mask mAP@0.5, {verdict} 0.01")
    return 0


if __name__ == "__main__":
    sys.exit(main())
