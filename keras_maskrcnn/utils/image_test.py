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


# --- pixel limit: refused from the header, before decoding ---------------------------------------

import struct  # noqa: E402
import zlib  # noqa: E402

from keras_maskrcnn.utils import image as image_module  # noqa: E402
from keras_maskrcnn.utils.image import UnreadableImageError, image_size, set_max_image_pixels  # noqa: E402


def _png_header_only(path, width, height):
    """A PNG whose header says width x height (1-bit grey) with one short IDAT: opening it reads the
    header only; decoding it would fail (and would take width * height / 8 bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = zlib.compress(b"\0" * 64)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


@pytest.fixture
def restore_limits(monkeypatch):
    monkeypatch.setattr(image_module, "MAX_IMAGE_PIXELS", image_module.MAX_IMAGE_PIXELS)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


@pytest.mark.parametrize("width, height", [(20000, 20000), (10000, 10000)])
def test_pictures_over_the_limit_are_unreadable_before_decoding(tmp_path, restore_limits, width, height):
    """20000 x 20000 is over Pillow's own error limit (2 x 89.5 M), 10000 x 10000 between its
    warning and error limits: both are UnreadableImageError naming the file, both sizes, no decode."""
    path = str(tmp_path / "bomb.png")
    _png_header_only(path, width, height)
    expected = (rf"^image file '.*bomb\.png' is {width} x {height} = {width * height:,} pixels, "
                r"over the limit of 89,478,485 pixels \(--max-image-pixels\); not decoded$")
    for reader in (image_size, read_image_bgr):
        with pytest.raises(UnreadableImageError, match=expected):
            reader(path)
    with pytest.raises(UnreadableImageError, match=r"^mask file '.*bomb\.png' is .* pixels, over the limit"):
        read_mask(path)


def test_max_image_pixels_setter(tmp_path, restore_limits):
    path = str(tmp_path / "small.png")
    Image.fromarray(np.zeros((64, 96), np.uint8)).save(path)
    assert set_max_image_pixels(64 * 96 - 1) == 89_478_485
    with pytest.raises(UnreadableImageError, match=r"is 96 x 64 = 6,144 pixels, over the limit of 6,143 pixels"):
        read_image_bgr(path)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # a lower limit leaves Pillow's alone
    set_max_image_pixels(64 * 96)
    assert read_image_bgr(path).shape == (64, 96, 3)
    # a higher limit than Pillow's lets the header through, the (truncated) pixels then fail to decode
    big = str(tmp_path / "big.png")
    _png_header_only(big, 20000, 20000)
    set_max_image_pixels(20000 * 20000)
    assert image_size(big) == (20000, 20000)
    assert Image.MAX_IMAGE_PIXELS == 20000 * 20000
    set_max_image_pixels(None)
    assert image_module.MAX_IMAGE_PIXELS is None and Image.MAX_IMAGE_PIXELS is None
    assert image_size(big) == (20000, 20000)
    for bad in (-1, 1.5, "10", True):
        with pytest.raises((ValueError, TypeError)):
            set_max_image_pixels(bad)


def test_unreadable_pictures_never_raise_other_errors(tmp_path):
    png = tmp_path / "x.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(png)
    data = png.read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "random.jpg").write_bytes(np.random.default_rng(0).bytes(300))
    (tmp_path / "folder.png").mkdir()
    for name in ("truncated.png", "empty.png", "random.jpg", "folder.png"):
        with pytest.raises(UnreadableImageError, match=rf"image file '.*{name}'"):
            read_image_bgr(str(tmp_path / name))


# --- every mode: the same BGR uint8 for the same visible picture ------------------------------------

def _tiff(path, array, byteorder):
    """A one-strip, one-sample baseline TIFF of a 2-D array in the given byte order ('<' or '>'),
    for the big-endian 32-bit int and float files Pillow cannot write."""
    kind = array.dtype.kind
    data = array.astype(array.dtype.newbyteorder(byteorder)).tobytes()
    height, width = array.shape
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8 * array.dtype.itemsize), (259, 3, 1),
               (262, 3, 1), (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(data)),
               (339, 3, {"u": 1, "i": 2, "f": 3}[kind])]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    out = (b"MM" if byteorder == ">" else b"II") + struct.pack(byteorder + "HI", 42, 8)
    out += struct.pack(byteorder + "H", len(entries))
    for tag, field, value in entries:
        value = data_offset if tag == 273 else value
        packed = struct.pack(byteorder + ("HH" if field == 3 else "I"), *((value, 0) if field == 3 else (value,)))
        out += struct.pack(byteorder + "HHI", tag, field, 1) + packed
    out += struct.pack(byteorder + "I", 0) + data
    with open(path, "wb") as handle:
        handle.write(out)


def _grey_picture():
    """(64, 96) uint8: every grey level 0..255 appears, in a ramp plus a pattern."""
    ramp = (np.arange(64 * 96) % 256).astype(np.uint8).reshape(64, 96)
    return ramp


def _colour_picture():
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)


def _grey_files(tmp_path):
    """{name: path} of one grey picture stored in every grey mode and byte order Pillow reads."""
    grey = _grey_picture()
    sixteen = grey.astype(np.uint16) * 257  # the 16-bit value whose high byte is grey
    alpha = np.random.default_rng(1).integers(0, 256, grey.shape, dtype=np.uint8)
    files = {}

    def save(name, image, **kwargs):
        path = str(tmp_path / name)
        image.save(path, **kwargs)
        files[name] = path

    save("L.png", Image.fromarray(grey))
    save("LA.png", Image.fromarray(np.dstack([grey, alpha]), "LA"))
    save("LA.tif", Image.fromarray(np.dstack([grey, alpha]), "LA"))
    save("P.png", Image.fromarray(grey).convert("P"))  # the web palette: not every grey, see the reference
    save("I16.png", Image.fromarray(sixteen))  # stored big-endian, opened as I;16
    save("I16L.tif", Image.fromarray(sixteen).convert("I;16"))
    big = Image.new("I;16B", (96, 64))
    big.frombytes(sixteen.astype(">u2").tobytes())
    save("I16B.tif", big)
    assert Image.open(files["I16B.tif"]).mode == "I;16B"
    for order, tag in (("<", "le"), (">", "be")):
        for array, kind in ((sixteen.astype(np.int32), "I32"), ((grey / 255.0).astype(np.float32), "F32")):
            path = str(tmp_path / f"{kind}{tag}.tif")
            _tiff(path, array, order)
            files[f"{kind}{tag}.tif"] = path
    assert Image.open(files["I32be.tif"]).mode == "I" and Image.open(files["F32be.tif"]).mode == "F"
    save("I.tif", Image.fromarray(sixteen.astype(np.int32), "I"))
    save("F.tif", Image.fromarray((grey / 255.0).astype(np.float32), "F"))
    return files


def _reference(path):
    """The reference conversion: Pillow's convert("RGB") for 8-bit modes, the high byte for 16-bit
    samples, value >> 8 for "I" holding 16-bit values, round(255 x value) for float ("F") samples."""
    with Image.open(path) as image:
        image.load()
        mode = image.mode
        if mode.startswith("I;16"):
            values = np.frombuffer(image.tobytes(), dtype=">u2" if mode == "I;16B" else "<u2")
            grey = (values.reshape(image.size[1], image.size[0]) >> 8).astype(np.uint8)
        elif mode == "I":
            grey = (np.asarray(image) >> 8).astype(np.uint8)
        elif mode == "F":
            grey = np.round(np.asarray(image, dtype=np.float64) * 255).astype(np.uint8)
        else:
            return np.asarray(image.convert("RGB"))[:, :, ::-1]
    return np.repeat(grey[:, :, None], 3, axis=2)


def test_every_grey_mode_reads_as_the_same_picture(tmp_path):
    grey = _grey_picture()
    expected = np.repeat(grey[:, :, None], 3, axis=2)
    for name, path in _grey_files(tmp_path).items():
        image = read_image_bgr(path)
        assert image.dtype == np.uint8 and image.shape == (64, 96, 3), name
        np.testing.assert_array_equal(image, _reference(path), err_msg=name)
        if name != "P.png":  # a palette holds 216 + a few levels, so not every grey
            np.testing.assert_array_equal(image, expected, err_msg=name)
    # the case: a big-endian 16-bit grey of mean 127.5 was read as 254.5 (bytes swapped)
    assert read_image_bgr(str(tmp_path / "I16B.tif")).mean() == pytest.approx(grey.mean())


def test_every_colour_mode_reads_as_pillow_converts_it(tmp_path):
    colour = _colour_picture()
    rgb = Image.fromarray(colour)
    alpha = Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 96), dtype=np.uint8))
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    pictures = {
        "1.png": rgb.convert("1"), "1.tif": rgb.convert("1"),
        "P.png": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64),
        "P.gif": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64),
        "PA.tif": rgba.convert("PA"),
        "RGB.png": rgb, "RGB.tif": rgb, "RGB.bmp": rgb, "RGBA.png": rgba, "RGBA.tif": rgba,
        "CMYK.tif": rgb.convert("CMYK"), "CMYK.jpg": rgb.convert("CMYK"),
        "YCbCr.tif": rgb.convert("YCbCr"), "LAB.tif": rgb.convert("LAB"),
    }
    transparent = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    transparent.info["transparency"] = 0
    pictures["Ptransparent.png"] = transparent
    for name, picture in pictures.items():
        path = str(tmp_path / name)
        picture.save(path)
        image = read_image_bgr(path)
        assert image.dtype == np.uint8 and image.shape == (64, 96, 3), name
        np.testing.assert_array_equal(image, _reference(path), err_msg=name)
    # lossless colour modes give back the very pixels
    for name in ("RGB.png", "RGB.tif", "RGB.bmp", "RGBA.png", "RGBA.tif", "CMYK.tif"):
        np.testing.assert_array_equal(read_image_bgr(str(tmp_path / name)), colour[:, :, ::-1], err_msg=name)


def test_masks_in_sixteen_bit_both_byte_orders(tmp_path):
    mask = np.zeros((64, 96), np.uint16)
    mask[10:20, 30:50] = 1  # a 16-bit label 1: nonzero in the low byte only
    big = Image.new("I;16B", (96, 64))
    big.frombytes(mask.astype(">u2").tobytes())
    big.save(tmp_path / "m16b.tif")
    Image.fromarray(mask).save(tmp_path / "m16.png")
    for name in ("m16b.tif", "m16.png"):
        np.testing.assert_array_equal(read_mask(str(tmp_path / name)), (mask != 0).astype(np.uint8), err_msg=name)


def test_to_bgr_uint8_byte_orders_and_nan():
    values = np.array([[0, 255, 256, 65535]], dtype=np.uint16)
    for array in (values, values.astype(">u2"), values.astype("<u2")):
        np.testing.assert_array_equal(image_module.to_bgr_uint8(array)[0, :, 0], [0, 0, 1, 255])
    floats = np.array([[np.nan, -1.0, 0.5, 2.0]], dtype=">f4")
    np.testing.assert_array_equal(image_module.to_bgr_uint8(floats)[0, :, 0], [0, 0, 128, 255])


def test_max_image_pixels_option_sets_the_limit(restore_limits):
    """Every tool that reads pictures takes --max-image-pixels (with --image-min-side, common.add_image_size)."""
    import argparse

    from keras_maskrcnn.bin import common

    parser = argparse.ArgumentParser()
    common.add_image_size(common.FlagAdder(parser, []))
    assert parser.parse_args([]).max_image_pixels is None and image_module.MAX_IMAGE_PIXELS == 89_478_485
    assert parser.parse_args(["--max-image-pixels", "1000"]).max_image_pixels == 1000
    assert image_module.MAX_IMAGE_PIXELS == 1000
    parser.parse_args(["--max-image-pixels", "0"])
    assert image_module.MAX_IMAGE_PIXELS is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--max-image-pixels", "-5"])
