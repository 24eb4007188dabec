"""What maskrcnn-predict adds to the model: pictures per second of the command's path against
`predict_on_batch` alone on the same inputs.

    .venv/bin/python benchmarks/predict_overhead.py [--pictures 8] [--rounds 2] [--detections 100]
                                                    [--backbone resnet50] [--height 800] [--width 1067]

Writes --pictures photos of --height x --width (the tinycoco pictures of ../shared/data resized, when
they are there; otherwise smooth noise), builds a Mask R-CNN with random weights whose filter keeps
exactly --detections detections a picture (score threshold 0), and times, alternating in rounds:
  model  `predict_on_batch` on the pictures prepared beforehand (resized, preprocessed, padded);
  tool   maskrcnn-predict's own loop (bin/predict.py's Outputs on `Predictor.stream`): reading each
         file, the transform, the model, pasting every mask at full resolution, RLEs, areas, polygons,
         drawing, and writing the picture, results.json and summary.csv.
The overhead is tool / model - 1 (goal: at most 0.15), from the sums over the rounds.
"""

import argparse
import glob
import os
import platform
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
TINYCOCO = os.path.join(ROOT, "..", "shared", "data", "tinycoco")


def processor():
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
            handle.seek(0)
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return platform.processor()
    wanted = [flag for flag in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if flag in flags]
    return f"{names[0] if names else platform.processor()}, {os.cpu_count()} cores, {' '.join(wanted)}"


def make_pictures(folder, count, height, width):
    import cv2

    os.makedirs(folder, exist_ok=True)
    sources = sorted(glob.glob(os.path.join(TINYCOCO, "**", "*.jpg"), recursive=True))
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        if sources:
            picture = cv2.resize(cv2.imread(sources[index % len(sources)]), (width, height))
        else:
            picture = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), (15, 15), 5)
        path = os.path.join(folder, f"photo{index:03d}.jpg")
        cv2.imwrite(path, picture)
        paths.append(path)
    return paths, "tinycoco photos" if sources else "smooth noise"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pictures", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1067)
    args = parser.parse_args(argv)

    import keras

    from keras_maskrcnn.bin import predict
    from keras_maskrcnn.inference.predictor import Predictor
    from keras_maskrcnn.inference.sources import resolve
    from keras_maskrcnn.models import backbone
    from keras_maskrcnn.utils.image import read_image_bgr

    work = tempfile.mkdtemp(prefix="predict-overhead-")
    paths, kind = make_pictures(os.path.join(work, "photos"), args.pictures, args.height, args.width)
    keras.utils.set_random_seed(0)
    model = backbone(args.backbone).maskrcnn(num_classes=80, score_threshold=0.0, max_detections=args.detections)
    predictor = Predictor(model, score_threshold=0.0, max_detections=args.detections)
    prepared = [predictor.transform.prepare([read_image_bgr(path)])[0] for path in paths]
    model.predict_on_batch(prepared[0])  # compile / warm up both paths on this shape
    print(f"processor: {processor()}")
    print(f"{args.pictures} {kind} of {args.height} x {args.width}, {args.backbone} with random weights, "
          f"{args.detections} detections a picture, {args.rounds} rounds")
    totals = {"model": 0.0, "tool": 0.0}
    detections = 0
    for round_index in range(args.rounds + 1):
        start = time.perf_counter()
        for batch in prepared:
            model.predict_on_batch(batch)
        model_time = time.perf_counter() - start
        output = os.path.join(work, f"out{round_index}")
        namespace = argparse.Namespace(output_dir=output, classes=None, save_video=None, pictures=True,
                                       save_masks=False, polygon_tolerance=1.0, line_width=None, hide_labels=False,
                                       hide_scores=False)
        os.makedirs(output, exist_ok=True)
        start = time.perf_counter()
        resolved = resolve(paths)
        outputs = predict.Outputs(namespace, predictor, resolved)
        for result in predictor.stream(paths):
            outputs.add(result)
        outputs.close()
        tool_time = time.perf_counter() - start
        detections = outputs.results.count
        label = "warm-up" if round_index == 0 else f"round {round_index}"
        print(f"{label}: model {model_time / len(paths):.3f} s/picture, tool {tool_time / len(paths):.3f} "
              f"s/picture ({detections} detections written)")
        if round_index:
            totals["model"] += model_time
            totals["tool"] += tool_time
    count = args.rounds * len(paths)
    overhead = totals["tool"] / totals["model"] - 1.0
    print(f"model alone: {count / totals['model']:.3f} pictures/s; maskrcnn-predict's path: "
          f"{count / totals['tool']:.3f} pictures/s; overhead {overhead * 100:.1f}% (goal <= 15%)")


if __name__ == "__main__":
    main()
