"""`maskrcnn-data`: look at a data set before training, fit anchors to it, convert it.

    maskrcnn-data check   [options] TYPE ...  [--plots DIR]
    maskrcnn-data anchors [options] TYPE ...  --output anchors.ini
    maskrcnn-data convert [options] TYPE ...  --to coco OUT.json | --to csv OUT_DIR

TYPE ... is a data set as the other tools take it (`coco PATH`, `csv ANNOTATIONS CLASSES`, ...).
`check` prints images, negatives, objects per class, object sizes after the training resize
(COCO's small / medium / large), problems found and the anchor coverage: the share of objects
that training gives a positive anchor (see keras_maskrcnn.preprocessing.anchor_coverage).
`anchors` searches anchors that cover more objects and writes the .ini `--config` reads.
`convert` writes the data set as COCO JSON or CSV (keras_maskrcnn.preprocessing.convert).

Keras is imported only when a data set is read, so `--help` is quick.
"""

import argparse
import io
import os
import sys
import time
import types

import numpy as np

from . import common, quiet

PROG = "maskrcnn-data"


def _add_data_options(parser, action):
    """The data set sub-commands of `action`'s parser and the options every action takes."""
    subparsers = common.dataset_subparsers(parser, coco_set="train2017")
    flags = common.FlagAdder(parser, subparsers)
    common.add_image_size(flags)
    flags.add("--pad-multiple", type=common.positive_int, default=32,
              help="training pads images up to a multiple of this (default 32); anchors follow the padded shape")
    quiet.add_verbose_option(flags)
    if action != "convert":
        flags.add("--config", help="a .ini file with an [anchor_parameters] section (default: the default anchors)")
    return flags


def parse_args(args):
    """(parser, arguments); exits through parser.error on bad arguments."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Check a data set before training, fit anchors to it, or convert it to COCO or CSV.")
    actions = parser.add_subparsers(dest="action", metavar="{check,anchors,convert}",
                                    help="what to do; see `%(prog)s check -h` and so on")
    actions.required = True
    check = actions.add_parser(
        "check", help="print images, classes, object sizes, problems and the anchor coverage",
        description="Read every image's annotations and print what to know before training: images, negatives, "
                    "objects per class, object sizes after the training resize (COCO's small < 32^2 px, medium "
                    "< 96^2 px, large), problems, and the anchor coverage: the share of objects whose best anchor "
                    "reaches IoU 0.5, i.e. that training gives a positive anchor.")
    flags = _add_data_options(check, "check")
    flags.add("--plots", metavar="DIR", help="write classes.png, box_sizes.png and mosaic.png into DIR (matplotlib)")
    flags.add("--mosaic-images", type=common.positive_int, default=16,
              help="images in mosaic.png (default 16, spread over the data set)")
    flags.add("--max-problems", type=common.non_negative_int, default=20,
              help="problems printed one by one (default 20; all are counted)")

    anchors = actions.add_parser(
        "anchors", help="search anchor sizes, ratios and scales that cover the data; write an .ini for --config",
        description="Search anchor sizes, ratios and scales for the data set's objects (as training resizes them) "
                    "that give more of them a positive anchor; print the coverage before and after per size "
                    "group and write the .ini file that --config reads. The strides stay, and so do the ratios "
                    "and scales per location (they set the heads' shapes) unless --num-ratios / --num-scales "
                    "change them.")
    flags = _add_data_options(anchors, "anchors")
    flags.add("--output", help="the .ini file to write (required)")
    flags.add("--num-ratios", type=common.positive_int, default=None, help="ratios per location (default: as now)")
    flags.add("--num-scales", type=common.positive_int, default=None, help="scales per location (default: as now)")
    flags.add("--generations", type=common.non_negative_int, default=1000,
              help="mutations tried by the evolutionary refinement (default 1000)")
    flags.add("--seed", type=int, default=0, help="random seed of the search (default 0)")

    convert = actions.add_parser(
        "convert", help="write the data set as COCO JSON or as CSV with mask PNGs",
        description="Write the data set as a COCO JSON file (polygons where the source has polygons that give "
                    "the same masks, RLE otherwise) or as the CSV format with one mask PNG per object.")
    flags = _add_data_options(convert, "convert")
    flags.add("--to", nargs=2, metavar=("FORMAT", "OUTPUT"),
              help="'coco OUT.json' or 'csv OUT_DIR' (required)")
    flags.add("--coco-images", metavar="DIR",
              help="with --to coco: the folder file_name is relative to (default: the JSON's folder)")
    flags.add("--copy-images", action="store_true",
              help="write every image beside the output (default: refer to the source files, copying only images "
                   "without a file of their own or with an EXIF orientation)")

    parsed = parser.parse_args(common.argv(args))
    quiet.quiet_startup(parsed.verbose)
    sub = actions.choices[parsed.action]
    if parsed.action == "anchors" and not parsed.output:
        sub.error("--output FILE.ini is required")
    if parsed.action == "convert":
        if not parsed.to:
            sub.error("--to coco OUT.json or --to csv OUT_DIR is required")
        form, output = parsed.to
        if form not in ("coco", "csv"):
            sub.error(f"--to: format {form!r} is not 'coco' or 'csv'")
        if form == "coco" and not output.lower().endswith(".json"):
            sub.error(f"--to coco: {output!r} is not a .json file name")
        if form == "csv" and os.path.isfile(output):
            sub.error(f"--to csv: {output!r} is a file; give a folder")
        if parsed.coco_images and form != "coco":
            sub.error("--coco-images goes with --to coco")
    if getattr(parsed, "config", None):
        common.check_file(sub, parsed.config, "config file")
    return sub, parsed


def _generator(parser, args, anchor_params=None):
    """The data set's generator (every image's header checked; unreadable ones listed, not fatal)."""
    backbone = types.SimpleNamespace(preprocess_image=None)
    return common.create_generator(parser, args, backbone, shuffle_groups=False, group_method="none",
                                   skip_bad_images=True, anchor_params=anchor_params, pad_multiple=args.pad_multiple)


def describe_anchors(params):
    """'sizes 32 64 ..., strides 8 16 ..., ratios 0.5 1 2, scales 1 1.26 1.59' of AnchorParameters."""
    def numbers(values):
        return " ".join(f"{float(v):.3g}" if float(v) < 100 else f"{float(v):.0f}" for v in values)

    return (f"sizes {numbers(params.sizes)}, strides {' '.join(str(s) for s in params.strides)}, "
            f"ratios {numbers(params.ratios)}, scales {numbers(params.scales)}")


def _anchor_source(args, params):
    return f"anchors of {args.config}" if getattr(args, "config", None) else "default anchors"


def _coverage_rows(tables, titles):
    """Lines of a coverage table: one row per size group, one column per table."""
    from ..preprocessing.anchor_coverage import SIZE_GROUPS

    width = max(18, *(len(t) + 2 for t in titles))
    lines = ["  " + "group".ljust(8) + "objects".rjust(8) + "".join(t.rjust(width) for t in titles)]
    for name in [g[0] for g in SIZE_GROUPS] + ["all"]:
        total = tables[0][name][1]
        if not total and name != "all":
            continue
        cells = [f"{100.0 * t[name][0] / total:.1f}% ({t[name][0]})" if total else "-" for t in tables]
        lines.append("  " + name.ljust(8) + str(total).rjust(8) + "".join(c.rjust(width) for c in cells))
    return lines


def _uncovered_reasons(objects, covered, best, params):
    """Lines saying why the uncovered objects miss: too small, too large, too elongated for the
    anchors, between anchor sizes or positions, or lost to a neighbouring object."""
    from ..preprocessing.anchor_coverage import POSITIVE_OVERLAP, anchor_shapes

    missing = ~covered
    if not missing.any():
        return []
    widths, heights, _ = anchor_shapes(params)
    sides = np.sqrt(widths * heights)
    w = objects.boxes[:, 2] - objects.boxes[:, 0]
    h = objects.boxes[:, 3] - objects.boxes[:, 1]
    side = np.sqrt(np.maximum(w * h, 0))
    aspect = h / np.maximum(w, 1e-9)
    small = missing & (side < sides.min() / np.sqrt(2))
    large = missing & ~small & (side > sides.max() * np.sqrt(2))
    ratios = np.asarray(params.ratios)
    elongated = missing & ~small & ~large & ((aspect < ratios.min() / 2) | (aspect > ratios.max() * 2))
    lost = missing & ~small & ~large & ~elongated & (best >= POSITIVE_OVERLAP)
    between = missing & ~small & ~large & ~elongated & ~lost
    lines = [f"  {int(missing.sum())} objects get no positive anchor (median box {np.median(w[missing]):.1f} x "
             f"{np.median(h[missing]):.1f} px, best IoU median {np.median(best[missing]):.2f}):"]
    for count, text in [(small, f"smaller than the smallest anchor ({sides.min():.0f} px) can match"),
                        (large, f"larger than the largest anchor ({sides.max():.0f} px) can match"),
                        (elongated, f"more elongated than the ratios {' '.join(f'{r:g}' for r in ratios)} allow"),
                        (between, "between the anchor sizes or grid positions (best IoU < 0.5)"),
                        (lost, "reach IoU 0.5 but their anchors go to an overlapping object")]:
        if count.any():
            lines.append(f"    {int(count.sum()):5d} {text}")
    return lines


def _problem_lines(problems, unreadable, limit):
    lines = [f"problems: {len(problems) + len(unreadable)}" if problems or unreadable else "problems: none found"]
    shown = [f"  unreadable, left out: {message}" for message in unreadable.values()] + [f"  {p}" for p in problems]
    lines += shown[:limit]
    if len(shown) > limit:
        lines.append(f"  ... and {len(shown) - limit} more (--max-problems N shows more)")
    return lines


def check(parser, args):
    """maskrcnn-data check: prints the report; returns the exit status."""
    from ..preprocessing.anchor_coverage import (best_anchor_iou, collect_objects, coverage_by_group,
                                                 covered_objects)
    from ..utils.anchors import AnchorParameters

    params = common.anchor_parameters(parser, args.config) or AnchorParameters.default
    generator = _generator(parser, args, params)
    started = time.perf_counter()
    objects = collect_objects(generator, args.image_min_side, args.image_max_side, args.pad_multiple,
                              bar="Reading annotations: ")
    read_time = time.perf_counter() - started
    started = time.perf_counter()
    covered = covered_objects(objects, params)
    best = best_anchor_iou(objects.boxes, objects.image_shapes[objects.image], params)
    coverage_time = time.perf_counter() - started

    names = common.class_names(generator)
    counts = np.bincount(objects.labels, minlength=len(names)) if len(objects) else np.zeros(len(names), int)
    used = [label for label, name in enumerate(names) if name is not None]
    lines = [f"data set: {args.dataset_type} {_describe_dataset(args)}",
             f"images: {len(objects.indices)} read ({objects.negatives()} negatives without objects)"
             + (f", {len(objects.unreadable)} unreadable and left out" if objects.unreadable else ""),
             f"objects: {len(objects)}" + (f", and {objects.ignore_regions} crowd / ignore regions"
                                           if objects.ignore_regions else ""),
             f"classes: {len(used)}" + (f", {sum(counts[label] == 0 for label in used)} without objects"
                                        if any(counts[label] == 0 for label in used) else "")]
    present = [label for label in sorted(used, key=lambda k: (-counts[k], k)) if counts[label]]
    if len(present) <= 12:
        width = max([len(str(names[label])) for label in present] + [5])
        lines += [f"  {str(names[label]).ljust(width)} {counts[label]:6d}" for label in present]
    else:
        line = " "
        for label in present:
            item = f" {names[label]} {counts[label]},"
            if len(line) + len(item) > 100:
                lines.append(line)
                line = " "
            line += item
        lines.append(line.rstrip(","))
    empty = [str(names[label]) for label in used if counts[label] == 0]
    if empty:
        lines.append(f"  without objects: {', '.join(empty[:12])}" + (f" and {len(empty) - 12} more"
                                                                     if len(empty) > 12 else ""))
    table = coverage_by_group(objects, covered)
    lines.append(f"object sizes after the training resize (--image-min-side {args.image_min_side}, --image-max-side "
                 f"{args.image_max_side}; mask areas, COCO's groups: small < 32^2, medium < 96^2 px):")
    if len(objects):
        w = objects.boxes[:, 2] - objects.boxes[:, 0]
        h = objects.boxes[:, 3] - objects.boxes[:, 1]
        lines.append("  " + ", ".join(f"{name} {table[name][1]} ({100.0 * table[name][1] / len(objects):.1f}%)"
                                      for name in ("small", "medium", "large")))
        lines.append(f"  box width {w.min():.1f} / {np.median(w):.1f} / {w.max():.1f} px, height {h.min():.1f} / "
                     f"{np.median(h):.1f} / {h.max():.1f} px (min / median / max)")
    lines.append(f"anchor coverage: objects that training gives a positive anchor (IoU >= 0.5), "
                 f"{_anchor_source(args, params)}:")
    lines.append(f"  {describe_anchors(params)}")
    lines += _coverage_rows([table], ["covered"])
    lines += _uncovered_reasons(objects, covered, best, params)
    lines += _problem_lines(objects.problems, objects.unreadable, args.max_problems)
    lines.append(f"read {len(objects.indices)} images' annotations in {read_time:.1f} s, coverage in "
                 f"{coverage_time:.1f} s")
    print("\n".join(lines))
    if args.plots:
        write_plots(args.plots, generator, objects, covered, params, names, counts, args.mosaic_images)
    else:
        print("plots: skipped (--plots DIR writes them)")
    return 0


def _describe_dataset(args):
    if args.dataset_type == "csv":
        return f"{args.annotations} ({args.classes})"
    parts = [f"{key}={value}" for key, value in sorted(vars(args).items())
             if key in ("coco_path", "coco_set", "images", "folder", "classes", "data_yaml", "split") and value]
    return ", ".join(parts)


# plots


def _figure_bytes(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return buffer.getvalue()


def write_plots(folder, generator, objects, covered, params, names, counts, mosaic_images=16):
    """Writes classes.png, box_sizes.png and mosaic.png into `folder` (matplotlib for the first
    two); prints what was written, or once that plots are skipped without matplotlib."""
    from ..utils.files import write_bytes, write_image

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots: skipped, matplotlib is not installed (pip install matplotlib, or keras-maskrcnn[plots])")
        return []
    from ..preprocessing.anchor_coverage import anchor_shapes

    written = []
    used = [label for label, name in enumerate(names) if name is not None and counts[label]]
    used.sort(key=lambda k: counts[k])
    figure, axes = plt.subplots(figsize=(8, max(2.5, 0.28 * len(used) + 1.2)))
    axes.barh([str(names[k]) for k in used], [counts[k] for k in used], color="#4c72b0")
    for position, label in enumerate(used):
        axes.text(counts[label], position, f" {counts[label]}", va="center", fontsize=8)
    empty = sum(1 for label, name in enumerate(names) if name is not None and not counts[label])
    axes.set_xlabel("objects")
    axes.set_title(f"{len(objects)} objects in {len(used)} classes"
                   + (f" ({empty} classes have none)" if empty else ""))
    axes.tick_params(axis="y", labelsize=8)
    figure.tight_layout()
    written.append(write_bytes(os.path.join(folder, "classes.png"), _figure_bytes(figure)))

    figure, axes = plt.subplots(figsize=(7.5, 6.5))
    w = objects.boxes[:, 2] - objects.boxes[:, 0]
    h = objects.boxes[:, 3] - objects.boxes[:, 1]
    axes.scatter(w[covered], h[covered], s=8, alpha=0.5, color="#2ca02c", label=f"covered ({int(covered.sum())})")
    axes.scatter(w[~covered], h[~covered], s=10, alpha=0.7, color="#d62728",
                 label=f"no positive anchor ({int((~covered).sum())})")
    aw, ah, strides = anchor_shapes(params)
    markers = ("x", "+", "1", "3", "4", "2", "|", "_")
    for number, stride in enumerate(np.unique(strides)):
        level = strides == stride
        axes.scatter(aw[level], ah[level], marker=markers[number % len(markers)], s=60, linewidths=1.5,
                     color=plt.get_cmap("viridis")(number / max(1, len(np.unique(strides)) - 1)),
                     label=f"anchors, stride {int(stride)}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("box width (px, after the training resize)")
    axes.set_ylabel("box height (px)")
    share = 100.0 * covered.mean() if len(covered) else 100.0
    axes.set_title(f"boxes against anchors: {share:.1f}% of objects get a positive anchor")
    axes.grid(True, which="both", alpha=0.25)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    written.append(write_bytes(os.path.join(folder, "box_sizes.png"), _figure_bytes(figure)))

    written.append(write_image(os.path.join(folder, "mosaic.png"), mosaic(generator, objects, mosaic_images)))
    print("plots: " + ", ".join(written))
    return written


def mosaic(generator, objects, count=16, tile=256):
    """(rows * tile, cols * tile, 3) BGR uint8: up to `count` images spread over the data set with
    their annotations drawn (draw_annotations), each fitted into a tile x tile square."""
    import cv2

    from ..utils.image import UnreadableImageError
    from ..utils.visualization import draw_annotations

    indices = objects.indices
    if len(indices) > count:
        indices = indices[np.linspace(0, len(indices) - 1, count).round().astype(int)]
    columns = int(np.ceil(np.sqrt(max(len(indices), 1))))
    rows = int(np.ceil(max(len(indices), 1) / columns))
    canvas = np.full((rows * tile, columns * tile, 3), 40, dtype=np.uint8)
    for position, index in enumerate(indices):
        try:
            image = generator.load_image(int(index)).copy()
            annotations = generator.load_annotations_group([int(index)])[0]
        except ValueError:
            continue
        scale = tile / max(image.shape[:2])
        if scale < 1:
            # draw on the image scaled down so that lines and captions stay readable
            size = (max(1, int(round(image.shape[1] * scale))), max(1, int(round(image.shape[0] * scale))))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            masks = [cv2.resize(m, size, interpolation=cv2.INTER_NEAREST) for m in annotations["masks"]]
            annotations = dict(annotations, bboxes=annotations["bboxes"] * scale, masks=masks)
        else:
            factor = max(1, int(tile // max(image.shape[:2])))
            image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
            annotations = dict(annotations, bboxes=annotations["bboxes"] * factor,
                               masks=[cv2.resize(m, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
                                      for m in annotations["masks"]])
        draw_annotations(image, annotations, color=None, label_to_name=generator.label_to_name)
        row, column = divmod(position, columns)
        image = image[:tile, :tile]
        canvas[row * tile:row * tile + image.shape[0], column * tile:column * tile + image.shape[1]] = image
    return canvas


# anchors


def fit_anchors(parser, args):
    """maskrcnn-data anchors: searches, prints before / after and writes the .ini; exit status."""
    from ..preprocessing.anchor_coverage import (collect_objects, coverage_by_group, covered_objects,
                                                 search_anchors, write_anchor_config)
    from ..utils.anchors import AnchorParameters
    from ..utils.config import anchor_parameters_from_file

    start = common.anchor_parameters(parser, args.config) or AnchorParameters.default
    generator = _generator(parser, args, start)
    objects = collect_objects(generator, args.image_min_side, args.image_max_side, args.pad_multiple,
                              bar="Reading annotations: ", check_masks=False)
    if not len(objects):
        parser.error("the data set has no objects to fit anchors to")
    before = coverage_by_group(objects, covered_objects(objects, start))
    started = time.perf_counter()
    fitted, _ = search_anchors(objects.boxes, objects.image_shapes[objects.image], start, args.num_ratios,
                               args.num_scales, generations=args.generations, seed=args.seed)
    search_time = time.perf_counter() - started
    after = coverage_by_group(objects, covered_objects(objects, fitted))
    same_count = fitted.num_anchors() == start.num_anchors()
    if after["all"][0] < before["all"][0] and same_count:
        print("the search found no anchors that cover more objects; writing the starting anchors")
        fitted, after = start, before
    print(f"objects: {len(objects)} in {len(objects.indices)} images, resized by --image-min-side "
          f"{args.image_min_side} --image-max-side {args.image_max_side}")
    print(f"before ({_anchor_source(args, start)}): {describe_anchors(start)}")
    print(f"after: {describe_anchors(fitted)}")
    print("objects that get a positive anchor (IoU >= 0.5):")
    print("\n".join(_coverage_rows([before, after], ["before", "after"])))
    if not same_count:
        print(f"anchors per location: {start.num_anchors()} -> {fitted.num_anchors()}: a model trained with "
              f"{start.num_anchors()} cannot take these anchors (its heads' shapes differ)")
    comment = (f"anchors fitted by maskrcnn-data anchors to {args.dataset_type} {_describe_dataset(args)} at "
               f"--image-min-side {args.image_min_side} --image-max-side {args.image_max_side}\n"
               f"objects with a positive anchor: {before['all'][0]} -> {after['all'][0]} of {len(objects)}")
    write_anchor_config(args.output, fitted, comment)
    if anchor_parameters_from_file(args.output) != fitted:
        parser.error(f"{args.output!r} does not read back as the anchors written")
    print(f"search: {search_time:.1f} s; written: {args.output} (pass it to maskrcnn-train --config)")
    return 0


# convert


def convert(parser, args):
    """maskrcnn-data convert: writes COCO JSON or CSV; exit status."""
    from ..preprocessing.convert import to_coco, to_csv
    from ..utils.files import OutputError

    generator = _generator(parser, args)
    form, output = args.to
    try:
        if form == "coco":
            report = to_coco(generator, output, images_dir=args.coco_images, copy_images=args.copy_images)
            written = output
        else:
            report = to_csv(generator, output, copy_images=args.copy_images)
            written = f"{os.path.join(output, 'annotations.csv')}, {os.path.join(output, 'classes.csv')}"
    except OutputError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    print(f"written: {written}")
    return 0


def main(args=None):
    """maskrcnn-data; returns the exit status (2 on bad arguments)."""
    parser, args = parse_args(args)
    common.plain_bad_image_warnings(PROG)
    if args.action == "check":
        return check(parser, args)
    if args.action == "anchors":
        return fit_anchors(parser, args)
    return convert(parser, args)


if __name__ == "__main__":
    sys.exit(main())
