"""Side by side with torchvision: inference and training step of our Mask R-CNN against
`torchvision.models.detection.maskrcnn_resnet50_fpn`, on the same image and objects.

    make bench-peers                      # once: benchmarks/.venv-peers with torch + torchvision
    .venv/bin/python benchmarks/compare.py [--pairs 5] [--warmup 1] [--detections 100]
                                           [--threads 2] [--mask-rois 64] [--mask-rois-multiple 16]
                                           [--objects 5]
                                           [--height 800] [--width 1024] [--lr 1e-4] [--seed 0]
                                           [--peer-python benchmarks/.venv-peers/bin/python]
                                           [--no-inference] [--no-training]

Ours: `backbone('resnet50').maskrcnn(num_classes=80)`, random weights, TensorFlow, batch 1.
Theirs: `maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=81)` in a
long-lived process of the peer venv (benchmarks/peers.py, JSON lines on stdin/stdout),
torch.set_num_threads(--threads); ours uses --threads TensorFlow intra- and inter-op threads.
Both see the same pixels: one random uint8 image (numpy seed --seed) handed over as a file
(ours: BGR, caffe preprocessing; theirs: RGB / 255, its own normalisation; its resize keeps an
800 x 1024 image as it is, which the output checks), and the same --objects boxes with masks.

--detections K > 0 forces K real detections from random weights on both sides: ours
score_threshold 0 and max_detections K (as benchmarks/predict.py does), theirs box_score_thresh 0
and box_detections_per_img K; both then compute K masks. K = 0 keeps both libraries' defaults
(random weights then give no detection on either side, and no mask is computed).

Sections (the calls alternate ours, theirs, ours, theirs, ... so both see the same load;
--warmup rounds first, untimed; then --pairs timed rounds):
  (i)   inference: ours `predict_on_batch` (boxes and 28 x 28 masks of every class for the K
        detections) against theirs up to the RoI heads' output (28 x 28 masks of the detected
        class), without pasting;
  (ii)  with full-size pasting: ours plus `keras_maskrcnn.utils.masks.paste_mask` of each
        detection's own class channel into the 800 x 1024 image, threshold 0.5, as maskrcnn-predict
        does (uint8 0/1 masks), against theirs plus the transform's postprocess, i.e. what
        model([image]) returns (float masks (K, 1, H, W)). (i) and (ii) come from the same calls:
        each side times its network and its pasting separately.
  (iii) training step: ours `training_model(model)` with `losses.training_losses()`, one
        `train_on_batch` of the image, the objects' regression / classification targets and
        RoIs as maskrcnn-train's generator samples them (the boxes and one jittered copy of each,
        at most --mask-rois, padded to the next multiple of --mask-rois-multiple rows) against theirs (train mode, the
        losses of model([image], [targets]) summed, backward, step). Both SGD, momentum 0.9, --lr
        (maskrcnn-train itself uses Adam). All weights trainable, batch normalisation in training
        mode, on both sides.
  (iv)  our mask training step against our RetinaNet-only training step: `models.retinanet` on the
        same backbone, outputs regression and classification, losses smooth L1 and focal, same
        optimizer. (iii) and (iv) come from the same rounds: ours with masks, theirs, ours
        RetinaNet-only.
Per pair: wall seconds of each side (and process CPU seconds, less sensitive to other jobs), the
ratio ours / theirs of both; then median, min and max of each side, the median of the per-pair
wall-time ratios, which is what the goals are judged on, and the median of the per-pair CPU-time
ratios. "load" is the 1-minute load average; a progress line per round goes to stderr.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from predict import load1

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PEER_PYTHON = os.path.join(HERE, ".venv-peers", "bin", "python")
PEER_SCRIPT = os.path.join(HERE, "peers.py")
NUM_CLASSES = 80
MASK_SIZE = 28

GOALS = [
    ("inference, ours / torchvision", "infer", 0.8),
    ("inference with pasting, ours / torchvision", "paste", 0.9),
    ("training step, ours / torchvision", "train", 0.9),
    ("training step, ours with masks / our RetinaNet-only", "retina", 1.2),
]


def say(text=""):
    print(text, flush=True)


def add_peer_flags(parser, optional=False):
    """--peer-python, and with optional=True --no-peer (measure our side only)."""
    parser.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON,
                        help="python of the venv with torch and torchvision (default benchmarks/.venv-peers/bin/python)")
    if optional:
        parser.add_argument("--no-peer", action="store_true", help="measure our side only")


def check_peer_python(parser, args):
    """parser.error unless --peer-python can run (or --no-peer was given)."""
    if getattr(args, "no_peer", False):
        return
    if not (os.path.isfile(args.peer_python) and os.access(args.peer_python, os.X_OK)):
        other = "pass --peer-python, or --no-peer" if hasattr(args, "no_peer") else "or pass --peer-python"
        parser.error(f"no peer python at {args.peer_python}: run `make bench-peers` first (it makes "
                     f"benchmarks/.venv-peers with torch and torchvision), {other}")


# --------------------------------------------------------------------------------------------
# the shared inputs
# --------------------------------------------------------------------------------------------

def make_data(args):
    """Image (H, W, 3) uint8 BGR, boxes (K, 4) float32, labels (K,) int64 in 0..79, masks (K, H, W) uint8.

    The objects are ellipses filling boxes spread over the image, at fixed positions for a given
    size and count; the image is uniform noise (numpy seed --seed).
    """
    import numpy as np

    rng = np.random.default_rng(args.seed)
    height, width = args.height, args.width
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    boxes, masks = [], []
    ys, xs = np.mgrid[0:height, 0:width]
    for index in range(args.objects):
        column, row = index % 3, (index // 3) % 2
        x1 = width * (0.05 + 0.31 * column + 0.02 * (index // 6))
        y1 = height * (0.06 + 0.47 * row + 0.02 * (index // 6))
        x2, y2 = x1 + width * (0.16 + 0.04 * (index % 3)), y1 + height * (0.25 + 0.05 * (index % 2))
        boxes.append([x1, y1, x2, y2])
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        masks.append((((xs + 0.5 - cx) / rx) ** 2 + ((ys + 0.5 - cy) / ry) ** 2 <= 1.0).astype(np.uint8))
    labels = (np.arange(args.objects, dtype=np.int64) * 17 + 3) % NUM_CLASSES
    return image, np.asarray(boxes, np.float32).reshape(-1, 4), labels, np.asarray(masks, np.uint8)


def save_data(args, folder, name="data.npz"):
    """make_data(args) also written to folder/name for the peer: (path, image, boxes, labels, masks)."""
    import numpy as np

    image, boxes, labels, masks = make_data(args)
    path = os.path.join(folder, name)
    np.savez(path, image=image, boxes=boxes, labels=labels, masks=masks)
    return path, image, boxes, labels, masks


def training_batch(args, backbone, image, boxes, labels, masks):
    """(inputs, targets) of our training model, built as maskrcnn-train's generator builds them."""
    import numpy as np

    from keras_maskrcnn.preprocessing.generator import jitter_boxes, padded_roi_rows
    from keras_maskrcnn.utils.anchors import anchor_targets_bbox, anchors_for_shape
    from keras_maskrcnn.utils.masks import roi_mask_targets

    shape = image.shape[:2]
    regression, classification = anchor_targets_bbox(
        anchors_for_shape(shape), [{"bboxes": boxes.astype(np.float64), "labels": labels}], NUM_CLASSES, [shape])
    rng = np.random.default_rng(args.seed)
    rois = np.concatenate([boxes, jitter_boxes(boxes, 1, shape, rng)], axis=0)[:args.mask_rois]
    owners = np.concatenate([np.arange(len(boxes)), np.arange(len(boxes))])[:len(rois)]
    rows = padded_roi_rows(len(rois), args.mask_rois, args.mask_rois_multiple)
    roi_input = np.zeros((1, rows, 4), np.float32)
    roi_input[0, :len(rois)] = rois
    mask_targets = np.zeros((1, rows, 1 + MASK_SIZE * MASK_SIZE), np.float32)
    mask_targets[0, :, 0] = -1
    for row, (roi, owner) in enumerate(zip(rois, owners)):
        mask_targets[0, row, 0] = labels[owner]
        mask_targets[0, row, 1:] = roi_mask_targets(masks[owner], roi[None], MASK_SIZE).ravel()
    batch_image = backbone.preprocess_image(image[None].astype(np.float32))
    inputs = {"image": batch_image, "rois": roi_input}
    targets = {"regression": regression, "classification": classification, "masks": mask_targets}
    return inputs, targets, len(rois)


# --------------------------------------------------------------------------------------------
# the peer process
# --------------------------------------------------------------------------------------------

class LineProcess:
    """A child process answering one JSON line per request line (peers.serve); `request(cmd)` -> answer."""

    def __init__(self, command, name="the peer process"):
        self.name = name
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.info = None

    def _read(self):
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise RuntimeError(f"{self.name} ended (exit code {code}); its messages are above")
        message = json.loads(line)
        if "error" in message:
            raise RuntimeError(f"{self.name} failed: {message['error']}")
        return message

    def ready(self):
        if self.info is None:
            self.info = self._read()
        return self.info

    def request(self, command):
        self.process.stdin.write(json.dumps({"cmd": command}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self):
        if self.process.poll() is None:
            try:
                self.request("quit")
            except (RuntimeError, OSError, ValueError):
                pass
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def peer_process(python, data_path, args, *extra):
    """benchmarks/peers.py (torchvision) in the peer venv on the data of `data_path`; extra: more flags."""
    command = [python, PEER_SCRIPT, "--data", data_path, "--threads", str(args.threads),
               "--detections", str(args.detections), "--lr", str(args.lr), "--seed", str(args.seed)]
    return LineProcess(command + [str(x) for x in extra])


# --------------------------------------------------------------------------------------------
# our side
# --------------------------------------------------------------------------------------------

def our_model(args):
    """(versions, backbone, model): our ResNet50 prediction model for NUM_CLASSES classes, random
    weights (seed args.seed), TensorFlow on args.threads threads, args.detections real detections
    forced (score threshold 0; 0 keeps the library's defaults)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from keras_maskrcnn import models

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    versions = f"keras {keras.__version__}, {keras.backend.backend()} {tf.__version__}"
    backbone = models.backbone("resnet50")
    forced = dict(score_threshold=0.0, max_detections=args.detections) if args.detections > 0 else {}
    return versions, backbone, backbone.maskrcnn(num_classes=NUM_CLASSES, **forced)


class Ours:
    """Our prediction model, training model and RetinaNet-only model on the same inputs."""

    def __init__(self, args, image, boxes, labels, masks):
        import keras
        import numpy as np

        from keras_maskrcnn import losses, models

        self.np = np
        self.versions, backbone, self.model = our_model(args)
        self.image_shape = image.shape[:2]
        self.inputs, self.targets, self.valid_rois = training_batch(args, backbone, image, boxes, labels, masks)
        self.train_model = None
        self.retina = None
        if not args.no_training:
            self.train_model = models.training_model(self.model)
            self.train_model.compile(optimizer=keras.optimizers.SGD(learning_rate=args.lr, momentum=0.9),
                                     loss=losses.training_losses())
            inputs = keras.Input(shape=(None, None, 3), name="image")
            self.retina = models.retinanet(inputs, backbone.features(inputs), NUM_CLASSES)
            self.retina.compile(optimizer=keras.optimizers.SGD(learning_rate=args.lr, momentum=0.9),
                                loss={"regression": losses.smooth_l1(), "classification": losses.focal()})
        self.parameters = self.model.count_params()

    def infer(self):
        """Network time, pasting time and counts, like maskrcnn-predict on one image."""
        from keras_maskrcnn.utils.masks import paste_mask

        np = self.np
        wall, cpu = time.perf_counter(), time.process_time()
        outputs = self.model.predict_on_batch(self.inputs["image"])
        middle, middle_cpu = time.perf_counter(), time.process_time()
        boxes, scores, labels, masks = (np.asarray(o)[0] for o in outputs[-4:])
        keep = np.flatnonzero((scores > -1) & (labels >= 0))
        pasted = [paste_mask(masks[i, :, :, labels[i]], boxes[i], self.image_shape, 0.5) for i in keep]
        end, end_cpu = time.perf_counter(), time.process_time()
        return dict(seconds=middle - wall, cpu=middle_cpu - cpu, paste_seconds=end - middle,
                    full_seconds=end - wall, full_cpu=end_cpu - cpu, detections=int(keep.size),
                    masks=list(masks.shape), full_masks=[len(pasted)] + list(self.image_shape))

    def _train(self, model, inputs, targets):
        wall, cpu = time.perf_counter(), time.process_time()
        logs = model.train_on_batch(inputs, targets, return_dict=True)
        return dict(seconds=time.perf_counter() - wall, cpu=time.process_time() - cpu,
                    loss=float(logs["loss"]))

    def train(self):
        return self._train(self.train_model, self.inputs, self.targets)

    def train_retina(self):
        targets = {"regression": self.targets["regression"], "classification": self.targets["classification"]}
        return self._train(self.retina, self.inputs["image"], targets)


# --------------------------------------------------------------------------------------------
# rounds and reports
# --------------------------------------------------------------------------------------------

def run_rounds(calls, args):
    """--warmup untimed rounds, then --pairs timed rounds of the calls in order; {label: [answers]}.

    Prints one progress line per round on stderr."""
    for round_index in range(args.warmup):
        started = time.perf_counter()
        for label, call in calls:
            call()
        say(f"  warm-up round {round_index + 1}: {time.perf_counter() - started:.0f} s (load {load1():.2f})")
    answers = {label: [] for label, _ in calls}
    for round_index in range(args.pairs):
        for label, call in calls:
            answers[label].append(call())
        times = ", ".join(f"{label} {answers[label][-1]['seconds']:.1f} s" for label, _ in calls)
        print(f"  round {round_index + 1}/{args.pairs}: {times} (load {load1():.2f})", file=sys.stderr, flush=True)
    return answers


def describe(values):
    return (f"median {statistics.median(values):8.3f} s   min {min(values):8.3f}   max {max(values):8.3f}")


def print_pairs(title, ours_label, ours, peer_label, peer, ours_key="seconds", peer_key="seconds",
                ours_cpu="cpu", peer_cpu="cpu"):
    """Per-pair lines and the summary; returns the medians of the per-pair ratios ours / peer
    of wall time and of CPU time."""
    ours_times = [a[ours_key] for a in ours]
    peer_times = [b[peer_key] for b in peer]
    ratios = [a / b for a, b in zip(ours_times, peer_times)]
    cpu_ratios = [a[ours_cpu] / b[peer_cpu] for a, b in zip(ours, peer)]
    say(f"\n{title}")
    say(f"  {'pair':>4}  {ours_label + ' s':>16} {'(cpu)':>9}  {peer_label + ' s':>16} {'(cpu)':>9}  "
        f"{'ratio':>6} {'(cpu)':>7}")
    for index, (a, b, ratio, cpu_ratio) in enumerate(zip(ours, peer, ratios, cpu_ratios), 1):
        say(f"  {index:>4}  {a[ours_key]:16.3f} {'(%.2f)' % a[ours_cpu]:>9}  {b[peer_key]:16.3f} "
            f"{'(%.2f)' % b[peer_cpu]:>9}  {ratio:6.3f} {'(%.3f)' % cpu_ratio:>7}")
    median_ratio, median_cpu_ratio = statistics.median(ratios), statistics.median(cpu_ratios)
    say(f"  {ours_label:<12} {describe(ours_times)}")
    say(f"  {peer_label:<12} {describe(peer_times)}")
    say(f"  ratio {ours_label} / {peer_label}: per pair median {median_ratio:.3f} (min {min(ratios):.3f}, "
        f"max {max(ratios):.3f}); ratio of medians {statistics.median(ours_times) / statistics.median(peer_times):.3f}; "
        f"CPU time per pair median {median_cpu_ratio:.3f}")
    return median_ratio, median_cpu_ratio


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Our Mask R-CNN against torchvision's, side by side (see the docstring).")
    parser.add_argument("--pairs", type=int, default=5, help="timed rounds per section (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--detections", type=int, default=100,
                        help="detections forced on both sides (default 100); 0: the libraries' defaults")
    parser.add_argument("--threads", type=int, default=2, help="threads of both frameworks (default 2)")
    parser.add_argument("--mask-rois", type=int, default=64, help="our most training RoIs per image (default 64)")
    parser.add_argument("--mask-rois-multiple", type=int, default=16,
                        help="our RoI rows are padded to a multiple of this (default 16, the generator's; "
                             "64 with --mask-rois 64 gives the fixed 64 rows of earlier versions)")
    parser.add_argument("--objects", type=int, default=5, help="objects (boxes with masks) to train on (default 5)")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-4, help="SGD learning rate of both training steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image, RoI jitter and weights")
    add_peer_flags(parser)
    parser.add_argument("--no-inference", action="store_true", help="skip sections (i) and (ii)")
    parser.add_argument("--no-training", action="store_true", help="skip sections (iii) and (iv)")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.warmup < 0 or args.detections < 0 or args.threads < 1:
        parser.error("--pairs and --threads must be >= 1, --warmup and --detections >= 0")
    if not 1 <= args.objects <= args.mask_rois:
        parser.error("--objects must be between 1 and --mask-rois")
    if args.no_inference and args.no_training:
        parser.error("--no-inference and --no-training leave nothing to measure")
    check_peer_python(parser, args)
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    say(f"load average (1 min) before: {load1():.2f}   cores: {os.cpu_count()}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="compare-peers-") as folder:
        data_path, image, boxes, labels, masks = save_data(args, folder)
        peer = peer_process(args.peer_python, data_path, args)
        try:
            ours = Ours(args, image, boxes, labels, masks)
            info = peer.ready()
            say(f"ours:  resnet50 maskrcnn(num_classes={NUM_CLASSES}), random weights, {ours.versions}, "
                f"{args.threads} threads, {ours.parameters / 1e6:.1f} M parameters")
            say(f"peer:  torchvision {info['torchvision']} maskrcnn_resnet50_fpn(num_classes=81), torch {info['torch']}, "
                f"{info['threads']} threads, {info['parameters'] / 1e6:.1f} M parameters")
            same = info["transformed"] == [args.height, args.width]
            say(f"image {args.height} x {args.width}; torchvision's transform makes it {info['transformed'][0]} x "
                f"{info['transformed'][1]} (batch {info['batch'][0]} x {info['batch'][1]}): "
                + ("not resized" if same else "RESIZED, the comparison is not like for like"))
            forced = (f"{args.detections} detections forced on both sides" if args.detections
                      else "the libraries' default detection thresholds")
            say(f"{forced}; {args.objects} objects; ours trains on {ours.inputs['rois'].shape[1]} mask RoI rows "
                f"({ours.valid_rois} valid); {args.warmup} warm-up round(s), {args.pairs} timed pairs per section")

            if not args.no_inference:
                say(f"\n[{time.perf_counter() - started:5.0f} s] inference rounds: ours, torchvision "
                    f"(load {load1():.2f})")
                answers = run_rounds([("ours", ours.infer), ("peer", lambda: peer.request("infer"))], args)
                a, b = answers["ours"][-1], answers["peer"][-1]
                say(f"  detections: ours {a['detections']}, masks {a['masks']} -> pasted {a['full_masks']}; "
                    f"torchvision {b['detections']}, masks {b['masks']} -> pasted {b['full_masks']}")
                results["infer"] = print_pairs(
                    f"(i) inference, {args.detections or 'default'} detections, without pasting (load {load1():.2f})",
                    "ours", answers["ours"], "torchvision", answers["peer"])
                results["paste"] = print_pairs(
                    "(ii) inference with full-size pasting (ours: paste_mask per detection; "
                    "torchvision: model([image]) output)",
                    "ours", answers["ours"], "torchvision", answers["peer"], "full_seconds", "full_seconds",
                    "full_cpu", "full_cpu")
                paste_ours = [x["paste_seconds"] for x in answers["ours"]]
                paste_peer = [x["paste_seconds"] for x in answers["peer"]]
                say(f"  pasting alone: ours median {statistics.median(paste_ours):.3f} s, "
                    f"torchvision median {statistics.median(paste_peer):.3f} s")

            if not args.no_training:
                say(f"\n[{time.perf_counter() - started:5.0f} s] training rounds: ours with masks, torchvision, "
                    f"ours RetinaNet-only (load {load1():.2f})")
                answers = run_rounds([("ours", ours.train), ("peer", lambda: peer.request("train")),
                                                  ("retina", ours.train_retina)], args)
                say("  losses of the last round: ours {:.3f}, torchvision {:.3f}, ours RetinaNet-only {:.3f}".format(
                    answers["ours"][-1]["loss"], answers["peer"][-1]["loss"], answers["retina"][-1]["loss"]))
                results["train"] = print_pairs(
                    f"(iii) training step, batch 1, {args.objects} objects (load {load1():.2f})",
                    "ours", answers["ours"], "torchvision", answers["peer"])
                results["retina"] = print_pairs(
                    "(iv) our training step with masks against our RetinaNet-only step (same rounds)",
                    "ours", answers["ours"], "retinanet", answers["retina"])
        finally:
            peer.close()

    say("\ngoals, judged on the median of the per-pair wall-time ratios (CPU-time ratio beside it):")
    for title, key, goal in GOALS:
        if key in results:
            ratio, cpu_ratio = results[key]
            verdict = "met" if ratio <= goal else "missed"
            say(f"  {title:<52} {ratio:6.3f} (cpu {cpu_ratio:.3f})  goal <= {goal:.1f}x: {verdict}")
        else:
            say(f"  {title:<52} {'-':>6}  goal <= {goal:.1f}x: not measured")
    say(f"\nload average (1 min) after: {load1():.2f}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
