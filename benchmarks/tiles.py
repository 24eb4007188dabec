"""Tiled prediction of a large picture: recall and time against the whole picture and the pieces.

    nice -n 10 .venv/bin/python benchmarks/tiles.py [--model demo-output/snapshots/mobilenetv2_csv_06.keras]
        [--grid 16] [--size 96] [--seed 3] [--tiles 96,192] [--overlap 0.2] [--full-resolution]
        [--no-tile-full] [--score-threshold 0.5] [--batch-size 8] [--runs 1] [--save-pictures DIR]

A mosaic of grid x grid held-out shapes pictures (`datasets.shapes.make_image`, seed 3: the demo
trains on seed 1 and validates on seed 2) of --size pixels, 16 x 16 x 96 px = 1536 x 1536 px with
several hundred objects, is predicted by the `Predictor` with the demo model
  - one by one: the --grid^2 pictures themselves, each at the model's training size (the reference),
  - whole: the mosaic as one picture, downscaled to the model's training size (96 px for the demo),
  - whole at full resolution (--full-resolution): the mosaic as one 1536 px input,
  - tiled: `Predictor(tile=T, tile_overlap=--overlap)` for each T of --tiles, with and without
    `tile_full` (the downscaled whole mosaic as one more tile).
For each: recall at IoU 0.5 (mask IoU, pycocotools; a detection matches at most one ground-truth
object of its own class, greedily by score) against the mosaic's ground truth, the same with box
IoU, precision (matched detections / detections), and the wall and process CPU time per
megapixel of the mosaic (the median of --runs timed calls after one untimed call that builds the
model's graph for the inputs' shapes). The prediction's per-picture limit is set high (1000) so
that the limit does not decide the recall.
"""

import argparse
import glob
import json
import os
import re
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_DETECTIONS = 1000


def newest_demo_model():
    files = glob.glob(os.path.join(ROOT, "demo-output", "snapshots", "*.keras"))
    if not files:
        return None
    return max(files, key=lambda path: (int(re.findall(r"(\d+)\.keras$", path)[0]) if re.findall(
        r"(\d+)\.keras$", path) else -1, os.path.getmtime(path)))


def make_mosaic(grid, size, seed):
    """(mosaic BGR (grid*size, grid*size, 3), pictures [grid^2], ground truth per picture
    [(labels, masks)], mosaic ground truth (labels (G,), RLEs [G]))."""
    from pycocotools import mask as mask_utils

    from keras_maskrcnn.datasets.shapes import make_image

    rng = np.random.default_rng(seed)
    side = grid * size
    mosaic = np.zeros((side, side, 3), np.uint8)
    pictures, truths, labels, rles = [], [], [], []
    for row in range(grid):
        for col in range(grid):
            image, picture_labels, masks = make_image(rng, size)
            mosaic[row * size:(row + 1) * size, col * size:(col + 1) * size] = image
            pictures.append(image)
            truths.append((np.array(picture_labels, np.int64),
                           [mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))) for mask in masks]))
            for label, mask in zip(picture_labels, masks):
                full = np.zeros((side, side), np.uint8, order="F")
                full[row * size:(row + 1) * size, col * size:(col + 1) * size] = mask
                labels.append(label)
                rles.append(mask_utils.encode(full))
    return mosaic, pictures, truths, (np.array(labels, np.int64), rles)


def box_rles(boxes, height, width):
    from pycocotools import mask as mask_utils

    if len(boxes) == 0:
        return []
    xywh = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    xywh[:, 2:] -= xywh[:, :2]
    return mask_utils.frPyObjects(xywh, height, width)


def match(det_rles, det_scores, det_labels, gt_rles, gt_labels, threshold=0.5):
    """Number of ground-truth objects matched: greedily by score, each detection takes the
    unmatched ground-truth object of its class with the highest IoU >= threshold."""
    from pycocotools import mask as mask_utils

    if len(det_rles) == 0 or len(gt_rles) == 0:
        return 0
    ious = np.asarray(mask_utils.iou(list(det_rles), list(gt_rles), [0] * len(gt_rles))).reshape(len(det_rles), -1)
    taken = np.zeros(len(gt_rles), bool)
    for index in np.argsort(-np.asarray(det_scores), kind="stable"):
        candidates = np.where(~taken & (gt_labels == det_labels[index]), ious[index], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= threshold:
            taken[best] = True
    return int(taken.sum())


def gt_boxes(rles):
    from pycocotools import mask as mask_utils

    if not rles:
        return np.zeros((0, 4))
    xywh = mask_utils.toBbox(list(rles)).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def scores_of(results, truths):
    """(mask matches, box matches, detections) of Results against [(labels, rles)] ground truths."""
    mask_hits = box_hits = detections = 0
    for result, (labels, rles) in zip(results, truths):
        height, width = result.shape
        detections += len(result)
        mask_hits += match(result.rles, result.scores, result.labels, rles, labels)
        box_hits += match(box_rles(result.boxes, height, width), result.scores, result.labels,
                          box_rles(gt_boxes(rles), height, width), labels)
    return mask_hits, box_hits, detections


CLASS_COLOURS = [(0, 0, 255), (0, 200, 0), (255, 0, 0)]  # BGR per label


def overlay(path, mosaic, result, truth, crop, tile, overlap):
    """Writes the top-left crop x crop pixels of the mosaic, doubled, with the detections' mask
    outlines (red, green, blue by class), the outlines of ground-truth objects no detection of
    their class matches at mask IoU 0.5 (white), and the tile borders (yellow)."""
    import cv2
    from pycocotools import mask as mask_utils

    scale = 2
    picture = cv2.resize(mosaic[:crop, :crop], None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)

    def outline(rle, colour, thickness):
        mask = np.ascontiguousarray(mask_utils.decode(rle)[:crop, :crop])
        if not mask.any():
            return
        mask = cv2.resize(mask, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(picture, contours, -1, colour, thickness)

    labels, rles = truth
    found = list(result.rles)
    ious = (np.asarray(mask_utils.iou(found, list(rles), [0] * len(rles))).reshape(len(found), -1)
            if found else np.zeros((0, len(rles))))
    for index, rle in enumerate(rles):
        matched = ((ious[:, index] >= 0.5) & (result.labels == labels[index])).any() if len(found) else False
        if not matched:
            outline(rle, (255, 255, 255), 2)
    for rle, label in zip(found, result.labels):
        outline(rle, CLASS_COLOURS[int(label) % 3], 1)
    if tile:
        from keras_maskrcnn.inference.tiles import tile_grid

        for x0, y0, x1, y1 in tile_grid(mosaic.shape[0], mosaic.shape[1], tile, overlap):
            if x0 < crop and y0 < crop:
                cv2.rectangle(picture, (x0 * scale, y0 * scale), (x1 * scale - 1, y1 * scale - 1), (0, 255, 255), 1)
    cv2.imwrite(path, picture)


def timed(predict, runs):
    """(results of the last call, median wall s, median CPU s) after one untimed call."""
    predict()
    walls, cpus, results = [], [], None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        results = predict()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return results, statistics.median(walls), statistics.median(cpus)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=newest_demo_model(),
                        help="a .keras model (default: the newest demo snapshot)")
    parser.add_argument("--grid", type=int, default=16, help="pictures per side of the mosaic")
    parser.add_argument("--size", type=int, default=96, help="side of each picture in pixels")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--tiles", default="96,192", help="tile sizes, comma-separated")
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--full-resolution", action="store_true", help="also the whole mosaic as one full-size input")
    parser.add_argument("--no-tile-full", action="store_true", help="skip the tile_full variants")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--save-pictures", help="folder for overlays of the mosaic's top-left 4 x 4 pictures")
    args = parser.parse_args(argv)
    if not args.model or not os.path.isfile(args.model):
        parser.error(f"model {args.model!r} not found: run `make demo` first or pass --model")

    from keras_maskrcnn.inference.predictor import Predictor

    mosaic, pictures, truths, mosaic_truth = make_mosaic(args.grid, args.size, args.seed)
    megapixels = mosaic.shape[0] * mosaic.shape[1] / 1e6
    objects = len(mosaic_truth[1])
    print(f"model {os.path.relpath(args.model, ROOT)}; mosaic {mosaic.shape[1]} x {mosaic.shape[0]} px "
          f"({args.grid} x {args.grid} pictures of {args.size} px, seed {args.seed}), {objects} objects; "
          f"score threshold {args.score_threshold}, overlap {args.overlap}", flush=True)

    def predictor(**options):
        return Predictor(args.model, score_threshold=args.score_threshold, max_detections=MAX_DETECTIONS,
                         batch_size=args.batch_size, **options)

    base = predictor()
    trained_side = base.transform.min_side
    variants = [("one by one (reference)", base, "pieces"),
                (f"whole, downscaled to {trained_side} px", base, "whole")]
    if args.full_resolution:
        side = max(mosaic.shape[:2])
        variants.append((f"whole, full resolution ({side} px)",
                         predictor(image_min_side=side, image_max_side=side), "whole"))
    for tile in (int(value) for value in args.tiles.split(",") if value):
        variants.append((f"tiles {tile}, overlap {args.overlap}",
                         predictor(tile=tile, tile_overlap=args.overlap), "whole"))
        if not args.no_tile_full:
            variants.append((f"tiles {tile} + whole as a tile", predictor(tile=tile, tile_overlap=args.overlap,
                                                                          tile_full=True), "whole"))

    rows = []
    for name, model, mode in variants:
        if mode == "pieces":
            results, wall, cpu = timed(lambda model=model: model(pictures), args.runs)
            truth = truths
        else:
            results, wall, cpu = timed(lambda model=model: model(mosaic), args.runs)
            truth = [mosaic_truth]
        mask_hits, box_hits, detections = scores_of(results, truth)
        row = dict(variant=name, objects=objects, detections=detections, mask_recall=mask_hits / objects,
                   box_recall=box_hits / objects, precision=mask_hits / detections if detections else 0.0,
                   wall_s_per_mp=wall / megapixels, cpu_s_per_mp=cpu / megapixels)
        rows.append(row)
        print(f"{name:34s} recall@0.5 mask {row['mask_recall']:.3f} box {row['box_recall']:.3f}  "
              f"precision {row['precision']:.3f} ({detections} detections)  "
              f"{row['wall_s_per_mp']:.2f} s/MP wall, {row['cpu_s_per_mp']:.2f} s/MP CPU", flush=True)
        if args.save_pictures and mode == "whole":
            os.makedirs(args.save_pictures, exist_ok=True)
            slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
            overlay(os.path.join(args.save_pictures, f"{slug}.png"), mosaic, results[0], mosaic_truth,
                    4 * args.size, model.tile, model.tile_overlap)
    print("RESULT-JSON " + json.dumps(dict(megapixels=megapixels, objects=objects, rows=rows)))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
