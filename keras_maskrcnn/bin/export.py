"""`maskrcnn-export`: writes a trained model as a TensorFlow SavedModel, ONNX, OpenVINO or LiteRT artifact,
checked against the Keras model.

    maskrcnn-export MODEL OUT --format tf_saved_model|onnx|openvino|litert [--fixed-size H W] [--no-check]

MODEL is a `.keras` file (a maskrcnn-train snapshot or a saved prediction model) or an `.h5` model of
keras-maskrcnn 0.2. OUT is a folder for tf_saved_model and a file ending in .onnx, .xml (OpenVINO,
with a .bin beside it) or .tflite otherwise; OUT.json beside it says what a caller needs (class names,
preprocessing, image sizes, pad multiple, score threshold, input size). The artifact takes any height
and width unless --fixed-size is given. Unless --no-check, the artifact is run with its own runtime on
one image (--check-image, else a noise image resized as in prediction) beside the Keras model; when
their detections differ (count, labels, scores beyond 1e-4, boxes beyond 1e-2 px, masks beyond 1e-3)
the export fails, printing the differences, and the artifact is removed.
"""

import argparse
import os

from . import common, quiet

FORMAT_CHOICES = ("tf_saved_model", "onnx", "openvino", "litert")
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "litert": ".tflite"}


def parse_args(args):
    """(parser, arguments); exits through parser.error on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="maskrcnn-export",
        description="Export a trained Mask R-CNN to a TensorFlow SavedModel, ONNX, OpenVINO or LiteRT artifact "
                    "and check it against the Keras model.")
    parser.add_argument("model", help=common.MODEL_HELP)
    parser.add_argument("output", help="the artifact: a folder for tf_saved_model, else a file ending in .onnx, "
                                       ".xml (openvino) or .tflite (litert)")
    parser.add_argument("--format", required=True, choices=FORMAT_CHOICES, help="the artifact's format")
    parser.add_argument("--fixed-size", type=common.positive_int, nargs=2, metavar=("H", "W"), default=None,
                        help="export for inputs of exactly H x W (smaller inputs are padded by the runtime "
                             "wrapper); default: any height and width")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip running the artifact against the Keras model")
    parser.add_argument("--check-image", default=None, help="image file for the check (default: noise)")
    parser.add_argument("--raw-outputs", action="store_true",
                        help="also output the raw regression and classification of every anchor")
    parser.add_argument("--score-threshold", type=common.unit_float, default=None,
                        help="score threshold of the exported filter (default: the model's, 0.05 unless trained otherwise)")
    parser.add_argument("--max-detections", type=common.positive_int, default=None,
                        help="detection rows of the exported model (default: the model's, 100)")
    parser.add_argument("--threads", type=common.positive_int, default=None,
                        help="threads of the runtime during the check (default: the runtime's choice)")
    flags = common.FlagAdder(parser, [])
    common.add_backbone(flags, default=None)
    common.add_image_size(flags, None, None)
    common.add_pad_multiple(flags)
    quiet.add_verbose_option(parser)
    args = parser.parse_args(common.argv(args))
    quiet.quiet_startup(args.verbose)
    common.check_file(parser, args.model, "model file")
    suffix = SUFFIXES.get(args.format)
    if suffix and not args.output.lower().endswith(suffix):
        parser.error(f"a {args.format} artifact's file name must end in {suffix}, got {args.output!r}")
    if args.format == "tf_saved_model" and os.path.isfile(args.output):
        parser.error(f"{args.output!r} is a file; a SavedModel is written as a folder")
    if args.check_image is not None:
        common.check_file(parser, args.check_image, "check image")
    args.metadata = common.model_metadata(parser, args.model)
    common.apply_model_defaults(args, args.metadata)
    return parser, args


def check_input(args, backbone):
    """The (1, H, W, 3) input of the check: --check-image resized and preprocessed as maskrcnn-predict does
    and padded to --pad-multiple (the artifact's runtime pads it further to --fixed-size); without one, a
    noise image of --fixed-size, or of --image-min-side x 1.25 times that (at most --image-max-side) padded."""
    import numpy as np

    from ..inference.transform import InputTransform
    from ..utils.image import read_image_bgr

    transform = InputTransform(args.image_min_side, args.image_max_side, args.pad_multiple, backbone.preprocessing)
    rng = np.random.default_rng(0)
    if args.check_image:
        return transform.prepare([read_image_bgr(args.check_image, orient=True)])[0]
    if args.fixed_size:
        return backbone.preprocess_image(rng.integers(0, 256, (1,) + tuple(args.fixed_size) + (3,), dtype=np.uint8))
    shape = (args.image_min_side, min(args.image_max_side, args.image_min_side * 5 // 4))
    return transform.prepare([rng.integers(0, 256, shape + (3,), dtype=np.uint8)])[0]


def describe_export(info, output):
    """The lines printed after an export."""
    size = info["input"]["size"]
    shape = f"fixed input size {size[0]} x {size[1]}" if size else "dynamic input size (any height and width)"
    lines = [f"{output}: {info['format']} artifact, input 'image' (batch, H, W, 3) float32, {shape}; outputs "
             f"{', '.join(info['outputs'])}; runtime: maskrcnn-predict --runtime {info['runtime']}"]
    check = info.get("check")
    if check:
        from ..utils.compare import describe

        height, width = check["input_shape"][1:3]
        for report in check["images"]:
            lines.append(f"check on a {height} x {width} input against Keras: {describe(report)}")
            if report["count"] == 0:
                lines.append("  the check image gave no detection, so boxes and masks were not compared: "
                             "pass --check-image with an image that has objects")
        lines.append(f"  predict time in the check: Keras {check['seconds']['keras']:.2f} s, "
                     f"{info['runtime']} {check['seconds']['artifact']:.2f} s (first calls, not a benchmark)")
    else:
        lines.append("not checked (--no-check)")
    from ..runtimes import metadata_path

    lines.append(f"what a caller needs (classes, preprocessing, sizes, threshold): {metadata_path(output)}")
    return lines


def main(args=None):
    """maskrcnn-export; returns 0 (exits with status 2 on bad arguments, 1 when the check fails)."""
    parser, args = parse_args(args)
    from ..models import load_model
    from ..models.backbone import backbone as get_backbone
    from ..models.export import ExportCheckError, export_model
    from ..runtimes import MissingRuntime

    overrides = {key: value for key, value in (("score_threshold", args.score_threshold),
                                               ("max_detections", args.max_detections)) if value is not None}
    print("Loading model, this may take a second...")
    try:
        model = load_model(args.model, backbone_name=args.backbone, **overrides)
    except ValueError as error:
        parser.error(str(error))
    common.require_masks(parser, model, args.model)
    backbone = get_backbone(args.backbone)
    metadata = dict(args.metadata, backbone=args.backbone, image_min_side=args.image_min_side,
                    image_max_side=args.image_max_side, pad_multiple=args.pad_multiple)
    if not metadata.get("classes") and args.metadata.get("legacy"):
        metadata["classes"] = None
    print(f"Exporting to {args.format}...")
    try:
        info = export_model(model, args.output, args.format, image_size=args.fixed_size, check=args.check,
                            check_input=check_input(args, backbone) if args.check else None,
                            metadata=metadata, raw_outputs=args.raw_outputs, threads=args.threads)
    except MissingRuntime as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except ExportCheckError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    except ValueError as error:
        parser.error(str(error))
    for line in describe_export(info, args.output):
        print(line)
    return 0


if __name__ == "__main__":
    main()
