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

int8 (onnx and openvino), the data sets last on the line:

    maskrcnn-export MODEL OUT.onnx --format onnx --int8 [--calibration-images 300] [--max-ap-drop 0.01]
        --calibration TYPE ... [--check-data TYPE ...]

quantizes the float artifact with the runtime's own tool (ONNX Runtime's static quantization, NNCF
for OpenVINO) on --calibration-images pictures of the calibration data set (any TYPE the tools read:
coco, csv, labelme, yolo), then measures mask and box AP50 of the float and the int8 artifact on the
--check-data pictures; it prints both and fails (status 1, artifact removed) when the int8 mask AP50
is more than --max-ap-drop below the float one. The JSON says "precision": "int8".

Without --check-data the check uses the calibration set's validation split when it has one, as
maskrcnn-train finds it: coco --val-annotations (or a COCO folder's annotations/instances_val2017.json
when calibrating on another set), csv --val-annotations, labelme --val-folder, yolo --val-split (val
by default, when DATA.yaml has it and it is not the calibration --split). Otherwise a fifth of the
calibration pictures, at most 200, is kept out of calibration for it. The export prints which.
"""

import argparse
import os

from .. import defaults
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
                        help="score threshold of the exported filter (default: the model's, "
                             f"{defaults.SCORE_THRESHOLD} unless trained otherwise)")
    parser.add_argument("--max-detections", type=common.positive_int, default=None,
                        help=f"detection rows of the exported model (default: the model's, {defaults.MAX_DETECTIONS})")
    parser.add_argument("--threads", type=common.positive_int, default=None,
                        help="threads of the runtime during the check (default: the runtime's choice)")
    int8 = parser.add_argument_group("int8 (onnx and openvino; the data sets go last on the line)")
    int8.add_argument("--int8", action="store_true",
                      help="quantize to int8 with the runtime's own tool and check mask AP50 against float")
    int8.add_argument("--calibration", metavar="TYPE ...", nargs=argparse.REMAINDER,
                      help="the calibration data set, as the other tools take it: coco PATH, csv ANNOTATIONS "
                           "CLASSES, labelme FOLDER or yolo DATA.yaml [--split S]; its validation split options "
                           "(--val-annotations, --val-folder, --val-split) give the check's pictures")
    int8.add_argument("--check-data", metavar="TYPE ...", nargs=argparse.REMAINDER,
                      help="annotated pictures for the AP check (default: the calibration set's validation "
                           "split when it has one, else a fifth of the calibration set, at most 200, kept out "
                           "of calibration)")
    int8.add_argument("--calibration-images", type=common.positive_int, default=DEFAULT_CALIBRATION_IMAGES,
                      help=f"pictures used for calibration (default {DEFAULT_CALIBRATION_IMAGES}, evenly spaced "
                           f"over the set)")
    int8.add_argument("--calibration-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                      help="ONNX Runtime's calibration method (default minmax)")
    int8.add_argument("--max-ap-drop", type=common.unit_float, default=0.01,
                      help="fail when the int8 mask AP50 is more than this below the float one (default 0.01)")
    flags = common.FlagAdder(parser, [])
    common.add_backbone(flags, default=None)
    common.add_image_size(flags, None, None)
    common.add_pad_multiple(flags)
    quiet.add_verbose_option(parser)
    argv, datasets = split_dataset_arguments(common.argv(args), DATASET_OPTIONS)
    args = parser.parse_args(argv)
    quiet.quiet_startup(args.verbose)
    args.calibration, args.check_data = None, None
    for option, tokens in datasets.items():
        setattr(args, option.lstrip("-").replace("-", "_"), dataset_arguments(parser, option, tokens))
    if args.int8:
        if args.format not in ("onnx", "openvino"):
            parser.error(f"--int8 is for the onnx and openvino formats, not {args.format}")
        if args.calibration is None:
            parser.error("--int8 needs --calibration TYPE ... (the data set's arguments last on the line)")
    elif args.calibration is not None or args.check_data is not None:
        parser.error("--calibration and --check-data go with --int8")
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


DATASET_OPTIONS = ("--calibration", "--check-data")
DEFAULT_CALIBRATION_IMAGES = 300


def split_dataset_arguments(argv, options=DATASET_OPTIONS):
    """(the other arguments, {option: its data set's arguments}) of a command line where each of
    `options` is followed by a data set's arguments up to the next of them or the end."""
    rest, datasets, current = [], {}, None
    for token in argv:
        if token in options:
            current = datasets.setdefault(token, [])
        elif current is not None:
            current.append(token)
        else:
            rest.append(token)
    return rest, datasets


def dataset_arguments(parser, option, tokens):
    """The namespace of one data set's arguments (`common.dataset_subparsers`) given after `option`;
    parser.error naming the option when they are wrong."""
    sub = argparse.ArgumentParser(prog=f"{parser.prog} {option}", add_help=False)
    common.dataset_subparsers(sub, coco_set="train2017", val_annotations=option == "--calibration")
    if not tokens:
        parser.error(f"{option} needs a data set: coco PATH, csv ANNOTATIONS CLASSES, labelme FOLDER or yolo DATA.yaml")
    try:
        namespace, extra = sub.parse_known_args(tokens)
    except SystemExit:
        parser.error(f"{option}: the data set's arguments are wrong (see above)")
    if extra:
        parser.error(f"{option} {' '.join(tokens)}: unrecognized {' '.join(extra)} (put the other options before "
                     f"{option})")
    return namespace


def dataset_generator(parser, args, namespace, backbone, **source):
    """The generator of a data set namespace of `dataset_arguments`, resized as args say; source: another
    set of the same data set (`validation_source`)."""
    for key in ("image_min_side", "image_max_side", "pad_multiple"):
        setattr(namespace, key, getattr(args, key))
    return common.create_generator(parser, namespace, backbone, shuffle_groups=False, skip_bad_images=True,
                                   **source)


def validation_source(namespace):
    """(create_generator arguments of the calibration set's validation split, its description), or
    (None, None) when it has none: coco --val-annotations (and --val-images), else with a folder PATH
    its annotations/instances_val2017.json unless --coco-set is val2017; csv --val-annotations;
    labelme --val-folder; yolo --val-split when DATA.yaml has that entry and it is not --split."""
    kind = namespace.dataset_type
    if kind == "coco":
        if namespace.val_annotations:
            return dict(annotations=namespace.val_annotations, images=namespace.val_images), namespace.val_annotations
        default = os.path.join(namespace.coco_path, "annotations", "instances_val2017.json")
        if os.path.isdir(namespace.coco_path) and namespace.coco_set != "val2017" and os.path.isfile(default):
            return dict(set_name="val2017"), default
        return None, None
    if kind == "csv":
        return ((dict(annotations=namespace.val_annotations), namespace.val_annotations)
                if namespace.val_annotations else (None, None))
    if kind == "labelme":
        return (dict(folder=namespace.val_folder), namespace.val_folder) if namespace.val_folder else (None, None)
    if namespace.val_split == namespace.split or not _yaml_has_split(namespace.data_yaml, namespace.val_split):
        return None, None
    return dict(split=namespace.val_split), f"the {namespace.val_split!r} split of {namespace.data_yaml}"


def _yaml_has_split(path, split):
    """True when the YAML file at `path` is a mapping with an entry `split` (a file that cannot be read
    gives False here and its error when the calibration set is read)."""
    import yaml

    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and data.get(split) is not None


def check_data_generator(parser, args, backbone):
    """The generator of the int8 check's pictures and the line saying which they are: --check-data, else
    the calibration set's validation split; (None, None) when neither (export_model then keeps a part
    of the calibration pictures out of calibration and says so)."""
    if args.check_data is not None:
        generator = dataset_generator(parser, args, args.check_data, backbone)
        return generator, f"int8 check on the {generator.size()} pictures of --check-data"
    source, description = validation_source(args.calibration)
    if source is None:
        return None, None
    generator = dataset_generator(parser, args, args.calibration, backbone, **source)
    return generator, f"int8 check on the calibration set's validation split: {generator.size()} pictures of {description}"


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
    check = info.get("check") or info.get("float_check")
    if info.get("precision") == "int8":
        from ..models.quantize import describe_check

        settings = info["quantization"]
        lines.append(f"int8 by {settings['tool']} on {settings['calibration_images']} calibration pictures; "
                     f"{info['size'] / 1e6:.1f} MB (float {info['float_size'] / 1e6:.1f} MB)")
        if info.get("int8_check"):
            lines.append("int8 check: " + describe_check(info["int8_check"]))
        else:
            lines.append("int8 accuracy not checked (--no-check)")
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
    int8 = {}
    if args.int8:
        common.plain_bad_image_warnings(parser.prog)
        check_data = None
        if args.check:
            check_data, line = check_data_generator(parser, args, backbone)
            if line:
                print(line)
        int8 = dict(int8=True, calibration=dataset_generator(parser, args, args.calibration, backbone),
                    calibration_images=args.calibration_images, max_ap_drop=args.max_ap_drop, log=print,
                    check_data=check_data)
        if args.format == "onnx":
            int8["quantization"] = dict(calibration_method=args.calibration_method)
    print(f"Exporting to {args.format}{' int8' if args.int8 else ''}...")
    try:
        info = export_model(model, args.output, args.format, image_size=args.fixed_size, check=args.check,
                            check_input=check_input(args, backbone) if args.check else None,
                            metadata=metadata, raw_outputs=args.raw_outputs, threads=args.threads, **int8)
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
