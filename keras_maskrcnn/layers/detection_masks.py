"""`DetectionMasks`: the mask branch of the prediction model, run only on the rows that hold detections."""

import keras
from keras import ops

from .roi_align import RoiAlign


def default_buckets(max_detections):
    """Row counts the mask head may run on: 0, N/8, N/4, N/2 and N (rounded up)."""
    n = int(max_detections)
    return tuple(sorted({0, -(-n // 8), -(-n // 4), -(-n // 2), n}))


@keras.saving.register_keras_serializable(package="keras_maskrcnn")
class DetectionMasks(keras.layers.Layer):
    """[boxes (B,N,4), scores (B,N), P3, ..., P7] -> masks (B, N, 28, 28, num_classes).

    Detections arrive sorted by score with the padding rows (score -1) last. The mask head runs on
    the first k rows only, k the smallest of `buckets` that covers every detection of the batch;
    rows from k on are zero. Each bucket has static shapes, so a graph is still built once per
    input size, and an image with few detections does not pay for N masks.

    mask_model: maps pooled RoI features (R, 14, 14, C) to (R, 28, 28, num_classes). Inputs are
    not cast to this layer's dtype: boxes stay float32 and `roi_align` casts the features to its own.
    row_selection says how the bucket is applied: "switch" (default, every backend) runs one
    `ops.switch` branch per bucket; the export-time forms give the same outputs without a
    multi-branch switch, which ONNX, OpenVINO and LiteRT converters reject: "slice" runs the head on
    a slice of dynamic length (the bucket's row count, at least 1; TensorFlow graphs, not JAX), "all" runs it on
    all N rows and zeroes the rows from the bucket's count on (static shapes, every backend, always
    the cost of N masks).

    With a `roi_align` that takes the image (crop_and_resize sampling) the inputs are
    [boxes, scores, image, P3, ..., P7].
    """

    ROW_SELECTIONS = ("switch", "slice", "all")

    def __init__(self, mask_model, buckets=None, mask_dtype=None, roi_align=None, row_selection="switch", **kwargs):
        super().__init__(**kwargs)
        self.autocast = False
        if isinstance(mask_model, dict):
            mask_model = keras.saving.deserialize_keras_object(mask_model)
        if isinstance(roi_align, dict):
            roi_align = keras.saving.deserialize_keras_object(roi_align)
        self.mask_model = mask_model
        self.roi_align = roi_align or RoiAlign(name="roi_align")
        self.buckets = None if buckets is None else tuple(int(b) for b in buckets)
        self.mask_dtype = mask_dtype
        if row_selection not in self.ROW_SELECTIONS:
            raise ValueError(f"DetectionMasks row_selection must be one of {self.ROW_SELECTIONS}, got {row_selection!r}")
        self.row_selection = row_selection

    def build(self, input_shape):
        # roi_align runs only inside call, never on symbolic inputs, so nothing else builds it. Keras's JAX
        # trainer runs a model with an unbuilt layer eagerly, op by op, before its first compiled predict.
        if not self.roi_align.built:
            self.roi_align.build(self._roi_align_inputs(list(input_shape[0]), [list(s) for s in input_shape[2:]]))
        self.built = True

    def _roi_align_inputs(self, boxes, features):
        """roi_align's inputs: boxes, then features (the inputs after boxes and scores), the image first
        when `roi_align` takes it. Tensors or their shapes."""
        features = list(features)
        return features[:1] + [boxes] + features[1:] if self.roi_align.takes_image else [boxes] + features

    def _masks_for_rows(self, rows, boxes, features):
        """features: the inputs after boxes and scores (the image first if `roi_align` takes it)."""
        batch, count = ops.shape(boxes)[0], boxes.shape[1]
        num_classes = self.mask_model.output_shape[-1]
        height, width = self.mask_model.output_shape[1:3]
        outputs = []
        if rows:
            pooled = self.roi_align(self._roi_align_inputs(boxes[:, :rows], features))
            flat = ops.reshape(pooled, (-1,) + tuple(pooled.shape[2:]))
            masks = ops.reshape(ops.cast(self.mask_model(flat), "float32"), (batch, rows, height, width, num_classes))
            outputs.append(masks)
        if rows < count:
            outputs.append(ops.zeros((batch, count - rows, height, width, num_classes), dtype="float32"))
        return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=1)

    def _bucket_rows(self, count, scores):
        """(buckets ending with count, index of the bucket chosen for `scores`: an int32 scalar tensor)."""
        buckets = self.buckets or default_buckets(count)
        buckets = [b for b in buckets if b < count] + [count]
        detected = ops.max(ops.sum(ops.cast(scores > -1.0, "int32"), axis=1))
        index = ops.sum(ops.cast(ops.convert_to_tensor(buckets[:-1]) < detected, "int32"))
        return buckets, index

    def _masks_for_slice(self, rows, boxes, features):
        """`_masks_for_rows` with rows a tensor: the head runs on a slice of dynamic length, at least
        one row (runtimes such as LiteRT's XNNPACK refuse empty tensors), the rows from `rows` on zero."""
        batch, count = ops.shape(boxes)[0], boxes.shape[1]
        num_classes = self.mask_model.output_shape[-1]
        height, width = self.mask_model.output_shape[1:3]
        needed = rows
        rows = ops.maximum(rows, 1)
        chosen = ops.slice(boxes, [0, 0, 0], ops.stack([batch, rows, 4]))
        pooled = self.roi_align(self._roi_align_inputs(chosen, features))
        flat = ops.reshape(pooled, (-1,) + tuple(pooled.shape[2:]))
        masks = ops.reshape(ops.cast(self.mask_model(flat), "float32"), (batch, rows, height, width, num_classes))
        rest = ops.zeros(ops.stack([batch, count - rows, height, width, num_classes]), dtype="float32")
        masks = ops.reshape(ops.concatenate([masks, rest], axis=1), (-1, count, height, width, num_classes))
        return self._zero_rows_from(needed, masks)

    @staticmethod
    def _zero_rows_from(rows, masks):
        """masks (B, N, ...) with the rows from index `rows` (a scalar tensor) on set to zero."""
        inside = ops.arange(masks.shape[1], dtype="int32") < rows
        return masks * ops.cast(ops.reshape(inside, (1, -1, 1, 1, 1)), masks.dtype)

    def call(self, inputs):
        boxes, scores, features = inputs[0], inputs[1], list(inputs[2:])
        count = boxes.shape[1]
        buckets, index = self._bucket_rows(count, scores)
        if self.row_selection == "switch":
            branches = [
                (lambda rows: lambda b, *f: self._masks_for_rows(rows, b, f))(rows) for rows in buckets
            ]
            masks = ops.switch(index, branches, boxes, *features)
        else:
            rows = ops.take(ops.convert_to_tensor(buckets, dtype="int32"), index)
            if self.row_selection == "slice":
                masks = self._masks_for_slice(rows, boxes, features)
            else:
                masks = self._zero_rows_from(rows, self._masks_for_rows(count, boxes, features))
        return ops.cast(masks, self.mask_dtype) if self.mask_dtype else masks

    def compute_output_spec(self, inputs):
        boxes = inputs[0]
        shape = tuple(self.mask_model.output_shape[1:])
        return keras.KerasTensor((boxes.shape[0], boxes.shape[1]) + shape, dtype=self.mask_dtype or "float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            mask_model=keras.saving.serialize_keras_object(self.mask_model),
            roi_align=keras.saving.serialize_keras_object(self.roi_align),
            buckets=None if self.buckets is None else list(self.buckets),
            mask_dtype=self.mask_dtype,
            row_selection=self.row_selection,
        )
        return config
