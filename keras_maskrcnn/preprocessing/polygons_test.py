import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO

from keras_maskrcnn.preprocessing.polygons import (
    PolygonClippedWarning,
    check_polygon,
    circle_to_polygon,
    circle_vertices,
    clip_polygon,
    polygon_box,
    polygons_to_mask,
    rectangle_to_polygon,
)


def coco_masks(segmentations, height, width):
    """annToMask of each segmentation, from a COCO object built in memory (the reference)."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "height": height, "width": width, "file_name": "x.png"}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1.0,
                         "bbox": [0, 0, 1, 1], "segmentation": [list(map(float, p)) for p in polygons]}
                        for i, polygons in enumerate(segmentations)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return [coco.annToMask(coco.loadAnns(i + 1)[0]) for i in range(len(segmentations))]


def test_polygons_to_mask_equals_coco_ann_to_mask():
    height, width = 40, 56
    rng = np.random.default_rng(0)
    segmentations = [
        [[3.2, 4.7, 30.1, 6.3, 25.8, 33.9, 5.5, 28.0]],                     # one quadrilateral
        [[1, 1, 10, 1, 10, 10], [30.5, 20.5, 50.5, 22, 40, 38.25]],         # two parts of one object
        [[-6, -3, 20, -2, 18, 15, -4, 12]],                                 # runs off the top-left
        [list(rng.uniform(-5, 60, 14))],                                    # self-intersecting, outside
        [circle_to_polygon(28, 20, 11.3).tolist()],
        [rectangle_to_polygon(50, 35, 44.5, 30).tolist()],
    ]
    expected = coco_masks(segmentations, height, width)
    for polygons, reference in zip(segmentations, expected):
        mask = polygons_to_mask(polygons, height, width)
        assert mask.dtype == np.uint8 and mask.shape == (height, width) and set(np.unique(mask)) <= {0, 1}
        assert mask.any()
        np.testing.assert_array_equal(mask, reference)


def test_polygons_to_mask_values():
    mask = polygons_to_mask([rectangle_to_polygon(2, 3, 10, 8)], 12, 14)
    expected = np.zeros((12, 14), np.uint8)
    expected[3:8, 2:10] = 1
    np.testing.assert_array_equal(mask, expected)
    assert not polygons_to_mask([], 5, 6).any() and polygons_to_mask([], 5, 6).shape == (5, 6)
    with pytest.raises(ValueError, match="at least 3"):
        polygons_to_mask([[1, 2, 3, 4]], 5, 5)  # pycocotools would read 4 numbers as a box


def test_check_polygon_errors_name_the_annotation():
    np.testing.assert_array_equal(check_polygon([1, 2, 3, 4, 5, 6], "f.json: shapes[0]"), [1, 2, 3, 4, 5, 6])
    with pytest.raises(ValueError, match=r"^f\.json: shapes\[2\]: polygon has an odd number of coordinates \(7\)"):
        check_polygon([1, 2, 3, 4, 5, 6, 7], "f.json: shapes[2]")
    with pytest.raises(ValueError, match=r"^a\.txt:3: polygon has 2 point\(s\); a polygon needs at least 3"):
        check_polygon([1, 2, 3, 4], "a.txt:3")
    with pytest.raises(ValueError, match=r"^w: polygon has a coordinate that is not a finite number: nan"):
        check_polygon([1, 2, 3, float("nan"), 5, 6], "w")
    with pytest.raises(ValueError, match=r"^w: polygon has a coordinate that is not a finite number: inf"):
        check_polygon([1, 2, 3, float("inf"), 5, 6], "w")
    with pytest.raises(ValueError, match=r"^w: polygon coordinates must be numbers"):
        check_polygon([1, 2, "x", 4, 5, 6], "w")


def test_clip_polygon_warns_naming_the_annotation():
    with pytest.warns(PolygonClippedWarning, match=r"^f\.json: shapes\[1\]: 2 point\(s\) .* outside the 20x10 picture"):
        clipped = clip_polygon([-1.5, 2, 25, 3, 10, 10.5], 10, 20, "f.json: shapes[1]")
    np.testing.assert_array_equal(clipped, [0, 2, 20, 3, 10, 10])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(clip_polygon([0, 0, 20, 0, 20, 10], 10, 20, "w"), [0, 0, 20, 0, 20, 10])
        # within a pixel of the border: clipped without a word
        np.testing.assert_array_equal(clip_polygon([-0.5, 0, 21, 0, 20, 10.75], 10, 20, "w"), [0, 0, 20, 0, 20, 10])


def test_rectangle_circle_and_box_helpers():
    np.testing.assert_array_equal(rectangle_to_polygon(5, 7, 1, 2), [1, 2, 5, 2, 5, 7, 1, 7])
    points = circle_to_polygon(10, 20, 8).reshape(-1, 2)
    assert len(points) == circle_vertices(8) >= 16
    np.testing.assert_allclose(np.hypot(points[:, 0] - 10, points[:, 1] - 20), 8)
    # the chords stay within the tolerance of the arc
    assert 8 * (1 - math.cos(math.pi / len(points))) <= 0.1
    assert circle_vertices(500) > circle_vertices(50) > 16
    mask = polygons_to_mask([circle_to_polygon(32, 32, 20)], 64, 64)
    assert abs(mask.sum() - math.pi * 20 ** 2) < 0.02 * math.pi * 20 ** 2
    np.testing.assert_array_equal(polygon_box([[1, 5, 3, 2, 2, 9], [7, 4, 6, 6, 5, 5]]), [1, 2, 7, 9])
