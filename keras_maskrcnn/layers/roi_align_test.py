"""Reference tests for `RoiAlign`.

The reference below is written from the documented semantics of RoIAlign with `aligned=True`
(half-pixel offset, bilinear sampling with zero contribution outside [-1, size], a fixed
`sampling_ratio x sampling_ratio` grid per bin) and of the FPN level assignment
`k = floor(canonical_level + log2(sqrt(w * h) / canonical_size))`. It is checked against values
that torchvision produced, then the layer is checked against it.
"""

import math

import keras
import numpy as np
import pytest

from keras_maskrcnn.layers import RoiAlign
from keras_maskrcnn.layers.testing import run_layer_test

STRIDES = (8, 16, 32, 64, 128)


# ----------------------------------------------------------------------------------------------
# numpy reference
# ----------------------------------------------------------------------------------------------
def _bilinear(feature, y, x):
    """Value of `feature` (H, W, C) at the real point (y, x); zero outside [-1, H] x [-1, W]."""
    height, width = feature.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(feature.shape[2], dtype=np.float64)
    y = max(y, 0.0)
    x = max(x, 0.0)
    y0 = int(math.floor(y))
    x0 = int(math.floor(x))
    if y0 >= height - 1:
        y0 = y1 = height - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= width - 1:
        x0 = x1 = width - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * feature[y0, x0] + hy * lx * feature[y0, x1]
            + ly * hx * feature[y1, x0] + ly * lx * feature[y1, x1])


def roi_align_reference(feature, boxes, output_size, spatial_scale, sampling_ratio):
    """RoIAlign (aligned=True) of `boxes` (N, 4: x1, y1, x2, y2) on `feature` (H, W, C).

    Returns (N, output_size, output_size, C) in float64.
    """
    feature = np.asarray(feature, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64)
    out = np.zeros((len(boxes), output_size, output_size, feature.shape[2]), dtype=np.float64)
    for n, (x1, y1, x2, y2) in enumerate(boxes):
        start_x = x1 * spatial_scale - 0.5
        start_y = y1 * spatial_scale - 0.5
        bin_w = (x2 - x1) * spatial_scale / output_size
        bin_h = (y2 - y1) * spatial_scale / output_size
        for i in range(output_size):
            for j in range(output_size):
                acc = np.zeros(feature.shape[2], dtype=np.float64)
                for sy in range(sampling_ratio):
                    y = start_y + bin_h * (i + (sy + 0.5) / sampling_ratio)
                    for sx in range(sampling_ratio):
                        x = start_x + bin_w * (j + (sx + 0.5) / sampling_ratio)
                        acc += _bilinear(feature, y, x)
                out[n, i, j] = acc / (sampling_ratio * sampling_ratio)
    return out


def level_reference(boxes, canonical_size=224.0, canonical_level=1, num_levels=5):
    """FPN level index (0 = P3) of each box: floor(1 + log2(sqrt(w*h) / 224)) clipped to [0, 4]."""
    boxes = np.asarray(boxes, dtype=np.float64)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    size = np.maximum(np.sqrt(w * h), 1e-6)
    level = np.floor(canonical_level + np.log2(size / canonical_size))
    return np.clip(level, 0, num_levels - 1).astype(np.int64)


def multilevel_reference(boxes, features, output_size=14, sampling_ratio=2):
    """(B, N, 4) boxes and a list of (B, H_l, W_l, C) features -> (B, N, S, S, C)."""
    batch, count = boxes.shape[:2]
    channels = features[0].shape[-1]
    out = np.zeros((batch, count, output_size, output_size, channels), dtype=np.float64)
    for b in range(batch):
        levels = level_reference(boxes[b])
        for n in range(count):
            k = levels[n]
            out[b, n] = roi_align_reference(features[k][b], boxes[b, n:n + 1], output_size,
                                            1.0 / STRIDES[k], sampling_ratio)[0]
    return out


# ----------------------------------------------------------------------------------------------
# the reference against torchvision
# ----------------------------------------------------------------------------------------------
def _golden_feature():
    """The (C=2, H=7, W=9) feature map the golden values were computed on."""
    c, y, x = np.meshgrid(np.arange(2), np.arange(7), np.arange(9), indexing="ij")
    return np.sin(0.7 * x + 1.3 * y + 2.0 * c) + 0.1 * x - 0.05 * y * (c + 1)


GOLDEN_BOXES = np.array([
    [2.0, 3.0, 13.0, 9.5],     # inside
    [-5.0, -3.0, 6.0, 4.0],    # crossing the top-left border
    [10.0, 8.0, 30.0, 20.0],   # crossing the bottom-right border
    [7.0, 2.0, 7.0, 11.0],     # zero width
    [4.5, 6.0, 4.5, 6.0],      # a point
    [25.0, 20.0, 40.0, 30.0],  # fully outside
])

# Produced by torchvision 0.29.1 (torch 2.14.1):
#   torchvision.ops.roi_align(feature[None] (1, 2, 7, 9) float64, [zeros, GOLDEN_BOXES],
#                             output_size=S, spatial_scale=scale, sampling_ratio=r, aligned=True)
# rounded to 10 decimals; keyed by (S, scale, r); each array is (N=6, C=2, S, S).
GOLDEN_ROI_ALIGN = [
    ((3, 0.5, 2), np.array(
        [[[[ 0.1654161011, -0.4122776532, -0.0334062446],
           [-0.7146952082, -0.2007174426,  0.851797502 ],
           [-0.3710602326,  0.7094554643,  0.9541753226]],
          [[-0.724017186 ,  0.1771015139,  1.0392699098],
           [-0.0103496635,  0.7902370999,  0.5457112574],
           [ 0.5488730603,  0.1702537573, -0.4873652356]]],
         [[[ 0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.0950393427,  0.9865385631],
           [ 0.          ,  0.7020753377,  0.6587360264]],
          [[ 0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.8449467423,  0.1685894398],
           [ 0.          , -0.1778648794, -0.6098252149]]],
         [[[-0.0522634063, -0.0701459237,  0.          ],
           [-0.0241525489,  0.620187945 ,  0.          ],
           [ 0.          ,  0.          ,  0.          ]],
          [[-0.0750272564,  0.4827048035,  0.          ],
           [ 0.8278312289,  0.2515591784,  0.          ],
           [ 0.          ,  0.          ,  0.          ]]],
         [[[-0.1807386213, -0.1807386213, -0.1807386213],
           [-0.2714584156, -0.2714584156, -0.2714584156],
           [ 0.8310585123,  0.8310585123,  0.8310585123]],
          [[-0.232604524 , -0.232604524 , -0.232604524 ],
           [ 0.7776429058,  0.7776429058,  0.7776429058],
           [-0.2737484141, -0.2737484141, -0.2737484141]]],
         [[[-0.6898308138, -0.6898308138, -0.6898308138],
           [-0.6898308138, -0.6898308138, -0.6898308138],
           [-0.6898308138, -0.6898308138, -0.6898308138]],
          [[ 0.0740421611,  0.0740421611,  0.0740421611],
           [ 0.0740421611,  0.0740421611,  0.0740421611],
           [ 0.0740421611,  0.0740421611,  0.0740421611]]],
         [[[ 0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ]],
          [[ 0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ]]]])),
    ((2, 1.0, 2), np.array(
        [[[[ 0.411060363 ,  0.0866095051],
           [-0.2038994901,  0.3100939725]],
          [[-0.1849600828,  0.2991988416],
           [-0.0357622328,  0.1257795892]]],
         [[[ 0.          ,  0.3928616078],
           [ 0.          ,  0.0206573419]],
          [[ 0.          , -0.0596380154],
           [ 0.          ,  0.0663851969]]],
         [[[ 0.          ,  0.          ],
           [ 0.          ,  0.          ]],
          [[ 0.          ,  0.          ],
           [ 0.          ,  0.          ]]],
         [[[ 0.4105729683,  0.4105729683],
           [ 0.          ,  0.          ]],
          [[ 0.2201732297,  0.2201732297],
           [ 0.          ,  0.          ]]],
         [[[-0.2741604991, -0.2741604991],
           [-0.2741604991, -0.2741604991]],
          [[-0.6101981013, -0.6101981013],
           [-0.6101981013, -0.6101981013]]],
         [[[ 0.          ,  0.          ],
           [ 0.          ,  0.          ]],
          [[ 0.          ,  0.          ],
           [ 0.          ,  0.          ]]]])),
    ((4, 0.75, 1), np.array(
        [[[[-0.6974248378, -0.0060435586,  1.1855666624,  1.257679329 ],
           [-0.1297597503,  0.9750799935,  0.7761357779,  0.022285613 ],
           [ 0.8194274214,  0.4135140241, -0.3974846725,  0.002590755 ],
           [ 0.1047516076, -0.8163295305, -0.1162908931,  1.24037589  ]],
          [[ 0.1090714349,  0.9702003679,  0.4437113347, -0.198910347 ],
           [ 0.6194757857, -0.0308639757, -0.5184066759,  0.2066977314],
           [-0.5074442659, -0.9177220955,  0.14587157  ,  1.1636626024],
           [-1.3647702099, -0.0973819482,  0.9835978987,  0.5031183567]]],
         [[[ 0.          ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.6744472791,  1.163904378 ],
           [ 0.          ,  0.          ,  0.8234958914,  0.5523138659],
           [ 0.          ,  0.          ,  0.0614670237, -0.6691810599]],
          [[ 0.          ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.5631846502, -0.5038166108],
           [ 0.          ,  0.          , -0.1132031528, -0.5458765171],
           [ 0.          ,  0.          , -0.9182196541,  0.3141963411]]],
         [[[ 1.24037589  ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ,  0.          ]],
          [[ 0.5031183567,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ,  0.          ]]],
         [[[-0.0441692086, -0.0441692086, -0.0441692086, -0.0441692086],
           [ 1.0573838597,  1.0573838597,  1.0573838597,  1.0573838597],
           [-0.2873754291, -0.2873754291, -0.2873754291, -0.2873754291],
           [-0.7712082928, -0.7712082928, -0.7712082928, -0.7712082928]],
          [[ 1.1447428204,  1.1447428204,  1.1447428204,  1.1447428204],
           [-0.2451352509, -0.2451352509, -0.2451352509, -0.2451352509],
           [-0.4359150294, -0.4359150294, -0.4359150294, -0.4359150294],
           [ 0.3855830835,  0.3855830835,  0.3855830835,  0.3855830835]]],
         [[[ 0.8705747135,  0.8705747135,  0.8705747135,  0.8705747135],
           [ 0.8705747135,  0.8705747135,  0.8705747135,  0.8705747135],
           [ 0.8705747135,  0.8705747135,  0.8705747135,  0.8705747135],
           [ 0.8705747135,  0.8705747135,  0.8705747135,  0.8705747135]],
          [[ 0.0881972578,  0.0881972578,  0.0881972578,  0.0881972578],
           [ 0.0881972578,  0.0881972578,  0.0881972578,  0.0881972578],
           [ 0.0881972578,  0.0881972578,  0.0881972578,  0.0881972578],
           [ 0.0881972578,  0.0881972578,  0.0881972578,  0.0881972578]]],
         [[[ 0.          ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ,  0.          ]],
          [[ 0.          ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ,  0.          ],
           [ 0.          ,  0.          ,  0.          ,  0.          ]]]])),
    ((2, 0.5, 3), np.array(
        [[[[-0.1981463331, -0.0051763851],
           [-0.2813761842,  0.9063378397]],
          [[-0.3485826503,  0.844304609 ],
           [ 0.4823872287, -0.0671249593]]],
         [[[ 0.          ,  0.2376600103],
           [ 0.1576483488,  0.6901979831]],
          [[ 0.1010330474,  0.1343804733],
           [ 0.0653146451, -0.2003521268]]],
         [[[ 0.0780481636,  0.          ],
           [ 0.1324523102,  0.          ]],
          [[ 0.4210545559,  0.          ],
           [ 0.239864535 ,  0.          ]]],
         [[[-0.3033200302, -0.3033200302],
           [ 0.5558943471,  0.5558943471]],
          [[ 0.073777165 ,  0.073777165 ],
           [ 0.1070828135,  0.1070828135]]],
         [[[-0.6898308138, -0.6898308138],
           [-0.6898308138, -0.6898308138]],
          [[ 0.0740421611,  0.0740421611],
           [ 0.0740421611,  0.0740421611]]],
         [[[ 0.          ,  0.          ],
           [ 0.          ,  0.          ]],
          [[ 0.          ,  0.          ],
           [ 0.          ,  0.          ]]]])),
]


@pytest.mark.parametrize("case", range(len(GOLDEN_ROI_ALIGN)))
def test_reference_matches_torchvision_golden_values(case):
    (size, scale, ratio), expected = GOLDEN_ROI_ALIGN[case]
    feature = _golden_feature().transpose(1, 2, 0)  # channels-last
    got = roi_align_reference(feature, GOLDEN_BOXES, size, scale, ratio).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_reference_matches_torchvision_live():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    rng = np.random.default_rng(7)
    feature = rng.standard_normal((3, 11, 13))
    centers = rng.uniform(-10, 60, size=(40, 2))
    sizes = np.exp(rng.uniform(np.log(0.2), np.log(80), size=(40, 2)))
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)
    boxes[:5, 2] = boxes[:5, 0]  # degenerate widths
    boxes[3:8, 3] = boxes[3:8, 1]  # degenerate heights
    rois = torch.cat([torch.zeros(len(boxes), 1, dtype=torch.float64), torch.from_numpy(boxes)], 1)
    for size, scale, ratio in [(14, 0.25, 2), (3, 0.5, 1), (5, 0.125, 3)]:
        expected = torchvision.ops.roi_align(torch.from_numpy(feature)[None], rois, output_size=size,
                                              spatial_scale=scale, sampling_ratio=ratio, aligned=True)
        got = roi_align_reference(feature.transpose(1, 2, 0), boxes, size, scale, ratio)
        np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected.numpy(), rtol=0, atol=1e-9)


def test_level_reference():
    boxes = np.array([
        [0, 0, 0, 0], [0, 0, 2, 2], [0, 0, 223, 224], [0, 0, 224, 224], [0, 0, 447, 448],
        [0, 0, 448, 448], [0, 0, 896, 896], [0, 0, 1791, 1792], [0, 0, 1792, 1792],
        [0, 0, 5000, 5000], [0, 0, 0, 500],
    ], dtype=np.float64)
    np.testing.assert_array_equal(level_reference(boxes), [0, 0, 0, 1, 1, 2, 3, 3, 4, 4, 0])


# ----------------------------------------------------------------------------------------------
# the layer against the reference
# ----------------------------------------------------------------------------------------------
IMAGE_SHAPE = (256, 320)


def _features(rng, batch=2, channels=8):
    shapes = [(-(-IMAGE_SHAPE[0] // s), -(-IMAGE_SHAPE[1] // s)) for s in STRIDES]
    assert shapes == [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    return [rng.uniform(-1, 1, size=(batch, h, w, channels)).astype(np.float32) for h, w in shapes]


def _near_level_boundary(box):
    """True when float32 rounding could move the box across a level boundary."""
    w, h = box[2] - box[0], box[3] - box[1]
    if w * h <= 0:
        return False
    t = 1.0 + math.log2(math.sqrt(w * h) / 224.0)
    return abs(t - round(t)) < 1e-3


def _boxes(rng, batch=2, count=64):
    """Random boxes of every size (sqrt area 0.3..2600 px, so every level is used), crossing
    the borders, fully outside, tiny and degenerate."""
    height, width = IMAGE_SHAPE
    explicit = np.array([
        [10.0, 20.0, 10.0, 60.0],        # zero width
        [30.0, 40.0, 90.0, 40.0],        # zero height
        [100.3, 50.7, 100.3, 50.7],      # a point
        [319.6, 255.2, 319.6, 255.2],    # a point in the last pixel
        [200.2, 100.1, 200.5, 100.35],   # tiny
        [-60.0, -50.0, -10.0, -5.0],     # fully outside, top-left
        [400.0, 300.0, 480.0, 390.0],    # fully outside, bottom-right
        [-40.0, 100.0, 60.0, 200.0],     # crossing the left border
        [250.0, 200.0, 380.0, 300.0],    # crossing the bottom-right corner
        [0.0, 0.0, 320.0, 256.0],        # the whole image
        [-500.0, -600.0, 900.0, 800.0],  # huge, P7
        [-700.0, -900.0, 600.0, 700.0],  # P6
        [5000.0, 5000.0, 5100.0, 5100.0],  # far away
    ])
    out = np.zeros((batch, count, 4), dtype=np.float32)
    for b in range(batch):
        rows = list(explicit)
        while len(rows) < count:
            size = math.exp(rng.uniform(math.log(0.3), math.log(2600.0)))
            aspect = math.exp(rng.uniform(math.log(0.4), math.log(2.5)))
            w, h = size * math.sqrt(aspect), size / math.sqrt(aspect)
            cx = rng.uniform(-0.3 * width, 1.3 * width)
            cy = rng.uniform(-0.3 * height, 1.3 * height)
            box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float32)
            if not _near_level_boundary(box.astype(np.float64)):
                rows.append(box)
        out[b] = np.array(rows[:count], dtype=np.float32)[rng.permutation(count)]
    return out


def _max_error(got, expected):
    err = np.abs(np.asarray(got, dtype=np.float64) - expected)
    index = np.unravel_index(np.argmax(err), err.shape)
    return err.max(), index


@pytest.mark.parametrize("seed", [0, 1])
def test_layer_matches_reference(seed):
    rng = np.random.default_rng(seed)
    features = _features(rng)
    boxes = _boxes(rng)
    levels = np.stack([level_reference(b) for b in boxes])
    assert set(levels.ravel().tolist()) == {0, 1, 2, 3, 4}, "the boxes must use every level"

    layer = RoiAlign(crop_size=(14, 14), sampling_ratio=2, strides=STRIDES, canonical_size=224.0,
                     canonical_level=1)
    got = keras.ops.convert_to_numpy(layer([boxes] + features))
    assert got.shape == (2, 64, 14, 14, 8)
    assert got.dtype == np.float32

    expected = multilevel_reference(boxes, features)
    err, (b, n, i, j, c) = _max_error(got, expected)
    assert err <= 1e-4, (
        f"max abs error {err:.3g} at image {b} box {n} {boxes[b, n].tolist()} (level {levels[b, n]}) "
        f"bin ({i}, {j}) channel {c}: expected {expected[b, n, i, j, c]!r}, got {got[b, n, i, j, c]!r}")


def test_layer_in_a_functional_model_with_dynamic_shapes():
    rng = np.random.default_rng(3)
    features = _features(rng, channels=4)
    boxes = _boxes(rng, count=20)
    inputs = [keras.Input(shape=(None, 4))] + [keras.Input(shape=(None, None, 4)) for _ in STRIDES]
    model = keras.Model(inputs, RoiAlign()(inputs))
    got = model.predict([boxes] + features, verbose=0)
    assert got.shape == (2, 20, 14, 14, 4)
    err, _ = _max_error(got, multilevel_reference(boxes, features))
    assert err <= 1e-4


@pytest.mark.parametrize("sampling", ["aligned", "crop_and_resize"])
def test_layer_contract(sampling):
    """Config round trip, shapes and dtypes in float32 and bfloat16 (the features' compute dtype),
    symbolic and eager calls agreeing."""
    rng = np.random.default_rng(3)
    inputs = [_boxes(rng, count=6)] + _features(rng, channels=3)
    if sampling == "crop_and_resize":
        inputs = [np.zeros((2,) + IMAGE_SHAPE + (3,), np.float32)] + inputs
    run_layer_test(RoiAlign, dict(crop_size=(14, 14), sampling_ratio=2, strides=STRIDES, canonical_size=224.0,
                                  canonical_level=1, sampling=sampling), inputs,
                   expected_output_shape=(2, 6, 14, 14, 3), expected_output_dtype="float32", atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# crop_and_resize sampling (keras-maskrcnn 0.2) against tf.image.crop_and_resize itself
# ----------------------------------------------------------------------------------------------
def crop_and_resize_reference(image_shape, boxes, features, crop_size=14):
    """keras-maskrcnn 0.2's RoiAlign computed with the op it called: each box (x1y1x2y2 pixels) goes
    to level floor(1 + log2(sqrt(wh) / 224 + 1e-7)) in [0, 4], is normalised to
    (y1 / H * h / (h - 1), x1 / W * w / (w - 1), (y2 / H * h - 1) / (h - 1), (x2 / W * w - 1) / (w - 1))
    with h, w the level's size and H, W the input's, and cropped by tf.image.crop_and_resize."""
    tf = pytest.importorskip("tensorflow")
    height, width = image_shape
    batch, count = boxes.shape[:2]
    out = np.zeros((batch, count, crop_size, crop_size, features[0].shape[-1]), dtype=np.float32)
    for b in range(batch):
        for n, (x1, y1, x2, y2) in enumerate(boxes[b].astype(np.float32)):
            size = np.sqrt(np.float32(max((x2 - x1) * (y2 - y1), 0.0)))
            level = int(np.clip(np.floor(1 + np.log2(size / np.float32(224) + np.float32(1e-7))), 0, 4))
            h, w = features[level].shape[1:3]
            normalised = [y1 / height * h / (h - 1), x1 / width * w / (w - 1),
                          (y2 / height * h - 1) / (h - 1), (x2 / width * w - 1) / (w - 1)]
            out[b, n] = tf.image.crop_and_resize(features[level][b:b + 1], [normalised], [0],
                                                 (crop_size, crop_size)).numpy()[0]
    return out


@pytest.mark.parametrize("image_shape", [(256, 320), (250, 301)])
def test_crop_and_resize_sampling_matches_tf_crop_and_resize(image_shape):
    rng = np.random.default_rng(5)
    shapes = [(-(-image_shape[0] // s), -(-image_shape[1] // s)) for s in STRIDES]
    features = [rng.uniform(-1, 1, size=(2, h, w, 6)).astype(np.float32) for h, w in shapes]
    boxes = _boxes(rng, count=48)
    image = np.zeros((2,) + image_shape + (3,), dtype=np.float32)
    layer = RoiAlign(sampling="crop_and_resize")
    got = keras.ops.convert_to_numpy(layer([image, boxes] + features))
    assert got.shape == (2, 48, 14, 14, 6)
    expected = crop_and_resize_reference(image_shape, boxes, features)
    assert 0.25 < np.mean(expected != 0) < 0.9, "many samples inside, many extrapolated to zero"
    err, (b, n, i, j, c) = _max_error(got, expected)
    assert err <= 1e-4, (f"max abs error {err:.3g} at image {b} box {n} {boxes[b, n].tolist()} bin ({i}, {j}): "
                         f"expected {expected[b, n, i, j, c]!r}, got {got[b, n, i, j, c]!r}")


def test_sampling_is_checked_and_round_trips():
    with pytest.raises(ValueError, match="sampling must be one of"):
        RoiAlign(sampling="nearest")
    layer = RoiAlign(sampling="crop_and_resize")
    assert layer.takes_image
    assert RoiAlign.from_config(layer.get_config()).sampling == "crop_and_resize"


# ----------------------------------------------------------------------------------------------
# the export-time form (low_rank): the same values with every tensor at most 5-D
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampling", ["aligned", "crop_and_resize"])
def test_low_rank_form_gives_the_same_values_with_tensors_of_at_most_five_dimensions(sampling):
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the ranks are read from a TensorFlow graph")
    rng = np.random.default_rng(7)
    features = _features(rng, channels=4)
    boxes = _boxes(rng, count=24)
    image = np.zeros((2, 256, 320, 3), np.float32)
    inputs = ([image] if sampling == "crop_and_resize" else []) + [boxes] + features
    default = RoiAlign(sampling=sampling)
    low_rank = RoiAlign.from_config(dict(default.get_config(), low_rank=True))
    assert low_rank.low_rank and RoiAlign.from_config(low_rank.get_config()).low_rank
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(low_rank(inputs)),
                                  keras.ops.convert_to_numpy(default(inputs)))

    def largest_rank(layer):
        graph = tf.function(lambda *x: layer(list(x))).get_concrete_function(
            *[tf.TensorSpec((None,) * (np.ndim(x) - 1) + (np.shape(x)[-1],), tf.float32) for x in inputs]).graph
        return max(len(t.shape) for op in graph.get_operations() for t in op.outputs if t.shape.rank is not None)

    assert largest_rank(default) == 7
    assert largest_rank(low_rank) == 5
