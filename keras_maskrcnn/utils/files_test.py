"""Tests of utils/files.py: writes that complete or fail with one line, on real full and read-only file systems."""

import errno
import json
import os
import subprocess

import cv2
import numpy as np
import pytest

from keras_maskrcnn.utils import files
from keras_maskrcnn.utils.files import OutputError


def _mount(args):
    """Runs mount; True if it worked (root in a system that allows mounts)."""
    if os.geteuid() != 0:
        return False
    try:
        return subprocess.run(["mount", *args], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _umount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


@pytest.fixture
def full_fs(tmp_path):
    """A 64 KiB tmpfs folder (a real "No space left on device"), or skip where mounting is not allowed."""
    folder = tmp_path / "small"
    folder.mkdir()
    if not _mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)]):
        pytest.skip("cannot mount a small tmpfs here (needs root); the monkeypatched ENOSPC tests cover it")
    yield folder
    _umount(folder)


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only bind mount of a folder (a real EROFS, which stops root too), or skip."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "old.json").write_text("{}\n")
    target = tmp_path / "ro"
    target.mkdir()
    if not _mount(["--bind", str(source), str(target)]):
        pytest.skip("cannot bind-mount here (needs root); the monkeypatched EROFS tests cover it")
    if not _mount(["-o", "remount,bind,ro", str(target)]):
        _umount(target)
        pytest.skip("cannot remount read-only here")
    yield target
    _umount(target)


def _picture(size=64):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def test_writers_round_trip(tmp_path):
    image = _picture()
    assert files.write_image(tmp_path / "a.png", image) == str(tmp_path / "a.png")
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "a.png")), image)
    files.write_json(tmp_path / "r.json", {"a": [1, 2]}, indent=1)
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1, 2]}
    files.write_text(tmp_path / "t.txt", "é\n")
    assert (tmp_path / "t.txt").read_bytes() == "é\n".encode()
    files.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    files.write_csv(tmp_path / "c.csv", [["x.png", 1, "a,b"]], header=["path", "n", "label"])
    assert (tmp_path / "c.csv").read_bytes() == b'path,n,label\r\nx.png,1,"a,b"\r\n'
    files.write_bytes(tmp_path / "sub" / "deeper" / "d.bin", b"x")  # parents made
    assert (tmp_path / "sub" / "deeper" / "d.bin").read_bytes() == b"x"
    assert _leftovers(tmp_path) == []


def test_replaces_existing_file(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    files.write_json(target, [1])
    assert json.loads(target.read_text()) == [1]


def test_new_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        files.write_text(tmp_path / "t.txt", "x")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "t.txt").st_mode & 0o777) == 0o644


def test_write_image_encode_failures(tmp_path):
    with pytest.raises(OutputError, match=r"cannot write .*a\.xyz.*cannot encode it as \.xyz"):
        files.write_image(tmp_path / "a.xyz", _picture())
    with pytest.raises(OutputError, match=r"no file extension"):
        files.write_image(tmp_path / "noext", _picture())
    with pytest.raises(OutputError, match=r"cannot encode it as \.png: .*channels") as info:
        files.write_image(tmp_path / "a.png", np.zeros((4, 4, 7), np.uint8))
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_path_is_a_folder(tmp_path):
    (tmp_path / "x.json").mkdir()
    with pytest.raises(OutputError, match=r"cannot write '.*x\.json': it is a folder"):
        files.write_json(tmp_path / "x.json", {})
    assert _leftovers(tmp_path) == []


def test_full_file_system_real(full_fs):
    """A real full disk: the write fails with ENOSPC, names the file, leaves no partial file."""
    files.check_output_dir(full_fs)  # empty: one byte fits
    big = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)  # ~197 KB as PNG
    with pytest.raises(OutputError) as info:
        files.write_image(full_fs / "a.png", big)
    message = str(info.value)
    assert message == f"cannot write {str(full_fs / 'a.png')!r}: No space left on device"
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(full_fs) == []  # neither a.png nor its temporary file
    with pytest.raises(OutputError, match="No space left on device"):
        files.write_bytes(full_fs / "b.bin", b"\0" * 200_000)
    assert os.listdir(full_fs) == []
    # a disk already full is found by check_output_dir before any work
    filler = full_fs / "filler"
    try:
        with open(filler, "wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
    except OSError:
        pass
    with pytest.raises(OutputError, match=r"cannot write to --output-dir .*: No space left on device"):
        files.check_output_dir(full_fs)


def test_read_only_file_system_real(read_only_dir):
    """A real read-only file system (a read-only bind mount: it stops root too)."""
    with pytest.raises(OutputError) as info:
        files.write_image(read_only_dir / "a.png", _picture())
    assert str(info.value) == f"cannot write {str(read_only_dir / 'a.png')!r}: Read-only file system"
    assert info.value.errno == errno.EROFS
    with pytest.raises(OutputError, match="Read-only file system"):
        files.write_json(read_only_dir / "old.json", {"new": 1})
    assert (read_only_dir / "old.json").read_text() == "{}\n"  # the old file is untouched
    with pytest.raises(OutputError, match=r"cannot write to --save-path '.*ro': Read-only file system"):
        files.check_output_dir(read_only_dir, what="--save-path")
    with pytest.raises(OutputError, match=r"cannot create --output-dir '.*new': Read-only file system"):
        files.check_output_dir(read_only_dir / "new")


def _failing_write(number, after=0):
    """An os.write that writes ``after`` bytes' calls then fails with ``number``."""
    real_write = os.write
    calls = {"n": 0}

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(number, os.strerror(number))
        return real_write(fd, data[: max(1, len(data) // 2)])

    return write


@pytest.mark.parametrize("number, cause", [
    (errno.ENOSPC, "No space left on device"),
    (errno.EROFS, "Read-only file system"),
    (errno.EACCES, "Permission denied"),
])
def test_simulated_write_errors(tmp_path, monkeypatch, number, cause):
    """The same messages where mounting is not possible: os.write fails after a partial write."""
    monkeypatch.setattr(files.os, "write", _failing_write(number, after=1))
    for writer, name, value in [(files.write_image, "a.png", _picture()),
                                (files.write_json, "r.json", {"a": list(range(100))}),
                                (files.write_csv, "c.csv", [[i, i] for i in range(100)])]:
        with pytest.raises(OutputError) as info:
            writer(tmp_path / name, value)
        assert str(info.value) == f"cannot write {str(tmp_path / name)!r}: {cause}"
        assert info.value.errno == number
    assert os.listdir(tmp_path) == []


def test_short_writes_are_completed(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(files.os, "write", lambda fd, data: real_write(fd, data[:7]))
    files.write_bytes(tmp_path / "b.bin", bytes(range(256)) * 3)
    assert (tmp_path / "b.bin").read_bytes() == bytes(range(256)) * 3


def test_check_output_dir(tmp_path, monkeypatch):
    assert files.check_output_dir(tmp_path / "a" / "b") == str(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    assert os.listdir(tmp_path / "a" / "b") == []  # the probe is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"^--save-path '.*file' exists and is not a folder$"):
        files.check_output_dir(tmp_path / "file", what="--save-path")
    with pytest.raises(OutputError, match=r"cannot create --output-dir '.*file/sub': Not a directory"):
        files.check_output_dir(tmp_path / "file" / "sub")

    real_open = os.open

    def denied(path, flags, mode=0o777):
        if ".write-check." in str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(files.os, "open", denied)
    with pytest.raises(OutputError, match=r"^cannot write to --output-dir '.*': Permission denied$"):
        files.check_output_dir(tmp_path)


def test_output_error_is_oserror_and_pickles():
    import pickle

    error = OutputError("cannot write 'x': No space left on device", path="x",
                        cause="No space left on device", errno=errno.ENOSPC)
    assert isinstance(error, OSError)
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.errno == errno.ENOSPC and copy.path == "x"
