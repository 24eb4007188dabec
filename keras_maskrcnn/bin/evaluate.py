"""`maskrcnn-evaluate`: how good a trained model is on a data set of any type.

    maskrcnn-evaluate [options] coco PATH MODEL
    maskrcnn-evaluate [options] csv ANNOTATIONS CLASSES MODEL

Prints pycocotools' COCOeval summaries (segm and bbox), a per-class table (COCO mask and box AP,
instances, images, and the seed's mask mAP@0.5) and the seed's per-class lines and mAP. With
--save-path D it writes metrics.json, per_class.csv, detections.json, pr_curves.png,
f1_curve.png, confusion_matrix.png and worst/*.png (ground truth beside predictions) into D.
"""

import argparse
import os
import sys

from .. import defaults
from ..preprocessing.bad_images import listing
from ..utils.image import UnreadableImageError
from . import common, quiet


def parse_args(args):
    """(parser, arguments); exits through parser.error on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="maskrcnn-evaluate",
        description="Evaluate a Mask R-CNN model: COCOeval segm and bbox overall and per class, the seed's "
                    "mask mAP@0.5, and with --save-path the metrics files, curves, confusion matrix and "
                    "pictures of the worst images.")
    subparsers = common.dataset_subparsers(parser, coco_model=True, csv_model=True, coco_set="val2017")
    flags = common.FlagAdder(parser, subparsers)
    common.add_loaded_model_flags(flags)
    flags.add("--runtime", choices=["keras", "saved_model", "onnxruntime", "openvino", "litert"], default=None,
              help="what runs the model: keras, or the runtime of an exported artifact (default: from the path: "
                   ".keras/.h5 keras, a SavedModel folder saved_model, .onnx onnxruntime, .xml openvino, "
                   ".tflite litert)")
    flags.add("--threads", type=common.positive_int, default=None,
              help="threads of an exported artifact's runtime (default: the runtime's choice)")
    flags.add("--score-threshold", type=common.unit_float, default=defaults.SCORE_THRESHOLD,
              help=f"minimum detection score (default {defaults.SCORE_THRESHOLD})")
    flags.add("--iou-threshold", type=common.unit_float, default=defaults.MATCH_IOU_THRESHOLD,
              help=f"mask IoU for a detection to count as found in the seed's per-class mAP "
                   f"(default {defaults.MATCH_IOU_THRESHOLD})")
    flags.add("--max-detections", type=common.positive_int, default=defaults.MAX_DETECTIONS,
              help=f"detections per image (default {defaults.MAX_DETECTIONS})")
    flags.add("--binarize-threshold", type=common.unit_float, default=defaults.BINARIZE_THRESHOLD,
              help=f"mask probability from which a pixel is foreground (default {defaults.BINARIZE_THRESHOLD})")
    flags.add("--save-path", help="folder for metrics.json, per_class.csv, detections.json, pr_curves.png, "
                                  "f1_curve.png, confusion_matrix.png and worst/ (pictures of the worst images); "
                                  "a path ending in .json writes only the detections there")
    flags.add("--worst", type=common.non_negative_int, default=8,
              help="pictures of this many worst images (most missed and false detections) with --save-path "
                   "(default 8)")
    flags.add("--confusion-threshold", type=common.unit_float, default=None,
              help="score from which detections count in the confusion matrix and the worst pictures "
                   "(default: the threshold of the best mask F1)")
    common.add_image_size(flags, None, None)
    common.add_pad_multiple(flags)
    flags.add("--config", help="a .ini file with an [anchor_parameters] section (default: the model's own)")
    flags.add("--weighted-average", action="store_true",
              help="weight the per-class AP by instance counts in the seed's mAP")
    flags.add("--skip-bad-images", action="store_true",
              help="evaluate on the images that can be read, leaving out with a warning those that cannot "
                   "(default: stop, since a metric over fewer images is not the data set's)")
    quiet.add_verbose_option(flags)
    args = parser.parse_args(common.argv(args))
    quiet.quiet_startup(args.verbose, gpu=args.gpu)  # before model_metadata imports Keras
    common.check_dataset(parser, args)
    check_save_path(parser, args.save_path)
    common.model_runtime_and_metadata(parser, args)
    if args.runtime != "keras" and args.config is not None:
        parser.error("--config applies to Keras models; an exported artifact has its anchors built in")
    common.apply_model_defaults(args, args.metadata)
    if args.config is not None:
        common.check_file(parser, args.config, "config file")
    return parser, args


def check_save_path(parser, save_path):
    """parser.error, before any model is loaded, when --save-path cannot be written: a folder that
    exists as a file, or that cannot be created or written (a .json path: its folder)."""
    if not save_path:
        return
    from ..utils.files import OutputError, check_output_dir

    folder = os.path.dirname(os.path.abspath(save_path)) if str(save_path).endswith(".json") else save_path
    try:
        if str(save_path).endswith(".json") and os.path.isdir(save_path):
            parser.error(f"--save-path {save_path!r} is a folder, not a .json file")
        check_output_dir(folder, "--save-path")
    except OutputError as error:
        parser.error(str(error))


def print_average_precisions(names, average_precisions, weighted=False):
    """Prints the seed's measure: `N instances of class NAME with average precision: AP` per
    class of {label: name} and `mAP: X`; returns the mAP."""
    from ..evaluation.average_precision import mean_average_precision

    print("Mask mAP@0.5 (keras-retinanet's definition, as earlier versions printed it):")
    for label, (average_precision, count) in average_precisions.items():
        print(f"{count:.0f} instances of class {names[label]} with average precision: {average_precision:.4f}")
    mean_ap = mean_average_precision(average_precisions, weighted=weighted)
    print(f"mAP: {mean_ap:.4f}")
    return mean_ap


def settings(args):
    """What metrics.json records of the run: model, data set and thresholds."""
    dataset = {key: getattr(args, key) for key in ("dataset_type", "coco_path", "coco_set", "images", "annotations", "classes",
                                                         "folder", "data_yaml", "split")
               if getattr(args, key, None) is not None}
    return {"model": args.model, "runtime": args.runtime, "dataset": dataset, "backbone": args.backbone,
            "score_threshold": args.score_threshold, "max_detections": args.max_detections,
            "binarize_threshold": args.binarize_threshold, "iou_threshold": args.iou_threshold,
            "image_min_side": args.image_min_side, "image_max_side": args.image_max_side}


def make_predictor(parser, args, anchor_params):
    """The `inference.Predictor` that runs args.model: a Keras file loaded with --config's anchors, or an
    exported artifact with its runtime; one-line exits for a model that cannot be loaded or run."""
    from ..inference.predictor import Predictor

    settings = dict(score_threshold=args.score_threshold, max_detections=args.max_detections,
                    image_min_side=args.image_min_side, image_max_side=args.image_max_side,
                    pad_multiple=args.pad_multiple, binarize_threshold=args.binarize_threshold,
                    backbone=args.backbone)

    def build():
        if args.runtime == "keras":
            from ..models import load_model

            model = load_model(args.model, backbone_name=args.backbone, anchor_params=anchor_params,
                               mixed_precision=args.mixed_precision or None,
                               score_threshold=args.score_threshold, max_detections=args.max_detections)
            common.require_masks(parser, model, args.model)
            return Predictor(model, classes=args.metadata.get("classes"), **settings)
        return Predictor(args.model, runtime=args.runtime, threads=args.threads, **settings)

    return common.predictor_or_exit(parser, args, build)


STOP_HINT = ("a metric over the other images would not be the data set's; fix or remove them, or pass "
             "--skip-bad-images to evaluate without them")


def check_unreadable(parser, args, generator):
    """parser.error listing the images the generator left out as unreadable, unless
    --skip-bad-images (then a warning listing them). Returns the data set's number of images."""
    unreadable = generator.bad_images.messages().values()
    total = generator.size() + len(unreadable)
    if unreadable and not args.skip_bad_images:
        parser.error(f"{len(unreadable)} of {total} images cannot be read; {STOP_HINT}:\n{listing(unreadable)}")
    if unreadable:
        print(f"maskrcnn-evaluate: warning: {len(unreadable)} of {total} images cannot be read and "
              f"{'are' if len(unreadable) > 1 else 'is'} left out (--skip-bad-images):\n{listing(unreadable)}",
              file=sys.stderr)
    return total


def main(args=None):
    """maskrcnn-evaluate; returns 0 (exits with status 2 on bad arguments, 1 when an image
    cannot be read during the evaluation without --skip-bad-images)."""
    parser, args = parse_args(args)
    common.select_gpu(args.gpu)
    from ..models import backbone as get_backbone

    common.plain_bad_image_warnings(parser.prog)
    anchor_params = common.anchor_parameters(parser, args.config)
    backbone = get_backbone(args.backbone)
    generator = common.create_generator(parser, args, backbone, shuffle_groups=False, anchor_params=anchor_params,
                                        skip_bad_images=True)
    total = check_unreadable(parser, args, generator)
    generator.skip_bad_images = args.skip_bad_images
    count = common.model_classes(args.metadata)
    if count is not None and count != generator.num_classes():
        parser.error(f"model {args.model!r} predicts {count} classes, the data set has {generator.num_classes()}")

    print("Loading model, this may take a second...")
    model = make_predictor(parser, args, anchor_params)

    from ..evaluation.reports import format_table, per_class_rows, write_json
    from ..evaluation.run import evaluate_model, write_reports

    try:
        evaluation = evaluate_model(generator, model, score_threshold=args.score_threshold,
                                    max_detections=args.max_detections, binarize_threshold=args.binarize_threshold,
                                    iou_threshold=args.iou_threshold, verbose=True)
    except UnreadableImageError as error:
        sys.exit(f"maskrcnn-evaluate: error: {error}; {STOP_HINT}")
    print()
    rows = per_class_rows(evaluation.metrics, evaluation.seed_by_name())
    shown = [row for row in rows if row["instances"] or row["class"] == "all"]
    print(format_table(shown))
    if len(shown) < len(rows):
        print(f"({len(rows) - len(shown)} classes without objects in the data set are not shown)")
    print()
    print_average_precisions(evaluation.names, evaluation.seed, weighted=args.weighted_average)
    if args.save_path and str(args.save_path).endswith(".json"):
        from ..evaluation.coco_metrics import coco_results

        try:
            print(f"wrote {write_json(args.save_path, coco_results(evaluation.records, evaluation.names))}")
        except OSError as error:
            sys.exit(f"maskrcnn-evaluate: error: {error}")
    elif args.save_path:
        try:
            write_reports(args.save_path, generator, evaluation, settings=settings(args), worst=args.worst,
                          confusion_threshold=args.confusion_threshold)
        except OSError as error:
            sys.exit(f"maskrcnn-evaluate: error: {error}")
    if len(generator.bad_images):
        left_out = generator.bad_images.messages().values()
        print(f"Evaluated on {total - len(left_out)} of {total} images; left out as unreadable:\n{listing(left_out)}")
    return 0


if __name__ == "__main__":
    main()
