"""Makes the pictures of the README and the documentation from `make demo`'s model and data.

    .venv/bin/python images/make.py [--demo demo-output] [--out images]

Writes, each a palette PNG of tens of KB:
  predictions.png  held-out shapes pictures (enlarged 3 times before predicting, so that captions and
                   outlines are drawn at a readable size) with the demo model's masks, boxes and captions;
  tiles.png        a 1536 px mosaic of 256 held-out pictures predicted in 192 px tiles (part of it);
  pr_curves.png    the demo evaluation's precision-recall curves (maskrcnn-evaluate --save-path);
  video.png        three frames of an overlay video made from held-out pictures (maskrcnn-predict on a video).
"""

import argparse
import glob
import os
import sys
import tempfile

import cv2
import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)


def save_small(path, picture_bgr, width=None, colors=128):
    """Writes a BGR picture as a palette PNG (resized to `width` pixels wide when given)."""
    if width is not None and picture_bgr.shape[1] != width:
        height = round(picture_bgr.shape[0] * width / picture_bgr.shape[1])
        picture_bgr = cv2.resize(picture_bgr, (width, height), interpolation=cv2.INTER_AREA)
    image = Image.fromarray(cv2.cvtColor(picture_bgr, cv2.COLOR_BGR2RGB)).quantize(colors=colors, method=2)
    image.save(path, optimize=True)
    print(f"{path}: {picture_bgr.shape[1]} x {picture_bgr.shape[0]}, {os.path.getsize(path) // 1024} KB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", default=os.path.join(ROOT, "demo-output"))
    parser.add_argument("--out", default=os.path.join(ROOT, "images"))
    args = parser.parse_args(argv)
    snapshots = sorted(glob.glob(os.path.join(args.demo, "snapshots", "*.keras")))
    if not snapshots:
        parser.error(f"no model in {args.demo}/snapshots: run `make demo` first")
    model = snapshots[-1]
    val = sorted(glob.glob(os.path.join(args.demo, "data", "val", "images", "*.png")))

    from keras_maskrcnn import Predictor
    from keras_maskrcnn.bin import evaluate, predict

    predictor = Predictor(model)
    pictures = [cv2.resize(cv2.imread(path), None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC) for path in val[:8]]
    drawn = [result.plot() for result in predictor(pictures)]
    grid = np.concatenate([np.concatenate(drawn[:4], axis=1), np.concatenate(drawn[4:8], axis=1)], axis=0)
    save_small(os.path.join(args.out, "predictions.png"), grid, width=768)

    tiles = [cv2.imread(path) for path in (val * 7)[:256]]
    mosaic = np.concatenate([np.concatenate(tiles[row * 16:(row + 1) * 16], axis=1) for row in range(16)], axis=0)
    [result] = Predictor(model, tile=192, tile_overlap=0.2, max_detections=1000)(mosaic)
    print(f"mosaic: {result}")
    save_small(os.path.join(args.out, "tiles.png"), result.plot(line_width=2, hide_labels=True)[:576, :768], width=768)

    work = tempfile.mkdtemp(prefix="images-")
    evaluate.main(["--save-path", os.path.join(work, "evaluation"), "--worst", "0", "csv",
                   os.path.join(args.demo, "data", "val", "annotations.csv"),
                   os.path.join(args.demo, "data", "val", "classes.csv"), model])
    curves = cv2.imread(os.path.join(work, "evaluation", "pr_curves.png"))
    save_small(os.path.join(args.out, "pr_curves.png"), curves, width=768, colors=64)

    video = os.path.join(work, "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10, (288, 288))
    for path in val[8:38]:
        writer.write(cv2.resize(cv2.imread(path), (288, 288), interpolation=cv2.INTER_CUBIC))
    writer.release()
    predict.main([model, video, "--output-dir", os.path.join(work, "video")])
    capture = cv2.VideoCapture(os.path.join(work, "video", "clip.mp4"))
    frames = []
    for index in range(30):
        ok, frame = capture.read()
        if ok and index in (0, 10, 20):
            frames.append(frame)
    save_small(os.path.join(args.out, "video.png"), np.concatenate(frames, axis=1), width=768)


if __name__ == "__main__":
    main()
