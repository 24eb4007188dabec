"""`Predictor`: the one path from pictures, folders, videos and streams to detections with masks.

    from keras_maskrcnn import Predictor
    predictor = Predictor("model.keras", score_threshold=0.5)
    for result in predictor("photos/"):
        print(result.path, result.names, result.areas)
        result.save("out/" + os.path.basename(result.path))

The predictor takes a Keras prediction model, a `.keras` / old `.h5` file, or an artifact of
`maskrcnn-export` (run with its own runtime); the settings saved with the model (backbone, image
sizes, classes) are its defaults. Pictures are read as a viewer shows them (EXIF orientation
applied), resized and padded as in training (`InputTransform`), sent through the model in batches,
and each gives a `Result` in the picture's own pixels. With `tile`, pictures larger than a tile are
cut into overlapping tiles predicted at their own resolution, and the detections are merged.
"""

import json
import os

import numpy as np
from pycocotools import mask as mask_utils

from ..defaults import (BINARIZE_THRESHOLD, IMAGE_MAX_SIDE, IMAGE_MIN_SIDE, MAX_DETECTIONS, PAD_MULTIPLE,
                        PREDICT_SCORE_THRESHOLD)
from ..utils.masks import paste_mask_region
from .transform import InputTransform, select_detections


def mask_polygons(mask, tolerance=1.0, offset=(0.0, 0.0)):
    """Outer contours of a (H, W) 0/1 mask as COCO polygons: a list of flat [x1, y1, x2, y2, ...] lists.

    The outline follows the pixels' edges (pixel i covers [i, i + 1)), so pycocotools rasterises the
    polygon back to nearly the same mask: OpenCV traces the mask enlarged 4 times (objects up to about
    140 x 140 pixels), 2 times (up to 500 x 500) or not at all (larger), whose boundary pixel centres
    lie within 1/8, 1/4 or 1/2 pixel of the edges. Outlines are
    simplified with Douglas-Peucker at `tolerance` pixels (0 keeps every vertex). A polygon has no
    holes: a mask with holes comes back filled. Polygons of fewer than 3 points are dropped. offset
    (x, y) is added to every point.
    """
    import cv2

    mask = np.asarray(mask) != 0
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return []
    top, left = rows[0], cols[0]
    crop = np.pad(mask[top:rows[-1] + 1, left:cols[-1] + 1], 1).astype(np.uint8)
    factor = 4 if crop.size <= 20_000 else 2 if crop.size <= 250_000 else 1
    if factor > 1:
        crop = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    shift = np.array([left - 1 + offset[0], top - 1 + offset[1]], dtype=np.float64)
    polygons = []
    for contour in contours:
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, float(tolerance) * factor, True)
        points = contour.reshape(-1, 2).astype(np.float64)
        if len(points) < 3:
            continue
        points = (points + 0.5) / factor + shift
        polygons.append(np.round(points.reshape(-1), 2).tolist())
    return polygons


class _Masks:
    """The full-resolution masks of a Result as a sequence, pasted one at a time when read."""

    def __init__(self, result):
        self._result = result

    def __len__(self):
        return len(self._result)

    def __getitem__(self, index):
        return self._result.mask(index)

    def __iter__(self):
        return (self._result.mask(index) for index in range(len(self._result)))


class Result:
    """The detections of one picture (or video frame), in the picture's pixels.

    Attributes:
        path: the picture's file, the video's path with `frame`, or "image0"... for arrays.
        frame: the frame index in a video or stream, else None.
        image: the picture (H, W, 3) BGR uint8 as predicted (EXIF orientation applied).
        boxes: (N, 4) float64 x1, y1, x2, y2 in picture pixels (clipped to the picture).
        scores: (N,) float64, decreasing. labels: (N,) int64. names: N class names.
        error: why the picture or frame could not be read (then image is None and N is 0).
    """

    def __init__(self, path, image, boxes=None, scores=None, labels=None, names=None, mask_probs=None,
                 paste_boxes=None, rles=None, binarize_threshold=BINARIZE_THRESHOLD, frame=None, error=None):
        self.path = path
        self.frame = frame
        self.image = image
        self.error = error
        self.boxes = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.zeros((0,)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        self.labels = np.zeros((0,), np.int64) if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
        self.names = list(names) if names is not None else [str(label) for label in self.labels]
        self.mask_probs = mask_probs
        self._paste_boxes = self.boxes if paste_boxes is None else np.asarray(paste_boxes, dtype=np.float64)
        self._rles = rles
        self._regions = {}
        self.binarize_threshold = binarize_threshold

    def __len__(self):
        return int(self.labels.shape[0])

    def __repr__(self):
        where = self.path if self.frame is None else f"{self.path} frame {self.frame}"
        if self.error:
            return f"Result({where!r}: unreadable: {self.error})"
        return f"Result({where!r}: {len(self)} detections {dict(self.counts())})"

    @property
    def shape(self):
        """(H, W) of the picture."""
        if self.image is not None:
            return tuple(self.image.shape[:2])
        return (0, 0)

    def region(self, index):
        """Detection `index`'s mask where it can be set: (region (h, w) uint8 0/1, left, top) in picture
        pixels; outside the region the mask is 0. Computed once."""
        if index not in self._regions:
            if self._rles is not None:
                full = mask_utils.decode(self._rles[index])
                rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
                if rows.size:
                    self._regions[index] = (np.ascontiguousarray(full[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]),
                                            int(cols[0]), int(rows[0]))
                else:
                    self._regions[index] = (np.zeros((0, 0), np.uint8), 0, 0)
            else:
                self._regions[index] = paste_mask_region(self.mask_probs[index], self._paste_boxes[index],
                                                         self.shape, self.binarize_threshold)
        return self._regions[index]

    def mask(self, index):
        """Detection `index`'s mask (H, W) bool at the picture's resolution."""
        region, left, top = self.region(index)
        full = np.zeros(self.shape, dtype=bool)
        full[top:top + region.shape[0], left:left + region.shape[1]] = region
        return full

    @property
    def masks(self):
        """(N, H, W) bool masks at the picture's resolution (N full-size arrays: for many detections on
        large pictures iterate over `mask(i)` or use `rles`)."""
        height, width = self.shape
        stacked = np.zeros((len(self), height, width), dtype=bool)
        for index in range(len(self)):
            region, left, top = self.region(index)
            stacked[index, top:top + region.shape[0], left:left + region.shape[1]] = region
        return stacked

    @property
    def rles(self):
        """COCO run-length encodings of the masks (dicts with 'size' and 'counts' bytes)."""
        if self._rles is None:
            from .tiles import mask_to_picture_rle

            encoded = []
            for index in range(len(self)):
                region, left, top = self.region(index)
                encoded.append(mask_to_picture_rle(region, (left, top), self.shape))
            self._rles = encoded
        return self._rles

    @property
    def areas(self):
        """(N,) int64: each mask's area in pixels."""
        from ..utils.eval import rle_areas

        return rle_areas(self.rles).astype(np.int64)

    def polygons(self, tolerance=1.0):
        """Per detection a list of polygons, flat [x1, y1, x2, y2, ...] in picture pixels (see
        `mask_polygons`: simplified by `tolerance` pixels; holes are lost)."""
        outlines = []
        for index in range(len(self)):
            region, left, top = self.region(index)
            outlines.append(mask_polygons(region, tolerance, offset=(left, top)))
        return outlines

    def counts(self):
        """{class name: number of detections}."""
        found = {}
        for name in self.names:
            found[name] = found.get(name, 0) + 1
        return found

    def class_areas(self):
        """{class name: total mask area in pixels}."""
        total = {}
        for name, area in zip(self.names, self.areas):
            total[name] = total.get(name, 0) + int(area)
        return total

    def to_coco(self, image_id=0, polygons=False, tolerance=1.0):
        """COCO result dicts, one per detection: image_id, file_name, category_id (= label),
        category_name, score, bbox [x, y, w, h], area, segmentation (RLE with str counts) and, with
        polygons=True, polygons; plus frame for video frames."""
        results = []
        outlines = self.polygons(tolerance) if polygons else None
        for index, (box, score, label, name, rle, area) in enumerate(
                zip(self.boxes, self.scores, self.labels, self.names, self.rles, self.areas)):
            x1, y1, x2, y2 = (float(value) for value in box)
            entry = {"image_id": image_id, "file_name": self.path, "category_id": int(label), "category_name": name,
                     "score": float(score), "bbox": [x1, y1, x2 - x1, y2 - y1], "area": int(area),
                     "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}}
            if self.frame is not None:
                entry["frame"] = int(self.frame)
            if outlines is not None:
                entry["polygons"] = outlines[index]
            results.append(entry)
        return results

    def to_json(self, image_id=0, polygons=True, tolerance=1.0):
        """`to_coco` as a JSON string."""
        return json.dumps(self.to_coco(image_id, polygons=polygons, tolerance=tolerance))

    def plot(self, line_width=None, hide_labels=False, hide_scores=False, masks=True):
        """The picture with the detections drawn over it: a new (H, W, 3) BGR uint8 array."""
        from ..utils.visualization import draw_instances

        return draw_instances(np.array(self.image, copy=True), self.boxes, self.labels, scores=self.scores,
                              masks=_Masks(self) if masks else None,
                              names=dict(zip(self.labels.tolist(), self.names)), line_width=line_width,
                              hide_labels=hide_labels, hide_scores=hide_scores)

    def save(self, path, **plot_options):
        """Writes `plot()` to `path` (the format from its extension); returns the path. OSError naming
        the path when it cannot be written."""
        from ..utils.files import write_image

        write_image(path, self.plot(**plot_options))
        return path


def export_settings(metadata):
    """The `ModelSettings` an export's JSON records under "settings" (`ModelSettings.to_config()`), or
    None when it has no such entry.

    Raises:
        ValueError: naming the export's entry that `ModelSettings.from_config` does not know.
    """
    if not metadata.get("settings"):
        return None
    from ..models.settings import ModelSettings

    try:
        return ModelSettings.from_config(metadata["settings"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"the export's settings cannot be read: {error}") from None


def model_settings_of(model, metadata, runtime):
    """The `ModelSettings` of a model the Predictor runs: an exported artifact's from its JSON
    (`export_settings`), a Keras model's read back from its layers (`models.maskrcnn.model_settings`);
    None when they cannot be told."""
    if runtime != "keras":
        return export_settings(metadata)
    if not hasattr(model, "layers"):  # a stand-in for a model
        return None
    from ..models.maskrcnn import model_settings

    try:
        return model_settings(model)
    except ValueError:  # not a model built by keras_maskrcnn
        return None


def _backbone_of(model, metadata):
    """The backbone name a model was built on: its metadata's, else its name's prefix, else None."""
    from ..utils.applications import BACKBONES

    if metadata.get("backbone"):
        return metadata["backbone"]
    name = getattr(model, "name", "") or ""
    for candidate in sorted(BACKBONES, key=len, reverse=True):
        if name.startswith(candidate + "_"):
            return candidate
    return None


class Predictor:
    """Predicts detections with masks for pictures, folders, globs, lists, videos, cameras and streams.

    Args:
        model: a Keras prediction model, a path to a `.keras` / old `.h5` file, or a path to an artifact
            of `maskrcnn-export` (a SavedModel folder, .onnx, .xml or .tflite file), or a loaded artifact
            (`keras_maskrcnn.runtimes.load_artifact`).
        runtime: what runs a path: keras, saved_model, onnxruntime, openvino or litert (default: from the path).
        score_threshold: detections scoring at most this are dropped.
        max_detections: the most detections per picture (after merging tiles).
        tile_detections: with tiles, the most detections per tile (default: max_detections); the
            picture's limit applies after the merge.
        image_min_side: the resized pictures' smaller side (default: as the model was trained, else 800)...
        image_max_side: ...unless the larger side would then exceed this (default: as trained, else 1333).
        pad_multiple: batch height and width are padded up to a multiple of this (default: as trained, else 32).
        classes: class names by label (a list, or a dict label -> name; default: the model file's).
        tile: with a size in pixels, pictures larger than a tile are cut into tiles of that size,
            predicted at their own resolution and merged (None: whole pictures).
        tile_overlap: the fraction in [0, 1) by which neighbouring tiles overlap.
        tile_full: with tiles, the whole picture resized as usual is predicted as one more tile (for objects
            larger than a tile).
        batch_size: pictures (or tiles) sent through the model together.
        binarize_threshold: mask probability from which a pixel belongs to the object.
        backbone: the backbone name, for Keras models without metadata whose name does not say it.
        threads: threads of an exported artifact's runtime.
        mixed_precision: as `load_model`'s, for Keras model files.
        transform: an `InputTransform` to use instead of the one the settings above describe (e.g.
            `transform.generator_transform(generator)` for a data set's pictures).

    Attributes:
        settings: the `ModelSettings` the model was built with (anchors, detection filter, box
            decoding, RoI alignment, mask head): a Keras model's read from its layers, an exported
            artifact's from the "settings" of the JSON beside it; None when unknown (a Keras model
            not built by keras_maskrcnn, an artifact without that entry).
        metadata: what the model file records (backbone, classes, image sizes, ...; {} for none).
    """

    def __init__(self, model, runtime=None, score_threshold=PREDICT_SCORE_THRESHOLD, max_detections=MAX_DETECTIONS,
                 image_min_side=None, image_max_side=None, pad_multiple=None, classes=None, tile=None, tile_overlap=0.2,
                 tile_full=False, batch_size=1, binarize_threshold=BINARIZE_THRESHOLD, backbone=None, threads=None,
                 mixed_precision=None, tile_detections=None, transform=None):
        from ..utils.applications import APPLICATIONS

        if not 0.0 <= float(score_threshold) <= 1.0:
            raise ValueError(f"score_threshold {score_threshold} must lie in [0, 1]")
        if int(max_detections) < 1 or int(batch_size) < 1:
            raise ValueError("max_detections and batch_size must be at least 1")
        self.score_threshold = float(score_threshold)
        self.max_detections = int(max_detections)
        self.tile_detections = int(tile_detections or max_detections)
        self.batch_size = int(batch_size)
        self.binarize_threshold = float(binarize_threshold)
        self.model, self.metadata, self.runtime = self._load(model, runtime, threads, mixed_precision, backbone)
        self.settings = model_settings_of(self.model, self.metadata, self.runtime)
        name = backbone or _backbone_of(self.model, self.metadata) or (None if transform else "resnet50")
        if name is not None and name not in APPLICATIONS:
            raise ValueError(f"backbone {name!r} is not supported; choose one of: {', '.join(APPLICATIONS)}")
        self.backbone = name
        self.transform = transform or InputTransform(
            min_side=int(image_min_side or self.metadata.get("image_min_side") or IMAGE_MIN_SIDE),
            max_side=int(image_max_side or self.metadata.get("image_max_side") or IMAGE_MAX_SIDE),
            pad_multiple=int(pad_multiple or self.metadata.get("pad_multiple") or PAD_MULTIPLE),
            preprocessing=APPLICATIONS[name][2])
        self.classes = self._classes(classes)
        self.tile = None
        if tile is not None:
            from .tiles import tile_grid

            tile_grid(int(tile), int(tile), int(tile), float(tile_overlap))  # checks tile and overlap
            self.tile = int(tile)
        self.tile_overlap = float(tile_overlap)
        self.tile_full = bool(tile_full)

    def _load(self, model, runtime, threads, mixed_precision, backbone):
        """(model, metadata, runtime name) from what the user passed."""
        if not isinstance(model, (str, os.PathLike)):
            metadata = dict(getattr(model, "metadata", None) or {})
            return model, metadata, getattr(model, "runtime", None) or "keras"
        from ..runtimes import load_artifact, read_export_metadata, runtime_for_path

        path = os.fspath(model)
        if not os.path.exists(path):
            raise ValueError(f"model file {path!r} does not exist")
        runtime = runtime or runtime_for_path(path)
        if runtime == "keras":
            from ..models import load_model, read_metadata

            metadata = read_metadata(path)
            loaded = load_model(path, backbone_name=backbone, score_threshold=self.score_threshold,
                                max_detections=max(self.max_detections, self.tile_detections),
                                mixed_precision=mixed_precision)
            if len(loaded.outputs) < 6:
                raise ValueError(f"{path!r} is a keras-retinanet model without a mask head; the Predictor needs masks")
            return loaded, metadata, runtime
        artifact = load_artifact(path, runtime, threads=threads)
        return artifact, read_export_metadata(path), runtime

    def _classes(self, classes):
        """{label: name} from the argument or the model's metadata."""
        if classes is None:
            classes = self.metadata.get("classes") or []
        if isinstance(classes, dict):
            return {int(label): str(name) for label, name in classes.items()}
        return {label: str(name) for label, name in enumerate(classes) if name is not None}

    def name(self, label):
        """The class name of a label (the label as text when the model has no names)."""
        return self.classes.get(int(label), str(int(label)))

    # -- running the model ------------------------------------------------------------------------------

    def _run(self, batch):
        """The model's boxes, scores, labels, masks for an input batch (numpy)."""
        outputs = self.model.predict_on_batch(batch)
        if isinstance(outputs, dict):
            outputs = [outputs[key] for key in ("boxes", "scores", "labels", "masks")]
        return [np.asarray(output) for output in list(outputs)[-4:]]

    def _predict_inputs(self, pictures, transform, limit=None):
        """Per picture (boxes in picture pixels, scores, labels, 28x28 masks): at most `limit` (default
        max_detections) detections each."""
        found = []
        for start in range(0, len(pictures), self.batch_size):
            chunk = pictures[start:start + self.batch_size]
            batch, scales = transform.prepare(chunk)
            boxes, scores, labels, masks = self._run(batch)
            for index, (picture, scale) in enumerate(zip(chunk, scales)):
                kept = select_detections(boxes[index], scores[index], labels[index], masks[index],
                                         score_threshold=self.score_threshold,
                                         max_detections=limit or self.max_detections)
                unscaled = transform.unscale(kept[0], scale)
                found.append((unscaled, kept[1], kept[2], kept[3]))
        return found

    def _result(self, frame_info, picture, boxes, scores, labels, mask_probs=None, rles=None):
        height, width = picture.shape[:2]
        clipped = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0, width)
        clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0, height)
        path, frame = frame_info
        return Result(path, picture, clipped, scores, labels, [self.name(label) for label in labels],
                      mask_probs=mask_probs, paste_boxes=boxes, rles=rles,
                      binarize_threshold=self.binarize_threshold, frame=frame)

    def predict_images(self, images, paths=None, frames=None):
        """Results for a list of BGR uint8 pictures (H, W, 3), in order (tiled when `tile` is set)."""
        paths = paths or [f"image{index}" for index in range(len(images))]
        frames = frames or [None] * len(images)
        results = [None] * len(images)
        whole = [index for index, image in enumerate(images) if not self._tiled(image)]
        for index, found in zip(whole, self._predict_inputs([images[i] for i in whole], self.transform)):
            boxes, scores, labels, masks = found
            results[index] = self._result((paths[index], frames[index]), images[index], boxes, scores, labels,
                                          mask_probs=masks)
        for index, image in enumerate(images):
            if results[index] is None:
                results[index] = self._predict_tiled(image, paths[index], frames[index])
        return results

    def _tiled(self, image):
        return self.tile is not None and max(image.shape[:2]) > self.tile

    def _predict_tiled(self, image, path, frame):
        """One Result for a picture larger than a tile: tiles at their own resolution, merged."""
        from .tiles import mask_to_picture_rle, merge_detections, tile_grid

        height, width = image.shape[:2]
        grid = tile_grid(height, width, self.tile, self.tile_overlap)
        own = InputTransform(min_side=None, max_side=None, pad_multiple=self.transform.pad_multiple,
                             preprocessing=self.transform.preprocessing)
        pictures = [np.ascontiguousarray(image[y0:y1, x0:x1]) for x0, y0, x1, y1 in grid]
        found = self._predict_inputs(pictures, own, limit=self.tile_detections)
        offsets = [(x0, y0) for x0, y0, _, _ in grid]
        regions = [tuple(int(v) for v in rectangle) for rectangle in grid]
        if self.tile_full:
            found += self._predict_inputs([image], self.transform, limit=self.tile_detections)
            offsets.append((0, 0))
            regions.append((0, 0, width, height))
        boxes, scores, labels, rles, tile_ids = [], [], [], [], []
        for tile_id, ((tile_boxes, tile_scores, tile_labels, tile_masks), (x0, y0)) in enumerate(zip(found, offsets)):
            shift = np.array([x0, y0, x0, y0], dtype=np.float64)
            for box, score, label, mask in zip(tile_boxes, tile_scores, tile_labels, tile_masks):
                placed = box + shift
                region, left, top = paste_mask_region(mask, placed, (height, width), self.binarize_threshold)
                rles.append(mask_to_picture_rle(region, (left, top), (height, width)))
                boxes.append(placed)
                scores.append(score)
                labels.append(label)
                tile_ids.append(tile_id)
        if not boxes:
            return self._result((path, frame), image, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), rles=[])
        boxes, scores, labels, rles = merge_detections(np.array(boxes), np.array(scores), np.array(labels), rles,
                                                       np.array(tile_ids), max_detections=self.max_detections,
                                                       tiles=regions)
        return self._result((path, frame), image, boxes, scores, labels, rles=list(rles))

    # -- sources ----------------------------------------------------------------------------------------

    def stream(self, source, rgb=False, recursive=False, vid_stride=1, max_frames=None):
        """Yields one Result per picture or frame of `source` as they are predicted (see `__call__`);
        an unreadable picture or frame gives a Result with `error` set and no detections."""
        from .sources import iter_frames

        pending = []
        for frame in iter_frames(source, recursive=recursive, vid_stride=vid_stride, max_frames=max_frames, rgb=rgb):
            if frame.error is not None or frame.image is None:
                yield from self._flush(pending)
                pending = []
                yield Result(frame.path, None, frame=frame.frame, error=frame.error or "could not be read")
                continue
            pending.append(frame)
            if len(pending) >= self.batch_size:
                yield from self._flush(pending)
                pending = []
        yield from self._flush(pending)

    def _flush(self, frames):
        if not frames:
            return []
        return self.predict_images([frame.image for frame in frames], [frame.path for frame in frames],
                                   [frame.frame for frame in frames])

    def __call__(self, source, rgb=False, recursive=False, vid_stride=1, max_frames=None):
        """A list of Results for `source`: a picture path, a folder (`recursive`), a glob, a .txt file listing
        pictures, a video file, a camera index, a stream URL, a list of these, or numpy pictures (BGR as OpenCV
        reads them; RGB with rgb=True). For long videos and streams iterate over `stream` instead."""
        return list(self.stream(source, rgb=rgb, recursive=recursive, vid_stride=vid_stride, max_frames=max_frames))
