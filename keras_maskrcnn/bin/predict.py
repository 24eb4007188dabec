"""`maskrcnn-predict`: runs a trained model on images and writes pictures and COCO-style results.

    maskrcnn-predict MODEL IMAGE_OR_DIR... --output-dir D [--runtime keras|saved_model|onnxruntime|openvino|litert]

MODEL is a Keras model file or an artifact of maskrcnn-export (a SavedModel folder, .onnx, .xml or
.tflite, run with its own runtime, which --runtime names and the path implies by default; the settings
come from the JSON maskrcnn-export wrote beside it).

Images are resized as in training, boxes are mapped back to the original image and masks are
pasted at full resolution. Writes D/<image name>.png (detections drawn over the image) and
D/results.json: a list of COCO result dicts (image_id = position in the input order,
file_name, category_id = label, category_name, score, bbox [x, y, w, h], segmentation RLE with
str counts). An image that cannot be read is skipped with a warning and listed there as
{image_id, file_name, error}.
"""

import argparse
import json
import os

import cv2

from ..runtimes import RUNTIMES, MissingRuntime, load_artifact, read_export_metadata, runtime_for_path
from ..utils.eval import encode_masks, predict_image
from ..utils.progress import progress
from ..preprocessing.bad_images import listing
from ..preprocessing.bad_images import warn as warn_bad_image
from ..utils.image import UnreadableImageError, image_size, read_image_bgr, resize_image
from ..utils.masks import paste_mask
from ..utils.visualization import draw_detections
from . import common

RESULTS_NAME = "results.json"


def parse_args(args):
    """(parser, arguments); exits through parser.error on bad arguments or unreadable images."""
    parser = argparse.ArgumentParser(
        prog="maskrcnn-predict",
        description="Detect and segment objects in images with a trained Mask R-CNN; writes an overlay "
                    f"PNG per image and {RESULTS_NAME} (COCO results with RLE masks) to --output-dir.")
    parser.add_argument("model", help=common.MODEL_HELP + "; or an artifact of maskrcnn-export (a SavedModel folder, "
                                      ".onnx, .xml or .tflite file)")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files, or folders of images")
    parser.add_argument("--output-dir", required=True, help="folder for the pictures and results.json")
    parser.add_argument("--runtime", choices=list(RUNTIMES), default=None,
                        help="what runs the model: keras, or the runtime of an exported artifact (default: "
                             "from the path: .keras/.h5 keras, a SavedModel folder saved_model, .onnx onnxruntime, "
                             ".xml openvino, .tflite litert)")
    parser.add_argument("--threads", type=common.positive_int, default=None,
                        help="threads of an exported artifact's runtime (default: the runtime's choice)")
    flags = common.FlagAdder(parser, [])
    common.add_loaded_model_flags(flags)
    flags.add("--score-threshold", type=common.unit_float, default=0.5,
              help="minimum score of the detections kept (default 0.5)")
    flags.add("--max-detections", type=common.positive_int, default=100, help="detections per image (default 100)")
    flags.add("--binarize-threshold", type=common.unit_float, default=0.5,
              help="mask probability from which a pixel is foreground (default 0.5)")
    common.add_image_size(flags, None, None)
    common.add_pad_multiple(flags)
    args = parser.parse_args(common.argv(args))
    if not os.path.exists(args.model):
        parser.error(f"model file {args.model!r} does not exist")
    if args.runtime is None:
        try:
            args.runtime = runtime_for_path(args.model)
        except ValueError as error:
            parser.error(str(error))
    if args.runtime == "keras":
        common.check_file(parser, args.model, "model file")
        args.metadata = common.model_metadata(parser, args.model)
    else:
        args.metadata = read_export_metadata(args.model)
        if args.mixed_precision:
            parser.error("--mixed-precision applies to Keras models, not to exported artifacts")
    common.apply_model_defaults(args, args.metadata)
    args.files = common.image_files(parser, args.images)
    args.unreadable = {}
    for path in args.files:
        try:
            image_size(path)
        except UnreadableImageError as error:
            args.unreadable[path] = str(error)
    if len(args.unreadable) == len(args.files):
        parser.error(f"none of the {len(args.files)} images can be read:\n{listing(args.unreadable.values())}")
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        parser.error(f"--output-dir {args.output_dir!r} exists and is not a folder")
    return parser, args


class ImagePreparer:
    """What `utils.eval.predict_image` needs from a generator: the resize and preprocessing of training."""

    def __init__(self, backbone, min_side, max_side, pad_multiple=32):
        self.backbone = backbone
        self.min_side = min_side
        self.max_side = max_side
        self.pad_multiple = pad_multiple

    def resize_image(self, image):
        return resize_image(image, min_side=self.min_side, max_side=self.max_side)

    def preprocess_image(self, image):
        return self.backbone.preprocess_image(image)


def predict_files(model, preparer, files, output_dir, label_to_name, score_threshold=0.5, max_detections=100,
                  binarize_threshold=0.5, unreadable=None):
    """Runs the model on every file; writes the pictures and results.json; returns the results.

    A file that cannot be read (or is in `unreadable`, {path: message}) is skipped with a
    warning and gets the result {"image_id", "file_name", "error": message} instead of detections.
    """
    os.makedirs(output_dir, exist_ok=True)
    unreadable = dict(unreadable or {})
    results = []
    for image_id, (path, name) in enumerate(progress(list(zip(files, common.picture_names(files))), "Predicting: ")):
        try:
            if path in unreadable:
                raise UnreadableImageError(unreadable[path])
            image = read_image_bgr(path)
        except UnreadableImageError as error:
            warn_bad_image(f"skipped an unreadable image: {error}")
            results.append({"image_id": image_id, "file_name": path, "error": str(error)})
            continue
        boxes, scores, labels, masks = predict_image(preparer, model, image, score_threshold=score_threshold,
                                                     max_detections=max_detections)
        height, width = image.shape[:2]
        for box, score, label, mask in zip(boxes, scores, labels, masks):
            rle = encode_masks([paste_mask(mask, box, (height, width), binarize_threshold)])[0]
            x1, y1 = max(float(box[0]), 0.0), max(float(box[1]), 0.0)
            x2, y2 = min(float(box[2]), width), min(float(box[3]), height)
            results.append({
                "image_id": image_id, "file_name": path, "category_id": int(label),
                "category_name": label_to_name(int(label)), "score": float(score),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
            })
        draw_detections(image, boxes, scores, labels, masks=masks, label_to_name=label_to_name,
                        score_threshold=score_threshold, binarize_threshold=binarize_threshold)
        cv2.imwrite(os.path.join(output_dir, name), image)
    with open(os.path.join(output_dir, RESULTS_NAME), "w") as handle:
        json.dump(results, handle)
    return results


def load_exported(parser, args):
    """The artifact of args.model with args.runtime; one-line exit naming the extra when that runtime is
    not installed. Its filter ran with the threshold it was exported with: detections under
    --score-threshold are dropped afterwards, as for Keras models."""
    try:
        model = load_artifact(args.model, args.runtime, threads=args.threads)
    except MissingRuntime as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except Exception as error:  # runtimes raise their own types for files they cannot read
        parser.error(f"{args.model!r} cannot be run with {args.runtime}: {error}")
    exported = args.metadata.get("score_threshold")
    if exported is not None and args.score_threshold < exported:
        print(f"note: {args.model} was exported with score threshold {exported}; detections below it are not "
              f"in its outputs")
    return model


def main(args=None):
    """maskrcnn-predict; returns 0 (exits with status 2 on bad arguments or when no image can be read)."""
    parser, args = parse_args(args)
    common.plain_bad_image_warnings(parser.prog)
    common.select_gpu(args.gpu)
    from ..models import backbone as get_backbone
    from ..models import load_model

    backbone = get_backbone(args.backbone)
    print("Loading model, this may take a second...")
    if args.runtime == "keras":
        try:
            model = load_model(args.model, backbone_name=args.backbone, score_threshold=args.score_threshold,
                               max_detections=args.max_detections, mixed_precision=args.mixed_precision or None)
        except ValueError as error:
            parser.error(str(error))
        common.require_masks(parser, model, args.model)
    else:
        model = load_exported(parser, args)
    classes = args.metadata.get("classes") or []

    def label_to_name(label):
        return classes[label] if 0 <= label < len(classes) and classes[label] else str(label)

    preparer = ImagePreparer(backbone, args.image_min_side, args.image_max_side, args.pad_multiple)
    try:
        results = predict_files(model, preparer, args.files, args.output_dir, label_to_name,
                                score_threshold=args.score_threshold, max_detections=args.max_detections,
                                binarize_threshold=args.binarize_threshold, unreadable=args.unreadable)
    except ValueError as error:  # e.g. an image larger than a fixed-size artifact takes
        if args.runtime == "keras":
            raise
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    skipped = [result for result in results if "error" in result]
    print(f"{len(results) - len(skipped)} detections in {len(args.files) - len(skipped)} images; pictures and "
          f"{RESULTS_NAME} in {args.output_dir}")
    if skipped:
        print(f"{len(skipped)} unreadable image{'s' if len(skipped) > 1 else ''} skipped (in {RESULTS_NAME} with "
              f"an \"error\" instead of detections):\n{listing(result['error'] for result in skipped)}")
    return 0


if __name__ == "__main__":
    main()
