import numpy as np
import pytest
from PIL import Image

from keras_maskrcnn.utils.image import (
    TransformParameters,
    VisualEffect,
    apply_transform,
    apply_transform_to_mask,
    compute_resize_scale,
    preprocess_image,
    random_visual_effect_generator,
    read_image_bgr,
    read_mask,
    resize_image,
    resize_mask,
)


def test_read_image_modes(tmp_path):
    rgb = np.zeros((6, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    rgb[..., 2] = 10   # blue
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image_bgr(str(tmp_path / "rgb.png"))[0, 0], [10, 0, 200])

    Image.fromarray(np.full((6, 8), 77, np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full((6, 8), 128, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.png")
    Image.fromarray(np.full((6, 8), 65535, np.uint16)).save(tmp_path / "sixteen.png")
    Image.fromarray(np.full((6, 8), 255, np.uint8)).convert("1").save(tmp_path / "binary.bmp")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).save(tmp_path / "rgb.tiff")
    expected = {"grey.png": [77, 77, 77], "rgba.png": [10, 0, 200], "palette.png": [10, 0, 200],
                "sixteen.png": [255, 255, 255], "binary.bmp": [255, 255, 255], "rgb.tiff": [10, 0, 200]}
    for name, pixel in expected.items():
        image = read_image_bgr(str(tmp_path / name))
        assert image.shape == (6, 8, 3) and image.dtype == np.uint8, name
        np.testing.assert_array_equal(image[3, 4], pixel, err_msg=name)
    cmyk = read_image_bgr(str(tmp_path / "cmyk.jpg"))
    assert cmyk.shape == (6, 8, 3) and abs(int(cmyk[3, 4, 2]) - 200) < 20


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"image file '.*missing.png' does not exist"):
        read_image_bgr(str(tmp_path / "missing.png"))
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"image file '.*bad.jpg' could not be read"):
        read_image_bgr(str(tmp_path / "bad.jpg"))
    with pytest.raises(ValueError, match=r"mask file '.*bad.jpg' could not be read"):
        read_mask(str(tmp_path / "bad.jpg"))


def test_read_mask_any_nonzero(tmp_path):
    mask = np.zeros((5, 5, 3), np.uint8)
    mask[1, 1, 2] = 3
    mask[2, 2] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    result = read_mask(str(tmp_path / "m.png"))
    assert result.dtype == np.uint8 and result.sum() == 2 and result[1, 1] == 1


def test_preprocess_caffe():
    image = np.full((2, 3, 3), 200, np.uint8)
    result = preprocess_image(image)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result[0, 0], [200 - 103.939, 200 - 116.779, 200 - 123.68], rtol=1e-6)


def test_resize_rule():
    assert compute_resize_scale((480, 640)) == pytest.approx(800 / 480)
    assert compute_resize_scale((400, 1200)) == pytest.approx(1333 / 1200)
    image, scale = resize_image(np.zeros((480, 640, 3), np.uint8))
    assert image.shape == (800, 1067, 3) and scale == pytest.approx(800 / 480)
    image, scale = resize_image(np.zeros((100, 50, 3), np.uint8), min_side=20, max_side=30)
    assert image.shape == (30, 15, 3) and scale == pytest.approx(0.3)
    mask = np.zeros((10, 10), np.uint8)
    mask[2:8, 2:8] = 1
    resized = resize_mask(mask, (20, 20))
    assert resized.dtype == np.uint8 and set(np.unique(resized)) == {0, 1}
    assert abs(int(resized.sum()) - 144) <= 12


def test_flips_are_exact_and_rotations_warp():
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    flip_x = np.array([[-1, 0, 5], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    np.testing.assert_array_equal(apply_transform(flip_x, image), image[:, ::-1])
    mask = np.zeros((4, 5), np.uint8)
    mask[1:3, 0:2] = 1
    np.testing.assert_array_equal(apply_transform_to_mask(flip_x, mask), mask[:, ::-1])
    # quarter turn about the centre of a square image
    square = np.zeros((6, 6), np.uint8)
    square[0:2, 0:3] = 1
    turn = np.array([[0, -1, 6], [1, 0, 0], [0, 0, 1]], dtype=np.float64)
    np.testing.assert_array_equal(apply_transform_to_mask(turn, square), np.rot90(square, -1))
    assert apply_transform(turn, np.dstack([square] * 3)).shape == (6, 6, 3)


def test_transform_parameters_validate():
    with pytest.raises(ValueError, match="fill_mode"):
        TransformParameters(fill_mode="mirror")
    with pytest.raises(ValueError, match="interpolation"):
        TransformParameters(interpolation="bicubic")


def test_visual_effects():
    rng = np.random.default_rng(0)
    image = rng.integers(50, 200, size=(16, 16, 3), dtype=np.uint8)
    assert np.array_equal(VisualEffect()(image), image)
    brighter = VisualEffect(brightness_delta=0.1)(image)
    assert brighter.dtype == np.uint8 and np.allclose(brighter.astype(int) - image, 26, atol=1)
    flat = VisualEffect(contrast_factor=0.0)(image)
    assert np.ptp(flat) <= 1
    grey = VisualEffect(saturation_factor=0.0)(image)
    assert np.abs(grey.astype(int) - grey[..., :1]).max() <= 2
    hue = VisualEffect(hue_delta=0.5)(np.full((2, 2, 3), (0, 0, 255), np.uint8))
    assert hue[0, 0, 0] > 200 and hue[0, 0, 2] < 50  # red -> cyan
    effects = random_visual_effect_generator(seed=1)
    assert isinstance(next(effects), VisualEffect)
    with pytest.raises(ValueError):
        random_visual_effect_generator(contrast_range=(1.2, 1.1))


def test_orient_applies_exif_orientation_6_to_pixels_and_size(tmp_path):
    """Orientation 6 (a phone held upright): stored 40 wide x 20 high, shown 20 wide x 40 high, the
    stored top-left corner at the shown top-right."""
    from PIL import Image

    from keras_maskrcnn.utils.image import image_size, read_image_bgr

    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:5, :10] = 255
    picture = Image.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = 6
    path = str(tmp_path / "phone.png")
    picture.save(path, exif=exif)
    assert image_size(path) == (40, 20)
    assert image_size(path, orient=True) == (20, 40)
    assert read_image_bgr(path).shape == (20, 40, 3)
    shown = read_image_bgr(path, orient=True)
    assert shown.shape == (40, 20, 3)
    assert shown[:10, -5:].min() == 255 and shown[:10, :-5].max() == 0 and shown[10:].max() == 0
