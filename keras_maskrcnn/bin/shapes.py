"""`maskrcnn-shapes OUTPUT_DIR --images N --size S --seed K`: writes the synthetic shapes dataset
(`--min-object-size`, `--max-object-size`: object sizes in pixels)."""

import argparse
import sys

from ..datasets.shapes import make_shapes_dataset
from . import quiet


def parse_args(args):
    parser = argparse.ArgumentParser(
        prog="maskrcnn-shapes",
        description="Write a synthetic CSV instance-segmentation dataset of circles, squares and triangles.")
    parser.add_argument("output_dir", help="folder for images/, masks/, annotations.csv and classes.csv")
    parser.add_argument("--images", type=int, default=200, help="number of images (default 200)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same arguments, same files (default 0)")
    parser.add_argument("--min-objects", type=int, default=1, help="fewest objects per image (default 1)")
    parser.add_argument("--max-objects", type=int, default=4, help="most objects per image (default 4)")
    parser.add_argument("--min-object-size", type=float, default=None, metavar="PIXELS",
                        help="smallest object extent in pixels (default 20%% of --size)")
    parser.add_argument("--max-object-size", type=float, default=None, metavar="PIXELS",
                        help="largest object extent in pixels (default 40%% of --size); e.g. --size 256 "
                             "--min-object-size 8 --max-object-size 20 for small objects")
    quiet.add_verbose_option(parser)
    return parser.parse_args(args)


def main(args=None):
    args = parse_args(sys.argv[1:] if args is None else args)
    quiet.quiet_startup(args.verbose)
    try:
        annotations, classes = make_shapes_dataset(args.output_dir, images=args.images, size=args.size,
                                                   seed=args.seed, min_objects=args.min_objects,
                                                   max_objects=args.max_objects,
                                                   min_object_size=args.min_object_size,
                                                   max_object_size=args.max_object_size)
    except ValueError as error:
        print(f"maskrcnn-shapes: error: {error}", file=sys.stderr)
        return 2
    print(f"annotations: {annotations}")
    print(f"classes: {classes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
