"""Atomic snapshot files and finding the newest complete one."""

import os
import subprocess
import sys
import zipfile

import keras
import pytest

from keras_maskrcnn.callbacks.snapshot import Snapshot, latest_snapshot
from keras_maskrcnn.models import read_metadata, save_model
from keras_maskrcnn.models import saving


def tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    return model


def dead_pid():
    """The id of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_save_model_writes_through_a_temporary_that_is_never_a_keras_file(tmp_path, monkeypatch):
    target = tmp_path / "model_01.keras"
    seen = []
    replace = os.replace

    def spying_replace(source, destination):
        seen.append((source, sorted(os.listdir(tmp_path)), zipfile.ZipFile(source).namelist()))
        replace(source, destination)

    monkeypatch.setattr(saving.os, "replace", spying_replace)
    save_model(tiny_model(), str(target), epoch=1, backbone="x")
    (source, listing, members), = seen
    assert source == saving.temporary_path(str(target)) and not source.endswith(".keras")
    assert listing == [os.path.basename(source)] and os.path.basename(source).startswith(".model_01.keras~")
    assert saving.METADATA_NAME in members and "model.weights.h5" in members
    assert os.listdir(tmp_path) == ["model_01.keras"]
    assert read_metadata(str(target)) == {"epoch": 1, "backbone": "x"}
    assert saving.is_complete_snapshot(str(target))


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "model.keras"
    save_model(tiny_model(), str(target), epoch=1)
    before = target.read_bytes()
    from keras.src.saving import saving_lib

    def failing(model, handle):
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(saving_lib, "save_model", failing)
    with pytest.raises(KeyboardInterrupt):
        save_model(tiny_model(), str(target), epoch=2)
    assert os.listdir(tmp_path) == ["model.keras"] and target.read_bytes() == before


def test_stale_temporaries_of_ended_processes_are_removed(tmp_path):
    host = saving.socket.gethostname()
    stale = tmp_path / f".m_03.keras~{host}~{dead_pid()}.partial"
    mine = tmp_path / f".m_04.keras~{host}~{os.getpid()}.partial"
    running = tmp_path / f".m_05.keras~{host}~{os.getppid()}.partial"
    elsewhere = tmp_path / f".m_06.keras~other-host.example~{dead_pid()}.partial"
    for path in (stale, mine, running, elsewhere):
        path.write_bytes(b"PK")
    assert saving.remove_stale_temporaries(str(tmp_path)) == [str(stale)]
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in (mine, running, elsewhere))
    snapshot = Snapshot(str(tmp_path / "m_{epoch:02d}.keras"), verbose=0)
    stale.write_bytes(b"PK")
    snapshot.on_train_begin()
    assert not stale.exists()


def test_latest_snapshot_is_the_highest_complete_epoch(tmp_path):
    assert latest_snapshot(str(tmp_path / "missing")) is None and latest_snapshot(str(tmp_path)) is None
    model = tiny_model()
    for epoch in (1, 2, 3):
        save_model(model, str(tmp_path / f"vgg16_csv_{epoch:02d}.keras"), epoch=epoch, backbone="vgg16", dataset="csv")
    save_model(model, str(tmp_path / "resnet50_csv_09.keras"), epoch=9, backbone="resnet50", dataset="csv")
    save_model(model, str(tmp_path / "plain.keras"))  # a model without an epoch is no snapshot
    (tmp_path / f".vgg16_csv_05.keras~{saving.socket.gethostname()}~{dead_pid()}.partial").write_bytes(b"PK")
    assert latest_snapshot(str(tmp_path), backbone="vgg16") == str(tmp_path / "vgg16_csv_03.keras")
    assert latest_snapshot(str(tmp_path)) == str(tmp_path / "resnet50_csv_09.keras")
    assert latest_snapshot(str(tmp_path), backbone="vgg16", dataset="coco") is None
    # a file cut short (as a non-atomic writer killed mid-save leaves it) is skipped
    whole = (tmp_path / "vgg16_csv_03.keras").read_bytes()
    (tmp_path / "vgg16_csv_03.keras").write_bytes(whole[:len(whole) // 2])
    with pytest.warns(UserWarning, match=r"snapshot '.*vgg16_csv_03.keras' is incomplete or damaged; ignored"):
        assert latest_snapshot(str(tmp_path), backbone="vgg16") == str(tmp_path / "vgg16_csv_02.keras")
    # a file whose members are damaged, with its directory intact, is skipped too
    data = bytearray((tmp_path / "vgg16_csv_02.keras").read_bytes())
    offset = data.index(b"model.weights.h5") + 200
    data[offset:offset + 64] = b"\xff" * 64
    (tmp_path / "vgg16_csv_02.keras").write_bytes(bytes(data))
    with pytest.warns(UserWarning) as warned:
        assert latest_snapshot(str(tmp_path), backbone="vgg16") == str(tmp_path / "vgg16_csv_01.keras")
    assert [str(warning.message) for warning in warned] == [
        f"snapshot '{tmp_path / name}' is incomplete or damaged; ignored"
        for name in ("vgg16_csv_03.keras", "vgg16_csv_02.keras")]


def test_a_discarding_snapshot_saves_and_leaves_nothing(tmp_path):
    """What the workers other than the chief of --multi-worker do: save (they take part in the
    chief's save) and delete the file and its folder."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    folder = tmp_path / "scratch"
    callback = Snapshot(str(folder / "{epoch:02d}.keras"), metadata=dict(backbone="x"), model=model, verbose=0,
                        discard=True)
    callback.on_epoch_end(0)
    assert not folder.exists() and callback.last_path is None
