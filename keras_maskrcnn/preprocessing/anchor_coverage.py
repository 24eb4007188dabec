"""Anchor coverage of a data set, and a search for anchors that cover it.

An object is *covered* when training gives it at least one positive anchor. The rule is
utils.anchors.anchor_targets_bbox's, applied to the image as training resizes it
(image_min_side / image_max_side) and pads it (pad_multiple): an anchor whose centre lies in
the resized image is positive for the box it overlaps most when that IoU is at least 0.5. An
object that no anchor reaches is trained as background everywhere, silently: the model cannot
learn to find it. Coverage is reported per COCO size group (small: area < 32^2, medium: < 96^2,
large: the rest), areas being the mask areas in pixels of the resized image.

Two computations:
- `covered_objects` applies the training rule exactly (each image's anchors against all of its
  boxes, with the argmax between boxes), on the anchors that can matter: an anchor with IoU >= 0.5
  has its centre inside the box (else at most half of it overlaps) and an area within a factor 2
  of the box's, so only those anchors are compared.
- `best_anchor_iou` gives each object's best IoU over all anchors in closed form: for one anchor
  shape the best position is the grid centre nearest the box centre in x and in y (the overlap
  along an axis only falls as the centres move apart), so it costs objects x anchor shapes
  operations, whatever the image size. The anchor search evaluates its candidates with it.

`search_anchors` keeps the strides (the model's pyramid levels) and the number of ratios and
scales (they set the heads' shapes) and looks for sizes, ratios and scales that cover more
objects: ratios start from quantiles of the objects' aspect ratios, sizes from a grid of base
sizes doubling per level, scales spread over an octave; then an evolutionary search (random
log-normal mutations of all of them, a mutation kept when it does not lower the coverage)
refines them. Sizes stay at least their level's stride and grow with the level, so every level
keeps anchors of its own scale. The score is the share of covered objects plus a hundredth of the mean best IoU,
which breaks ties towards better-fitting anchors.
"""

import warnings

import numpy as np

from ..utils.anchors import AnchorParameters, compute_gt_annotations, feature_shapes, generate_anchors
from ..utils.progress import progress
from ..utils.image import UnreadableImageError, compute_resize_scale

POSITIVE_OVERLAP = 0.5
"""IoU from which an anchor is a positive in training (anchor_targets_bbox's default)."""

SIZE_GROUPS = (("small", 0.0, 32.0 ** 2), ("medium", 32.0 ** 2, 96.0 ** 2), ("large", 96.0 ** 2, np.inf))
"""COCO's object size groups: (name, smallest area, area bound), areas in pixels."""

COVERAGE_WARNING = 0.9
"""Below this share of covered objects maskrcnn-train warns."""


def resized_shape(height, width, image_min_side=800, image_max_side=1333):
    """((rows, cols), scale) of an image of height x width after training's resize."""
    scale = compute_resize_scale((height, width), image_min_side, image_max_side)
    return (int(round(height * scale)), int(round(width * scale))), scale


def padded_shape(shape, pad_multiple=32):
    """(rows, cols) of `shape` rounded up to a multiple of pad_multiple (a batch of one image)."""
    return tuple(-(-int(side) // pad_multiple) * pad_multiple for side in shape[:2])


class DataObjects:
    """The objects of a data set as training sees them after its resize.

    Attributes (N objects, I images read):
        boxes (N, 4) float64: x1, y1, x2, y2 in resized-image pixels.
        areas (N,) float64: mask areas in resized-image pixels (COCO's object area).
        labels (N,) int64; image (N,) int64: the row of image_shapes each object belongs to.
        image_shapes (I, 2) int64: resized (rows, cols); indices (I,): the generator's image indices.
        original_boxes (N, 4): the boxes in the pixels of the image files.
        ignore_regions: crowd / ignore regions seen; problems: list of strings (each names its image).
        unreadable: images that could not be read (left out), as {path: message}.
    """

    def __init__(self, boxes, areas, labels, image, image_shapes, indices, original_boxes=None,
                 ignore_regions=0, problems=(), unreadable=None, image_min_side=800, image_max_side=1333,
                 pad_multiple=32):
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.areas = np.asarray(areas, dtype=np.float64).reshape(-1)
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.image = np.asarray(image, dtype=np.int64).reshape(-1)
        self.image_shapes = np.asarray(image_shapes, dtype=np.int64).reshape(-1, 2)
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.original_boxes = self.boxes if original_boxes is None else np.asarray(original_boxes, np.float64)
        self.ignore_regions = int(ignore_regions)
        self.problems = list(problems)
        self.unreadable = dict(unreadable or {})
        self.image_min_side, self.image_max_side, self.pad_multiple = image_min_side, image_max_side, pad_multiple

    def __len__(self):
        return self.boxes.shape[0]

    def groups(self):
        """(N,) array of size-group names ('small', 'medium', 'large') of the objects."""
        names = np.empty(len(self), dtype=object)
        for name, low, high in SIZE_GROUPS:
            names[(self.areas >= low) & (self.areas < high)] = name
        return names

    def negatives(self):
        """Images read that hold no object."""
        return int(len(self.indices) - np.unique(self.image).size)


def _mask_problems(path, index, mask, box, shape):
    """Problems of one object's mask against its box (strings naming image and annotation)."""
    if mask.shape[:2] != tuple(shape):
        return [f"{path}: annotation {index}: mask is {mask.shape[1]}x{mask.shape[0]}, the image {shape[1]}x{shape[0]}"]
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return [f"{path}: annotation {index}: empty mask"]
    x1, y1, x2, y2 = box
    beyond = max(x1 - cols[0], y1 - rows[0], cols[-1] + 1 - x2, rows[-1] + 1 - y2)
    if beyond > 2:
        return [f"{path}: annotation {index}: mask reaches {beyond:.0f} px beyond its box {np.round(box, 1).tolist()}"]
    return []


def _duplicates(path, boxes, labels):
    """Pairs of objects of one class whose boxes overlap with IoU > 0.95 (likely double annotations)."""
    if len(boxes) < 2:
        return []
    from ..utils.anchors import compute_overlap

    overlaps = np.triu(compute_overlap(boxes, boxes), k=1)
    same = labels[:, None] == labels[None, :]
    return [f"{path}: annotations {i} and {j}: same class, boxes overlap with IoU {overlaps[i, j]:.2f} (duplicate?)"
            for i, j in zip(*np.nonzero((overlaps > 0.95) & same))]


def collect_objects(generator, image_min_side=None, image_max_side=None, pad_multiple=None, indices=None,
                    bar=None, check_masks=True):
    """DataObjects of a generator's images, resized as training resizes them.

    Reads every image's annotations (not its pixels), drops the annotations training drops
    (Generator.filter_annotations, its warnings recorded as problems) and notes problems: masks
    empty or reaching beyond their boxes, likely duplicates, annotations that cannot be read.

    Args:
        generator: any preprocessing Generator (CSV, COCO, labelme, YOLO, ...).
        image_min_side, image_max_side, pad_multiple: training's resize and padding (default: the
            generator's).
        indices: the image indices to read (default all).
        bar: progress bar prefix, or None for none.
        check_masks: look for mask problems (off for the quick start-up line of training).
    Returns:
        DataObjects.
    """
    image_min_side = image_min_side or generator.image_min_side
    image_max_side = image_max_side or generator.image_max_side
    pad_multiple = pad_multiple or getattr(generator, "pad_multiple", 32)
    indices = range(generator.size()) if indices is None else indices
    boxes, original, areas, labels, owners, shapes, read = [], [], [], [], [], [], []
    problems, ignore_regions = [], 0
    unreadable = dict(generator.bad_images.messages()) if hasattr(generator, "bad_images") else {}
    iterator = progress(list(indices), bar) if bar else indices
    for index in iterator:
        path = generator.image_path(index)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                annotations = generator.load_annotations_group([index])[0]
                height, width = generator.image_size(index)
            except UnreadableImageError as error:
                unreadable[path] = str(error)
                continue
            except ValueError as error:
                problems.append(f"{path}: annotations cannot be read: {error}")
                continue
            fake = np.empty((height, width, 0), dtype=np.uint8)
            _, (annotations,) = generator.filter_annotations([fake], [annotations], [index])
        problems += [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        shape, scale = resized_shape(height, width, image_min_side, image_max_side)
        row = len(shapes)
        shapes.append(shape)
        read.append(index)
        ignore_regions += len(annotations.get("ignore_bboxes", ()))
        image_boxes = annotations["bboxes"]
        for number, (box, label, mask) in enumerate(zip(image_boxes, annotations["labels"], annotations["masks"])):
            if check_masks:
                problems += _mask_problems(path, number, mask, box, (height, width))
            resized = np.asarray(box, dtype=np.float64) * scale
            resized[0::2] = np.clip(resized[0::2], 0, shape[1])
            resized[1::2] = np.clip(resized[1::2], 0, shape[0])
            boxes.append(resized)
            original.append(box)
            area = float(np.count_nonzero(mask)) if mask.size else (box[2] - box[0]) * (box[3] - box[1])
            areas.append(area * scale * scale)
            labels.append(label)
            owners.append(row)
        if check_masks:
            problems += _duplicates(path, np.asarray(image_boxes).reshape(-1, 4), np.asarray(annotations["labels"]))
    return DataObjects(np.asarray(boxes).reshape(-1, 4), areas, labels, owners, np.asarray(shapes).reshape(-1, 2),
                       read, np.asarray(original).reshape(-1, 4), ignore_regions, problems, unreadable,
                       image_min_side, image_max_side, pad_multiple)


# exact coverage: training's rule


def _candidate_anchors(shape, inside_shape, anchor_params, boxes):
    """(M, 4) float32: the anchors of anchors_for_shape(shape) (same values, same order) that can
    reach IoU 0.5 with a box: centred inside the image (inside_shape) and inside (or on the edge of)
    a box whose area is within a factor 2 of theirs (IoU <= smaller area / larger area)."""
    areas = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-12)
    chosen = []
    for (rows, cols), stride, size in zip(feature_shapes(shape, anchor_params.strides), anchor_params.strides,
                                          anchor_params.sizes):
        base = generate_anchors(size, anchor_params.ratios, anchor_params.scales)  # (A, 4) around (0, 0)
        ratio = ((base[:, 2] - base[:, 0]) * (base[:, 3] - base[:, 1]))[None, :] / areas[:, None]
        fits = ((ratio >= 0.5 * (1 - 1e-6)) & (ratio <= 2 * (1 + 1e-6))).astype(np.float32)  # (K, A)
        xs = (np.arange(cols, dtype=np.float64) + 0.5) * stride
        ys = (np.arange(rows, dtype=np.float64) + 0.5) * stride
        in_x = (xs[:, None] >= boxes[None, :, 0]) & (xs[:, None] <= boxes[None, :, 2]) & (xs[:, None] < inside_shape[1])
        in_y = (ys[:, None] >= boxes[None, :, 1]) & (ys[:, None] <= boxes[None, :, 3]) & (ys[:, None] < inside_shape[0])
        # (rows, cols, A): how many boxes of a fitting area hold each anchor's centre
        hits = np.matmul(in_y.astype(np.float32)[None] * fits.T[:, None, :], in_x.astype(np.float32).T[None])
        row, col, kind = np.nonzero(hits.transpose(1, 2, 0) > 0)
        x, y = xs[col], ys[row]
        # utils.anchors.shift's arithmetic: float64 centre + float64 offset, then float32
        chosen.append(np.stack([x, y, x, y], axis=1) + base[kind])
    return np.concatenate(chosen).astype(np.float32)


def covered_objects(objects, anchor_params=None, positive_overlap=POSITIVE_OVERLAP):
    """(N,) bool: whether training gives each object of `objects` (DataObjects) a positive anchor.

    The rule of utils.anchors.anchor_targets_bbox for a batch of one image padded to
    objects.pad_multiple: anchors centred outside the image are ignored, every other anchor goes
    to the box it overlaps most, and is positive when that IoU >= positive_overlap.
    """
    anchor_params = anchor_params or AnchorParameters.default
    covered = np.zeros(len(objects), dtype=bool)
    order = np.argsort(objects.image, kind="stable")
    starts = np.searchsorted(objects.image[order], np.arange(len(objects.image_shapes) + 1))
    for row, shape in enumerate(objects.image_shapes):
        members = order[starts[row]:starts[row + 1]]
        if members.size == 0:
            continue
        boxes = objects.boxes[members]
        candidates = _candidate_anchors(padded_shape(shape, objects.pad_multiple), shape, anchor_params, boxes)
        if candidates.shape[0] == 0:
            continue
        positive, _, argmax = compute_gt_annotations(candidates, boxes, positive_overlap=positive_overlap)
        covered[members[np.unique(argmax[positive])]] = True
    return covered


# best IoU in closed form, for the search


def anchor_shapes(anchor_params):
    """(widths, heights, strides) of every anchor shape, each (L * R * S,), in the order of
    utils.anchors.generate_anchors within each level."""
    widths, heights, strides = [], [], []
    ratios, scales = np.asarray(anchor_params.ratios, np.float64), np.asarray(anchor_params.scales, np.float64)
    for size, stride in zip(anchor_params.sizes, anchor_params.strides):
        side = size * np.tile(scales, len(ratios))
        ratio = np.repeat(ratios, len(scales))
        width = side / np.sqrt(ratio)
        widths.append(width)
        heights.append(width * ratio)
        strides.append(np.full(width.shape, stride, dtype=np.float64))
    return np.concatenate(widths), np.concatenate(heights), np.concatenate(strides)


def _axis_overlap(low, high, stride, extent, last):
    """Overlap (N, K) along one axis of boxes [low, high] (N, 1) with the anchors of extent
    (1, K) centred at the grid point nearest the box centre (indices 0..last (N, K))."""
    index = np.clip(np.round((low + high) / (2 * stride) - 0.5), 0, last)
    centre = (index + 0.5) * stride
    overlap = np.minimum(high, centre + extent / 2) - np.maximum(low, centre - extent / 2)
    return np.where(last >= 0, np.clip(overlap, 0, None), 0.0)


def best_anchor_iou(boxes, image_shapes, anchor_params=None, chunk=4096):
    """(N,) best IoU of each box with any anchor centred inside its image, without listing anchors.

    boxes (N, 4) x1, y1, x2, y2 and image_shapes (N, 2) (rows, cols) of each box's image, both in
    resized-image pixels. Equal to the column maxima of compute_overlap(anchors inside the image,
    boxes) (see the module docstring).
    """
    anchor_params = anchor_params or AnchorParameters.default
    widths, heights, strides = (a[None, :] for a in anchor_shapes(anchor_params))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    image_shapes = np.asarray(image_shapes, dtype=np.float64).reshape(-1, 2)
    best = np.zeros(boxes.shape[0])
    for start in range(0, boxes.shape[0], chunk):
        b = boxes[start:start + chunk]
        rows, cols = image_shapes[start:start + chunk, 0:1], image_shapes[start:start + chunk, 1:2]
        # the last grid index whose centre lies inside the image: (j + 0.5) * stride < side
        last_x = np.ceil(cols / strides - 0.5) - 1
        last_y = np.ceil(rows / strides - 0.5) - 1
        ox = _axis_overlap(b[:, 0:1], b[:, 2:3], strides, widths, last_x)
        oy = _axis_overlap(b[:, 1:2], b[:, 3:4], strides, heights, last_y)
        inter = ox * oy
        area = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[:, None]
        union = area + widths * heights - inter
        best[start:start + chunk] = (inter / np.maximum(union, 1e-12)).max(axis=1)
    return best


# reports


def coverage_by_group(objects, covered):
    """{'small' | 'medium' | 'large' | 'all': (covered, objects)} of DataObjects and (N,) covered."""
    groups = objects.groups()
    table = {name: (int(covered[groups == name].sum()), int((groups == name).sum())) for name, _, _ in SIZE_GROUPS}
    table["all"] = (int(covered.sum()), len(objects))
    return table


def _percent(done, total):
    return f"{100.0 * done / total:.1f}%" if total else "-"


def format_coverage(table):
    """'87.5% of 288 objects (small 40.0% of 50, medium ..., large ...)' of a coverage_by_group table."""
    done, total = table["all"]
    parts = [f"{name} {_percent(*table[name])} of {table[name][1]}" for name, _, _ in SIZE_GROUPS if table[name][1]]
    return f"{_percent(done, total)} of {total} objects" + (f" ({', '.join(parts)})" if parts else "")


def coverage_line(generator, anchor_params=None, max_images=1000):
    """(text, fraction): one line on the share of objects that get a positive anchor in training.

    Args:
        generator: the training generator (its image_min_side, image_max_side, pad_multiple and,
            unless anchor_params is given, anchor_params are used).
        anchor_params: AnchorParameters (default the generator's).
        max_images: read at most this many images, evenly spread over the data set.
    Returns:
        text such as 'anchor coverage: 97.2% of 288 objects (small 80.0% of 40, ...) get a positive
        anchor (IoU >= 0.5) at 800/1333', and the covered fraction (1.0 without objects).
    """
    anchor_params = anchor_params or getattr(generator, "anchor_params", None) or AnchorParameters.default
    count = generator.size()
    indices = None
    if count > max_images:
        indices = sorted(set(np.linspace(0, count - 1, max_images).round().astype(int).tolist()))
    objects = collect_objects(generator, indices=indices, check_masks=False)
    table = coverage_by_group(objects, covered_objects(objects, anchor_params))
    done, total = table["all"]
    sample = f" (of {len(objects.indices)} of the {count} images)" if indices is not None else ""
    text = (f"anchor coverage: {format_coverage(table)}{sample} get a positive anchor (IoU >= {POSITIVE_OVERLAP}) "
            f"at image sides {objects.image_min_side}/{objects.image_max_side}")
    return text, (done / total if total else 1.0)


def coverage_warning(fraction, prog="maskrcnn-train"):
    """A warning line when fraction < COVERAGE_WARNING, else None."""
    if fraction >= COVERAGE_WARNING:
        return None
    return (f"{prog}: warning: only {100 * fraction:.1f}% of the objects get a positive anchor; the others are "
            f"trained as background. `maskrcnn-data check` shows which sizes miss out, `maskrcnn-data anchors` "
            f"fits anchors to the data (its .ini goes to --config)")


# anchor search


def _params(log_sizes, log_ratios, log_scales, strides):
    """AnchorParameters of log-space vectors: ratios and scales sorted, the smallest scale 1, each
    size at least its stride and at least the size of the level below."""
    scales = np.sort(np.exp(log_scales))
    sizes = np.maximum.accumulate(np.maximum(np.exp(log_sizes) * scales[0], strides))
    return AnchorParameters(sizes=sizes, strides=strides, ratios=np.sort(np.exp(log_ratios)), scales=scales / scales[0])


def _round_params(params, digits=3):
    """AnchorParameters with sizes to 0.1 px and ratios, scales to `digits` significant digits."""
    def significant(values):
        return [float(f"{v:.{digits}g}") for v in values]

    return AnchorParameters(sizes=[round(s, 1) for s in params.sizes], strides=params.strides,
                            ratios=significant(params.ratios), scales=significant(params.scales))


def _resample(values, count):
    """`count` values spread like `values` (log-linear interpolation over their positions)."""
    values = np.log(np.asarray(values, dtype=np.float64))
    if count == len(values):
        return np.exp(values)
    if len(values) == 1:
        return np.exp(np.full(count, values[0]))
    positions = np.linspace(0, len(values) - 1, count)
    return np.exp(np.interp(positions, np.arange(len(values)), values))


def search_anchors(boxes, image_shapes, anchor_params=None, num_ratios=None, num_scales=None, generations=1000,
                   seed=0):
    """(AnchorParameters, score) fitted to objects: the anchor search of the module docstring.

    Args:
        boxes (N, 4), image_shapes (N, 2): objects in resized-image pixels and their images' (rows, cols).
        anchor_params: the starting anchors (default AnchorParameters.default); their strides are kept.
        num_ratios, num_scales: ratios and scales per location (default: as anchor_params).
        generations: mutations tried in the evolutionary refinement.
        seed: random seed (the same arguments give the same anchors).
    Returns:
        (AnchorParameters with sizes rounded to 0.1 px and ratios, scales to 3 digits, its score).
    """
    start = anchor_params or AnchorParameters.default
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if boxes.shape[0] == 0:
        raise ValueError("no objects to fit anchors to")
    strides = list(start.strides)
    num_ratios = num_ratios or len(start.ratios)
    num_scales = num_scales or len(start.scales)

    def score(params):
        best = best_anchor_iou(boxes, image_shapes, params)
        return float((best >= POSITIVE_OVERLAP).mean() + 0.01 * best.mean())

    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    valid = (widths > 0) & (heights > 0)
    sides = np.sqrt(widths[valid] * heights[valid])
    aspect = np.log(heights[valid] / widths[valid])
    quantile_ratios = np.exp(np.quantile(aspect, (np.arange(num_ratios) + 0.5) / num_ratios))
    octave = 2.0 ** (np.arange(num_scales) / num_scales)
    levels = 2.0 ** np.arange(len(strides))

    candidates = [(np.log(start.sizes), np.log(_resample(start.ratios, num_ratios)),
                   np.log(_resample(start.scales, num_scales)))]
    # sizes doubling per level, the smallest anchor from a grid around the small objects' sizes
    low, high = np.quantile(sides, 0.01), np.quantile(sides, 0.5)
    for base in np.geomspace(max(low / 2, 1.0), max(high, 2.0), 24):
        for ratios in (quantile_ratios, _resample(start.ratios, num_ratios)):
            candidates.append((np.log(base * levels), np.log(ratios), np.log(octave)))
    scored = [(score(_params(*c, strides)), i) for i, c in enumerate(candidates)]
    best_score, best_index = max(scored)
    best = [np.array(v, dtype=np.float64) for v in candidates[best_index]]

    rng = np.random.default_rng(seed)
    for generation in range(generations):
        sigma = 0.15 * (1 - generation / generations) + 0.02
        trial = []
        for values in best:
            change = rng.random(values.shape) < 0.5
            trial.append(values + change * rng.normal(0.0, sigma, values.shape))
        trial_score = score(_params(*trial, strides))
        if trial_score >= best_score:
            best, best_score = trial, trial_score
    fitted = _round_params(_params(*best, strides))
    return fitted, score(fitted)


def write_anchor_config(path, anchor_params, comment=None):
    """Writes `anchor_params` as the [anchor_parameters] section of an .ini file --config reads
    (atomically: a temporary file renamed over `path`)."""
    import os
    import tempfile

    def numbers(values):
        return " ".join(f"{float(v):g}" for v in values)

    lines = [f"# {line}" for line in (comment or "").splitlines()]
    lines += ["[anchor_parameters]", f"sizes = {numbers(anchor_params.sizes)}",
              f"strides = {' '.join(str(int(s)) for s in anchor_params.strides)}",
              f"ratios = {numbers(anchor_params.ratios)}", f"scales = {numbers(anchor_params.scales)}", ""]
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".ini.tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write("\n".join(lines))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
