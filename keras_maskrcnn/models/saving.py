"""Saving and loading models as native `.keras` files, with the settings needed to rebuild the prediction model,
and loading the `.h5` files of keras-maskrcnn 0.2 and keras-retinanet 1.0 (see `legacy`)."""

import contextlib
import json
import os
import socket
import time
import zipfile
import zlib

import keras

from ..utils.precision import apply_policy, resolve_policy
from .maskrcnn import is_training_model, prediction_base, prediction_model
from .settings import ModelSettings

METADATA_NAME = "keras_maskrcnn.json"
TEMPORARY_SUFFIX = ".partial"
PAUSE_VARIABLE = "KERAS_MASKRCNN_SAVE_PAUSE"
"""Test hook: seconds `save_model` sleeps between writing its temporary file and renaming it."""


def temporary_path(filepath):
    """Where `save_model` writes `filepath` first: a hidden file in the same folder named after
    it, this host and this process, ending in TEMPORARY_SUFFIX (never in .keras)."""
    directory, name = os.path.split(os.path.abspath(filepath))
    return os.path.join(directory, f".{name}~{socket.gethostname()}~{os.getpid()}{TEMPORARY_SUFFIX}")


def _temporary_owner(name):
    """(host, process id) of a temporary file name written by `save_model`, or None."""
    if not (name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)):
        return None
    parts = name[1:-len(TEMPORARY_SUFFIX)].rsplit("~", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def remove_stale_temporaries(directory):
    """Deletes the temporary files of `save_model` in `directory` left by processes of this host
    that no longer run (killed while saving); returns their paths."""
    removed = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        owner = _temporary_owner(name)
        if owner is None or owner[0] != socket.gethostname() or owner[1] == os.getpid():
            continue
        try:
            os.kill(owner[1], 0)
            continue  # still running: maybe saving right now
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's running process
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(directory, name))
            removed.append(os.path.join(directory, name))
    return removed


def _fsync(path, directory=False):
    descriptor = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems cannot sync folders
        if not directory:
            raise
    finally:
        os.close(descriptor)


def save_model(model, filepath, **metadata):
    """Saves `model` (with its optimizer, if compiled) to a `.keras` file, plus JSON `metadata`
    (e.g. anchor_params as a dict, backbone, epoch, filter settings) stored inside the same file.

    The file appears complete or not at all: the model and its metadata are written to
    `temporary_path(filepath)`, synced to disk, then renamed onto `filepath` (os.replace), so a
    process killed at any moment leaves no partial `.keras` file (at most a temporary one, see
    `remove_stale_temporaries`)."""
    if not str(filepath).endswith(".keras"):
        raise ValueError(f"model files end in .keras, got {filepath!r}")
    from keras.src.saving import saving_lib  # keras.saving.save_model insists on a .keras name

    filepath = str(filepath)
    temporary = temporary_path(filepath)
    try:
        with open(temporary, "wb") as handle:
            saving_lib.save_model(model, handle)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(METADATA_NAME, json.dumps(metadata))
        _fsync(temporary)
        pause = float(os.environ.get(PAUSE_VARIABLE) or 0)
        if pause > 0:
            time.sleep(pause)
        os.replace(temporary, filepath)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    _fsync(os.path.dirname(os.path.abspath(filepath)), directory=True)


def is_complete_snapshot(filepath):
    """Whether `filepath` is a whole zip archive (every member's checksum holds) with the
    metadata of `save_model` recording an epoch."""
    try:
        with zipfile.ZipFile(filepath) as archive:
            if archive.testzip() is not None or METADATA_NAME not in archive.namelist():
                return False
            return "epoch" in json.loads(archive.read(METADATA_NAME))
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return False


MAX_ARCHIVE_MEMBERS = 10_000
"""A `.keras` archive with more members is refused (Keras writes 3, keras_maskrcnn adds 1)."""
MAX_CONFIG_BYTES = 64 * 2**20
"""A `.json` member (config.json, metadata.json, keras_maskrcnn.json) bigger than this when unpacked
is refused: real models' settings take kilobytes (a ResNet-152 Mask R-CNN's config.json ~0.3 MB)."""
MAX_ARCHIVE_BYTES = 64 * 2**30
"""A `.keras` archive whose members would take more than this unpacked is refused (the biggest
models here, with their optimizer state, take about 1 GiB)."""
MAX_COMPRESSION_RATIO = 100
"""A member over LARGE_MEMBER_BYTES unpacked that is packed more tightly than this is refused:
weights are nearly random numbers (ratio ~1.1), a zip bomb's zeros reach ~1000."""
LARGE_MEMBER_BYTES = 256 * 2**20

_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class ModelFileError(ValueError):
    """A model file that is missing, not a model file, damaged, or over the size limits; the message names it."""


def _bytes(count):
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count:,} bytes ({count / size:.1f} {unit})"
    return f"{count:,} bytes"


def check_model_file(filepath):
    """Checks a model file before Keras or h5py reads it; returns its kind, "keras" (zip) or "hdf5".

    Reads only the first bytes and, for a zip (`.keras`), its directory: the member count, each
    member's unpacked size and the total, against MAX_ARCHIVE_MEMBERS, MAX_CONFIG_BYTES (for the
    JSON members), MAX_ARCHIVE_BYTES and MAX_COMPRESSION_RATIO, so a hostile archive is refused
    in milliseconds without unpacking anything.

    Args:
        filepath: path of the model file.

    Returns:
        str: "keras" for a zip archive with a config.json, "hdf5" for a file with the HDF5
        signature (checked further by the `.h5` reader).

    Raises:
        ModelFileError (a ValueError): naming the file and what is wrong: missing, a folder, empty,
            neither a zip nor HDF5 (with its first bytes), a damaged or truncated zip, a zip without
            config.json, or sizes over the limits (named with the limits).
    """
    path = os.fspath(filepath)
    name = f"model file {path!r}"
    if os.path.isdir(path):
        raise ModelFileError(f"{name} is a folder, not a model file")
    if not os.path.isfile(path):
        raise ModelFileError(f"{name} does not exist")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as error:
        raise ModelFileError(f"{name} cannot be read: {error.strerror or error}") from None
    if size == 0:
        raise ModelFileError(f"{name} is empty (0 bytes), not a model file")
    if head.startswith(_HDF5_SIGNATURE):
        return "hdf5"
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        if head.startswith(_ZIP_SIGNATURES):
            raise ModelFileError(f"{name} is a damaged or truncated zip archive ({error}; {_bytes(size)} on disk), "
                                 f"not a whole .keras model file") from None
        shown = " ".join(f"{byte:02x}" for byte in head[:8])
        raise ModelFileError(f"{name} is not a Keras model file: neither a .keras (zip) archive nor an HDF5 (.h5) file "
                             f"(it starts with the bytes {shown})") from None
    except (OSError, ValueError, EOFError, NotImplementedError) as error:
        raise ModelFileError(f"{name} is a damaged zip archive: {error}") from None
    with archive:
        members = archive.infolist()
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise ModelFileError(f"{name} is refused: its zip archive has {len(members):,} members, over the limit of "
                             f"{MAX_ARCHIVE_MEMBERS:,} (a .keras model has 3 or 4)")
    total = 0
    for member in members:
        total += member.file_size
        if member.filename.lower().endswith(".json") and member.file_size > MAX_CONFIG_BYTES:
            raise ModelFileError(f"{name} is refused: its {member.filename} would take {_bytes(member.file_size)} "
                                 f"unpacked, over the limit of {_bytes(MAX_CONFIG_BYTES)} for a model's settings")
        if (member.file_size > LARGE_MEMBER_BYTES
                and member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1)):
            raise ModelFileError(f"{name} is refused: its {member.filename} would take {_bytes(member.file_size)} "
                                 f"unpacked from {_bytes(member.compress_size)}, packed more than "
                                 f"{MAX_COMPRESSION_RATIO} to 1 (model weights pack about 1.1 to 1)")
    if total > MAX_ARCHIVE_BYTES:
        raise ModelFileError(f"{name} is refused: its {len(members):,} members would take {_bytes(total)} unpacked, "
                             f"over the limit of {_bytes(MAX_ARCHIVE_BYTES)}")
    if "config.json" not in {member.filename for member in members}:
        listed = ", ".join(member.filename for member in members[:5]) or "nothing"
        raise ModelFileError(f"{name} is a zip archive without config.json (it holds {listed}), "
                             f"not a Keras model file")
    return "keras"


def is_legacy_file(filepath):
    """Whether `filepath` is an HDF5 file or named like one (.h5, .hdf5): the format of keras-maskrcnn
    0.2 and keras-retinanet 1.0."""
    from .legacy_h5 import is_hdf5

    return str(filepath).lower().endswith((".h5", ".hdf5")) or is_hdf5(filepath)


def read_metadata(filepath):
    """The metadata dict saved by `save_model`, or {} for other `.keras` files. For an old `.h5`
    file: its backbone, anchor_params, filter and legacy (kind, keras_version, num_classes), read
    from the file (ValueError if it is not such a model). A `.keras` file is first checked by
    `check_model_file` (ModelFileError, a ValueError, for files that are not models or too big)."""
    if is_legacy_file(filepath):
        from .legacy_h5 import LegacyFile

        return LegacyFile(filepath, arrays=False).metadata()
    check_model_file(filepath)
    try:
        with zipfile.ZipFile(filepath) as archive:
            if METADATA_NAME not in archive.namelist():
                return {}
            metadata = json.loads(archive.read(METADATA_NAME))
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as error:
        text = " ".join(str(error).split()) or type(error).__name__
        raise ModelFileError(f"model file {os.fspath(filepath)!r}: its {METADATA_NAME} cannot be read: {text}") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"model file {os.fspath(filepath)!r}: its {METADATA_NAME} holds a "
                             f"{type(metadata).__name__}, not an object")
    return metadata


def _read(filepath, custom_objects, compile):
    check_model_file(filepath)
    try:
        return keras.saving.load_model(filepath, custom_objects=custom_objects, compile=compile)
    except Exception as error:  # keras raises many types for files that are not models
        raise ValueError(f"{filepath!r} is not a Keras model file that keras_maskrcnn can read: {error}") from None


def _convert(model, mixed_precision):
    """Applies the policy `mixed_precision` asks for (see `resolve_policy`) to a loaded model;
    None or False keep the precision the model was saved with. Returns the policy name or None."""
    policy = resolve_policy(mixed_precision)
    if policy is not None:
        apply_policy(model, policy)
    return policy


def load_training_model(filepath, backbone_name=None, mixed_precision=None):
    """The compiled training model of a snapshot (with optimizer state) and its metadata.

    An old keras-maskrcnn 0.2 `.h5` file gives its training model compiled as keras-maskrcnn
    trained (Adam 1e-5, clipnorm 0.001), without the old optimizer state, and epoch 0.

    mixed_precision: None/False (as saved), True/"auto", "mixed_bfloat16" or "mixed_float16"
    makes the layers compute in that policy; with "mixed_float16" the optimizer is wrapped in a
    `keras.optimizers.LossScaleOptimizer` unless it already is one.
    """
    from .backbone import backbone

    if is_legacy_file(filepath):
        from .. import losses
        from .legacy import load_legacy_model
        from .maskrcnn import training_model

        prediction = load_legacy_model(filepath, backbone_name)
        if len(prediction.outputs) != 6:
            raise ValueError(f"{filepath!r} is a keras-retinanet model without a mask head; train from it with "
                             f"maskrcnn-train --weights instead")
        model = training_model(prediction)
        _convert(model, mixed_precision)
        model.compile(loss=losses.training_losses(), optimizer=keras.optimizers.Adam(learning_rate=1e-5, clipnorm=0.001))
        return model, dict(read_metadata(filepath), epoch=0)
    model = _read(filepath, backbone(backbone_name or "resnet50").custom_objects, compile=True)
    if not is_training_model(model):
        raise ValueError(f"{filepath!r} holds a prediction model; resuming training needs a training snapshot")
    policy = _convert(model, mixed_precision)
    if policy == "mixed_float16" and not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
        model.optimizer = keras.optimizers.LossScaleOptimizer(model.optimizer)
    return model, read_metadata(filepath)


def load_model(filepath, backbone_name=None, anchor_params=None, mixed_precision=None, **filter_kwargs):
    """Loads a `.keras` file as the prediction model (image -> [..., boxes, scores, labels, masks]).

    Old `.h5` files of keras-maskrcnn 0.2 and keras-retinanet 1.0 load too, rebuilt in their
    original architecture (`legacy.load_legacy_model`): keras-retinanet files give the box model
    (outputs ending with boxes, scores, labels). backbone_name: for `.h5` files, checked against the
    file's (None: the file's); `.keras` files say their own.

    A training snapshot is converted to the prediction model, sharing its weights, with the
    anchor parameters and filter settings stored in the file unless given here (filter_kwargs:
    nms, class_specific_filter, score_threshold, nms_threshold, max_detections, pre_nms_top_k,
    mask_dtype). A prediction model is returned as saved, unless filter_kwargs are given.
    mixed_precision: None/False (the precision the model was saved with), True/"auto",
    "mixed_bfloat16" or "mixed_float16": the layers then compute in that policy (weights are
    unchanged; boxes, scores, labels and masks keep their dtypes).
    """
    from .backbone import backbone

    if is_legacy_file(filepath):
        from .legacy import load_legacy_model

        if anchor_params is not None:
            filter_kwargs["anchor_params"] = anchor_params
        model = load_legacy_model(filepath, backbone_name, **filter_kwargs)
        _convert(model, mixed_precision)
        return model
    model = _read(filepath, backbone(backbone_name or "resnet50").custom_objects, compile=False)
    _convert(model, mixed_precision)
    if not is_training_model(model) and not filter_kwargs and anchor_params is None:
        return model
    return prediction_model(model, settings=resolve_settings(model, read_metadata(filepath), anchor_params,
                                                             **filter_kwargs))


def resolve_settings(model, metadata, anchor_params=None, **options):
    """The `ModelSettings` of the prediction model of a loaded `model`, resolved once: the options
    given here, then what the file's `metadata` records ("settings", or "anchor_params" and
    "filter"), then `model`'s own RoI alignment and box decoding (and, for a prediction model, its
    anchors), then the defaults. The detection filter and mask head of a saved prediction model are
    not inherited: options given to `load_model` apply over the defaults, as they always have."""
    settings = prediction_base(model)
    if not is_training_model(model):
        settings = settings.replace(anchors=model.get_layer("anchors").anchor_params)
    return ModelSettings.from_metadata(metadata, base=settings).replace(anchor_params=anchor_params, **options)
