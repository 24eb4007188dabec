"""Image reading, caffe preprocessing, resizing, affine warping and colour effects.

Images are BGR uint8 (H, W, 3) as OpenCV holds them; masks are (H, W) uint8 of 0/1.
"""

import os
import struct
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps

CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


class UnreadableImageError(ValueError):
    """An image or mask file is missing, cannot be decoded or is over the pixel limit; the message names the file."""


DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
"""Pillow's default limit (``PIL.Image.MAX_IMAGE_PIXELS``, 1024 * 1024 * 1024 // 4 // 3): about 9459 x 9459."""

MAX_IMAGE_PIXELS = DEFAULT_MAX_IMAGE_PIXELS
"""Pictures and masks with more pixels (width x height, from the file's header) are refused as
UnreadableImageError before any pixel is decoded; None: no limit. Set by set_max_image_pixels
(the commands' ``--max-image-pixels``)."""


def set_max_image_pixels(limit):
    """Sets MAX_IMAGE_PIXELS for every reader of this module; returns the previous limit (int or None).

    Args:
        limit: a positive int (pixels), or None (or 0) for no limit. A limit above Pillow's own
            (``PIL.Image.MAX_IMAGE_PIXELS``) raises Pillow's too, so that Pillow does not refuse
            what this limit allows; a lower one leaves Pillow's as it is.

    Returns:
        The previous limit.
    """
    global MAX_IMAGE_PIXELS
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 0):
        raise ValueError(f"the image pixel limit must be a positive integer or None, not {limit!r}")
    limit = int(limit) if limit else None
    previous, MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS, limit
    pillow = Image.MAX_IMAGE_PIXELS
    if pillow is not None and (limit is None or limit > pillow):
        Image.MAX_IMAGE_PIXELS = limit
    return previous


def _header_size(path):
    """(width, height) from a picture's header even when Pillow's own bomb check refuses it; None if unknown."""
    try:
        Image.init()
        with open(path, "rb") as handle:
            prefix = handle.read(16)
            for format_id in Image.ID:
                factory, accept = Image.OPEN[format_id]
                if accept is not None and not accept(prefix):
                    continue
                handle.seek(0)
                try:
                    image = factory(handle, path)
                except Exception:  # noqa: BLE001 - a plugin that does not read this file
                    continue
                return tuple(int(side) for side in image.size)
    except Exception:  # noqa: BLE001 - only used to word a message
        return None
    return None


def _too_big(path, kind, size, limit):
    if size is not None:
        width, height = size
        what = f"{width} x {height} = {width * height:,} pixels"
    else:
        what = "more pixels than Pillow allows"
    allowed = f"{limit:,} pixels" if limit else "Pillow's limit"
    return UnreadableImageError(f"{kind} file {path!r} is {what}, over the limit of {allowed} "
                                "(--max-image-pixels); not decoded")


_UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError,
               Image.DecompressionBombWarning)


class _open_picture:
    """Context manager: an open PIL image whose header size is within MAX_IMAGE_PIXELS.

    Every failure while open, inside the ``with`` block included (decoding, Pillow's own bomb
    checks), becomes UnreadableImageError naming the file ("image file ..." or "mask file ...").
    """

    def __init__(self, path, kind="image"):
        self.path, self.kind = path, kind
        self.image = None
        self._warnings = None

    def __enter__(self):
        if not os.path.isfile(self.path):
            raise UnreadableImageError(f"{self.kind} file {self.path!r} does not exist")
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            self.image = Image.open(self.path)
        except BaseException as error:
            self._warnings.__exit__(None, None, None)
            self._raise(error)
        limit = MAX_IMAGE_PIXELS
        width, height = self.image.size
        if limit is not None and width * height > limit:
            self.__exit__(None, None, None)
            raise _too_big(self.path, self.kind, (width, height), limit)
        return self.image

    def __exit__(self, kind, error, traceback):
        if self.image is not None:
            self.image.close()
            self.image = None
        if self._warnings is not None:
            self._warnings.__exit__(None, None, None)
            self._warnings = None
        if isinstance(error, _UNREADABLE) and not isinstance(error, UnreadableImageError):
            self._raise(error)
        return False

    def _raise(self, error):
        if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise _too_big(self.path, self.kind, _header_size(self.path), MAX_IMAGE_PIXELS) from None
        if isinstance(error, _UNREADABLE):
            text = " ".join(str(error).split()) or type(error).__name__
            raise UnreadableImageError(f"{self.kind} file {self.path!r} could not be read: {text}") from None
        raise error


def to_bgr_uint8(array):
    """Any image array (H, W[, C]) -> BGR uint8 (H, W, 3), one rule per sample type and either byte order.

    Channel order of 3/4-channel input is taken to be RGB(A), as PIL returns it; alpha (the 2nd
    of 2 channels, the 4th of 4) is dropped. Values become 8 bits as Pillow's ``convert`` would for
    8-bit data: bool -> 0/255; uint8 as is; 16-bit unsigned -> value >> 8 (the high byte); 16-bit
    signed -> clip at 0, value >> 7; 32/64-bit integers holding values up to 65535 (Pillow's "I"
    mode of 16-bit files) -> value >> 8 like 16-bit, otherwise clip at 0 and scale by the type's
    maximum; floats are taken as [0, 1] (NaN -> 0).
    """
    array = np.asarray(array)
    if array.dtype.byteorder not in ("=", "|"):  # big-endian data on a little-endian machine, or the reverse
        array = array.astype(array.dtype.newbyteorder("="))
    kind, itemsize = array.dtype.kind, array.dtype.itemsize
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif kind == "u" and itemsize == 1:
        pass
    elif kind == "u" and itemsize == 2:
        array = (array >> 8).astype(np.uint8)
    elif kind == "i" and itemsize <= 2:
        bits = 8 * itemsize - 9
        array = (np.clip(array, 0, None) >> bits).astype(np.uint8) if bits > 0 else np.clip(array, 0, None).astype(np.uint8) * 2
    elif kind in "iu":
        array = np.clip(array, 0, None)
        if array.max(initial=0) <= 65535:
            array = (array >> 8).astype(np.uint8)
        else:
            top = float(np.iinfo(array.dtype).max)
            array = (array.astype(np.float64) * (255.0 / top)).round().astype(np.uint8)
    elif kind == "f":
        array = (np.clip(np.nan_to_num(array, nan=0.0), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    else:
        raise ValueError(f"cannot make a picture of an array of {array.dtype}")
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    channels = array.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if channels == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, :1], 3, axis=2))
    return np.ascontiguousarray(array[:, :, 2::-1])


EXIF_ORIENTATION = 0x0112
"""The EXIF tag that says how a viewer turns the stored pixels (1: as stored, 6: a quarter turn clockwise...)."""


def exif_orientation(image):
    """The EXIF orientation (1..8) of an open PIL image; 1 when it has none or an invalid one."""
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION, 1))
    except (TypeError, ValueError, OSError, SyntaxError, AttributeError, KeyError, IndexError, struct.error):
        return 1
    return value if 1 <= value <= 8 else 1


_DIRECT_MODES = ("L", "LA", "RGB", "RGBA", "RGBX", "I", "F")
"""Modes whose samples to_bgr_uint8 turns into 8 bits itself (the "I;16..." modes too); other modes
(CMYK, YCbCr, LAB, HSV, premultiplied alpha...) go through Pillow's convert("RGB")."""


def pil_to_bgr_uint8(image):
    """A loaded PIL image of any mode -> BGR uint8 (H, W, 3) of the picture it shows (alpha dropped).

    "1" -> 0/255 grey; "P"/"PA" through their palette; 8-bit modes with colour spaces other than
    RGB (CMYK, YCbCr, LAB, HSV) and premultiplied alpha (La, RGBa) through Pillow's convert("RGB");
    16- and 32-bit integer and float modes as to_bgr_uint8 says (16-bit: the high byte, both byte
    orders; float: [0, 1]).
    """
    mode = image.mode
    if mode in ("P", "PA"):
        image = image.convert("RGBA" if "transparency" in image.info or mode == "PA" else "RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode not in _DIRECT_MODES and not mode.startswith("I;16"):
        image = image.convert("RGB")
    return to_bgr_uint8(np.asarray(image))


def read_image_bgr(path, orient=False):
    """Reads an image file as BGR uint8 (H, W, 3), whatever its mode (see pil_to_bgr_uint8).

    orient=False returns the pixels as stored (EXIF orientation not applied): COCO and CSV
    annotations refer to the stored pixels. orient=True returns the picture as a viewer shows it
    (EXIF orientation applied): labelme annotates that, ultralytics' YOLO tools train on that, and
    prediction shows and returns that.
    Raises UnreadableImageError (a ValueError) naming the file if it is missing, cannot be decoded
    or has more than MAX_IMAGE_PIXELS pixels (checked from the header, before decoding).
    """
    with _open_picture(path, "image") as image:
        image.load()
        if orient and exif_orientation(image) != 1:
            image = ImageOps.exif_transpose(image)
        return pil_to_bgr_uint8(image)


def read_mask(path):
    """Reads a mask file as (H, W) uint8 0/1: any nonzero pixel in any colour channel (alpha is
    ignored) is foreground, except in JPEG files, whose compression noise is removed by taking only values
    above half the file's maximum as foreground.

    Raises UnreadableImageError (a ValueError) naming the file if it is missing, cannot be decoded
    or has more than MAX_IMAGE_PIXELS pixels.
    """
    with _open_picture(path, "mask") as image:
        image.load()
        lossy = image.format == "JPEG"
        if image.mode in ("P", "PA"):
            image = image.convert("RGB")
        elif image.mode not in _DIRECT_MODES and image.mode != "1" and not image.mode.startswith("I;16"):
            image = image.convert("RGB")
        array = np.asarray(image)
    if array.ndim == 3:
        array = array[:, :, 0] if array.shape[2] == 2 else array[:, :, :3].max(axis=2)
    if lossy:
        return (array.astype(np.float64) > array.max(initial=0) / 2.0).astype(np.uint8)
    return (array != 0).astype(np.uint8)


def image_size(path, orient=False):
    """(width, height) of an image file from its header (the pixels are not decoded): as stored, or
    with orient=True as a viewer shows it (EXIF orientations 5 to 8 swap the sides).

    Raises UnreadableImageError (a ValueError) naming the file if it is missing, unreadable or has
    more than MAX_IMAGE_PIXELS pixels."""
    with _open_picture(path, "image") as image:
        width, height = image.size
        if orient and exif_orientation(image) >= 5:
            return height, width
        return width, height


TORCH_MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)
TORCH_STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess_image(image, mode="caffe"):
    """BGR image(s) (..., H, W, 3), uint8 or float in [0, 255] -> float32 input of a backbone.

    caffe: BGR minus the ImageNet mean pixel; tf: RGB scaled to [-1, 1]; torch: RGB in [0, 1]
    normalised by the ImageNet mean and std; rgb: RGB in [0, 255] (the model normalises itself).
    """
    x = np.asarray(image, dtype=np.float32)
    if mode == "caffe":
        return x - CAFFE_MEAN_BGR
    rgb = x[..., ::-1]
    if mode == "tf":
        return rgb / 127.5 - 1.0
    if mode == "torch":
        return (rgb / 255.0 - TORCH_MEAN_RGB) / TORCH_STD_RGB
    if mode == "rgb":
        return np.ascontiguousarray(rgb)
    raise ValueError(f"unknown preprocessing mode {mode!r}; choose caffe, tf, torch or rgb")


def compute_resize_scale(image_shape, min_side=800, max_side=1333):
    """Scale that brings the smaller side to `min_side` unless the larger would exceed `max_side`."""
    rows, cols = int(image_shape[0]), int(image_shape[1])
    smallest, largest = min(rows, cols), max(rows, cols)
    scale = min_side / smallest
    if largest * scale > max_side:
        scale = max_side / largest
    return scale


def resize_image(image, min_side=800, max_side=1333):
    """Resizes an image by compute_resize_scale (bilinear): returns (resized image, scale)."""
    scale = compute_resize_scale(image.shape, min_side=min_side, max_side=max_side)
    resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return resized, scale


def resize_mask(mask, shape):
    """Resizes a (H, W) 0/1 uint8 mask to `shape` (rows, cols): bilinear, rounded (threshold 0.5)."""
    rows, cols = int(shape[0]), int(shape[1])
    if mask.shape[:2] == (rows, cols):
        return mask
    return cv2.resize(np.asarray(mask, dtype=np.uint8), (cols, rows), interpolation=cv2.INTER_LINEAR)


class TransformParameters:
    """How apply_transform warps images.

    fill_mode: 'constant', 'nearest', 'reflect' or 'wrap' for pixels from outside the image;
    interpolation: 'nearest', 'linear', 'cubic', 'area' or 'lanczos4' (images; masks are always
    bilinear + threshold); cval: fill value for 'constant'; relative_translation: translations
    of the transform generator are fractions of the image size rather than pixels.
    """

    _BORDERS = {
        "constant": cv2.BORDER_CONSTANT,
        "nearest": cv2.BORDER_REPLICATE,
        "reflect": cv2.BORDER_REFLECT_101,
        "wrap": cv2.BORDER_WRAP,
    }
    _INTERPOLATIONS = {
        "nearest": cv2.INTER_NEAREST,
        "linear": cv2.INTER_LINEAR,
        "cubic": cv2.INTER_CUBIC,
        "area": cv2.INTER_AREA,
        "lanczos4": cv2.INTER_LANCZOS4,
    }

    def __init__(self, fill_mode="constant", interpolation="linear", cval=0, relative_translation=True):
        if fill_mode not in self._BORDERS:
            raise ValueError(f"fill_mode {fill_mode!r} is not one of {sorted(self._BORDERS)}")
        if interpolation not in self._INTERPOLATIONS:
            raise ValueError(f"interpolation {interpolation!r} is not one of {sorted(self._INTERPOLATIONS)}")
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.cval = cval
        self.relative_translation = relative_translation

    def cv_border_mode(self):
        return self._BORDERS[self.fill_mode]

    def cv_interpolation(self):
        return self._INTERPOLATIONS[self.interpolation]


def _pixel_index_matrix(matrix):
    """Converts a 3x3 affine map of continuous coordinates to one of pixel indices (centre at i)."""
    to_continuous = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], dtype=np.float64)
    to_index = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]], dtype=np.float64)
    return to_index @ np.asarray(matrix, dtype=np.float64) @ to_continuous


def _flip_code(index_matrix, shape):
    """cv2.flip code if a pixel-index matrix is exactly a flip of an image of `shape` (None if
    not, 'identity' for the identity), so common flips skip the general warp."""
    height, width = shape[:2]
    m = index_matrix
    if not (m[0, 1] == 0 and m[1, 0] == 0 and abs(m[0, 0]) == 1 and abs(m[1, 1]) == 1):
        return None
    if m[0, 2] != (0 if m[0, 0] == 1 else width - 1) or m[1, 2] != (0 if m[1, 1] == 1 else height - 1):
        return None
    return {(1, 1): "identity", (-1, 1): 1, (1, -1): 0, (-1, -1): -1}[(int(m[0, 0]), int(m[1, 1]))]


def apply_transform(matrix, image, params=None):
    """Warps an image (H, W[, C]) by a 3x3 affine `matrix` that maps input to output pixel
    coordinates (continuous), keeping its size. Returns an array of the input dtype and shape."""
    params = params or TransformParameters()
    index_matrix = _pixel_index_matrix(matrix)
    code = _flip_code(index_matrix, image.shape)
    if code is not None:
        return image.copy() if code == "identity" else cv2.flip(image, code)
    return cv2.warpAffine(
        image,
        index_matrix[:2, :],
        dsize=(image.shape[1], image.shape[0]),
        flags=params.cv_interpolation(),
        borderMode=params.cv_border_mode(),
        borderValue=params.cval,
    )


def apply_transform_to_mask(matrix, mask):
    """Warps a (H, W) 0/1 uint8 mask like apply_transform: bilinear, threshold 0.5, and always
    background (0) where the source lies outside the mask, whatever the images' fill mode (a
    reflected or wrapped copy of an object would not be the same instance)."""
    mask = np.asarray(mask, dtype=np.uint8)
    index_matrix = _pixel_index_matrix(matrix)
    code = _flip_code(index_matrix, mask.shape)
    if code is not None:
        return (mask != 0).astype(np.uint8) if code == "identity" else (cv2.flip(mask, code) != 0).astype(np.uint8)
    warped = cv2.warpAffine(
        mask * np.uint8(255),
        index_matrix[:2, :],
        dsize=(mask.shape[1], mask.shape[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return (warped >= 128).astype(np.uint8)


class VisualEffect:
    """Colour changes of a BGR uint8 image.

    contrast_factor: multiplies deviations from the mean grey level; brightness_delta: added,
    as a fraction of 255; hue_delta: hue shift as a fraction of the full circle, in [-1, 1];
    saturation_factor: multiplies the HSV saturation.
    """

    def __init__(self, contrast_factor=1.0, brightness_delta=0.0, hue_delta=0.0, saturation_factor=1.0):
        self.contrast_factor = float(contrast_factor)
        self.brightness_delta = float(brightness_delta)
        self.hue_delta = float(hue_delta)
        self.saturation_factor = float(saturation_factor)

    def __call__(self, image):
        """Returns a new BGR uint8 image of the same shape."""
        result = np.asarray(image, dtype=np.float32)
        if self.contrast_factor != 1.0:
            mean = result.mean()
            result = (result - mean) * self.contrast_factor + mean
        if self.brightness_delta != 0.0:
            result = result + self.brightness_delta * 255.0
        result = np.clip(result, 0, 255)
        if self.hue_delta != 0.0 or self.saturation_factor != 1.0:
            hsv = cv2.cvtColor(result.astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
            if self.hue_delta != 0.0:
                hsv[:, :, 0] = np.mod(hsv[:, :, 0] + self.hue_delta * 180.0, 180.0)
            if self.saturation_factor != 1.0:
                hsv[:, :, 1] = np.clip(hsv[:, :, 1] * self.saturation_factor, 0, 255)
            return cv2.cvtColor(hsv.round().astype(np.uint8), cv2.COLOR_HSV2BGR)
        return result.round().astype(np.uint8)


class RandomVisualEffectGenerator:
    """Endless source of random VisualEffects, drawing each factor uniformly from its range.

    `sample(rng)` draws with a given numpy Generator (the data generator uses a per-batch one);
    iterating draws from the generator's own `seed`ed stream.
    """

    def __init__(self, contrast_range=(0.9, 1.1), brightness_range=(-0.1, 0.1),
                 hue_range=(-0.05, 0.05), saturation_range=(0.95, 1.05), seed=None):
        for name, (low, high) in [("contrast_range", contrast_range), ("brightness_range", brightness_range),
                                  ("hue_range", hue_range), ("saturation_range", saturation_range)]:
            if low > high:
                raise ValueError(f"{name} {low, high}: lower bound exceeds upper bound")
        if contrast_range[0] < 0 or saturation_range[0] < 0:
            raise ValueError("contrast and saturation factors must be non-negative")
        if not -1 <= hue_range[0] <= hue_range[1] <= 1:
            raise ValueError(f"hue_range {tuple(hue_range)} must lie within [-1, 1]")
        self.contrast_range = tuple(contrast_range)
        self.brightness_range = tuple(brightness_range)
        self.hue_range = tuple(hue_range)
        self.saturation_range = tuple(saturation_range)
        self._rng = np.random.default_rng(seed)

    def sample(self, rng):
        return VisualEffect(
            contrast_factor=rng.uniform(*self.contrast_range),
            brightness_delta=rng.uniform(*self.brightness_range),
            hue_delta=rng.uniform(*self.hue_range),
            saturation_factor=rng.uniform(*self.saturation_range),
        )

    def __iter__(self):
        return self

    def __next__(self):
        return self.sample(self._rng)


def random_visual_effect_generator(contrast_range=(0.9, 1.1), brightness_range=(-0.1, 0.1),
                                   hue_range=(-0.05, 0.05), saturation_range=(0.95, 1.05), seed=None):
    """RandomVisualEffectGenerator with the given ranges (see VisualEffect for their units)."""
    return RandomVisualEffectGenerator(contrast_range, brightness_range, hue_range, saturation_range, seed)
