"""`maskrcnn-predict`: runs a trained model on pictures, folders, videos, cameras or streams.

    maskrcnn-predict MODEL SOURCE... --output-dir D [--runtime keras|saved_model|onnxruntime|openvino|litert]

MODEL is a Keras model file or an artifact of maskrcnn-export (a SavedModel folder, .onnx, .xml or
.tflite, run with its own runtime, which --runtime names and the path implies by default; the settings
come from the JSON maskrcnn-export wrote beside it). SOURCE is a picture, a folder of pictures
(--recursive for its subfolders), a glob ('photos/*.jpg'), a .txt file listing pictures, a video file,
a camera index (0) or a stream URL (rtsp://, http://...).

Pictures are predicted as a viewer shows them (EXIF orientation applied), resized as in training; boxes
are mapped back to the picture and masks pasted at full resolution (`keras_maskrcnn.Predictor`).
Writes to D:
- <picture name>.png: the detections drawn over each picture (not with --no-pictures);
- <video name>.mp4: for a video, camera or stream, the frames with their detections (--save-video, the
  default for those sources), at the input's frame rate and size;
- results.json: COCO result dicts (image_id = position in the input order, file_name, frame for video
  frames, category_id = label, category_name, score, bbox [x, y, w, h], area, segmentation RLE with str
  counts, polygons); a picture or frame that cannot be read is skipped with a warning and listed there as
  {image_id, file_name, error};
- summary.csv: a row per picture or frame: the detections, and the count and total mask area per class;
- masks/<name>_<k>_<class>.png with --save-masks: each detection's mask (0 or 255).
Ctrl-C, or the end of a stream, stops the run and leaves these complete for what was predicted.
"""

import argparse
import os
import sys

from .. import defaults
from . import common, quiet

RESULTS_NAME = "results.json"
SUMMARY_NAME = "summary.csv"
MASKS_FOLDER = "masks"


def parse_args(args):
    """(parser, arguments); exits through parser.error on bad arguments or unreadable sources."""
    parser = argparse.ArgumentParser(
        prog="maskrcnn-predict",
        description="Detect and segment objects in pictures, videos and streams with a trained Mask R-CNN; writes "
                    f"overlay pictures or videos, {RESULTS_NAME} (COCO results with RLE masks and polygons) and "
                    f"{SUMMARY_NAME} (counts and areas per class) to --output-dir.")
    parser.add_argument("model", help=common.MODEL_HELP + "; or an artifact of maskrcnn-export (a SavedModel folder, "
                                      ".onnx, .xml or .tflite file)")
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="pictures, folders of pictures, globs ('photos/*.jpg'), .txt files listing pictures, "
                             "video files (.mp4 .avi .mov .mkv .webm .m4v), camera indices (0) or stream URLs")
    parser.add_argument("--output-dir", required=True, help="folder for the pictures, videos and results")
    parser.add_argument("--runtime", choices=["keras", "saved_model", "onnxruntime", "openvino", "litert"],
                        default=None,
                        help="what runs the model: keras, or the runtime of an exported artifact (default: "
                             "from the path: .keras/.h5 keras, a SavedModel folder saved_model, .onnx onnxruntime, "
                             ".xml openvino, .tflite litert)")
    parser.add_argument("--threads", type=common.positive_int, default=None,
                        help="threads of an exported artifact's runtime (default: the runtime's choice)")
    flags = common.FlagAdder(parser, [])
    common.add_loaded_model_flags(flags)
    flags.add("--score-threshold", type=common.unit_float, default=defaults.PREDICT_SCORE_THRESHOLD,
              help=f"minimum score of the detections kept (default {defaults.PREDICT_SCORE_THRESHOLD})")
    flags.add("--max-detections", type=common.positive_int, default=defaults.MAX_DETECTIONS,
              help=f"detections per picture (default {defaults.MAX_DETECTIONS})")
    flags.add("--binarize-threshold", type=common.unit_float, default=defaults.BINARIZE_THRESHOLD,
              help=f"mask probability from which a pixel is foreground (default {defaults.BINARIZE_THRESHOLD})")
    common.add_image_size(flags, None, None)
    common.add_pad_multiple(flags)
    flags.add("--batch-size", type=common.positive_int, default=1,
              help="pictures (or tiles) sent through the model together (default 1)")
    flags.add("--classes", nargs="+", metavar="NAME", default=None,
              help="keep only the detections of these classes")
    sources = parser.add_argument_group("sources")
    sources.add_argument("--recursive", action="store_true", help="folders: also the pictures in their subfolders")
    sources.add_argument("--vid-stride", type=common.positive_int, default=1, metavar="N",
                         help="videos, cameras and streams: predict every N-th frame (default 1)")
    sources.add_argument("--max-frames", type=common.positive_int, default=None, metavar="N",
                         help="videos, cameras and streams: stop after N frames of each (default: all)")
    tiles = parser.add_argument_group("large pictures")
    tiles.add_argument("--tile", type=common.positive_int, default=None, metavar="PIXELS",
                       help="cut pictures larger than this into overlapping tiles predicted at their own "
                            "resolution, and merge the detections (default: whole pictures, resized)")
    tiles.add_argument("--tile-overlap", type=float, default=0.2,
                       help="fraction in [0, 1) by which neighbouring tiles overlap (default 0.2)")
    tiles.add_argument("--tile-full", action="store_true",
                       help="with --tile, also predict the whole picture resized as usual, for large objects")
    tiles.add_argument("--tile-detections", type=common.positive_int, default=None, metavar="N",
                       help="with --tile, the most detections per tile (default: --max-detections, which "
                            "limits the whole picture after the tiles are merged)")
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--no-pictures", dest="pictures", action="store_false",
                         help="write no overlay pictures (results.json and summary.csv only)")
    outputs.add_argument("--save-video", dest="save_video", action="store_true", default=None,
                         help="write an overlay video for each video, camera or stream (the default for them)")
    outputs.add_argument("--no-save-video", dest="save_video", action="store_false",
                         help="write video frames as pictures instead of a video")
    outputs.add_argument("--save-masks", action="store_true",
                         help=f"write each detection's mask as a PNG into {MASKS_FOLDER}/")
    outputs.add_argument("--polygon-tolerance", type=float, default=1.0, metavar="PIXELS",
                         help="simplify the polygons in results.json by this many pixels (default 1; 0: exact)")
    outputs.add_argument("--line-width", type=common.positive_int, default=None,
                         help="line width of the boxes in pixels (default: from the picture's size)")
    outputs.add_argument("--hide-labels", action="store_true", help="draw no captions")
    outputs.add_argument("--hide-scores", action="store_true", help="captions without scores")
    quiet.add_verbose_option(parser)
    args = parser.parse_args(common.argv(args))
    quiet.quiet_startup(args.verbose, gpu=args.gpu)  # before model_metadata imports Keras
    if not 0.0 <= args.tile_overlap < 1.0:
        parser.error(f"argument --tile-overlap: {args.tile_overlap} must lie in [0, 1)")
    if args.tile is not None:
        from ..inference.tiles import tile_grid

        try:
            tile_grid(args.tile, args.tile, args.tile, args.tile_overlap)
        except ValueError as error:
            parser.error(f"argument --tile: {error}")
    common.model_runtime_and_metadata(parser, args)
    common.apply_model_defaults(args, args.metadata)
    args.resolved = resolve_sources(parser, args)
    check_classes(parser, args)
    from ..utils.files import OutputError, check_output_dir

    try:
        check_output_dir(args.output_dir)
    except OutputError as error:
        parser.error(str(error))
    return parser, args


def resolve_sources(parser, args):
    """The resolved sources; parser.error when one names nothing, or when every picture is unreadable."""
    from ..inference.sources import resolve
    from ..preprocessing.bad_images import listing
    from ..utils.image import UnreadableImageError, image_size

    try:
        resolved = resolve(args.sources, recursive=args.recursive)
    except ValueError as error:
        parser.error(str(error))
    from ..inference.sources import video_info

    for source in resolved:
        if source.kind in ("video", "camera"):
            try:
                video_info(source.path)
            except ValueError as error:
                parser.error(str(error))
    pictures = [source.path for source in resolved if source.kind == "image"]
    if pictures and len(pictures) == len(resolved):
        unreadable = []
        for path in pictures:
            try:
                image_size(path)
            except UnreadableImageError as error:
                unreadable.append(str(error))
        if len(unreadable) == len(pictures):
            parser.error(f"none of the {len(pictures)} images can be read:\n{listing(unreadable)}")
    return resolved


def check_classes(parser, args):
    """parser.error when --classes names a class the model does not have (when the model names its classes)."""
    if not args.classes:
        return
    known = [name for name in (args.metadata.get("classes") or []) if name]
    unknown = [name for name in args.classes if known and name not in known]
    if unknown:
        parser.error(f"argument --classes: {', '.join(map(repr, unknown))} not among the model's classes "
                     f"({', '.join(known)})")


def _stem(path):
    name = os.path.basename(str(path).rstrip("/")) or str(path)
    stem = os.path.splitext(name)[0]
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "source"


class JsonListWriter:
    """A JSON list written one item at a time to a temporary file beside `path`, renamed onto `path` by
    `close()`: memory stays flat over long runs, and `path` appears only complete. OutputError (one line,
    naming the path and the cause) when a write fails; the temporary file is then removed."""

    def __init__(self, path):
        import secrets

        self.path = path
        self.count = 0
        self.errors = []
        self._tmp = os.path.join(os.path.dirname(path) or ".",
                                 f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        self._handle = None
        self._guard(lambda: setattr(self, "_handle", open(self._tmp, "w", encoding="utf-8")))
        self._guard(lambda: self._handle.write("["))

    def _guard(self, action):
        from ..utils.files import _error

        try:
            return action()
        except OSError as exc:
            self.abort()
            raise _error("cannot write", self.path, exc) from None

    def extend(self, items):
        import json

        for item in items:
            text = ("," if self.count else "") + "\n" + json.dumps(item)
            self._guard(lambda: self._handle.write(text))
            self.count += 1
            if "error" in item:
                self.errors.append(item)

    def close(self):
        self._guard(lambda: self._handle.write("\n]\n"))
        self._guard(self._handle.close)
        self._guard(lambda: os.replace(self._tmp, self.path))

    def abort(self):
        if self._handle is not None and not self._handle.closed:
            self._handle.close()
        try:
            os.remove(self._tmp)
        except OSError:
            pass


class Outputs:
    """What maskrcnn-predict writes, kept complete as results come in (see the module docstring)."""

    def __init__(self, args, predictor, resolved):
        self.args = args
        self.output_dir = args.output_dir
        self.results = JsonListWriter(os.path.join(args.output_dir, RESULTS_NAME))
        self.rows = []
        self.written_pictures = 0
        self.videos = {}
        self.video_paths = []
        self.image_id = 0
        self.class_names = sorted(set(predictor.classes.values()))
        kinds = {source.path: source.kind for source in resolved}
        self.streaming = {path for path, kind in kinds.items() if kind in ("video", "camera", "stream")}
        self.save_video = args.save_video if args.save_video is not None else True
        paths = [source.path for source in resolved if source.kind in ("image", "array")]
        self.picture_names = dict(zip(paths, common.picture_names(paths)))
        self.used_names = set()

    def keep(self, result):
        """Drops detections of classes not in --classes (in place)."""
        if not self.args.classes:
            return result
        import numpy as np

        chosen = np.array([name in self.args.classes for name in result.names], dtype=bool)
        from ..inference.predictor import Result

        rles = [rle for rle, keep in zip(result.rles, chosen) if keep]
        return Result(result.path, result.image, result.boxes[chosen], result.scores[chosen], result.labels[chosen],
                      [name for name, keep in zip(result.names, chosen) if keep], rles=rles, frame=result.frame,
                      binarize_threshold=result.binarize_threshold)

    def add(self, result):
        from ..preprocessing.bad_images import warn as warn_bad_image
        from ..utils.files import write_image

        image_id = self.image_id
        self.image_id += 1
        if result.error is not None:
            warn_bad_image(f"skipped an unreadable {'frame' if result.frame is not None else 'image'}: "
                           f"{result.error}")
            entry = {"image_id": image_id, "file_name": result.path, "error": result.error}
            if result.frame is not None:
                entry["frame"] = result.frame
            self.results.extend([entry])
            return
        result = self.keep(result)
        self.results.extend(result.to_coco(image_id, polygons=True, tolerance=self.args.polygon_tolerance))
        row = {"file_name": result.path, "frame": "" if result.frame is None else result.frame,
               "detections": len(result)}
        counts, areas = result.counts(), result.class_areas()
        for name in sorted(set(self.class_names) | set(counts)):
            if name not in self.class_names:
                self.class_names.append(name)
            row[f"count:{name}"] = counts.get(name, 0)
            row[f"area:{name}"] = areas.get(name, 0)
        self.rows.append(row)
        if self.args.save_masks:
            folder = os.path.join(self.output_dir, MASKS_FOLDER)
            os.makedirs(folder, exist_ok=True)
            stem = _stem(result.path) + ("" if result.frame is None else f"_{result.frame:06d}")
            for index in range(len(result)):
                name = _stem(result.names[index])
                write_image(os.path.join(folder, f"{stem}_{index:03d}_{name}.png"),
                            result.mask(index).astype("uint8") * 255)
        if not self.args.pictures and not (result.path in self.streaming and self.save_video):
            return
        picture = result.plot(line_width=self.args.line_width, hide_labels=self.args.hide_labels,
                              hide_scores=self.args.hide_scores)
        if result.path in self.streaming and self.save_video:
            self._video(result.path, picture).write(picture)
            return
        if result.frame is not None:
            name = f"{_stem(result.path)}_{result.frame:06d}.png"
        else:
            name = self.picture_names.get(result.path) or f"{_stem(result.path)}.png"
        write_image(os.path.join(self.output_dir, name), picture)
        self.written_pictures += 1

    def _video(self, path, picture):
        from ..inference.sources import VideoWriter, video_info

        if path not in self.videos:
            fps = None
            if os.path.isfile(path):
                try:
                    fps = video_info(path)[0]
                except ValueError:
                    fps = None
            name = _stem(path)
            while name in self.used_names:
                name += "_"
            self.used_names.add(name)
            writer = VideoWriter(os.path.join(self.output_dir, f"{name}.mp4"), fps,
                                 (picture.shape[1], picture.shape[0]))
            self.videos[path] = writer
        return self.videos[path]

    def close(self):
        """Finishes the videos and writes results.json and summary.csv; OutputError when one cannot be written."""
        from ..utils.files import write_csv

        for writer in self.videos.values():
            self.video_paths.append(writer.close())
        self.results.close()
        header = ["file_name", "frame", "detections"]
        for name in self.class_names:
            header += [f"count:{name}", f"area:{name}"]
        rows = [[row.get(column, 0) for column in header] for row in self.rows]
        write_csv(os.path.join(self.output_dir, SUMMARY_NAME), rows, header=header)


def make_predictor(parser, args):
    """The Predictor args describe; one-line exits for a model that cannot be loaded or run."""
    from ..inference.predictor import Predictor

    return common.predictor_or_exit(parser, args, lambda: Predictor(
        args.model, runtime=args.runtime, score_threshold=args.score_threshold, max_detections=args.max_detections,
        image_min_side=args.image_min_side, image_max_side=args.image_max_side, pad_multiple=args.pad_multiple,
        tile=args.tile, tile_overlap=args.tile_overlap, tile_full=args.tile_full,
        tile_detections=args.tile_detections, batch_size=args.batch_size, binarize_threshold=args.binarize_threshold,
        backbone=args.backbone, threads=args.threads, mixed_precision=args.mixed_precision or None))


def main(args=None):
    """maskrcnn-predict; returns 0, or 130 when interrupted (exits with status 2 on bad arguments or when no
    picture can be read, 1 when an output cannot be written)."""
    parser, args = parse_args(args)
    common.plain_bad_image_warnings(parser.prog)
    from ..preprocessing.bad_images import listing
    from ..utils.progress import progress
    from ..utils.files import OutputError

    print("Loading model, this may take a second...")
    predictor = make_predictor(parser, args)
    exported = args.metadata.get("score_threshold")
    if args.runtime != "keras" and exported is not None and args.score_threshold < exported:
        print(f"note: {args.model} was exported with score threshold {exported}; detections below it are not "
              f"in its outputs")
    outputs = Outputs(args, predictor, args.resolved)
    stream = predictor.stream([source.path for source in args.resolved], vid_stride=args.vid_stride,
                              max_frames=args.max_frames)
    countable = all(source.kind == "image" for source in args.resolved)
    interrupted = False
    try:
        for result in (progress(_Counted(stream, len(args.resolved)), "Predicting: ") if countable else stream):
            outputs.add(result)
    except KeyboardInterrupt:
        interrupted = True
        stream.close()
    except OutputError as error:
        outputs.results.abort()
        sys.exit(f"{parser.prog}: error: {error}")
    except ValueError as error:  # e.g. a video that cannot be opened, a picture larger than a fixed-size artifact
        try:
            outputs.close()
        except OutputError:
            pass
        sys.exit(f"{parser.prog}: error: {error}")
    try:
        outputs.close()
    except OutputError as error:
        sys.exit(f"{parser.prog}: error: {error}")
    skipped = outputs.results.errors
    detections = outputs.results.count - len(skipped)
    frames = sum(1 for row in outputs.rows if row["frame"] != "")
    pictures = len(outputs.rows) - frames
    seen = " and ".join(_count(count, noun) for count, noun in ((pictures, "image"), (frames, "frame")) if count)
    written = [_count(outputs.written_pictures, "picture")] if outputs.written_pictures else []
    written += [os.path.basename(path) for path in outputs.video_paths]
    written += [RESULTS_NAME, SUMMARY_NAME]
    print(f"{_count(detections, 'detection')} in {seen or '0 images'}; {', '.join(written)} in {args.output_dir}")
    if skipped:
        print(f"{len(skipped)} unreadable image{'s' if len(skipped) > 1 else ''} skipped (in {RESULTS_NAME} with "
              f"an \"error\" instead of detections):\n{listing(result['error'] for result in skipped)}")
    if interrupted:
        print(f"{parser.prog}: interrupted; the outputs hold what was predicted before", file=sys.stderr)
        return 130
    return 0


def _count(number, noun):
    """'1 image', '2 images'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


class _Counted:
    """An iterator with a length, for the progress bar."""

    def __init__(self, iterator, length):
        self.iterator = iterator
        self.length = length

    def __len__(self):
        return self.length

    def __iter__(self):
        return iter(self.iterator)


if __name__ == "__main__":
    main()
