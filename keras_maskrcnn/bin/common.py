"""Argument parsing and data set helpers shared by the command-line tools.

Heavy modules (Keras, TensorFlow) are imported inside the functions that need them, so that
`--help` and argument errors are fast and `--gpu` can take effect before a device is touched.
"""

import argparse
import os
import sys

from ..defaults import IMAGE_MAX_SIDE, IMAGE_MIN_SIDE, PAD_MULTIPLE

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
MODEL_HELP = "model file: a .keras file written by maskrcnn-train, or an .h5 model of keras-maskrcnn 0.2"


def _number_type(name, convert, noun, valid, requirement, doc):
    """An argparse type: `convert(text)`, rejected with "'text' is not {noun}" when it cannot be
    converted and with "'text' {requirement}" when not `valid(value)`."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"{text!r} {requirement}")
        return value

    parse.__name__ = parse.__qualname__ = name
    parse.__doc__ = doc
    return parse


positive_int = _number_type("positive_int", int, "an integer", lambda v: v >= 1, "must be at least 1",
                            "argparse type: an integer >= 1.")
non_negative_int = _number_type("non_negative_int", int, "an integer", lambda v: v >= 0, "must not be negative",
                                "argparse type: an integer >= 0.")
positive_float = _number_type("positive_float", float, "a number", lambda v: 0 < v < float("inf"),
                              "must be a positive number", "argparse type: a finite float > 0.")
unit_float = _number_type("unit_float", float, "a number", lambda v: 0.0 <= v <= 1.0, "must lie in [0, 1]",
                          "argparse type: a float in [0, 1].")


class FlagAdder:
    """Adds the same options to the main parser and to every sub-command parser.

    Options may then be given before or after the data set type (`--backbone x csv a b` and
    `csv a b --backbone x`); the sub-command copies default to argparse.SUPPRESS so that they
    only override what the main parser holds when they are given.
    """

    def __init__(self, parser, subparsers):
        self.parsers = [(parser, False)] + [(sub, True) for sub in subparsers]

    @staticmethod
    def _options(kwargs, suppress):
        return dict(kwargs, default=argparse.SUPPRESS) if suppress else dict(kwargs)

    def add(self, *names, **kwargs):
        for parser, suppress in self.parsers:
            parser.add_argument(*names, **self._options(kwargs, suppress))

    def exclusive(self, *arguments):
        """A mutually exclusive group of (names, kwargs) pairs on every parser."""
        for parser, suppress in self.parsers:
            group = parser.add_mutually_exclusive_group()
            for names, kwargs in arguments:
                group.add_argument(*names, **self._options(kwargs, suppress))


DATASET_TYPES = ("coco", "csv", "labelme", "yolo")
YOLO_SPLITS = ("train", "val", "test")


def dataset_subparsers(parser, coco_model=False, csv_model=False, coco_set=None, val_annotations=False,
                       yolo_split=None):
    """The data set sub-commands `coco PATH`, `csv ANNOTATIONS CLASSES`, `labelme FOLDER` and
    `yolo DATA.yaml`; returns their parsers.

    coco_model / csv_model: add a trailing MODEL positional (to labelme and yolo too when
    either is set). coco_set: default of --coco-set (None for no such option). val_annotations:
    add the validation set options of maskrcnn-train (csv and coco --val-annotations, coco
    --val-images, labelme --val-folder, yolo --val-split). yolo_split: default of yolo's
    --split (default: 'val' when coco_set is 'val2017', else 'train'). --skip-bad-annotations
    goes on the main parser and coco's.
    """
    yolo_split = yolo_split or ("val" if coco_set == "val2017" else "train")
    subparsers = parser.add_subparsers(dest="dataset_type", metavar="{" + ",".join(DATASET_TYPES) + "}",
                                       help="data set type; see `%(prog)s TYPE -h`, e.g. `%(prog)s coco -h`")
    subparsers.required = True
    coco = subparsers.add_parser(
        "coco", help="a COCO JSON file (any tool's export, e.g. Roboflow's train/_annotations.coco.json) or "
                     "a folder in the COCO layout (annotations/instances_SET.json, images/SET/)")
    coco.add_argument("coco_path", metavar="PATH",
                      help="a COCO JSON file, or a data set folder in the COCO layout, e.g. /data/COCO")
    coco.add_argument("--images", metavar="DIR",
                      help="with a JSON file: the folder its file_name entries are relative to (default: the JSON "
                           "file's folder, as Roboflow and Label Studio export; CVAT: its images/ folder)")
    if coco_set is not None:
        coco.add_argument("--coco-set", default=coco_set, help=f"set name in the folder layout (default {coco_set})")
    csv = subparsers.add_parser("csv", help="a CSV data set (annotations.csv and classes.csv)")
    csv.add_argument("annotations", help="CSV file of annotations: path,x1,y1,x2,y2,class_name,mask_path")
    csv.add_argument("classes", help="CSV file of classes: class_name,id")
    labelme = subparsers.add_parser("labelme", help="a folder of labelme .json files (searched recursively)")
    labelme.add_argument("folder", metavar="FOLDER", help="folder of labelme .json files and their pictures")
    labelme.add_argument("--classes", metavar="FILE",
                         help="labelme's labels.txt: the classes in label order, __ignore__ and _background_ "
                              "allowed (default: the sorted labels found)")
    yolo = subparsers.add_parser("yolo", help="an ultralytics YOLO segmentation data set (its data.yaml)")
    yolo.add_argument("data_yaml", metavar="DATA.yaml", help="the data set's YAML file (path, train, val, names)")
    yolo.add_argument("--split", choices=YOLO_SPLITS, default=yolo_split,
                      help=f"the split of the YAML file to read (default {yolo_split})")
    if val_annotations:
        csv.add_argument("--val-annotations", metavar="FILE",
                         help="CSV file of validation annotations (same classes)")
        coco.add_argument("--val-annotations", metavar="FILE.json",
                          help="COCO JSON file of the validation set (default with a folder PATH: "
                               "annotations/instances_val2017.json when it exists; with a JSON file: none)")
        coco.add_argument("--val-images", metavar="DIR",
                          help="the folder the validation JSON's file_name entries are relative to "
                               "(default: its folder)")
        labelme.add_argument("--val-folder", metavar="DIR",
                             help="folder of labelme files of the validation set (same classes; default: none)")
        yolo.add_argument("--val-split", choices=YOLO_SPLITS, default="val",
                          help="the split of the YAML file to validate on (default val; without such an entry "
                               "in the YAML, no validation)")
    skip = dict(action="store_true",
                help="leave out COCO annotations that are bad (unknown category or image, empty or broken "
                     "segmentation, box outside the image) with one warning counting them (default: stop "
                     "with an error naming the first)")
    parser.add_argument("--skip-bad-annotations", **skip)
    coco.add_argument("--skip-bad-annotations", **dict(skip, default=argparse.SUPPRESS))
    if coco_model or csv_model:
        for sub in (coco, csv, labelme, yolo):
            sub.add_argument("model", help=MODEL_HELP)
    return [coco, csv, labelme, yolo]


_IMAGE_SIZE_DEFAULT = "default"


def add_image_size(flags, min_side=_IMAGE_SIZE_DEFAULT, max_side=_IMAGE_SIZE_DEFAULT):
    """--image-min-side and --image-max-side, by default `defaults.IMAGE_MIN_SIDE` and
    `defaults.IMAGE_MAX_SIDE` (800 / 1333); None defaults mean "the model's, else those"."""
    min_side = IMAGE_MIN_SIDE if min_side == _IMAGE_SIZE_DEFAULT else min_side
    max_side = IMAGE_MAX_SIDE if max_side == _IMAGE_SIZE_DEFAULT else max_side

    def default(value, fallback):
        return f"default {value}" if value is not None else f"default: as the model was trained, else {fallback}"

    flags.add("--image-min-side", type=positive_int, default=min_side,
              help=f"resize images so that the smaller side is this long ({default(min_side, IMAGE_MIN_SIDE)})")
    flags.add("--image-max-side", type=positive_int, default=max_side,
              help=f"unless the larger side would then exceed this ({default(max_side, IMAGE_MAX_SIDE)})")
    flags.add("--max-image-pixels", type=non_negative_int, action=MaxImagePixels, default=None, metavar="N",
              help="a picture with more pixels (width x height, from its header) is not decoded: it is an "
                   "unreadable picture like a damaged one (default 89478485, Pillow's limit; 0: no limit)")


class MaxImagePixels(argparse.Action):
    """--max-image-pixels N: sets the pixel limit of every picture reader (utils.image.set_max_image_pixels)
    when the option is parsed; 0 removes the limit."""

    def __call__(self, parser, namespace, values, option_string=None):
        from ..utils.image import set_max_image_pixels

        set_max_image_pixels(values or None)
        setattr(namespace, self.dest, values)


def add_pad_multiple(flags):
    """--pad-multiple, default: the model's, else `defaults.PAD_MULTIPLE` (32; see apply_model_defaults)."""
    flags.add("--pad-multiple", type=positive_int, default=None,
              help=f"pad every batch's height and width up to a multiple of this (default: as the model was "
                   f"trained, else {PAD_MULTIPLE}); larger values give fewer distinct input shapes, so fewer graph "
                   f"compilations on JAX, for more pixels per step")


def add_backbone(flags, default="resnet50"):
    """--backbone with the supported names as choices."""
    from ..utils.applications import BACKBONES

    flags.add("--backbone", choices=BACKBONES, default=default, metavar="NAME",
              help=f"backbone network: {', '.join(BACKBONES)} (default {default or 'from the model file'})")


def add_loaded_model_flags(flags):
    """--backbone (default: the model file's), --gpu and --mixed-precision, for the tools that
    load a trained model."""
    add_backbone(flags, default=None)
    flags.add("--gpu", help="id of the GPU to use (as nvidia-smi reports it); -1 for none")
    flags.add("--mixed-precision", action="store_true",
              help="compute in mixed_float16 on a GPU, mixed_bfloat16 otherwise (default: as the model was saved)")


def apply_model_defaults(args, metadata):
    """Fills --backbone, --image-min-side, --image-max-side and --pad-multiple left unset from a
    model file's metadata, else resnet50 and `defaults`' IMAGE_MIN_SIDE, IMAGE_MAX_SIDE and
    PAD_MULTIPLE (800 / 1333 / 32)."""
    args.backbone = args.backbone or metadata.get("backbone") or "resnet50"
    args.image_min_side = args.image_min_side or metadata.get("image_min_side") or IMAGE_MIN_SIDE
    args.image_max_side = args.image_max_side or metadata.get("image_max_side") or IMAGE_MAX_SIDE
    args.pad_multiple = args.pad_multiple or metadata.get("pad_multiple") or PAD_MULTIPLE


def model_metadata(parser, path):
    """`read_metadata` of a model file for a tool that needs masks; parser.error when it is an .h5
    file that no tool can open or a keras-retinanet one (boxes only), before any model is built."""
    from ..models import read_metadata

    try:
        metadata = read_metadata(path)
    except ValueError as error:
        parser.error(str(error))
    if metadata.get("legacy", {}).get("kind", "").startswith("keras-retinanet"):
        no_masks(parser, path)
    return metadata


def model_runtime_and_metadata(parser, args):
    """Sets args.runtime (from the path when not given) and args.metadata (a Keras model file's, or the
    JSON beside an exported artifact); parser.error for a model that does not exist, a path whose
    runtime cannot be told, or --mixed-precision with an exported artifact."""
    from ..runtimes import read_export_metadata, runtime_for_path

    if not os.path.exists(args.model):
        parser.error(f"model file {args.model!r} does not exist")
    if args.runtime is None:
        try:
            args.runtime = runtime_for_path(args.model)
        except ValueError as error:
            parser.error(str(error))
    if args.runtime == "keras":
        check_file(parser, args.model, "model file")
        args.metadata = model_metadata(parser, args.model)
    else:
        args.metadata = read_export_metadata(args.model)
        if args.mixed_precision:
            parser.error("--mixed-precision applies to Keras models, not to exported artifacts")


def predictor_or_exit(parser, args, build):
    """build() (a function making the `inference.Predictor` that runs args.model), with one-line exits for a
    model that cannot be loaded or run: a runtime that is not installed (status 2, naming its extra), a
    keras-retinanet file without masks, a file the runtime cannot read."""
    from ..runtimes import MissingRuntime

    try:
        return build()
    except MissingRuntime as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except ValueError as error:
        if "without a mask head" in str(error):
            no_masks(parser, args.model)
        parser.error(str(error))
    except Exception as error:  # runtimes raise their own types for files they cannot read
        parser.error(f"{args.model!r} cannot be run with {args.runtime}: {error}")


def no_masks(parser, path):
    parser.error(f"{path!r} is a keras-retinanet model without a mask head; {parser.prog} needs masks")


def require_masks(parser, model, path):
    """parser.error unless `model` outputs masks (keras-retinanet files give boxes only)."""
    if len(model.outputs) < 6:
        no_masks(parser, path)


def model_classes(metadata):
    """How many classes a model file's metadata says it predicts, or None."""
    if metadata.get("classes") is not None:
        return len(metadata["classes"])
    return metadata.get("legacy", {}).get("num_classes")


def select_gpu(gpu):
    """Restricts TensorFlow/JAX/PyTorch to one GPU id (or none with -1) via CUDA_VISIBLE_DEVICES."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


def check_file(parser, path, what):
    """parser.error unless `path` is an existing file."""
    if not os.path.isfile(path):
        parser.error(f"{what} {path!r} does not exist")


def coco_files(parser, path, set_name=None, images=None):
    """(annotations JSON file, images folder) of `coco PATH`: PATH itself and `images` (default
    the JSON's folder) for a file, DIR/annotations/instances_SET.json and DIR/images/SET/ for a
    folder; parser.error naming what is missing."""
    if os.path.isfile(path):
        if images is not None and not os.path.isdir(images):
            parser.error(f"--images folder {images!r} does not exist")
        return path, images if images is not None else os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(path):
        if path.lower().endswith(".json"):
            parser.error(f"COCO annotations file {path!r} does not exist")
        parser.error(f"COCO data set folder {path!r} does not exist (PATH is a COCO JSON file or a folder in the "
                     f"COCO layout)")
    if images is not None:
        parser.error(f"--images goes with a COCO JSON file; the folder {path!r} has its images in images/SET/")
    annotations = os.path.join(path, "annotations", f"instances_{set_name}.json")
    if not os.path.isfile(annotations):
        found = sorted(name for name in os.listdir(path) if name.lower().endswith(".json"))
        hint = (f"; it holds {', '.join(found[:3])}: pass that file as PATH" if found
                else "; give the COCO JSON file itself as PATH")
        parser.error(f"COCO data set folder {path!r} has no annotations/instances_{set_name}.json{hint}")
    return annotations, os.path.join(path, "images", set_name)


def check_dataset(parser, args, set_name=None):
    """parser.error unless the data set files of the sub-command exist (set_name: the COCO set a
    folder PATH must hold, default --coco-set, else train2017)."""
    if args.dataset_type != "coco" and getattr(args, "skip_bad_annotations", False):
        parser.error(f"--skip-bad-annotations is for coco data sets; {args.dataset_type} data errors name "
                     f"the file and line or shape to fix")
    if args.dataset_type == "coco":
        coco_files(parser, args.coco_path, set_name or getattr(args, "coco_set", None) or "train2017",
                   args.images)
    elif args.dataset_type == "csv":
        check_file(parser, args.annotations, "annotations file")
        check_file(parser, args.classes, "classes file")
    elif args.dataset_type == "labelme":
        if not os.path.isdir(args.folder):
            parser.error(f"labelme folder {args.folder!r} does not exist")
        if args.classes is not None:
            check_file(parser, args.classes, "--classes file")
    else:
        check_file(parser, args.data_yaml, "YOLO data set file")


def anchor_parameters(parser, config):
    """AnchorParameters of a --config .ini file (None without one); parser.error on a bad file."""
    if config is None:
        return None
    from ..utils.config import anchor_parameters_from_file

    try:
        return anchor_parameters_from_file(config)
    except (ValueError, KeyError) as error:
        parser.error(str(error))


BAD_ANNOTATIONS_HINT = " (--skip-bad-annotations leaves the bad annotations out with a warning)"


def create_generator(parser, args, backbone, set_name=None, annotations=None, images=None, folder=None,
                     split=None, **kwargs):
    """The generator of the data set args describe (CocoGenerator, CSVGenerator, LabelmeGenerator
    or YoloGenerator), or parser.error naming the problem.

    The other arguments name another set of the same data set (the validation set): set_name:
    COCO set of a folder PATH (default args.coco_set); annotations: COCO JSON or CSV
    annotations file instead of the main one, images: that JSON's images folder (default its
    folder); folder: labelme folder; split: YOLO split (default args.split). kwargs go to the
    generator (batch_size, transform_generator, ...). Images are resized by args.image_min_side /
    args.image_max_side, batches padded to args.pad_multiple, and preprocessed for `backbone`
    (anything with a preprocess_image attribute); COCO annotations are left out when bad with
    args.skip_bad_annotations, else an error.
    """
    check_dataset(parser, args, set_name)
    kwargs.setdefault("image_min_side", args.image_min_side)
    kwargs.setdefault("image_max_side", args.image_max_side)
    if getattr(args, "pad_multiple", None):
        kwargs.setdefault("pad_multiple", args.pad_multiple)
    kwargs.setdefault("preprocess_image", backbone.preprocess_image)
    try:
        if args.dataset_type == "coco":
            from ..preprocessing.coco import BadAnnotationError, CocoGenerator

            if annotations is None:
                annotations, images = coco_files(parser, args.coco_path,
                                                 set_name or getattr(args, "coco_set", None) or "train2017",
                                                 args.images)
            skip = getattr(args, "skip_bad_annotations", False)
            try:
                return CocoGenerator(annotations=annotations, images=images, skip_bad_annotations=skip, **kwargs)
            except BadAnnotationError as error:
                parser.error(str(error) + ("" if skip else BAD_ANNOTATIONS_HINT))
        if args.dataset_type == "csv":
            from ..preprocessing.csv_generator import CSVGenerator

            return CSVGenerator(annotations or args.annotations, args.classes, **kwargs)
        if args.dataset_type == "labelme":
            from ..preprocessing.labelme import LabelmeGenerator

            return LabelmeGenerator(folder or args.folder, classes=args.classes, **kwargs)
        from ..preprocessing.yolo import YoloGenerator

        return YoloGenerator(args.data_yaml, split=split or args.split, **kwargs)
    except ValueError as error:
        parser.error(str(error))


def class_names(generator):
    """[name of label 0, name of label 1, ...] of a generator (None where a label is unused)."""
    return [generator.label_to_name(label) if generator.has_label(label) else None
            for label in range(generator.num_classes())]


def image_files(parser, inputs):
    """Image files of IMAGE_OR_DIR arguments (folders: their images, sorted); parser.error if none."""
    files = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, name) for name in os.listdir(item)
                           if name.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                parser.error(f"folder {item!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            files.extend(found)
        elif os.path.isfile(item):
            files.append(item)
        else:
            parser.error(f"image or folder {item!r} does not exist")
    return files


def picture_names(files):
    """Output PNG names for input files: the file name with .png, numbered when names repeat."""
    names, seen = [], {}
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0]
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(f"{stem}.png" if count == 0 else f"{stem}_{count}.png")
    return names


def plain_bad_image_warnings(prog):
    """Shows warnings about unreadable images and bad annotations (BadImageWarning,
    AnnotationWarning) as `prog: warning: message` lines (without the source line Python adds);
    other warnings are shown as before."""
    import warnings

    from ..preprocessing.bad_images import AnnotationWarning, BadImageWarning

    original = warnings.formatwarning
    if getattr(original, "bad_image_prog", None) is not None:
        original = original.original

    def formatwarning(message, category, filename, lineno, line=None):
        if issubclass(category, (BadImageWarning, AnnotationWarning)):
            return f"{prog}: warning: {message}\n"
        return original(message, category, filename, lineno, line)

    formatwarning.bad_image_prog = prog
    formatwarning.original = original
    warnings.formatwarning = formatwarning


def argv(args):
    """The command-line arguments: `args` when given, else sys.argv[1:]."""
    return sys.argv[1:] if args is None else list(args)
