"""Tests of the model-file checks of models/saving.py: hostile, damaged and foreign files are refused
from their first bytes and zip directory, before Keras or h5py reads them."""

import json
import struct
import zipfile

import numpy as np
import pytest

from keras_maskrcnn.models import saving
from keras_maskrcnn.models.saving import ModelFileError, check_model_file, load_model, read_metadata


def _archive(path, members):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return str(path)


def _keras_like(path, metadata=None):
    members = {"metadata.json": json.dumps({"keras_version": "3"}), "config.json": json.dumps({"a": 1}),
               "model.weights.h5": b"\x89HDF\r\n\x1a\n" + b"\0" * 100}
    if metadata is not None:
        members[saving.METADATA_NAME] = json.dumps(metadata)
    return _archive(path, members)


def _forge_size(path, member, size):
    """Rewrites the uncompressed size of `member` in the zip's central directory (and local header)."""
    data = bytearray(open(path, "rb").read())
    encoded = member.encode()
    start = 0
    while True:
        start = data.find(b"PK\x01\x02", start)
        assert start >= 0, member
        name_length = struct.unpack_from("<H", data, start + 28)[0]
        if bytes(data[start + 46:start + 46 + name_length]) == encoded:
            struct.pack_into("<I", data, start + 24, size)
            local = struct.unpack_from("<I", data, start + 42)[0]
            struct.pack_into("<I", data, local + 22, size)
            break
        start += 4
    open(path, "wb").write(bytes(data))


@pytest.fixture(scope="module")
def real_model_file(tmp_path_factory):
    """A small real .keras file (a Dense model) saved by save_model, with metadata."""
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    path = str(tmp_path_factory.mktemp("model") / "small.keras")
    saving.save_model(model, path, epoch=3, backbone="vgg16")
    return path


def test_real_file_passes(real_model_file):
    assert check_model_file(real_model_file) == "keras"
    assert read_metadata(real_model_file) == {"epoch": 3, "backbone": "vgg16"}
    model = saving._read(real_model_file, {}, compile=False)
    assert model.predict(np.zeros((1, 4), np.float32), verbose=0).shape == (1, 2)


def test_config_json_claiming_2_gib_is_refused(tmp_path):
    """The issue's zip bomb, with a forged directory entry: refused from the directory, sizes named."""
    path = _keras_like(tmp_path / "bomb.keras")
    _forge_size(path, "config.json", 2**31)
    message = (r"^model file '.*bomb\.keras' is refused: its config\.json would take 2,147,483,648 bytes "
               r"\(2\.0 GiB\) unpacked, over the limit of 67,108,864 bytes \(64\.0 MiB\) for a model's settings$")
    for reader in (check_model_file, read_metadata, load_model):
        with pytest.raises(ModelFileError, match=message):
            reader(path)


def test_real_compressed_config_over_64_mib_is_refused(tmp_path):
    """A real deflated config.json of 65 MiB of spaces (about 65 KB packed)."""
    path = str(tmp_path / "spaces.keras")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("config.json", "w") as member:
            block = b" " * 2**20
            for _ in range(65):
                member.write(block)
        archive.writestr("model.weights.h5", b"x")
    assert zipfile.ZipFile(path).getinfo("config.json").compress_size < 2**20
    with pytest.raises(ModelFileError, match=r"config\.json would take 68,157,440 bytes \(65\.0 MiB\) unpacked"):
        load_model(path)


def test_packed_weights_and_totals_and_member_counts(tmp_path, monkeypatch):
    path = _keras_like(tmp_path / "zeros.keras")
    _forge_size(path, "model.weights.h5", 3 * 2**30)
    with pytest.raises(ModelFileError, match=r"its model\.weights\.h5 would take 3,221,225,472 bytes \(3\.0 GiB\) "
                                             r"unpacked from \d+ bytes, packed more than 100 to 1"):
        check_model_file(path)
    monkeypatch.setattr(saving, "MAX_ARCHIVE_BYTES", 1000)
    monkeypatch.setattr(saving, "MAX_COMPRESSION_RATIO", 10**9)
    with pytest.raises(ModelFileError, match=r"its 3 members would take 3,221,225,\d+ bytes \(3\.0 GiB\) unpacked, "
                                             r"over the limit of 1,000 bytes"):
        check_model_file(path)
    monkeypatch.setattr(saving, "MAX_ARCHIVE_MEMBERS", 2)
    with pytest.raises(ModelFileError, match=r"has 3 members, over the limit of 2"):
        check_model_file(_keras_like(tmp_path / "three.keras"))


@pytest.mark.parametrize("name, content, message", [
    ("random.keras", np.random.default_rng(0).bytes(5000),
     r"is not a Keras model file: neither a \.keras \(zip\) archive nor an HDF5 \(\.h5\) file \(it starts with the bytes "),
    ("empty.keras", b"", r"is empty \(0 bytes\), not a model file"),
    ("text.keras", b"<html>not found</html>", r"is not a Keras model file: .* \(it starts with the bytes 3c 68 74 6d 6c 3e 6e 6f\)"),
])
def test_files_that_are_not_models(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    for reader in (check_model_file, read_metadata, load_model):
        with pytest.raises(ModelFileError, match=rf"^model file '.*{name}' {message}"):
            reader(str(path))


def test_truncated_archive(tmp_path, real_model_file):
    data = open(real_model_file, "rb").read()
    for keep in (len(data) // 2, len(data) - 10, 30):
        path = tmp_path / f"cut{keep}.keras"
        path.write_bytes(data[:keep])
        with pytest.raises(ModelFileError, match=r"is a damaged or truncated zip archive \(.*\), not a whole \.keras"):
            load_model(str(path))


def test_missing_folder_and_foreign_zip(tmp_path):
    with pytest.raises(ModelFileError, match=r"^model file '.*nothere\.keras' does not exist$"):
        load_model(str(tmp_path / "nothere.keras"))
    (tmp_path / "folder.keras").mkdir()
    with pytest.raises(ModelFileError, match=r"is a folder, not a model file"):
        read_metadata(str(tmp_path / "folder.keras"))
    path = _archive(tmp_path / "photos.keras", {"a.jpg": b"x", "b.jpg": b"y"})
    with pytest.raises(ModelFileError, match=r"is a zip archive without config\.json \(it holds a\.jpg, b\.jpg\)"):
        load_model(path)


def test_damaged_metadata(tmp_path):
    path = _archive(tmp_path / "m.keras", {"config.json": "{}", saving.METADATA_NAME: "{not json"})
    with pytest.raises(ModelFileError, match=r"model file '.*m\.keras': its keras_maskrcnn\.json cannot be read"):
        read_metadata(path)
    path = _archive(tmp_path / "n.keras", {"config.json": "{}", saving.METADATA_NAME: "[1, 2]"})
    with pytest.raises(ModelFileError, match=r"holds a list, not an object"):
        read_metadata(path)
    assert read_metadata(_keras_like(tmp_path / "plain.keras")) == {}
