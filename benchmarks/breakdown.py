"""Where inference time goes: our Mask R-CNN and torchvision's, part by part, on the same image.

    make bench-peers                      # once: benchmarks/.venv-peers with torch + torchvision
    .venv/bin/python benchmarks/breakdown.py [--pairs 3] [--warmup 1] [--detections 100] [--threads 2]
                                           [--height 800] [--width 1024] [--seed 0] [--no-peer]
                                           [--peer-python benchmarks/.venv-peers/bin/python]

Same model, image and forced detections as compare.py's inference section (ResNet50, 80 classes,
random weights, 800 x 1024, --detections 100 real detections on both sides, --threads threads).
Torchvision's transform is told the image's own sides as min_size / max_size, so that it does not
resize other --height / --width either.

Ours is cut into sub-models that share the prediction model's layers, each fed with the real
output of the part before it and timed with `predict_on_batch`:
  backbone     image -> C3, C4, C5 (keras.applications ResNet50)
  fpn          C3..C5 -> P3..P7
  heads        P3..P7 -> regression (B, A, 4), classification (B, A, 80): the shared 4-conv heads
  detections   anchors, box decoding, clipping, FilterDetections (top-k, NMS, top N)
  roi_align    the N detected boxes -> (B, N, 14, 14, 256) from P3..P7
  mask_head    (N, 14, 14, 256) -> (N, 28, 28, 80)
  whole model  the prediction model's predict_on_batch (the sum of the parts above plus what
               cutting it adds: one host copy per cut, and the mask branch's bucket switch)
Torchvision's eval path is timed step by step by the peer (benchmarks/peers.py "profile"):
transform, backbone (ResNet body), fpn, rpn, box_pool, box_head, box_postprocess, mask_pool,
mask_head (with the per-class selection and sigmoid), and its whole model([image]) without pasting
(the "infer" request).

Rounds alternate: our parts and our whole model, then the peer's. Medians over --pairs rounds after
--warmup untimed rounds; every part's share of its side's whole-model time is printed beside it.
--no-peer profiles our side only (no peer venv needed).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

from compare import NUM_CLASSES, add_peer_flags, check_peer_python, load1, our_model, peer_process, save_data, say

OUR_PARTS = ("backbone", "fpn", "heads", "detections", "roi_align", "mask_head")
PEER_PARTS = ("transform", "backbone", "fpn", "rpn", "box_pool", "box_head", "box_postprocess", "mask_pool",
              "mask_head")
# Rows of the side-by-side table: (label, our parts, the peer's parts) doing comparable work.
ROWS = [
    ("input transform", (), ("transform",)),
    ("backbone (ResNet50 body)", ("backbone",), ("backbone",)),
    ("feature pyramid", ("fpn",), ("fpn",)),
    ("dense heads (ours: RetinaNet; theirs: RPN + proposals)", ("heads",), ("rpn",)),
    ("detections (ours: decode + NMS; theirs: box RoI head + NMS)", ("detections",),
     ("box_pool", "box_head", "box_postprocess")),
    ("mask RoIAlign", ("roi_align",), ("mask_pool",)),
    ("mask head", ("mask_head",), ("mask_head",)),
]


class OurParts:
    """Sub-models of our prediction model, one per part, sharing its layers."""

    def __init__(self, args, image):
        import keras
        import numpy as np

        from keras_maskrcnn.models.retinanet import PYRAMID_LEVELS

        self.versions, backbone, model = our_model(args)
        self.model = model
        self.image = backbone.preprocess_image(image[None].astype(np.float32))

        image_t = model.inputs[0]
        c = [model.get_layer(name).input for name in ("C3_reduced", "C4_reduced", "C5_reduced")]
        p = [model.get_layer(level).output for level in PYRAMID_LEVELS]
        regression, classification = model.get_layer("regression").output, model.get_layer("classification").output
        boxes_scores_labels = model.get_layer("filtered_detections").output
        masks_layer = model.get_layer("masks")
        box_input = keras.Input(shape=(max(args.detections, 1), 4))
        level_inputs = [keras.Input(shape=(None, None, t.shape[-1])) for t in p]
        self.sub_models = {
            "backbone": keras.Model(image_t, c),
            "fpn": keras.Model(c, p),
            "heads": keras.Model(p, [regression, classification]),
            "detections": keras.Model([image_t] + p + [regression, classification], boxes_scores_labels),
            "roi_align": keras.Model([box_input] + level_inputs, masks_layer.roi_align([box_input] + level_inputs)),
            "mask_head": masks_layer.mask_model,
        }
        self.np = np

    def run(self):
        """({part: seconds}, whole-model seconds, detections) of one pass through the parts and the model."""
        np, sub, parts = self.np, self.sub_models, {}

        def timed(name, *inputs):
            start = time.perf_counter()
            result = sub[name].predict_on_batch(list(inputs) if len(inputs) > 1 else inputs[0])
            parts[name] = time.perf_counter() - start
            return result

        c = timed("backbone", self.image)
        p = timed("fpn", *c)
        regression, classification = timed("heads", *p)
        boxes, scores, _labels = timed("detections", self.image, *p, regression, classification)
        pooled = np.asarray(timed("roi_align", boxes, *p))
        timed("mask_head", pooled.reshape((-1,) + pooled.shape[2:]))
        start = time.perf_counter()
        outputs = self.model.predict_on_batch(self.image)
        whole = time.perf_counter() - start
        return parts, whole, int(np.sum(np.asarray(outputs[3]) > -1))


def median_parts(answers, names):
    return {name: statistics.median(a[name] for a in answers) for name in names}


def print_table(ours, ours_whole, peer, peer_whole):
    """The side-by-side table of part medians; peer may be None."""
    say(f"\n{'part':<62} {'ours s':>8} {'share':>6}  {'torchvision s':>13} {'share':>6}  {'ratio':>6}")
    for label, our_names, peer_names in ROWS:
        a = sum(ours[n] for n in our_names) if our_names else None
        b = sum(peer[n] for n in peer_names) if peer is not None and peer_names else None
        a_text = f"{a:8.3f} {a / ours_whole:6.0%}" if a is not None else f"{'-':>8} {'':>6}"
        b_text = f"{b:13.3f} {b / peer_whole:6.0%}" if b is not None else f"{'-':>13} {'':>6}"
        ratio = f"{a / b:6.2f}" if a and b else f"{'':>6}"
        say(f"{label:<62} {a_text}  {b_text}  {ratio}")
    a_sum = sum(ours.values())
    say(f"{'sum of the parts':<62} {a_sum:8.3f} {a_sum / ours_whole:6.0%}  "
        + (f"{sum(peer.values()):13.3f} {sum(peer.values()) / peer_whole:6.0%}" if peer is not None else ""))
    say(f"{'whole model (not cut)':<62} {ours_whole:8.3f} {'100%':>6}  "
        + (f"{peer_whole:13.3f} {'100%':>6}  {ours_whole / peer_whole:6.2f}" if peer is not None else ""))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--detections", type=int, default=100, help="detections forced on both sides (default 100)")
    parser.add_argument("--threads", type=int, default=2, help="threads of both frameworks (default 2)")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    add_peer_flags(parser, optional=True)
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.warmup < 0 or args.detections < 1 or args.threads < 1:
        parser.error("--pairs, --detections and --threads must be >= 1, --warmup >= 0")
    check_peer_python(parser, args)
    args.objects, args.lr = 5, 1e-4  # what compare.make_data and peer_process read
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    say(f"load average (1 min) before: {load1():.2f}   cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="breakdown-peers-") as folder:
        data_path, image = save_data(args, folder)[:2]
        peer = None
        if not args.no_peer:
            peer = peer_process(args.peer_python, data_path, args, "--min-size", min(args.height, args.width),
                                "--max-size", max(args.height, args.width))
        try:
            ours = OurParts(args, image)
            say(f"ours: resnet50 maskrcnn(num_classes={NUM_CLASSES}), {ours.versions}, {args.threads} threads")
            if peer is not None:
                info = peer.ready()
                say(f"peer: torchvision {info['torchvision']} maskrcnn_resnet50_fpn, torch {info['torch']}, "
                    f"{info['threads']} threads; image {args.height} x {args.width} -> {info['transformed']}")
            say(f"{args.detections} detections forced on both sides; {args.warmup} warm-up round(s), "
                f"{args.pairs} timed rounds")
            our_answers, our_wholes, peer_answers, peer_wholes = [], [], [], []
            for round_index in range(args.warmup + args.pairs):
                parts, whole, detected = ours.run()
                if peer is not None:
                    profile = peer.request("profile")
                    full = peer.request("infer")
                if round_index < args.warmup:
                    say(f"  warm-up round {round_index + 1} done (load {load1():.2f})")
                    continue
                our_answers.append(parts)
                our_wholes.append(whole)
                line = f"  round {round_index + 1 - args.warmup}: ours {whole:.2f} s ({detected} detections)"
                if peer is not None:
                    peer_answers.append(profile["parts"])
                    peer_wholes.append(full["seconds"])
                    line += f", torchvision {full['seconds']:.2f} s ({profile['detections']} detections)"
                say(line + f" (load {load1():.2f})")
        finally:
            if peer is not None:
                peer.close()

    ours_parts = median_parts(our_answers, OUR_PARTS)
    peer_parts = median_parts(peer_answers, PEER_PARTS) if peer is not None else None
    print_table(ours_parts, statistics.median(our_wholes), peer_parts,
                statistics.median(peer_wholes) if peer is not None else None)
    say(f"\nmedians of {args.pairs} rounds; share = part / that side's whole model; ratio = ours / torchvision")
    say(f"load average (1 min) after: {load1():.2f}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
