"""Cost growth: inference time and peak memory against image size, batch size and max detections,
ours side by side with torchvision's Mask R-CNN.

    make bench-peers                      # once: benchmarks/.venv-peers with torch + torchvision
    .venv/bin/python benchmarks/scale.py [--sizes 512x512,800x1024,1333x800,1600x1600]
                                         [--batches 1,2,4] [--detections 100,300] [--base 800x1024]
                                         [--full] [--runs 2] [--warmup 1] [--threads 2] [--seed 0]
                                         [--no-peer] [--peer-python benchmarks/.venv-peers/bin/python]

Sizes are height x width in pixels. Without --full, the configurations are three sweeps from the
base (--base, batch 1, the first of --detections): every size at batch 1, every batch size at the
base size, every detection count at the base size and batch 1 (7 configurations with the
defaults, about 20 minutes on a 2-core machine); --full measures every combination.

Per configuration, both sides run in fresh processes of their own, so that each process's peak
resident memory (ru_maxrss) belongs to that configuration alone:
  ours:  `backbone('resnet50').maskrcnn(num_classes=80, score_threshold=0, max_detections=D)`,
         random weights, TensorFlow, `predict_on_batch` of B copies of one random image: boxes
         and the 28 x 28 masks of all 80 classes for D real detections per image;
  peer:  torchvision's `maskrcnn_resnet50_fpn(num_classes=81, box_score_thresh=0,
         box_detections_per_img=D)` (benchmarks/peers.py "infer": up to the 28 x 28 masks, without
         pasting), min_size / max_size set to the image's own sides so that it is not resized
         (its batching still pads each side to a multiple of 32).
Calls alternate ours, theirs after --warmup untimed rounds; medians of --runs rounds. "built MB"
is the peak RSS after import and building, "peak MB" after the calls (the framework's own
footprint included: compare differences between rows).

After the table: the time per megapixel relative to the base configuration (1.00 = time grew
exactly with pixels), and a least-squares fit time = a + b * megapixels over the size sweep
(batch 1): a is the cost that does not grow with pixels (for us mostly the mask head on D
detections), b the cost per megapixel.
"""

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

from compare import LineProcess, add_peer_flags, check_peer_python, load1, our_model, peer_process, save_data, say



# --------------------------------------------------------------------------------------------
# our side, a child process answering JSON lines (peers.serve)
# --------------------------------------------------------------------------------------------

def serve_ours(args):
    """Builds our model for one configuration and answers "infer" requests (see peers.serve)."""
    from peers import serve

    def make():
        import numpy as np

        versions, backbone, model = our_model(args)
        with np.load(args.data) as data:
            image = data["image"]
        batch = backbone.preprocess_image(np.repeat(image[None].astype(np.float32), args.batch, axis=0))

        def infer():
            wall, cpu = time.perf_counter(), time.process_time()
            outputs = model.predict_on_batch(batch)
            seconds, cpu = time.perf_counter() - wall, time.process_time() - cpu
            return dict(seconds=seconds, cpu=cpu, detections=int(np.sum(np.asarray(outputs[3])[0] > -1)),
                        masks=list(np.asarray(outputs[-1]).shape))

        info = dict(ready=True, versions=versions, batch=list(batch.shape))
        return info, {"infer": infer}

    return serve(make)


# --------------------------------------------------------------------------------------------
# the parent
# --------------------------------------------------------------------------------------------

def parse_size(text):
    try:
        height, width = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 800x1024, got {text!r}") from None
    if height < 32 or width < 32:
        raise argparse.ArgumentTypeError(f"{text}: both sides must be at least 32 pixels")
    return height, width


def parse_list(kind):
    def parse(text):
        values = [kind(x) for x in text.split(",") if x.strip()]
        if not values:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        return values
    return parse


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def configurations(args):
    """[(height, width, batch, detections)] in measuring order, without repeats."""
    if args.full:
        combos = [(h, w, b, d) for (h, w), b, d in itertools.product(args.sizes, args.batches, args.detections)]
    else:
        (bh, bw), d0 = args.base, args.detections[0]
        combos = ([(h, w, 1, d0) for h, w in args.sizes] + [(bh, bw, b, d0) for b in args.batches]
                  + [(bh, bw, 1, d) for d in args.detections])
    return list(dict.fromkeys(combos))


def measure(config, args, folder):
    """Medians and peak memory of both sides for one configuration."""
    height, width, batch, detections = config
    data_args = SimpleNamespace(seed=args.seed, height=height, width=width, objects=5,
                                threads=args.threads, detections=detections, lr=1e-4)
    data_path = save_data(data_args, folder, f"data-{height}x{width}.npz")[0]
    sides = {"ours": LineProcess([sys.executable, os.path.abspath(__file__), "--_child", "--_data", data_path,
                                  "--_batch", str(batch), "--_detections", str(detections),
                                  "--threads", str(args.threads), "--seed", str(args.seed)], name="our process")}
    if not args.no_peer:
        sides["peer"] = peer_process(args.peer_python, data_path, data_args, "--batch", batch,
                                     "--min-size", min(height, width), "--max-size", max(height, width))
    try:
        ready = {name: side.ready() for name, side in sides.items()}
        answers = {name: [] for name in sides}
        for round_index in range(args.warmup + args.runs):
            for name, side in sides.items():
                answer = side.request("infer")
                if round_index >= args.warmup:
                    answers[name].append(answer)
    finally:
        for side in sides.values():
            side.close()
    result = {}
    for name, values in answers.items():
        result[name] = dict(
            seconds=statistics.median(a["seconds"] for a in values),
            cpu=statistics.median(a["cpu"] for a in values),
            built=ready[name]["peak_rss_mb"], peak=values[-1]["peak_rss_mb"],
            detections=values[-1]["detections"], masks=values[-1]["masks"])
    if "peer" in ready:
        result["peer"]["transformed"] = ready["peer"]["transformed"]
        result["peer"]["padded"] = ready["peer"]["batch"]
    return result


def megapixels(config):
    height, width, batch, _ = config
    return height * width * batch / 1e6


def fit_line(points):
    """Least-squares (a, b) of seconds = a + b * megapixels over [(megapixels, seconds)]."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread
    return mean_y - slope * mean_x, slope


def report(results, args):
    sides = ["ours"] + ([] if args.no_peer else ["peer"])
    names = {"ours": "ours", "peer": "torchvision"}
    base = next((c for c in results if c[:2] == args.base and c[2] == 1 and c[3] == args.detections[0]), None)
    head = f"{'H x W':>11} {'batch':>5} {'dets':>5} {'Mpx':>6}"
    for side in sides:
        head += f" | {names[side] + ' s':>14} {'s/Mpx':>6} {'vs base':>7} {'built MB':>8} {'peak MB':>8}"
    if not args.no_peer:
        head += f" | {'ours/tv':>7}"
    say("\n" + head)
    say("-" * len(head))
    for config, result in results.items():
        height, width, batch, detections = config
        px = megapixels(config)
        line = f"{f'{height}x{width}':>11} {batch:>5} {detections:>5} {px:6.2f}"
        for side in sides:
            r = result[side]
            growth = ""
            if base is not None:
                growth = f"{(r['seconds'] / px) / (results[base][side]['seconds'] / megapixels(base)):7.2f}"
            line += (f" | {r['seconds']:14.2f} {r['seconds'] / px:6.2f} {growth:>7} {r['built']:8.0f} "
                     f"{r['peak']:8.0f}")
        if not args.no_peer:
            line += f" | {result['ours']['seconds'] / result['peer']['seconds']:7.2f}"
        say(line)
    say("-" * len(head))
    say("s = median seconds per predict call (the whole batch); s/Mpx = seconds per megapixel of the batch;")
    say("vs base = s/Mpx relative to the base configuration (1.00: time grew exactly with pixels);")
    say("built / peak MB = peak RSS after building / after the calls, framework included")
    if not args.no_peer:
        for config, result in results.items():
            peer = result["peer"]
            if peer["transformed"] != list(config[:2]):
                say(f"note: torchvision resized {config[0]}x{config[1]} to {peer['transformed']}")
        padded = [f"{c[0]}x{c[1]} -> {r['peer']['padded'][0]}x{r['peer']['padded'][1]}"
                  for c, r in results.items() if r["peer"]["padded"] != list(c[:2])]
        if padded:
            say("torchvision padded its batch to multiples of 32: " + ", ".join(sorted(set(padded))))
    sweep = [c for c in results if c[2] == 1 and c[3] == args.detections[0]]
    if len({megapixels(c) for c in sweep}) >= 2:
        say(f"\nfit over the size sweep (batch 1, {args.detections[0]} detections): seconds = a + b * megapixels")
        for side in sides:
            a, b = fit_line([(megapixels(c), results[c][side]["seconds"]) for c in sweep])
            residuals = ", ".join(
                f"{c[0]}x{c[1]} {results[c][side]['seconds'] - (a + b * megapixels(c)):+.2f} s" for c in sweep)
            say(f"  {names[side]:<12} a = {a:6.2f} s, b = {b:6.2f} s/Mpx; residuals: {residuals}")
    batches = [c for c in results if c[:2] == args.base and c[3] == args.detections[0]]
    if len(batches) >= 2:
        say(f"\nper image across batch sizes at {args.base[0]}x{args.base[1]}: "
            + "; ".join(f"batch {c[2]}: " + ", ".join(f"{names[s]} {results[c][s]['seconds'] / c[2]:.2f} s"
                                                     for s in sides) for c in sorted(batches, key=lambda c: c[2])))
    detections = [c for c in results if c[:3] == args.base + (1,)]
    if len(detections) >= 2:
        say(f"detections at {args.base[0]}x{args.base[1]}, batch 1: "
            + "; ".join(f"{c[3]}: " + ", ".join(f"{names[s]} {results[c][s]['seconds']:.2f} s "
                                               f"({results[c][s]['detections']} returned)" for s in sides)
                        for c in sorted(detections, key=lambda c: c[3])))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_list(parse_size), default=parse_list(parse_size)(
        "512x512,800x1024,1333x800,1600x1600"), help="HxW image sizes (default 512x512,800x1024,1333x800,1600x1600)")
    parser.add_argument("--batches", type=parse_list(positive_int), default=[1, 2, 4], help="batch sizes (default 1,2,4)")
    parser.add_argument("--detections", type=parse_list(positive_int), default=[100, 300],
                        help="max detections, forced real (default 100,300)")
    parser.add_argument("--base", type=parse_size, default=(800, 1024), help="the sweeps' base size (default 800x1024)")
    parser.add_argument("--full", action="store_true", help="every combination instead of three sweeps")
    parser.add_argument("--runs", type=positive_int, default=2, help="timed rounds per configuration (default 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--threads", type=positive_int, default=2, help="threads of both frameworks (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    add_peer_flags(parser, optional=True)
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_data", help=argparse.SUPPRESS)
    parser.add_argument("--_batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_detections", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if not args._child:
        check_peer_python(parser, args)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args._child:
        return serve_ours(SimpleNamespace(data=args._data, batch=args._batch, detections=args._detections,
                                          threads=args.threads, seed=args.seed))
    started = time.perf_counter()
    configs = configurations(args)
    say(f"load average (1 min) before: {load1():.2f}   cores: {os.cpu_count()}; {len(configs)} configurations, "
        f"{args.warmup} warm-up + {args.runs} timed rounds each, {args.threads} threads per side")
    results = {}
    with tempfile.TemporaryDirectory(prefix="scale-") as folder:
        for config in configs:
            say(f"[{time.perf_counter() - started:5.0f} s] {config[0]}x{config[1]}, batch {config[2]}, "
                f"{config[3]} detections (load {load1():.2f})")
            results[config] = measure(config, args, folder)
    report(results, args)
    say(f"\nload average (1 min) after: {load1():.2f}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
