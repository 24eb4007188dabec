"""`maskrcnn-evaluate`: evaluates a trained model on a COCO or CSV data set.

    maskrcnn-evaluate [options] coco PATH MODEL      (pycocotools COCOeval, bbox and segm)
    maskrcnn-evaluate [options] csv ANNOTATIONS CLASSES MODEL   (per-class mask AP and mAP)
"""

import argparse
import sys

from ..preprocessing.bad_images import listing
from ..utils.image import UnreadableImageError
from . import common, quiet


def parse_args(args):
    """(parser, arguments); exits through parser.error on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="maskrcnn-evaluate",
        description="Evaluate a Mask R-CNN model: per-class mask AP (CSV) or COCOeval bbox and segm (COCO).")
    subparsers = common.dataset_subparsers(parser, coco_model=True, csv_model=True, coco_set="val2017")
    flags = common.FlagAdder(parser, subparsers)
    common.add_loaded_model_flags(flags)
    flags.add("--score-threshold", type=common.unit_float, default=0.05,
              help="minimum detection score (default 0.05)")
    flags.add("--iou-threshold", type=common.unit_float, default=0.5,
              help="mask IoU for a detection to count as found, CSV only (default 0.5)")
    flags.add("--max-detections", type=common.positive_int, default=100, help="detections per image (default 100)")
    flags.add("--binarize-threshold", type=common.unit_float, default=0.5,
              help="mask probability from which a pixel is foreground (default 0.5)")
    flags.add("--save-path", help="CSV: folder for pictures with annotations and detections; "
                                  "COCO: folder (or .json file) for the results JSON")
    common.add_image_size(flags, None, None)
    common.add_pad_multiple(flags)
    flags.add("--config", help="a .ini file with an [anchor_parameters] section (default: the model's own)")
    flags.add("--weighted-average", action="store_true",
              help="weight the per-class AP by instance counts in the mAP (CSV)")
    flags.add("--skip-bad-images", action="store_true",
              help="evaluate on the images that can be read, leaving out with a warning those that cannot "
                   "(default: stop, since a metric over fewer images is not the data set's)")
    quiet.add_verbose_option(flags)
    args = parser.parse_args(common.argv(args))
    quiet.quiet_startup(args.verbose, gpu=args.gpu)  # before model_metadata imports Keras
    common.check_dataset(parser, args)
    common.check_file(parser, args.model, "model file")
    args.metadata = common.model_metadata(parser, args.model)
    common.apply_model_defaults(args, args.metadata)
    if args.config is not None:
        common.check_file(parser, args.config, "config file")
    return parser, args


def print_average_precisions(generator, average_precisions, weighted=False):
    """Prints `N instances of class NAME with average precision: AP` per class and the mAP;
    returns the mAP."""
    from ..utils.eval import mean_average_precision

    for label, (average_precision, count) in average_precisions.items():
        print(f"{count:.0f} instances of class {generator.label_to_name(label)} "
              f"with average precision: {average_precision:.4f}")
    mean_ap = mean_average_precision(average_precisions, weighted=weighted)
    print(f"mAP: {mean_ap:.4f}")
    return mean_ap


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
    from ..models import load_model

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
    try:
        model = load_model(args.model, backbone_name=args.backbone, anchor_params=anchor_params,
                           mixed_precision=args.mixed_precision or None,
                           score_threshold=args.score_threshold, max_detections=args.max_detections)
    except ValueError as error:
        parser.error(str(error))
    common.require_masks(parser, model, args.model)

    try:
        if args.dataset_type == "coco":
            from ..utils.coco_eval import evaluate_coco

            evaluate_coco(generator, model, threshold=args.score_threshold, save_path=args.save_path,
                          binarize_threshold=args.binarize_threshold)
        else:
            from ..utils.eval import evaluate

            average_precisions = evaluate(generator, model, iou_threshold=args.iou_threshold,
                                          score_threshold=args.score_threshold, max_detections=args.max_detections,
                                          binarize_threshold=args.binarize_threshold, save_path=args.save_path)
            print_average_precisions(generator, average_precisions, weighted=args.weighted_average)
    except UnreadableImageError as error:
        sys.exit(f"maskrcnn-evaluate: error: {error}; {STOP_HINT}")
    if len(generator.bad_images):
        left_out = generator.bad_images.messages().values()
        print(f"Evaluated on {total - len(left_out)} of {total} images; left out as unreadable:\n{listing(left_out)}")
    return 0


if __name__ == "__main__":
    main()
