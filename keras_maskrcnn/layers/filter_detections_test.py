"""Reference tests for `FilterDetections`.

The numpy reference below follows the documented semantics: candidates are (anchor, class)
pairs (class-specific) or each anchor's best class (class-agnostic); the `pre_nms_top_k` best
are kept, those scoring <= `score_threshold` dropped, greedy NMS runs in descending score order
(a candidate is suppressed by an already kept candidate of the same class, or of any class when
class-agnostic, whose IoU with it is > `nms_threshold`; IoU in continuous coordinates), and the
`max_detections` best survivors come out sorted by score, padded with -1.
"""

import keras
import numpy as np
import pytest

from keras_maskrcnn.layers import FilterDetections
from keras_maskrcnn.layers.testing import run_layer_test


# ----------------------------------------------------------------------------------------------
# numpy reference
# ----------------------------------------------------------------------------------------------
def iou_reference(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class NmsTrace:
    """Closest IoU to the threshold among the comparisons the greedy NMS made.

    Tests use it to make sure no decision of the reference could be flipped by float32 rounding in
    the layer (otherwise a mismatch would say nothing about the layer)."""

    def __init__(self):
        self.margin = np.inf


def greedy_nms_reference(boxes, scores, labels, iou_threshold, class_specific=True, trace=None):
    """Indices of the kept candidates, in descending score order."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    kept = []
    for i in order:
        suppressed = False
        for j in kept:
            if class_specific and labels[i] != labels[j]:
                continue
            iou = iou_reference(boxes[i], boxes[j])
            if trace is not None:
                trace.margin = min(trace.margin, abs(iou - iou_threshold))
            if iou > iou_threshold:
                suppressed = True
                break
        if not suppressed:
            kept.append(int(i))
    return kept


def filter_detections_reference(boxes, classification, nms=True, class_specific_filter=True,
                                nms_threshold=0.5, score_threshold=0.05, max_detections=100,
                                pre_nms_top_k=1000, trace=None):
    """One image: boxes (A, 4), classification (A, C) -> (boxes (D, 4), scores (D,), labels (D,))."""
    boxes = np.asarray(boxes, dtype=np.float32)
    classification = np.asarray(classification, dtype=np.float32)
    num_classes = classification.shape[1]
    if class_specific_filter:
        scores = classification.reshape(-1)            # index = anchor * C + class
        anchors = np.arange(scores.size) // num_classes
        labels = np.arange(scores.size) % num_classes
    else:
        scores = classification.max(axis=1)
        anchors = np.arange(len(boxes))
        labels = classification.argmax(axis=1)
    candidates = np.argsort(-scores.astype(np.float64), kind="stable")[:pre_nms_top_k]
    candidates = candidates[scores[candidates] > np.float32(score_threshold)]
    if nms:
        kept = greedy_nms_reference(boxes[anchors[candidates]], scores[candidates], labels[candidates],
                                    nms_threshold, class_specific_filter, trace)
        candidates = candidates[kept]
    candidates = candidates[:max_detections]

    out_boxes = np.full((max_detections, 4), -1, dtype=np.float32)
    out_scores = np.full((max_detections,), -1, dtype=np.float32)
    out_labels = np.full((max_detections,), -1, dtype=np.int32)
    count = len(candidates)
    out_boxes[:count] = boxes[anchors[candidates]]
    out_scores[:count] = scores[candidates]
    out_labels[:count] = labels[candidates]
    return out_boxes, out_scores, out_labels


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _run(layer, boxes, classification):
    out = layer([np.asarray(boxes, dtype=np.float32), np.asarray(classification, dtype=np.float32)])
    assert isinstance(out, (list, tuple)) and len(out) == 3
    return [keras.ops.convert_to_numpy(o) for o in out]


def _assert_same(got, expected, context=""):
    got_boxes, got_scores, got_labels = got
    exp_boxes, exp_scores, exp_labels = expected
    assert got_boxes.dtype == np.float32 and got_scores.dtype == np.float32
    assert got_labels.dtype == np.int32, got_labels.dtype
    assert got_boxes.shape == exp_boxes.shape and got_scores.shape == exp_scores.shape
    assert got_labels.shape == exp_labels.shape
    bad = np.flatnonzero(~np.isclose(got_scores, exp_scores, rtol=0, atol=1e-6)
                         | (got_labels != exp_labels)
                         | ~np.isclose(got_boxes, exp_boxes, rtol=0, atol=1e-6).all(axis=-1))
    if bad.size:
        r = bad[0]
        raise AssertionError(
            f"{context}: {bad.size} rows differ, first row {r} "
            f"(reference keeps {int((exp_scores > -1).sum())} detections, layer {int((got_scores > -1).sum())}): "
            f"expected box {exp_boxes[r].tolist()} score {exp_scores[r]!r} label {exp_labels[r]}, "
            f"got box {got_boxes[r].tolist()} score {got_scores[r]!r} label {got_labels[r]}")


def _random_problem(rng, num_anchors, num_classes):
    """Clustered boxes (many overlaps, IoUs spread around 0.5) and distinct scores in (0, 1),
    about a third of them below 0.05."""
    clusters = max(2, num_anchors // 60)
    centers = rng.uniform(0, 600, size=(clusters, 2))
    sizes = rng.uniform(20, 150, size=(clusters, 2))
    which = rng.integers(0, clusters, size=num_anchors)
    jitter = rng.normal(0, 0.12, size=(num_anchors, 4)) * np.repeat(sizes[which], 2, axis=1)
    center, size = centers[which], sizes[which]
    boxes = np.concatenate([center - size / 2, center + size / 2], axis=1) + jitter
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1.0)  # positive areas
    count = num_anchors * num_classes
    ranks = rng.permutation(count)
    scores = ((ranks + 0.5) / count) ** 3
    # keep the order but leave no score within 2e-4 of the 0.05 threshold
    scores = np.where(scores < 0.05, scores * 0.996, 0.0502 + (scores - 0.05) * (0.9498 / 0.95))
    return boxes.astype(np.float32), scores.astype(np.float32).reshape(num_anchors, num_classes)


def _random_batch(seed, num_anchors, num_classes, batch=2):
    rng = np.random.default_rng(seed)
    problems = [_random_problem(rng, num_anchors, num_classes) for _ in range(batch)]
    boxes = np.stack([p[0] for p in problems])
    classification = np.stack([p[1] for p in problems])
    for b in range(batch):
        flat = classification[b].ravel()
        assert np.unique(flat).size == flat.size, "scores must be distinct for an unambiguous order"
    return boxes, classification


# ----------------------------------------------------------------------------------------------
# the reference against torchvision
# ----------------------------------------------------------------------------------------------
GOLDEN_BOXES = np.array([
    [10.0, 10.0, 50.0, 50.0],
    [12.0, 11.0, 52.0, 49.0],
    [30.0, 30.0, 70.0, 70.0],
    [11.0, 9.0, 49.5, 51.0],
    [100.0, 100.0, 140.0, 130.0],
    [102.0, 98.0, 141.0, 133.0],
    [120.0, 110.0, 160.0, 150.0],
    [10.5, 10.5, 50.5, 50.5],
    [0.0, 0.0, 20.0, 20.0],
    [5.0, 5.0, 25.0, 25.0],
    [101.0, 101.0, 139.0, 129.0],
    [32.0, 29.0, 71.0, 72.0],
], dtype=np.float32)
GOLDEN_SCORES = np.array([0.62, 0.91, 0.33, 0.47, 0.88, 0.74, 0.29, 0.56, 0.95, 0.41, 0.68, 0.52],
                         dtype=np.float32)
GOLDEN_CLASSES = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0, 0, 1, 2])
# Produced by torchvision 0.29.1 (torch 2.14.1), float32 tensors:
#   torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)  -> GOLDEN_BATCHED_KEEP
#   torchvision.ops.nms(boxes, scores, 0.5)                -> GOLDEN_AGNOSTIC_KEEP
GOLDEN_BATCHED_KEEP = [8, 1, 4, 7, 11, 3, 9, 2, 6]
GOLDEN_AGNOSTIC_KEEP = [8, 1, 4, 11, 9, 6]


def test_reference_nms_matches_torchvision_golden_values():
    kept = greedy_nms_reference(GOLDEN_BOXES, GOLDEN_SCORES, GOLDEN_CLASSES, 0.5, class_specific=True)
    assert kept == GOLDEN_BATCHED_KEEP
    kept = greedy_nms_reference(GOLDEN_BOXES, GOLDEN_SCORES, GOLDEN_CLASSES, 0.5, class_specific=False)
    assert kept == GOLDEN_AGNOSTIC_KEEP


# IoU exactly 0.5 (kept: suppression needs IoU > threshold), continuous IoU 0.48 (kept; it would be
# 0.527 with the "+1" pixel convention) and 0.52 (suppressed), and a box of another class.
EDGE_BOXES = np.array([
    [0.0, 0.0, 2.0, 1.0],
    [0.0, 0.0, 1.0, 1.0],
    [10.0, 10.0, 20.0, 20.0],
    [10.0, 10.0, 20.0, 14.8],
    [10.0, 10.0, 20.0, 15.2],
    [10.0, 10.0, 20.0, 15.2],
], dtype=np.float32)
EDGE_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.65], dtype=np.float32)
EDGE_CLASSES = np.array([0, 0, 0, 0, 0, 1])
# Produced by torchvision 0.29.1 (torch 2.14.1): batched_nms(boxes, scores, idxs, 0.5) and nms(boxes, scores, 0.5).
EDGE_BATCHED_KEEP = [0, 1, 2, 5, 3]
EDGE_AGNOSTIC_KEEP = [0, 1, 2, 3]


def test_reference_nms_matches_torchvision_edge_values():
    kept = greedy_nms_reference(EDGE_BOXES, EDGE_SCORES, EDGE_CLASSES, 0.5, class_specific=True)
    assert kept == EDGE_BATCHED_KEEP
    kept = greedy_nms_reference(EDGE_BOXES, EDGE_SCORES, EDGE_CLASSES, 0.5, class_specific=False)
    assert kept == EDGE_AGNOSTIC_KEEP


def test_reference_nms_matches_torchvision_live():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    for seed in range(3):
        boxes, classification = _random_batch(seed, 400, 3, batch=1)
        boxes = boxes[0].repeat(3, axis=0)
        scores = classification[0].ravel()
        labels = np.tile(np.arange(3), 400)
        expected = torchvision.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                                               torch.from_numpy(labels), 0.5)
        assert greedy_nms_reference(boxes, scores, labels, 0.5) == expected.tolist()


# ----------------------------------------------------------------------------------------------
# the layer
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("class_specific", [True, False])
@pytest.mark.parametrize("case", ["golden", "edge"])
def test_layer_matches_torchvision_golden_values(case, class_specific):
    if case == "golden":
        boxes, scores, classes = GOLDEN_BOXES, GOLDEN_SCORES, GOLDEN_CLASSES
        keep = GOLDEN_BATCHED_KEEP if class_specific else GOLDEN_AGNOSTIC_KEEP
    else:
        boxes, scores, classes = EDGE_BOXES, EDGE_SCORES, EDGE_CLASSES
        keep = EDGE_BATCHED_KEEP if class_specific else EDGE_AGNOSTIC_KEEP
    # each anchor scores only in its own class (the zeros are under the score threshold)
    classification = np.zeros((len(boxes), 3), dtype=np.float32)
    classification[np.arange(len(boxes)), classes] = scores
    layer = FilterDetections(nms=True, class_specific_filter=class_specific, nms_threshold=0.5,
                             score_threshold=0.05, max_detections=100, pre_nms_top_k=1000)
    got = _run(layer, boxes[None], classification[None])
    expected_boxes = np.full((1, 100, 4), -1, dtype=np.float32)
    expected_scores = np.full((1, 100), -1, dtype=np.float32)
    expected_labels = np.full((1, 100), -1, dtype=np.int32)
    expected_boxes[0, :len(keep)] = boxes[keep]
    expected_scores[0, :len(keep)] = scores[keep]
    expected_labels[0, :len(keep)] = classes[keep]
    _assert_same(got, (expected_boxes, expected_scores, expected_labels), f"{case} class_specific={class_specific}")


CASES = [
    # seed, anchors, classes
    (0, 500, 1),
    (1, 800, 3),
    (2, 1500, 5),
    (3, 3000, 10),
    (4, 2000, 2),
]


@pytest.mark.parametrize("seed,num_anchors,num_classes", CASES)
@pytest.mark.parametrize("class_specific", [True, False])
def test_layer_matches_reference(seed, num_anchors, num_classes, class_specific):
    boxes, classification = _random_batch(seed, num_anchors, num_classes)
    layer = FilterDetections(nms=True, class_specific_filter=class_specific, nms_threshold=0.5,
                             score_threshold=0.05, max_detections=100, pre_nms_top_k=1000)
    got = _run(layer, boxes, classification)
    for b in range(len(boxes)):
        trace = NmsTrace()
        expected = filter_detections_reference(boxes[b], classification[b], nms=True,
                                               class_specific_filter=class_specific, trace=trace)
        assert trace.margin > 1e-6, "test data too close to the IoU threshold: change the seed"
        _assert_same([g[b] for g in got], expected,
                     f"seed {seed} A={num_anchors} C={num_classes} class_specific={class_specific} image {b}")


@pytest.mark.parametrize("class_specific", [True, False])
def test_layer_matches_reference_with_other_parameters(class_specific):
    boxes, classification = _random_batch(11, 1200, 4)
    params = dict(nms=True, class_specific_filter=class_specific, nms_threshold=0.3,
                  score_threshold=0.2, max_detections=37, pre_nms_top_k=40)
    got = _run(FilterDetections(**params), boxes, classification)
    for b in range(len(boxes)):
        trace = NmsTrace()
        expected = filter_detections_reference(boxes[b], classification[b], trace=trace, **params)
        assert trace.margin > 1e-6
        # sanity of the data: here pre_nms_top_k changes the result
        unlimited = filter_detections_reference(boxes[b], classification[b], **dict(params, pre_nms_top_k=10**9))
        assert not np.array_equal(unlimited[1], expected[1])
        _assert_same([g[b] for g in got], expected, f"params {params} image {b}")


@pytest.mark.parametrize("class_specific", [True, False])
def test_layer_without_nms(class_specific):
    boxes, classification = _random_batch(5, 1000, 3)
    # a few anchors only: fewer than max_detections candidates above the threshold
    small_boxes, small_classification = _random_batch(6, 60, 2)
    for bx, cl in [(boxes, classification), (small_boxes, small_classification)]:
        layer = FilterDetections(nms=False, class_specific_filter=class_specific)
        got = _run(layer, bx, cl)
        for b in range(len(bx)):
            expected = filter_detections_reference(bx[b], cl[b], nms=False,
                                                   class_specific_filter=class_specific)
            _assert_same([g[b] for g in got], expected, f"nms=False class_specific={class_specific}")
    # without NMS the output is the plain top of the flattened scores
    got = _run(FilterDetections(nms=False), boxes, classification)
    top = np.sort(classification[0].ravel())[::-1][:100]
    np.testing.assert_array_equal(got[1][0], top)


def test_padding_when_few_detections_survive():
    boxes, classification = _random_batch(8, 50, 2)
    classification[:, 5:] = 0.01  # only anchors 0..4 can score above the threshold
    got = _run(FilterDetections(), boxes, classification)
    for b in range(len(boxes)):
        expected = filter_detections_reference(boxes[b], classification[b])
        _assert_same([g[b] for g in got], expected, f"padding image {b}")
        count = int((expected[1] > -1).sum())
        assert 1 <= count <= 10
        assert (got[0][b, count:] == -1).all()
        assert (got[1][b, count:] == -1).all()
        assert (got[2][b, count:] == -1).all()


@pytest.mark.parametrize("class_specific", [True, False])
@pytest.mark.parametrize("nms", [True, False])
def test_all_scores_under_threshold_give_all_padding(nms, class_specific):
    rng = np.random.default_rng(9)
    boxes = _random_batch(9, 300, 4)[0]
    classification = rng.uniform(0, 0.05, size=(2, 300, 4)).astype(np.float32)
    classification[0, 7, 2] = 0.05  # equal to the threshold: not kept either
    got = _run(FilterDetections(nms=nms, class_specific_filter=class_specific), boxes, classification)
    assert got[0].shape == (2, 100, 4) and (got[0] == -1).all()
    assert got[1].shape == (2, 100) and (got[1] == -1).all()
    assert got[2].shape == (2, 100) and (got[2] == -1).all() and got[2].dtype == np.int32


def test_images_of_a_batch_are_independent():
    boxes, classification = _random_batch(10, 600, 3, batch=3)
    classification[1] = 0.0  # the middle image has no detection
    got = _run(FilterDetections(), boxes, classification)
    for b in range(3):
        _assert_same([g[b] for g in got], filter_detections_reference(boxes[b], classification[b]),
                     f"batch image {b}")
    assert (got[1][1] == -1).all()


def test_layer_in_a_functional_model_with_dynamic_shapes():
    boxes, classification = _random_batch(12, 700, 3)
    inputs = [keras.Input(shape=(None, 4)), keras.Input(shape=(None, 3))]
    model = keras.Model(inputs, FilterDetections()(inputs))
    got = model.predict([boxes, classification], verbose=0)
    assert got[0].shape == (2, 100, 4) and got[1].shape == (2, 100) and got[2].shape == (2, 100)
    for b in range(2):
        expected = filter_detections_reference(boxes[b], classification[b])
        _assert_same([np.asarray(g[b]) for g in got], expected, f"functional model image {b}")


def test_get_config_round_trip():
    """Config round trip, shapes and dtypes (float32 boxes and scores, int32 labels, whatever the
    policy), symbolic and eager calls agreeing."""
    boxes, classification = _random_batch(0, 200, 3)
    run_layer_test(FilterDetections, dict(nms=True, class_specific_filter=False, nms_threshold=0.4, score_threshold=0.1,
                                          max_detections=50, pre_nms_top_k=300), [boxes, classification],
                   expected_output_shape=[(2, 50, 4), (2, 50), (2, 50)],
                   expected_output_dtype=["float32", "float32", "int32"],
                   expected_mixed_dtype=["float32", "float32", "int32"])


# ----------------------------------------------------------------------------------------------
# the export-time form: the pre-NMS top-k by blocks (for OpenVINO)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count, k, block, levels", [(20000, 1000, 8, 4), (1500, 1000, 8, 4), (997, 997, 8, 2),
                                                     (50000, 37, 4, 3), (3000, 100, 16, 0)])
def test_blocked_top_k_is_top_k_with_ties_to_the_lower_index(count, k, block, levels):
    from keras_maskrcnn.layers.filter_detections import blocked_top_k

    values = np.random.default_rng(count).integers(0, 40, (2, count)).astype(np.float32) / 40  # ties everywhere
    expected_values, expected_indices = (keras.ops.convert_to_numpy(x) for x in keras.ops.top_k(values, k))
    got_values, got_indices = (keras.ops.convert_to_numpy(x) for x in blocked_top_k(values, k, block, levels))
    np.testing.assert_array_equal(got_values, expected_values)
    np.testing.assert_array_equal(got_indices, expected_indices)
    # TensorFlow's own top_k takes the lower index first among equal values; the reference agrees.
    order = np.lexsort((np.arange(count), -values[0]))[:k]
    np.testing.assert_array_equal(expected_indices[0], order)


@pytest.mark.parametrize("class_specific", [True, False])
def test_top_k_blocks_form_gives_the_same_detections(class_specific):
    boxes, classification = _random_batch(13, 900, 4)
    classification = np.round(classification * 200) / 200  # tied scores
    plain = FilterDetections(class_specific_filter=class_specific, pre_nms_top_k=300)
    blocked = FilterDetections.from_config(dict(plain.get_config(), top_k_blocks=8))
    assert blocked.top_k_blocks == 8
    for got, expected in zip(_run(blocked, boxes, classification), _run(plain, boxes, classification)):
        np.testing.assert_array_equal(got, expected)
