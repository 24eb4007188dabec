"""`RoiAlign`: multi-level RoIAlign over the feature pyramid, in one gather pass."""

import collections
import math

import keras
from keras import ops


def pyramid_level(boxes, canonical_size=224.0, canonical_level=1, num_levels=5, epsilon=0.0):
    """Pyramid level index (..., ) int32 of boxes (..., 4):
    floor(canonical_level + log2(sqrt(wh) / canonical_size + epsilon)).

    Index 0 is the finest level given to `RoiAlign` (P3); the result is clipped to [0, num_levels - 1].
    keras-maskrcnn 0.2 used epsilon 1e-7 (Keras' fuzz factor); 0 takes sqrt(max(wh, 1e-12)) instead.
    """
    width = boxes[..., 2] - boxes[..., 0]
    height = boxes[..., 3] - boxes[..., 1]
    if epsilon:
        ratio = ops.sqrt(ops.maximum(width * height, 0.0)) / canonical_size + epsilon
        level = ops.floor(canonical_level + ops.log(ratio) / ops.log(ops.convert_to_tensor(2.0, "float32")))
    else:
        size = ops.sqrt(ops.maximum(width * height, 1e-12))
        level = ops.floor(canonical_level + ops.log(size / canonical_size) / math.log(2.0))
    return ops.cast(ops.clip(level, 0, num_levels - 1), "int32")


def _last_axis(x):
    """x (...) -> (..., 1). ops.expand_dims, not x[..., None]: LiteRT's converter keeps the latter as a
    TensorFlow op (FlexStridedSlice) when shapes are dynamic."""
    return ops.expand_dims(x, -1)


def _sample_axis(start, length, extent, bins, sampling_ratio):
    """Sample coordinates along one axis, as torchvision's roi_align(aligned=True) places them.

    start, length: (B, N) box start and length in feature cells; extent: (B, N) float feature size.
    Returns low index, high index (int32), low weight, high weight, all (B, N, bins * sampling_ratio).
    """
    steps = (ops.arange(bins * sampling_ratio, dtype="float32") + 0.5) / sampling_ratio
    coords = _last_axis(start) - 0.5 + _last_axis(length) / bins * steps
    extent = _last_axis(extent)
    inside = ops.logical_and(coords >= -1.0, coords <= extent)
    coords = ops.maximum(coords, 0.0)
    low = ops.floor(coords)
    at_edge = low >= extent - 1.0
    low = ops.where(at_edge, extent - 1.0, low)
    high = ops.where(at_edge, low, low + 1.0)
    coords = ops.where(at_edge, low, coords)
    frac = coords - low
    inside = ops.cast(inside, "float32")
    return ops.cast(low, "int32"), ops.cast(high, "int32"), (1.0 - frac) * inside, frac * inside


def _crop_and_resize_axis(start, end, image_extent, extent, bins):
    """Sample coordinates along one axis as keras-maskrcnn 0.2 placed them with
    `tf.image.crop_and_resize`: one sample per output cell, the first on start * f and the last on
    end * f - 1, f = extent / image_extent (feature cells per input pixel); a sample outside
    [0, extent - 1] is zero.

    start, end: (B, N) box edges in input pixels; image_extent: float input size; extent: (B, N)
    float feature size. Returns low, high (int32), low weight, high weight, all (B, N, bins).
    """
    factor = extent / image_extent
    # The normalised box crop_and_resize was given, then its own sample formula, in float32.
    first = start * factor / (extent - 1.0)
    last = (end * factor - 1.0) / (extent - 1.0)
    span = (last - first) * (extent - 1.0) / (bins - 1)
    coords = _last_axis(first) * (_last_axis(extent) - 1.0) + ops.arange(bins, dtype="float32") * _last_axis(span)
    coords = ops.where(ops.isfinite(coords), coords, -1.0)  # a level of one cell: 0 / 0 above
    extent = _last_axis(extent)
    inside = ops.cast(ops.logical_and(coords >= 0.0, coords <= extent - 1.0), "float32")
    low = ops.clip(ops.floor(coords), 0.0, extent - 1.0)
    high = ops.minimum(low + 1.0, extent - 1.0)
    frac = (coords - ops.floor(coords)) * inside
    return ops.cast(low, "int32"), ops.cast(high, "int32"), (1.0 - frac) * inside, frac


class _Samples(collections.namedtuple("_Samples", "rows cols row_weights col_weights ratio")):
    """Where each box is read: rows (B, N, crop_h * ratio, 2) and cols (B, N, crop_w * ratio, 2), the
    low and high cell of each sample's bilinear pair (int32), their weights (float32, same shapes), and
    ratio, the samples per bin along each axis."""


def _pair(axis):
    """(low, high, low weight, high weight) of one axis -> (cells (..., S, 2), weights (..., S, 2))."""
    low, high, weight_low, weight_high = axis
    return ops.stack([low, high], axis=-1), ops.stack([weight_low, weight_high], axis=-1)


def _aligned_samples(boxes, level, strides, level_height, level_width, crop_size, sampling_ratio):
    """The samples of torchvision's roi_align(aligned=True): sampling_ratio x sampling_ratio per bin,
    boxes (B, N, 4) in input pixels scaled by their level's stride."""
    crop_h, crop_w = crop_size
    scale = ops.take(ops.convert_to_tensor([1.0 / s for s in strides], dtype="float32"), level)
    rows, row_weights = _pair(_sample_axis(boxes[..., 1] * scale, (boxes[..., 3] - boxes[..., 1]) * scale,
                                           ops.cast(level_height, "float32"), crop_h, sampling_ratio))
    cols, col_weights = _pair(_sample_axis(boxes[..., 0] * scale, (boxes[..., 2] - boxes[..., 0]) * scale,
                                           ops.cast(level_width, "float32"), crop_w, sampling_ratio))
    return _Samples(rows, cols, row_weights, col_weights, sampling_ratio)


def _crop_and_resize_samples(boxes, image_shape, level_height, level_width, crop_size):
    """The samples of keras-maskrcnn 0.2 (`tf.image.crop_and_resize`): one per bin, placed by the
    input size image_shape (B, H, W, C) (see `_crop_and_resize_axis`)."""
    crop_h, crop_w = crop_size
    rows, row_weights = _pair(_crop_and_resize_axis(boxes[..., 1], boxes[..., 3], ops.cast(image_shape[1], "float32"),
                                                    ops.cast(level_height, "float32"), crop_h))
    cols, col_weights = _pair(_crop_and_resize_axis(boxes[..., 0], boxes[..., 2], ops.cast(image_shape[2], "float32"),
                                                    ops.cast(level_width, "float32"), crop_w))
    return _Samples(rows, cols, row_weights, col_weights, 1)


def _level_table(features, batch):
    """Every level's cells in one table for a single gather: (table (B * R, C), heights (L,),
    widths (L,) int32, offsets (L,) of each level among an image's R rows, R).

    features: [P3, ..., P7] (B, H_l, W_l, C), rows of an image ordered level by level, row-major."""
    channels = features[0].shape[-1]
    shapes = [ops.shape(feature) for feature in features]
    heights = ops.cast(ops.stack([shape[1] for shape in shapes]), "int32")
    widths = ops.cast(ops.stack([shape[2] for shape in shapes]), "int32")
    sizes = heights * widths
    table = ops.concatenate([ops.reshape(f, (batch, -1, channels)) for f in features], axis=1)
    return ops.reshape(table, (-1, channels)), heights, widths, ops.cumsum(sizes) - sizes, ops.sum(sizes)


def _gather_corners(table, base, level_width, samples, crop_size):
    """The shared gather: every bilinear corner of every sample of every box, (B, N, crop_h, 2 *
    ratio, crop_w, 2 * ratio, C), and the bins' row and column weights (B, N, crop_h, 2 * ratio) and
    (B, N, crop_w, 2 * ratio), each divided by ratio (the bin's average)."""
    crop_h, crop_w = crop_size
    batch, num_boxes, channels = ops.shape(base)[0], ops.shape(base)[1], table.shape[-1]
    taps = 2 * samples.ratio
    index = (
        base[:, :, None, None, None, None]
        + samples.rows[:, :, :, :, None, None] * level_width[:, :, None, None, None, None]
        + samples.cols[:, :, None, None, :, :]
    )
    corners = ops.take(table, ops.reshape(index, (-1,)), axis=0)
    corners = ops.reshape(corners, (batch, num_boxes, crop_h, taps, crop_w, taps, channels))
    col_weights = ops.reshape(samples.col_weights, (batch, num_boxes, crop_w, taps)) / samples.ratio
    row_weights = ops.reshape(samples.row_weights, (batch, num_boxes, crop_h, taps)) / samples.ratio
    return corners, row_weights, col_weights


def _pool(table, base, level_width, samples, crop_size, dtype):
    """(B, N, crop_h, crop_w, C): each bin the weighted sum of its corners, columns first, then rows
    (two multiply-and-sums, no taps x taps weight grid)."""
    corners, row_weights, col_weights = _gather_corners(table, base, level_width, samples, crop_size)
    col_weights = ops.cast(col_weights[:, :, None, None, :, :, None], dtype)
    row_weights = ops.cast(row_weights[:, :, :, :, None, None], dtype)
    return ops.sum(ops.sum(corners * col_weights, axis=5) * row_weights, axis=3)


def _pool_einsum(table, base, level_width, samples, crop_size, dtype):
    """`_pool` as two einsums, for JAX: on TensorFlow the multiply-and-sum is faster, but XLA on CPU
    (jax 0.10) crashes with a segmentation fault computing its gradient."""
    corners, row_weights, col_weights = _gather_corners(table, base, level_width, samples, crop_size)
    pooled = ops.einsum("bnhywxc,bnwx->bnhywc", corners, ops.cast(col_weights, dtype))
    return ops.einsum("bnhywc,bnhy->bnhwc", pooled, ops.cast(row_weights, dtype))


def _pool_low_rank(table, base, level_width, samples, crop_size, dtype):
    """`_pool` with batch and boxes folded into one axis, so that no tensor has more than 5
    dimensions (LiteRT's limit); the same products and sums in the same order."""
    crop_h, crop_w = crop_size
    batch, num_boxes, channels = ops.shape(base)[0], ops.shape(base)[1], table.shape[-1]
    ratio = samples.ratio
    taps_y = taps_x = 2 * ratio
    boxes_total = batch * num_boxes
    base = ops.reshape(base, (-1, 1, 1))
    level_width = ops.reshape(level_width, (-1, 1, 1))
    rows = ops.reshape(samples.rows, (-1, crop_h * taps_y, 1))
    cols = ops.reshape(samples.cols, (-1, 1, crop_w * taps_x))
    index = base + rows * level_width + cols
    corners = ops.take(table, ops.reshape(index, (-1,)), axis=0)
    corners = ops.reshape(corners, (boxes_total, crop_h * taps_y, crop_w, taps_x, channels))
    col_weights = ops.cast(ops.reshape(samples.col_weights, (-1, 1, crop_w, taps_x, 1)) / ratio, dtype)
    row_weights = ops.cast(ops.reshape(samples.row_weights, (-1, crop_h, taps_y, 1, 1)) / ratio, dtype)
    pooled = ops.reshape(ops.sum(corners * col_weights, axis=3), (boxes_total, crop_h, taps_y, crop_w, channels))
    pooled = ops.sum(pooled * row_weights, axis=2)
    return ops.reshape(pooled, (batch, num_boxes, crop_h, crop_w, channels))


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class RoiAlign(keras.layers.Layer):
    """[boxes (B,N,4), P3, ..., P7 (B,H_l,W_l,C)] -> (B, N, crop_h, crop_w, C).

    Boxes are x1y1x2y2 in input-image pixels. Each box is pooled from the level chosen by
    `pyramid_level`, with the semantics of torchvision.ops.roi_align(aligned=True): every output
    bin averages sampling_ratio x sampling_ratio bilinear samples; samples further than one cell
    outside the map count as zero. All levels are flattened into one table and every bilinear
    corner of every box is fetched in a single gather.

    sampling="crop_and_resize" is keras-maskrcnn 0.2's RoIAlign, for the models it trained: the
    inputs are then [image (B,H,W,C), boxes, P3, ..., P7] (the input size places the samples), one
    bilinear sample per output bin (no averaging), boxes mapped as `_crop_and_resize_axis` says,
    and the level is floor(1 + log2(sqrt(wh) / 224 + 1e-7)). Still one gather for all levels.

    low_rank=True computes the same pooling with batch and boxes folded into one axis, every tensor at
    most 5-D (the default form reaches 7-D, more than LiteRT takes); `keras_maskrcnn.models.export`
    uses it.

    Under a mixed dtype policy the features are gathered and averaged in the compute dtype (the
    output's dtype), while boxes, level choice and sample positions stay float32: inputs are not
    cast by Keras, the layer casts each itself.
    """

    SAMPLINGS = ("aligned", "crop_and_resize")

    def __init__(self, crop_size=(14, 14), sampling_ratio=2, strides=(8, 16, 32, 64, 128),
                 canonical_size=224.0, canonical_level=1, sampling="aligned", low_rank=False, **kwargs):
        super().__init__(**kwargs)
        if sampling not in self.SAMPLINGS:
            raise ValueError(f"RoiAlign sampling must be one of {self.SAMPLINGS}, got {sampling!r}")
        self.autocast = False
        self.sampling = sampling
        self.crop_size = tuple(int(c) for c in crop_size)
        self.sampling_ratio = int(sampling_ratio)
        self.strides = tuple(int(s) for s in strides)
        self.canonical_size = float(canonical_size)
        self.canonical_level = int(canonical_level)
        self.low_rank = bool(low_rank)

    @property
    def takes_image(self):
        """Whether the inputs start with the image (crop_and_resize sampling)."""
        return self.sampling == "crop_and_resize"

    def call(self, inputs):
        image_shape = None
        if self.takes_image:
            image_shape, inputs = ops.shape(inputs[0]), inputs[1:]
        boxes, features = inputs[0], list(inputs[1:])
        if len(features) != len(self.strides):
            raise ValueError(f"RoiAlign expects {len(self.strides)} feature maps, got {len(features)}")
        dtype = self.compute_dtype
        boxes = ops.cast(boxes, "float32")
        table, heights, widths, offsets, per_image = _level_table(
            [ops.cast(feature, dtype) for feature in features], ops.shape(boxes)[0])
        epsilon = 1e-7 if self.takes_image else 0.0  # keras-maskrcnn 0.2's level formula
        level = pyramid_level(boxes, self.canonical_size, self.canonical_level, len(self.strides), epsilon=epsilon)
        level_height, level_width = ops.take(heights, level), ops.take(widths, level)
        base = ops.take(offsets, level) + ops.expand_dims(ops.arange(ops.shape(boxes)[0], dtype="int32"), 1) * per_image
        if self.takes_image:
            samples = _crop_and_resize_samples(boxes, image_shape, level_height, level_width, self.crop_size)
        else:
            samples = _aligned_samples(boxes, level, self.strides, level_height, level_width, self.crop_size,
                                       self.sampling_ratio)
        if self.low_rank:
            pool = _pool_low_rank
        elif keras.backend.backend() == "jax":
            pool = _pool_einsum
        else:
            pool = _pool
        return pool(table, base, level_width, samples, self.crop_size, dtype)

    def compute_output_shape(self, input_shape):
        if self.takes_image:
            input_shape = input_shape[1:]
        boxes_shape, feature_shape = input_shape[0], input_shape[1]
        return (boxes_shape[0], boxes_shape[1], self.crop_size[0], self.crop_size[1], feature_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            crop_size=list(self.crop_size),
            sampling_ratio=self.sampling_ratio,
            strides=list(self.strides),
            canonical_size=self.canonical_size,
            canonical_level=self.canonical_level,
            sampling=self.sampling,
            low_rank=self.low_rank,
        )
        return config
