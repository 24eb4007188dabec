import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from keras_maskrcnn.inference.tiles import cut, mask_to_picture_rle, merge_detections, paste_offsets, tile_grid


def coverage(height, width, grid):
    counts = np.zeros((height, width), np.int32)
    for x0, y0, x1, y1 in grid:
        counts[y0:y1, x0:x1] += 1
    return counts


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 700), width=st.integers(1, 700), tile=st.integers(32, 300),
       overlap=st.floats(0.0, 0.95))
def test_grid_covers_every_pixel_with_the_overlap_asked(height, width, tile, overlap):
    grid = tile_grid(height, width, tile, overlap)
    assert coverage(height, width, grid).min() >= 1
    assert len(set(grid)) == len(grid)
    shared = int(tile * overlap)
    for x0, y0, x1, y1 in grid:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert (x1 - x0, y1 - y0) == (min(tile, width), min(tile, height))
    for axis, length in ((0, width), (1, height)):
        starts = sorted({box[axis] for box in grid})
        ends = sorted({box[axis + 2] for box in grid})
        assert starts[0] == 0 and ends[-1] == length  # the last row/column ends at the edge
        for end, start in zip(ends[:-1], starts[1:]):
            assert end - start >= shared  # neighbours overlap at least as asked


def test_grid_example_and_row_order():
    grid = tile_grid(1536, 1536, 512, 0.25)  # step 384: 0, 384, 768 and the last shifted to 1024
    starts = [0, 384, 768, 1024]
    assert grid == [(x, y, x + 512, y + 512) for y in starts for x in starts]
    assert tile_grid(100, 300, 100, 0.0) == [(0, 0, 100, 100), (100, 0, 200, 100), (200, 0, 300, 100)]


def test_picture_not_larger_than_the_tile_is_one_tile():
    assert tile_grid(96, 96, 96, 0.2) == [(0, 0, 96, 96)]
    assert tile_grid(50, 80, 1024, 0.2) == [(0, 0, 80, 50)]


def test_thin_pictures():
    grid = tile_grid(10, 1000, 96, 0.5)
    assert all(y0 == 0 and y1 == 10 for _, y0, _, y1 in grid)
    assert coverage(10, 1000, grid).min() >= 1 and grid[-1][2] == 1000
    assert [x0 for x0, *_ in grid[:3]] == [0, 48, 96]
    grid = tile_grid(1000, 1, 64, 0.0)
    assert [(x0, x1) for x0, _, x1, _ in grid] == [(0, 1)] * len(grid) and grid[-1][3] == 1000


@pytest.mark.parametrize("tile, overlap, message", [
    (16, 0.2, "tile 16 is smaller than 32 pixels, the model's largest stride"),
    (64, 1.0, r"tile overlap must be a fraction in \[0, 1\), got 1.0"),
    (64, -0.1, r"tile overlap must be a fraction in \[0, 1\), got -0.1"),
    (64.5, 0.2, "tile must be a whole number of pixels, got 64.5"),
])
def test_bad_tiles_are_one_line_errors(tile, overlap, message):
    with pytest.raises(ValueError, match=message):
        tile_grid(500, 500, tile, overlap)
    assert tile_grid(500, 500, 64, 0.2, min_tile=64)
    with pytest.raises(ValueError, match="smaller than 128 pixels"):
        tile_grid(500, 500, 64, 0.2, min_tile=128)


def test_cut_and_paste_offsets():
    image = np.arange(120 * 200 * 3, dtype=np.int32).reshape(120, 200, 3)
    grid = tile_grid(120, 200, 96, 0.25)
    tiles = cut(image, grid)
    for (x0, y0, x1, y1), piece in zip(grid, tiles):
        assert piece.shape == (y1 - y0, x1 - x0, 3) and np.shares_memory(piece, image)
        np.testing.assert_array_equal(piece[0, 0], image[y0, x0])
    offsets = paste_offsets(grid)
    assert offsets.shape == (len(grid), 4)
    tile_boxes = np.array([[0, 0, 10, 5], [1, 2, 3, 4]], np.float32)
    np.testing.assert_array_equal(tile_boxes + offsets[[1, 1]],
                                  tile_boxes + np.array([grid[1][:2] * 2], np.float32))
    with pytest.raises(ValueError, match="outside"):
        cut(image, [(0, 0, 300, 10)])


def test_mask_to_picture_rle_equals_pycocotools_encode_of_the_whole_picture():
    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width = rng.integers(1, 80, 2)
        rows, cols = rng.integers(1, height + 1), rng.integers(1, width + 1)
        x0, y0 = rng.integers(0, width - cols + 1), rng.integers(0, height - rows + 1)
        mask = rng.random((rows, cols)) < rng.choice([0.0, 0.3, 1.0])
        picture = np.zeros((height, width), np.uint8)
        picture[y0:y0 + rows, x0:x0 + cols] = mask
        rle = mask_to_picture_rle(mask, (x0, y0), (height, width))
        assert rle == mask_utils.encode(np.asfortranarray(picture))
    with pytest.raises(ValueError, match="does not fit"):
        mask_to_picture_rle(np.ones((5, 5), bool), (98, 0), (10, 100))


def tile_detections(objects, grid, height, width):
    """What a perfect model gives per tile: for each (mask, label, score) and each tile it shows,
    the part of the mask inside the tile, as a detection in the picture's pixels."""
    boxes, scores, labels, rles, tile_ids = [], [], [], [], []
    for tile_id, (x0, y0, x1, y1) in enumerate(grid):
        for mask, label, score in objects:
            part = mask[y0:y1, x0:x1]
            if not part.any():
                continue
            rows, cols = np.nonzero(part)
            boxes.append([cols.min() + x0, rows.min() + y0, cols.max() + x0 + 1, rows.max() + y0 + 1])
            scores.append(score - 0.01 * tile_id)
            labels.append(label)
            rles.append(mask_to_picture_rle(part, (x0, y0), (height, width)))
            tile_ids.append(tile_id)
    return np.array(boxes, np.float32), np.array(scores), np.array(labels), rles, np.array(tile_ids)


def disk(height, width, cx, cy, radius):
    rows, cols = np.mgrid[:height, :width]
    return (rows - cy) ** 2 + (cols - cx) ** 2 <= radius ** 2


def test_an_object_cut_by_a_tile_border_comes_out_once_with_its_mask_joined():
    height, width = 96, 176
    grid = tile_grid(height, width, 96, 0.17)  # two tiles: x 0-96 and 80-176
    assert grid == [(0, 0, 96, 96), (80, 0, 176, 96)]
    whole = disk(height, width, 88, 48, 30)  # across the border, bigger than the 16 px overlap
    detections = tile_detections([(whole, 2, 0.9)], grid, height, width)
    assert len(detections[0]) == 2
    halves = [mask_utils.decode(rle).astype(bool) for rle in detections[3]]
    boxes, scores, labels, rles = merge_detections(*detections, tiles=grid)
    assert len(merge_detections(*detections)[0]) == 1  # the whole masks' overlap suffices here
    assert len(boxes) == 1 and labels.tolist() == [2] and scores[0] == pytest.approx(0.9)
    merged = mask_utils.decode(rles[0]).astype(bool)
    np.testing.assert_array_equal(merged, halves[0] | halves[1])
    np.testing.assert_array_equal(merged, whole)
    np.testing.assert_array_equal(boxes[0], [58, 18, 119, 79])  # the union's box, x2/y2 exclusive
    assert mask_utils.toBbox(rles[0]).tolist() == [58, 18, 61, 61]


def test_an_object_across_three_tiles_and_a_sliver_inside_a_whole_object():
    height, width = 64, 160
    grid = tile_grid(height, width, 64, 0.5)  # x starts 0, 32, 64, 96
    bar = np.zeros((height, width), bool)
    bar[20:40, 10:150] = True  # seen in parts by all four tiles
    small = disk(height, width, 62, 50, 6)  # x 56-68: a part in tile 0, whole in tile 1, a sliver in tile 2
    detections = tile_detections([(bar, 1, 0.8), (small, 1, 0.7)], grid, height, width)
    boxes, scores, labels, rles = merge_detections(*detections, tiles=grid)
    assert len(boxes) == 2
    np.testing.assert_array_equal(mask_utils.decode(rles[0]).astype(bool), bar)
    np.testing.assert_array_equal(mask_utils.decode(rles[1]).astype(bool), small)
    np.testing.assert_array_equal(boxes, [[10, 20, 150, 40], [56, 44, 69, 57]])
    np.testing.assert_allclose(scores, [0.8, 0.7])  # the best of each group (tile 0's)
    # over the whole masks, the bar's middle parts (64 px) share only half their pixels: the
    # 0.5 threshold is not passed and the bar stays in two pieces
    assert len(merge_detections(*detections)[0]) == 3


def test_different_classes_and_detections_of_one_tile_never_merge():
    height, width = 64, 64
    square = np.zeros((height, width), bool)
    square[10:30, 10:30] = True
    rle = mask_to_picture_rle(square, (0, 0), (height, width))
    box = [10, 10, 30, 30]
    # same mask, tiles 0 and 1 but different classes
    result = merge_detections([box, box], [0.9, 0.8], [0, 1], [rle, rle], [0, 1])
    assert result[2].tolist() == [0, 1]
    # same mask, same class, same tile
    result = merge_detections([box, box], [0.9, 0.8], [0, 0], [rle, rle], [3, 3])
    assert len(result[0]) == 2
    # same class, other tile: merged
    result = merge_detections([box, box], [0.6, 0.8], [0, 0], [rle, rle], [0, 1])
    assert len(result[0]) == 1 and result[1].tolist() == [pytest.approx(0.8)]
    # a tile that already joined the group cannot join twice
    result = merge_detections([box] * 3, [0.9, 0.8, 0.7], [0] * 3, [rle] * 3, [0, 1, 1])
    assert len(result[0]) == 2 and result[1].tolist() == pytest.approx([0.9, 0.7])


def test_overlap_threshold_is_over_the_smaller_mask():
    height, width = 40, 100
    left = np.zeros((height, width), bool)
    left[10:30, 0:60] = True
    right = np.zeros((height, width), bool)
    right[10:30, 30:100] = True  # intersection 30 columns: 0.5 of left, 0.43 of right, IoU 0.3
    rles = [mask_to_picture_rle(mask, (0, 0), (height, width)) for mask in (left, right)]
    boxes = [[0, 10, 60, 30], [30, 10, 100, 30]]
    assert len(merge_detections(boxes, [0.9, 0.8], [0, 0], rles, [0, 1], iou_threshold=0.49)[0]) == 1
    assert len(merge_detections(boxes, [0.9, 0.8], [0, 0], rles, [0, 1], iou_threshold=0.51)[0]) == 2
    # counted inside the region two tiles share (x 30-60), the masks coincide
    tiles = [(0, 0, 60, 40), (30, 0, 100, 40)]
    assert len(merge_detections(boxes, [0.9, 0.8], [0, 0], rles, [0, 1], iou_threshold=0.99, tiles=tiles)[0]) == 1
    with pytest.raises(ValueError, match=r"tiles must give \(x0, y0, x1, y1\) for every tile id \(\[0, 1\]\)"):
        merge_detections(boxes, [0.9, 0.8], [0, 0], rles, [0, 1], tiles=tiles[:1])


def test_cap_order_empty_and_errors():
    height, width = 32, 32
    rles, boxes = [], []
    for index in range(5):
        mask = np.zeros((height, width), bool)
        mask[index * 6:index * 6 + 4, 0:4] = True
        rles.append(mask_to_picture_rle(mask, (0, 0), (height, width)))
        boxes.append([0, index * 6, 4, index * 6 + 4])
    scores = [0.1, 0.5, 0.3, 0.9, 0.7]
    out_boxes, out_scores, out_labels, out_rles = merge_detections(boxes, scores, [0] * 5, rles, [0, 1, 2, 3, 4],
                                                                   max_detections=3)
    assert out_scores.tolist() == pytest.approx([0.9, 0.7, 0.5]) and len(out_rles) == 3
    np.testing.assert_array_equal(out_boxes[0], boxes[3])
    empty = merge_detections(np.zeros((0, 4)), [], [], [], [])
    assert empty[0].shape == (0, 4) and empty[3] == []
    with pytest.raises(ValueError, match=r"as many scores, labels, masks and tile ids as boxes \(2\)"):
        merge_detections(boxes[:2], scores[:2], [0], rles[:2], [0, 1])


def test_more_than_255_detections():
    """pycocotools' area() of more than 255 masks at once overflows under NumPy 2."""
    height, width = 20, 20
    rles, boxes = [], []
    for index in range(300):
        y, x = divmod(index, 20)
        rles.append(mask_to_picture_rle(np.ones((1, 1), bool), (x, y % height), (height, width)))
        boxes.append([x, y % height, x + 1, y % height + 1])
    result = merge_detections(boxes, np.linspace(1, 0, 300), [0] * 300, rles, np.arange(300), max_detections=None)
    assert len(result[0]) == 300
