"""Torchvision's Mask R-CNN as a timing peer: a long-lived process answering JSON lines on stdin/stdout.

    benchmarks/.venv-peers/bin/python benchmarks/peers.py --data DATA.npz [--threads 2] [--detections 100]
                                                          [--lr 1e-4] [--seed 0]

Run by benchmarks/compare.py in the peer venv (`make bench-peers` makes it); not meant to be run
by hand, although it can be: type one request per line and read one JSON answer per line.

DATA.npz, written by the parent: 'image' (H, W, 3) uint8 BGR pixels, 'boxes' (K, 4) float32
x1 y1 x2 y2 in pixels, 'labels' (K,) int64 in 0..C-1, 'masks' (K, H, W) uint8 0/1.

The model is `torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None,
weights_backbone=None, num_classes=81)` (80 classes + background; labels are shifted by 1),
min_size 800 and max_size 1333 (an 800 x 1024 image keeps its size: the answer to "ready" says
what the transform made of it), torch.set_num_threads(--threads). --detections K > 0 sets
box_score_thresh 0.0 and detections_per_img K, so that random weights still give K detections and
masks; K = 0 keeps torchvision's defaults (0.05 and 100; random weights then give none).

Protocol: on start one line {"ready": true, ...}; then, per request line, one answer line.
  {"cmd": "infer"}      eval mode, torch.inference_mode, the steps of model([image]) timed in two
                        parts: transform, backbone, RPN and RoI heads (boxes, scores, labels and the
                        28 x 28 mask probabilities of the detections: "seconds"), then the
                        transform's postprocess, which pastes the masks into the full image
                        ("paste_seconds"; "full_seconds" is their sum, the time of the full output).
                        Answer {"seconds", "cpu", "paste_seconds", "full_seconds", "full_cpu",
                        "detections", "masks", "full_masks"}.
  {"cmd": "infer_full"} model([image]) as one call (the same work as "infer" with its postprocess),
                        to check that the two-part timing adds up. Answer {"seconds", "detections",
                        "masks"}.
  {"cmd": "train"}      train mode, one SGD step (momentum 0.9, --lr) on the K objects:
                        forward with targets, sum of the losses, backward, step.
                        Answer {"seconds": s, "loss": value, "losses": {...}}.
  {"cmd": "quit"}       answers {"bye": true} and exits.
Errors answer {"error": message}. Seconds are wall time (time.perf_counter) of the work alone;
"cpu" in every answer is the process CPU time of the same work ("full_cpu" that of
"full_seconds"). Anything the libraries print goes to stderr.
"""

import argparse
import json
import sys
import time


def parse_args(argv):
    parser = argparse.ArgumentParser(description="torchvision Mask R-CNN timing peer (JSON lines on stdin/stdout)")
    parser.add_argument("--data", required=True, help="npz with image, boxes, labels, masks (see the docstring)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--detections", type=int, default=100,
                        help="K > 0: box_score_thresh 0 and detections_per_img K (default 100); 0: torchvision's defaults")
    parser.add_argument("--lr", type=float, default=1e-4, help="SGD learning rate of the training step")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the random weights")
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
        self.target = {
            "boxes": torch.from_numpy(np.asarray(boxes, np.float32)),
            "labels": torch.from_numpy(np.asarray(labels, np.int64) + 1),
            "masks": torch.from_numpy(np.asarray(masks, np.uint8)),
        }
        forced = dict(box_score_thresh=0.0, detections_per_img=args.detections) if args.detections > 0 else {}
        self.model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=81,
                                           min_size=800, max_size=1333, **forced)
        self.optimizer = torch.optim.SGD([p for p in self.model.parameters() if p.requires_grad],
                                         lr=args.lr, momentum=0.9)
        self.model.eval()
        with torch.inference_mode():
            transformed, _ = self.model.transform([self.image])
        self.info = dict(
            ready=True, torch=torch.__version__, torchvision=torchvision.__version__,
            threads=torch.get_num_threads(), image=list(self.image.shape[1:]),
            transformed=list(transformed.image_sizes[0]), batch=list(transformed.tensors.shape[2:]),
            objects=int(boxes.shape[0]),
            parameters=sum(p.numel() for p in self.model.parameters()),
            trainable=sum(p.numel() for p in self.model.parameters() if p.requires_grad),
        )

    def infer(self):
        """Detections with 28 x 28 mask probabilities, then the transform's postprocess (pasting)."""
        model = self.model
        model.eval()
        start, start_cpu = time.perf_counter(), time.process_time()
        with self.torch.inference_mode():
            images, _ = model.transform([self.image])
            features = model.backbone(images.tensors)
            proposals, _ = model.rpn(images, features)
            detections, _ = model.roi_heads(features, proposals, images.image_sizes)
            masks = list(detections[0]["masks"].shape)
            middle, middle_cpu = time.perf_counter(), time.process_time()
            full = model.transform.postprocess(detections, images.image_sizes, [tuple(self.image.shape[1:])])
            end, end_cpu = time.perf_counter(), time.process_time()
        return dict(seconds=middle - start, cpu=middle_cpu - start_cpu, paste_seconds=end - middle,
                    full_seconds=end - start, full_cpu=end_cpu - start_cpu,
                    detections=int(full[0]["boxes"].shape[0]), masks=masks, full_masks=list(full[0]["masks"].shape))

    def infer_full(self):
        """model([image]): boxes in image pixels and masks pasted into the full image."""
        model = self.model
        model.eval()
        with self.torch.inference_mode():
            result = model([self.image])[0]
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


def main(argv=None):
    args = parse_args(argv)
    protocol = sys.stdout
    sys.stdout = sys.stderr

    def answer(message):
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    peer = Peer(args)
    answer(peer.info)
    requests = {"infer": peer.infer, "infer_full": peer.infer_full, "train": peer.train}
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
        except Exception as error:  # report any failure to the parent instead of dying silently
            result = {"error": f"{type(error).__name__}: {error}"}
        answer(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
