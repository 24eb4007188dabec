"""`maskrcnn-debug`: draws what training sees (anchors, annotations, masks) into PNG files.

    maskrcnn-debug [options] coco PATH [--images DIR] [--coco-set SET]
    maskrcnn-debug [options] csv ANNOTATIONS CLASSES
    maskrcnn-debug [options] labelme FOLDER [--classes labels.txt]
    maskrcnn-debug [options] yolo DATA.yaml [--split val]

--anchors draws the positive anchors in cyan; --annotations draws each ground-truth box green
when some anchor is positive for it and red when none is (it would not be trained); --masks
overlays the ground-truth masks in their class colours.
"""

import argparse
import os
import sys

import cv2
import numpy as np

from ..utils.anchors import anchors_for_shape, compute_gt_annotations
from ..utils.files import OutputError, check_output_dir, write_image
from ..utils.progress import progress
from ..utils.image import resize_mask
from ..utils.transform import random_transform_generator
from ..utils.visualization import draw_annotations, draw_box, draw_boxes, draw_caption
from . import common, quiet

ANCHOR_COLOR = (255, 255, 0)
TRAINED_COLOR = (0, 255, 0)
UNTRAINED_COLOR = (0, 0, 255)


def parse_args(args):
    """(parser, arguments); exits through parser.error on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="maskrcnn-debug",
        description="Draw a data set's images as training sees them (anchors, annotations, masks) into PNG files.")
    subparsers = common.dataset_subparsers(parser, coco_set="val2017")
    flags = common.FlagAdder(parser, subparsers)
    flags.add("--output-dir", help="folder for the annotated PNGs")
    flags.add("--show", action="store_true", help="also show each image in a window (needs a display; "
                                                   "any key: next, q: quit)")
    flags.add("-l", "--loop", action="store_true",
              help="go through the data set again and again until interrupted (with --random-transform: "
                   "new variants each time; files are overwritten)")
    flags.add("--no-resize", dest="resize", action="store_false", help="do not resize the images")
    flags.add("--anchors", action="store_true", help="draw the positive anchors")
    flags.add("--annotations", action="store_true",
              help="draw the annotations: green with a positive anchor, red without (not trained)")
    flags.add("--masks", action="store_true", help="draw the annotated masks")
    flags.add("--random-transform", action="store_true", help="randomly transform image and annotations")
    flags.add("--config", help="a .ini file with an [anchor_parameters] section")
    common.add_image_size(flags)
    quiet.add_verbose_option(flags)
    args = parser.parse_args(common.argv(args))
    quiet.quiet_startup(args.verbose)
    common.check_dataset(parser, args)
    if not args.output_dir and not args.show:
        parser.error("nothing to do: give --output-dir, --show or both")
    if args.output_dir and os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        parser.error(f"--output-dir {args.output_dir!r} exists and is not a folder")
    if args.config is not None:
        common.check_file(parser, args.config, "config file")
    if args.show:
        check_display(parser)
    return parser, args


def check_display(parser):
    """parser.error unless OpenCV can open a window here."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        parser.error("--show needs a display (DISPLAY is not set); use --output-dir")
    try:
        cv2.namedWindow("maskrcnn-debug", cv2.WINDOW_NORMAL)
    except cv2.error:
        parser.error("--show needs OpenCV with GUI support (opencv-python, not opencv-python-headless); "
                     "use --output-dir")


def prepare(generator, index, random_transform=False, resize=True):
    """(BGR uint8 image, annotations) of one image after filtering, transform and resize, as training
    sees them (before the backbone's preprocessing)."""
    image = generator.load_image(index)
    annotations = generator.load_annotations_group([index])[0]
    images, groups = generator.filter_annotations([image], [annotations], [index])
    image, annotations = images[0], groups[0]
    if random_transform:
        image, annotations = generator.random_transform_group_entry(image, annotations)
    if resize:
        image, scale = generator.resize_image(image)
        annotations = dict(annotations)
        annotations["bboxes"] = np.asarray(annotations["bboxes"], dtype=np.float64).reshape(-1, 4) * scale
        annotations["masks"] = [resize_mask(mask, image.shape[:2]) for mask in annotations["masks"]]
    return image, annotations


def draw(generator, image, annotations, anchor_params, anchors=False, boxes=False, masks=False):
    """Draws onto `image` in place; returns the indices of annotations without a positive anchor."""
    bboxes = np.asarray(annotations["bboxes"], dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(annotations["labels"]).reshape(-1)
    all_anchors = anchors_for_shape(image.shape[:2], anchor_params)
    positive = np.zeros(all_anchors.shape[0], dtype=bool)
    trained = np.zeros(bboxes.shape[0], dtype=bool)
    if bboxes.shape[0]:
        positive, _, argmax = compute_gt_annotations(all_anchors, bboxes)
        trained[argmax[positive]] = True
    if masks:
        draw_annotations(image, dict(annotations, bboxes=bboxes, labels=labels), color=None,
                         label_to_name=generator.label_to_name)
    if anchors:
        draw_boxes(image, all_anchors[positive], ANCHOR_COLOR, thickness=1)
    if boxes:
        for box, label, is_trained in zip(bboxes, labels, trained):
            color = TRAINED_COLOR if is_trained else UNTRAINED_COLOR
            draw_box(image, box, color)
            draw_caption(image, box, generator.label_to_name(int(label)), color=tuple(int(c * 0.6) for c in color))
    return np.flatnonzero(~trained)


def run(generator, args, anchor_params, names):
    """One pass over the data set; False when the user pressed q in the window."""
    for index in progress(range(generator.size()), "Drawing: "):
        image, annotations = prepare(generator, index, args.random_transform, args.resize)
        untrained = draw(generator, image, annotations, anchor_params, anchors=args.anchors,
                         boxes=args.annotations, masks=args.masks)
        if len(untrained):
            print(f"{generator.image_path(index)}: annotations {untrained.tolist()} have no positive anchor "
                  "and are not trained", file=sys.stderr)
        if args.output_dir:
            write_image(os.path.join(args.output_dir, names[index]), image)
        if args.show:
            cv2.imshow("maskrcnn-debug", image)
            if cv2.waitKey() == ord("q"):
                return False
    return True


def main(args=None):
    """maskrcnn-debug; returns 0 (exits with status 2 on bad arguments)."""
    parser, args = parse_args(args)
    common.plain_bad_image_warnings(parser.prog)
    from ..models import backbone as get_backbone

    anchor_params = common.anchor_parameters(parser, args.config)
    backbone = get_backbone("resnet50")
    transform_generator = random_transform_generator(
        min_rotation=-0.1, max_rotation=0.1, min_translation=(-0.1, -0.1), max_translation=(0.1, 0.1),
        min_shear=-0.1, max_shear=0.1, min_scaling=(0.9, 0.9), max_scaling=(1.1, 1.1),
        flip_x_chance=0.5, flip_y_chance=0.5)
    generator = common.create_generator(parser, args, backbone, transform_generator=transform_generator,
                                        anchor_params=anchor_params, shuffle_groups=False)
    anchor_params = generator.anchor_params
    if args.output_dir:
        try:
            check_output_dir(args.output_dir)
        except OutputError as error:
            parser.error(str(error))
    names = common.picture_names([generator.image_path(index) for index in range(generator.size())])
    try:
        while run(generator, args, anchor_params, names) and args.loop:
            pass
    except KeyboardInterrupt:
        pass
    except OutputError as error:
        sys.exit(f"{parser.prog}: error: {error}")
    if args.output_dir:
        print(f"{generator.size()} pictures in {args.output_dir}")
    return 0


if __name__ == "__main__":
    main()
