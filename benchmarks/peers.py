"""Torchvision's Mask R-CNN as a timing peer: a long-lived process answering JSON lines on stdin/stdout.

    benchmarks/.venv-peers/bin/python benchmarks/peers.py --data DATA.npz [--threads 2] [--detections 100]
                                                          [--lr 1e-4] [--seed 0] [--batch 1]
                                                          [--min-size 800] [--max-size 1333]

Run by benchmarks/compare.py, breakdown.py and scale.py in the peer venv (`make bench-peers` makes it); not meant to be run
by hand, although it can be: type one request per line and read one JSON answer per line.

DATA.npz, written by the parent: 'image' (H, W, 3) uint8 BGR pixels, 'boxes' (K, 4) float32
x1 y1 x2 y2 in pixels, 'labels' (K,) int64 in 0..C-1, 'masks' (K, H, W) uint8 0/1.

The model is `torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None,
weights_backbone=None, num_classes=81)` (80 classes + background; labels are shifted by 1),
min_size --min-size and max_size --max-size (800 and 1333: an 800 x 1024 image keeps its size; the
answer to "ready" says what the transform made of it), torch.set_num_threads(--threads). The
inference requests run on a batch of --batch copies of the image (training always on one). --detections K > 0 sets
box_score_thresh 0.0 and box_detections_per_img K, so that random weights still give K detections and
masks; K = 0 keeps torchvision's defaults (0.05 and 100; random weights then give none).

Protocol: on start one line {"ready": true, ...}; then, per request line, one answer line.
  {"cmd": "infer"}      eval mode, torch.inference_mode, the steps of model([image]) timed in two
                        parts: transform, backbone, RPN and RoI heads (boxes, scores, labels and the
                        28 x 28 mask probabilities of the detections: "seconds"), then the
                        transform's postprocess, which pastes the masks into the full image
                        ("paste_seconds"; "full_seconds" is their sum, the time of the full output).
                        Answer {"seconds", "cpu", "paste_seconds", "full_seconds", "full_cpu",
                        "detections", "masks", "full_masks"}.
  {"cmd": "profile"}    eval mode, torch.inference_mode, the same work as "infer" without pasting, each
                        part timed on its own: transform, backbone (ResNet body), fpn, rpn, box_pool,
                        box_head (box head + predictor), box_postprocess, mask_pool, mask_head (mask
                        head + predictor + per-class selection and sigmoid). Answer {"parts":
                        {name: seconds}, "seconds", "detections"}.
  {"cmd": "infer_full"} model([image]) as one call (the same work as "infer" with its postprocess),
                        to check that the two-part timing adds up. Answer {"seconds", "detections",
                        "masks"}.
  {"cmd": "train"}      train mode, one SGD step (momentum 0.9, --lr) on the K objects:
                        forward with targets, sum of the losses, backward, step.
                        Answer {"seconds": s, "loss": value, "losses": {...}}.
  {"cmd": "quit"}       answers {"bye": true} and exits.
Errors answer {"error": message}. Seconds are wall time (time.perf_counter) of the work alone;
"cpu" in every answer is the process CPU time of the same work ("full_cpu" that of
"full_seconds"); "peak_rss_mb" in every answer, the ready line included, is the process's peak
resident memory so far. Anything the libraries print goes to stderr.
"""

import argparse
import json
import sys
import time

from predict import peak_rss_mb


def parse_args(argv):
    parser = argparse.ArgumentParser(description="torchvision Mask R-CNN timing peer (JSON lines on stdin/stdout)")
    parser.add_argument("--data", required=True, help="npz with image, boxes, labels, masks (see the docstring)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--detections", type=int, default=100,
                        help="K > 0: box_score_thresh 0 and box_detections_per_img K (default 100); 0: torchvision's defaults")
    parser.add_argument("--lr", type=float, default=1e-4, help="SGD learning rate of the training step")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the random weights")
    parser.add_argument("--batch", type=int, default=1, help="images per inference call (copies of the image)")
    parser.add_argument("--min-size", type=int, default=800, help="the transform's min_size (default 800)")
    parser.add_argument("--max-size", type=int, default=1333, help="the transform's max_size (default 1333)")
    return parser.parse_args(argv)


class Peer:
    """The torchvision model, its inputs and its optimizer; one method per request."""

    def __init__(self, args):
        import numpy as np
        import torch
        import torchvision
        from torchvision.models.detection import maskrcnn_resnet50_fpn

        self.torch = torch
        torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        with np.load(args.data) as data:
            image_bgr, boxes, labels, masks = data["image"], data["boxes"], data["labels"], data["masks"]
        rgb = np.ascontiguousarray(image_bgr[..., ::-1].transpose(2, 0, 1))
        self.image = torch.from_numpy(rgb).float().div_(255.0)
        self.images = [self.image] * args.batch
        self.target = {
            "boxes": torch.from_numpy(np.asarray(boxes, np.float32)),
            "labels": torch.from_numpy(np.asarray(labels, np.int64) + 1),
            "masks": torch.from_numpy(np.asarray(masks, np.uint8)),
        }
        forced = dict(box_score_thresh=0.0, box_detections_per_img=args.detections) if args.detections > 0 else {}
        self.model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=81,
                                           min_size=args.min_size, max_size=args.max_size, **forced)
        self.optimizer = torch.optim.SGD([p for p in self.model.parameters() if p.requires_grad],
                                         lr=args.lr, momentum=0.9)
        self.model.eval()
        with torch.inference_mode():
            transformed, _ = self.model.transform(self.images)
        self.info = dict(
            ready=True, torch=torch.__version__, torchvision=torchvision.__version__,
            threads=torch.get_num_threads(), image=list(self.image.shape[1:]),
            transformed=list(transformed.image_sizes[0]), batch=list(transformed.tensors.shape[2:]),
            objects=int(boxes.shape[0]), detections_per_img=self.model.roi_heads.detections_per_img,
            parameters=sum(p.numel() for p in self.model.parameters()),
            trainable=sum(p.numel() for p in self.model.parameters() if p.requires_grad),
        )

    def infer(self):
        """Detections with 28 x 28 mask probabilities, then the transform's postprocess (pasting)."""
        model = self.model
        model.eval()
        start, start_cpu = time.perf_counter(), time.process_time()
        with self.torch.inference_mode():
            images, _ = model.transform(self.images)
            features = model.backbone(images.tensors)
            proposals, _ = model.rpn(images, features)
            detections, _ = model.roi_heads(features, proposals, images.image_sizes)
            masks = list(detections[0]["masks"].shape)
            middle, middle_cpu = time.perf_counter(), time.process_time()
            full = model.transform.postprocess(detections, images.image_sizes,
                                               [tuple(self.image.shape[1:])] * len(self.images))
            end, end_cpu = time.perf_counter(), time.process_time()
        return dict(seconds=middle - start, cpu=middle_cpu - start_cpu, paste_seconds=end - middle,
                    full_seconds=end - start, full_cpu=end_cpu - start_cpu,
                    detections=int(full[0]["boxes"].shape[0]), masks=masks, full_masks=list(full[0]["masks"].shape))

    def profile(self):
        """The steps of "infer" one by one, with the wall time of each (torchvision's own eval path)."""
        from torchvision.models.detection.roi_heads import maskrcnn_inference

        model, heads, parts = self.model, self.model.roi_heads, {}
        model.eval()

        def timed(name, fn, *args):
            start = time.perf_counter()
            result = fn(*args)
            parts[name] = time.perf_counter() - start
            return result

        start = time.perf_counter()
        with self.torch.inference_mode():
            images, _ = timed("transform", model.transform, self.images)
            body = timed("backbone", model.backbone.body, images.tensors)
            features = timed("fpn", model.backbone.fpn, body)
            proposals, _ = timed("rpn", model.rpn, images, features)
            sizes = images.image_sizes
            pooled = timed("box_pool", heads.box_roi_pool, features, proposals, sizes)
            logits, deltas = timed("box_head", lambda x: heads.box_predictor(heads.box_head(x)), pooled)
            boxes, scores, labels = timed("box_postprocess", heads.postprocess_detections, logits, deltas,
                                          proposals, sizes)
            mask_pooled = timed("mask_pool", heads.mask_roi_pool, features, boxes, sizes)
            timed("mask_head", lambda x: maskrcnn_inference(heads.mask_predictor(heads.mask_head(x)), labels),
                  mask_pooled)
        return dict(parts=parts, seconds=time.perf_counter() - start, detections=int(boxes[0].shape[0]))

    def infer_full(self):
        """model([image]): boxes in image pixels and masks pasted into the full image."""
        model = self.model
        model.eval()
        with self.torch.inference_mode():
            result = model(self.images)[0]
        return dict(detections=int(result["boxes"].shape[0]), masks=list(result["masks"].shape))

    def train(self):
        model = self.model
        model.train()
        losses = model([self.image], [self.target])
        loss = sum(losses.values())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return dict(loss=float(loss.detach()), losses={k: float(v.detach()) for k, v in losses.items()})


def serve(make):
    """Answers JSON-line requests on stdin with JSON lines on stdout until {"cmd": "quit"} or EOF.

    make() -> (info, requests): info is the first line sent, requests maps a cmd to a function
    returning a dict. It is called after stdout has been pointed at stderr, so that whatever the
    libraries print never mixes with the answers. Every answer gets "seconds" and "cpu" of the
    request unless it set them, and "peak_rss_mb" of the process. Shared with the other benchmark
    children (scale.py runs our side with it).
    """
    protocol = sys.stdout
    sys.stdout = sys.stderr

    def answer(message):
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    info, requests = make()
    answer(dict(info, peak_rss_mb=peak_rss_mb()))
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            command = json.loads(line).get("cmd")
        except (ValueError, AttributeError):
            answer({"error": f"not a JSON object: {line[:200]}"})
            continue
        if command == "quit":
            answer({"bye": True})
            break
        if command not in requests:
            answer({"error": f"unknown cmd {command!r}; expected one of {sorted(requests) + ['quit']}"})
            continue
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            result = requests[command]()
            result.setdefault("seconds", time.perf_counter() - wall)
            result.setdefault("cpu", time.process_time() - cpu)
            result["peak_rss_mb"] = peak_rss_mb()
        except Exception as error:  # report any failure to the parent instead of dying silently
            result = {"error": f"{type(error).__name__}: {error}"}
        answer(result)
    return 0


def main(argv=None):
    args = parse_args(argv)

    def make():
        peer = Peer(args)
        return peer.info, {"infer": peer.infer, "infer_full": peer.infer_full, "profile": peer.profile,
                           "train": peer.train}

    return serve(make)


if __name__ == "__main__":
    sys.exit(main())
