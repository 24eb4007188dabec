"""`FilterDetections`: score threshold, non-maximum suppression and top-k, with static output shapes."""

import keras
from keras import ops
from .. import defaults


def _gather(values, indices):
    """values (B, A, ...) and indices (B, K) int -> (B, K, ...)."""
    shape = ops.shape(values)
    batch, count = shape[0], shape[1]
    offsets = ops.expand_dims(ops.arange(batch, dtype="int32") * ops.cast(count, "int32"), 1)
    flat_indices = ops.reshape(ops.cast(indices, "int32") + offsets, (-1,))
    flat_values = ops.reshape(values, (-1,) + tuple(values.shape[2:]))
    gathered = ops.take(flat_values, flat_indices, axis=0)
    return ops.reshape(gathered, (batch, -1) + tuple(values.shape[2:]))


LOWEST = -3.4028234663852886e38  # the lowest float32: padding that no real score loses to


def blocked_top_k(values, k, block=8, levels=4):
    """`ops.top_k(values, k, sorted=True)` of values (B, M), M >= k, ties going to the lower index as
    there, computed without a top_k over more than max(k * block, M / block**levels) values.

    OpenVINO runs TensorFlow's top_k as a stable TopK whose time grows with M * k (55 s for the 12.3 M
    (anchor, class) scores of an 800 x 1024 image and k = 1000; 0.04 s without stability). Here the
    values are cut into blocks of `block`; the stable top k of all values lie in the k blocks whose
    maxima are the stable top k of the block maxima (found the same way, `levels` deep), so a top_k over
    those k blocks, taken in index order, gives the same values and indices.
    """
    if levels == 0:
        return ops.top_k(values, k, sorted=True)
    batch, count = ops.shape(values)[0], ops.shape(values)[1]
    if isinstance(count, int):
        groups = max(-(-count // block), k)
    else:
        groups = ops.maximum((count + block - 1) // block, k)
    padding = ops.full((batch, groups * block - count), LOWEST, dtype=values.dtype)
    blocks = ops.reshape(ops.concatenate([values, padding], axis=1), (batch, -1, block))
    _, chosen = blocked_top_k(ops.max(blocks, axis=2), k, block, levels - 1)
    chosen = ops.sort(ops.cast(chosen, "int32"), axis=1)
    inner_values, inner = ops.top_k(ops.reshape(_gather(blocks, chosen), (batch, k * block)), k, sorted=True)
    inner = ops.cast(inner, "int32")
    indices = _gather(ops.expand_dims(chosen, -1), inner // block)[..., 0] * block + inner % block
    return inner_values, indices


def pairwise_iou(boxes):
    """IoU matrix (B, K, K) of boxes (B, K, 4), continuous coordinates."""
    x1, y1, x2, y2 = [boxes[..., i] for i in range(4)]
    area = ops.maximum(x2 - x1, 0.0) * ops.maximum(y2 - y1, 0.0)

    # ops.expand_dims rather than x[:, :, None]: LiteRT's converter cannot take the latter for dynamic shapes.
    def column(x):  # (B, K) -> (B, K, 1)
        return ops.expand_dims(x, 2)

    def row(x):  # (B, K) -> (B, 1, K)
        return ops.expand_dims(x, 1)

    iw = ops.minimum(column(x2), row(x2)) - ops.maximum(column(x1), row(x1))
    ih = ops.minimum(column(y2), row(y2)) - ops.maximum(column(y1), row(y1))
    inter = ops.maximum(iw, 0.0) * ops.maximum(ih, 0.0)
    union = column(area) + row(area) - inter
    return ops.where(union > 0.0, inter / ops.maximum(union, 1e-9), 0.0)


def greedy_nms(boxes, valid, labels, iou_threshold, class_specific=True):
    """Greedy NMS over candidates already sorted by descending score.

    boxes (B, K, 4), valid (B, K) bool, labels (B, K) int -> keep (B, K) bool. A candidate is
    dropped when its IoU with a kept, higher-scored candidate (of the same label, if
    `class_specific`) exceeds `iou_threshold`. The greedy rule keep[j] = valid[j] and no kept
    i < j suppresses j is applied to all candidates at once and repeated until nothing changes:
    its only fixed point is the sequential greedy result, reached after at most K rounds and in
    practice after a few, each one (K x K) matrix product.
    """
    count = ops.shape(boxes)[1]
    suppress = pairwise_iou(boxes) > iou_threshold
    if class_specific:
        suppress = ops.logical_and(suppress, ops.equal(ops.expand_dims(labels, 2), ops.expand_dims(labels, 1)))
    order = ops.arange(count)
    earlier = ops.expand_dims(order, 1) < ops.expand_dims(order, 0)
    suppress = ops.cast(ops.logical_and(suppress, ops.expand_dims(earlier, 0)), "float32")

    def step(keep, _changed, iteration):
        hit = ops.squeeze(ops.matmul(ops.expand_dims(ops.cast(keep, "float32"), 1), suppress), 1)
        new_keep = ops.logical_and(valid, hit < 0.5)
        changed = ops.any(ops.not_equal(new_keep, keep))
        return new_keep, changed, iteration + 1

    def unsettled(_keep, changed, iteration):
        return ops.logical_and(changed, iteration <= count)

    keep, _, _ = ops.while_loop(
        unsettled, step, (valid, ops.convert_to_tensor(True), ops.convert_to_tensor(0, dtype="int32"))
    )
    return keep


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class FilterDetections(keras.layers.Layer):
    """[boxes (B,A,4), classification (B,A,C)] -> [boxes (B,N,4), scores (B,N), labels (B,N) int32].

    N = max_detections. Per image: the `pre_nms_top_k` best (anchor, class) scores (or, with
    `class_specific_filter=False`, the best class of each anchor) above `score_threshold`,
    greedy NMS at `nms_threshold` per class (or across classes), the `max_detections` best kept,
    sorted by score. Rows without a detection hold box -1, score -1, label -1.

    top_k_blocks > 0 is an export-time form with the same outputs: the pre-NMS top-k is taken by
    `blocked_top_k` with blocks of that size (for OpenVINO, whose stable TopK is slow on many values).
    """

    def __init__(self, nms=True, class_specific_filter=True, nms_threshold=defaults.NMS_THRESHOLD,
                 score_threshold=defaults.SCORE_THRESHOLD, max_detections=defaults.MAX_DETECTIONS,
                 pre_nms_top_k=defaults.PRE_NMS_TOP_K, top_k_blocks=0, **kwargs):
        super().__init__(**kwargs)
        self.nms = bool(nms)
        self.class_specific_filter = bool(class_specific_filter)
        self.nms_threshold = float(nms_threshold)
        self.score_threshold = float(score_threshold)
        self.max_detections = int(max_detections)
        self.pre_nms_top_k = int(pre_nms_top_k)
        self.top_k_blocks = int(top_k_blocks)

    def _top_candidates(self, scores, k):
        """Top k of scores (B, M), padded with -1 so that M < k works: (values, indices)."""
        batch = ops.shape(scores)[0]
        padding = ops.full((batch, k), -1.0, dtype=scores.dtype)
        scores = ops.concatenate([scores, padding], axis=1)
        if self.top_k_blocks:
            return blocked_top_k(scores, k, self.top_k_blocks)
        return ops.top_k(scores, k, sorted=True)

    def call(self, inputs):
        boxes, classification = inputs[0], inputs[1]
        boxes = ops.cast(boxes, "float32")
        classification = ops.cast(classification, "float32")
        shape = ops.shape(classification)
        batch, num_anchors, num_classes = shape[0], shape[1], classification.shape[-1]
        k = max(self.pre_nms_top_k, self.max_detections)

        if self.class_specific_filter:
            flat = ops.reshape(classification, (batch, -1))
            scores, indices = self._top_candidates(flat, k)
            anchor_indices = indices // num_classes
            labels = indices % num_classes
        else:
            flat = ops.max(classification, axis=2)
            scores, anchor_indices = self._top_candidates(flat, k)
            labels = ops.argmax(classification, axis=2)
            labels = _gather(ops.expand_dims(labels, -1), ops.minimum(anchor_indices, num_anchors - 1))[..., 0]
        anchor_indices = ops.minimum(anchor_indices, num_anchors - 1)
        labels = ops.cast(labels, "int32")
        candidates = _gather(boxes, anchor_indices)
        valid = scores > self.score_threshold

        if self.nms:
            keep = greedy_nms(candidates, valid, labels, self.nms_threshold, self.class_specific_filter)
        else:
            keep = valid

        kept_scores = ops.where(keep, scores, -1.0)
        top_scores, top_indices = ops.top_k(kept_scores, self.max_detections, sorted=True)
        present = top_scores > -1.0
        out_boxes = ops.where(ops.expand_dims(present, -1), _gather(candidates, top_indices), -1.0)
        out_scores = ops.where(present, top_scores, -1.0)
        out_labels = ops.where(present, _gather(ops.expand_dims(labels, -1), top_indices)[..., 0], -1)
        return [out_boxes, out_scores, ops.cast(out_labels, "int32")]

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        return [(batch, self.max_detections, 4), (batch, self.max_detections), (batch, self.max_detections)]

    def compute_output_spec(self, inputs):
        batch = inputs[0].shape[0]
        return [
            keras.KerasTensor((batch, self.max_detections, 4), dtype="float32"),
            keras.KerasTensor((batch, self.max_detections), dtype="float32"),
            keras.KerasTensor((batch, self.max_detections), dtype="int32"),
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            nms=self.nms,
            class_specific_filter=self.class_specific_filter,
            nms_threshold=self.nms_threshold,
            score_threshold=self.score_threshold,
            max_detections=self.max_detections,
            pre_nms_top_k=self.pre_nms_top_k,
            top_k_blocks=self.top_k_blocks,
        )
        return config
