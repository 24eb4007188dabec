"""Default against fitted anchors on small objects: the demo recipe trained on a shapes set of
8-20 px objects in 256 px pictures, once with the default anchors and once with the anchors
`maskrcnn-data anchors` fits to the training set, for each of a few training seeds; the mask
mAP@0.5 on held-out pictures.

    .venv/bin/python benchmarks/small_objects.py [--out small-objects] [--seeds 0 1] [--steps 200]

Runs the tools as a user would (maskrcnn-shapes, maskrcnn-data anchors, maskrcnn-train,
maskrcnn-evaluate) and prints one row per run and a summary; results.json in --out keeps them.
A run whose metrics.json is already there is not repeated (the script can be restarted).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)


def tool(name, *args, log=None):
    command = [os.path.join(BIN, name), *map(str, args)]
    print("$", " ".join(command), flush=True)
    with open(log, "a") if log else open(os.devnull, "w") as stream:
        subprocess.run(command, check=True, stdout=stream if log else None, stderr=subprocess.STDOUT if log else None)


def processor():
    try:
        with open("/proc/cpuinfo") as stream:
            text = stream.read()
    except OSError:
        return platform.processor()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name}, {os.cpu_count()} cores, {vector}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="small-objects", help="working folder (default small-objects)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds (default 0 1)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs (default 6, as make demo)")
    parser.add_argument("--steps", type=int, default=200, help="steps per epoch (default 200, as make demo)")
    parser.add_argument("--anchors", nargs="+", choices=["default", "fitted"], default=["default", "fitted"],
                        help="which anchors to train with (default both; two processes may share --out)")
    args = parser.parse_args(argv)

    out = os.path.abspath(args.out)
    train, val = os.path.join(out, "data", "train"), os.path.join(out, "data", "val")
    shapes = ["--size", 256, "--min-object-size", 8, "--max-object-size", 20]
    if not os.path.exists(os.path.join(train, "annotations.csv")):
        tool("maskrcnn-shapes", train, "--images", 400, "--seed", 1, *shapes)
    if not os.path.exists(os.path.join(val, "annotations.csv")):
        tool("maskrcnn-shapes", val, "--images", 40, "--seed", 2, *shapes)
    sides = ["--image-min-side", 256, "--image-max-side", 256]
    fitted = os.path.join(out, "fitted.ini")
    if not os.path.exists(fitted):
        tool("maskrcnn-data", "anchors", *sides, "--output", fitted, "--seed", 0,
             "csv", os.path.join(train, "annotations.csv"), os.path.join(train, "classes.csv"),
             log=os.path.join(out, "anchors.log"))
    configs = {"default": [], "fitted": ["--config", fitted]}

    rows = []
    for anchors in args.anchors:
        config = configs[anchors]
        for seed in args.seeds:
            run = os.path.join(out, f"{anchors}-seed{seed}")
            metrics = os.path.join(run, "evaluation", "metrics.json")
            if not os.path.exists(metrics):
                started = time.time()
                tool("maskrcnn-train", "--backbone", "mobilenetv2", *sides, *config,
                     "--feature-size", 128, "--mask-feature-size", 64, "--lr", "1e-3", "--clipnorm", 1,
                     "--batch-size", 4, "--epochs", args.epochs, "--steps", args.steps, "--mask-rois", 2,
                     "--max-detections", 10, "--seed", seed, "--snapshot-path", os.path.join(run, "snapshots"),
                     "--tensorboard-dir", "", "--no-evaluation",
                     "csv", os.path.join(train, "annotations.csv"), os.path.join(train, "classes.csv"),
                     log=os.path.join(run + ".train.log"))
                snapshot = os.path.join(run, "snapshots", f"mobilenetv2_csv_{args.epochs:02d}.keras")
                tool("maskrcnn-evaluate", "--backbone", "mobilenetv2", *sides, *config, "--max-detections", 10,
                     "--save-path", os.path.join(run, "evaluation"),
                     "csv", os.path.join(val, "annotations.csv"), os.path.join(val, "classes.csv"), snapshot,
                     log=os.path.join(run + ".evaluate.log"))
                print(f"  {anchors} seed {seed}: {time.time() - started:.0f} s", flush=True)
            with open(metrics) as stream:
                document = json.load(stream)
            rows.append({"anchors": anchors, "seed": seed, "mask_mAP50_seed": document["mask_mAP50_seed"]["mAP"],
                         "mask_AP50": document["segm"]["AP50"], "mask_AP": document["segm"]["AP"],
                         "box_AP50": document["bbox"]["AP50"]})

    print(f"\n{processor()}; demo recipe at 256 px, {args.epochs} x {args.steps} steps, 40 held-out pictures")
    print(f"{'anchors':8} {'seed':>4} {'mask mAP@0.5':>13} {'mask AP50':>10} {'mask AP':>8} {'box AP50':>9}")
    for row in rows:
        print(f"{row['anchors']:8} {row['seed']:>4} {row['mask_mAP50_seed']:>13.3f} {row['mask_AP50']:>10.3f} "
              f"{row['mask_AP']:>8.3f} {row['box_AP50']:>9.3f}")
    with open(os.path.join(out, "results.json"), "w") as stream:
        json.dump({"processor": processor(), "epochs": args.epochs, "steps": args.steps, "rows": rows}, stream, indent=1)


if __name__ == "__main__":
    main()
