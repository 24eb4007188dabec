"""`maskrcnn-convert`: turns an `.h5` model of keras-maskrcnn 0.2 or keras-retinanet 1.0 into a `.keras` file.

    maskrcnn-convert OLD.h5 NEW.keras [--backbone NAME] [--classes CLASSES.csv]

The `.keras` file holds the same model in Keras 3 layers (keras-resnet backbone, the original's
RoIAlign and box clipping), with the settings read from the old file as its metadata; every tool
and `load_model` open it on any Keras backend, without the old packages.
"""

import argparse
import os

from .. import defaults
from . import common, quiet


def parse_args(args):
    parser = argparse.ArgumentParser(
        prog="maskrcnn-convert",
        description="Convert a keras-maskrcnn 0.2 or keras-retinanet 1.0 .h5 model into a .keras file that "
                    "load_model and the maskrcnn-* tools open on Keras 3.")
    parser.add_argument("model", help="the old .h5 model file (a training snapshot or a converted model)")
    parser.add_argument("output", help="the .keras file to write")
    parser.add_argument("--backbone", default=None, metavar="NAME",
                        help="backbone the file must hold: resnet50, resnet101 or resnet152 (default: the file's)")
    parser.add_argument("--classes", default=None, metavar="CSV",
                        help="class_name,id file whose names the tools then show (default: label numbers)")
    parser.add_argument("--max-detections", type=common.positive_int, default=None,
                        help=f"detections per image (default: the file's; {defaults.MAX_DETECTIONS} for "
                             f"keras-maskrcnn, 300 for keras-retinanet)")
    parser.add_argument("--score-threshold", type=common.unit_float, default=None,
                        help=f"score threshold of the filter (default: the file's, {defaults.SCORE_THRESHOLD})")
    quiet.add_verbose_option(parser)
    args = parser.parse_args(common.argv(args))
    quiet.quiet_startup(args.verbose)
    common.check_file(parser, args.model, "model file")
    if not args.output.endswith(".keras"):
        parser.error(f"the output {args.output!r} must end in .keras")
    if args.classes is not None:
        common.check_file(parser, args.classes, "classes file")
        args.class_names = read_class_names(parser, args.classes)
    return parser, args


def read_class_names(parser, path):
    """[name of label 0, ...] of a class_name,id CSV file; parser.error naming the line otherwise."""
    from ..preprocessing.csv_generator import read_classes

    try:
        classes = read_classes(path)
    except ValueError as error:
        parser.error(str(error))
    names = {label: name for name, label in classes.items()}
    missing = sorted(set(range(max(names) + 1)) - set(names))
    if missing:
        parser.error(f"{path}: class ids must run from 0 without gaps; missing {missing}")
    return [names[label] for label in range(len(names))]


def main(args=None):
    """maskrcnn-convert; returns 0 (exits with status 2 on bad arguments or unreadable files)."""
    parser, args = parse_args(args)
    from ..models import read_metadata, save_model
    from ..models.legacy import load_legacy_model

    overrides = {key: value for key, value in (("max_detections", args.max_detections),
                                               ("score_threshold", args.score_threshold)) if value is not None}
    try:
        metadata = read_metadata(args.model)
        if "legacy" not in metadata:
            parser.error(f"{args.model!r} is not an .h5 model of keras-maskrcnn or keras-retinanet")
        model = load_legacy_model(args.model, args.backbone, **overrides)
    except ValueError as error:
        parser.error(str(error))
    filters = model.get_layer("filtered_detections")
    metadata["filter"] = dict(nms=filters.nms, class_specific_filter=filters.class_specific_filter,
                              nms_threshold=filters.nms_threshold, score_threshold=filters.score_threshold,
                              max_detections=filters.max_detections)
    if args.classes is not None:
        if len(args.class_names) != metadata["legacy"]["num_classes"]:
            parser.error(f"{args.classes!r} names {len(args.class_names)} classes, the model predicts "
                         f"{metadata['legacy']['num_classes']}")
        metadata["classes"] = args.class_names
    metadata["legacy"]["source"] = os.path.basename(args.model)
    directory = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(directory, exist_ok=True)
    save_model(model, args.output, **metadata)
    masks = "with masks" if len(model.outputs) == 6 else "boxes only (no mask head)"
    print(f"{args.output}: {model.name}, {metadata['backbone']}, {metadata['legacy']['num_classes']} classes, {masks}")
    return 0


if __name__ == "__main__":
    main()
