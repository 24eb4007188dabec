import gc
import multiprocessing
import os
import pickle

import keras
import numpy as np
import pytest

from keras_maskrcnn.preprocessing import shared_batches


def _batch():
    rng = np.random.default_rng(0)
    return ({"image": rng.random((1, 33, 17, 3), dtype=np.float32), "rois": np.zeros((1, 0, 4), np.float32)},
            {"classification": rng.integers(-2, 3, (1, 50)).astype(np.int8), "masks": rng.random((1, 2, 5))},
            [np.float32(1.5), "name", 3])


def _same(a, b):
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_a_shared_batch_unpickles_as_the_batch_and_its_file_is_removed(tmp_path):
    batch = _batch()
    data = pickle.dumps(shared_batches.SharedBatch(batch, str(tmp_path / "folder")))
    assert len(data) < 1000 and len(os.listdir(tmp_path / "folder")) == 1
    got = pickle.loads(data)
    assert _same(batch, got) and os.listdir(tmp_path / "folder") == []
    got[0]["image"][0, 0, 0, 0] = 7.0  # writable, as arrays from a pipe are


def test_a_batch_ending_in_an_empty_array_after_an_unaligned_one_reads_back(tmp_path):
    batch = (np.arange(7, dtype=np.int8), np.zeros((2, 0), np.float32))
    got = pickle.loads(pickle.dumps(shared_batches.SharedBatch(batch, str(tmp_path))))
    assert _same(batch, got)


def test_a_batch_that_cannot_be_written_goes_through_the_pipe_with_a_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="through a pipe"):
        data = pickle.dumps(shared_batches.SharedBatch(_batch(), str(blocker / "folder")))
    assert _same(_batch(), pickle.loads(data))


def test_a_truncated_file_is_an_error_naming_it(tmp_path):
    data = pickle.dumps(shared_batches.SharedBatch(_batch(), str(tmp_path)))
    path = tmp_path / os.listdir(tmp_path)[0]
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(OSError, match=f"batch file {path} holds 100 bytes"):
        pickle.loads(data)


def test_only_keras_worker_processes_wrap_and_dead_processes_folders_are_removed(tmp_path, monkeypatch):
    batch = _batch()
    assert shared_batches.for_transfer(batch, str(tmp_path)) is batch
    monkeypatch.setattr(multiprocessing.current_process(), "name", "Keras_worker_ForkPoolWorker-1")
    assert isinstance(shared_batches.for_transfer(_batch(), str(tmp_path)), shared_batches.SharedBatch)
    monkeypatch.setattr(shared_batches, "_root", lambda: str(tmp_path))
    monkeypatch.setitem(shared_batches._state, "owner", None)
    dead = multiprocessing.get_context("fork").Process(target=int)
    dead.start()
    dead.join()
    (tmp_path / f"{shared_batches.PREFIX}{dead.pid}").mkdir()
    (tmp_path / f"{shared_batches.PREFIX}1").mkdir()  # pid 1 runs
    assert shared_batches.prepare() == str(tmp_path / f"{shared_batches.PREFIX}{os.getpid()}")
    assert sorted(os.listdir(tmp_path)) == [f"{shared_batches.PREFIX}1"]


class _KerasData(keras.utils.PyDataset):
    """A PyDataset that Keras runs in its own worker processes, as a user's own dataset would."""

    def __init__(self, batches, folder):
        super().__init__(workers=2, use_multiprocessing=True)
        self.batches, self.folder = batches, folder

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return shared_batches.for_transfer(self.batches[index], self.folder)


def test_keras_process_workers_give_the_batches_of_the_main_process(tmp_path):
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    rng = np.random.default_rng(0)
    batches = [({"image": rng.random((1, 40, 30, 3), dtype=np.float32)},
                {"classification": rng.integers(-2, 3, (1, 9))}) for _ in range(4)]
    adapter = PyDatasetAdapter(_KerasData(batches, str(tmp_path)))
    adapter.on_epoch_begin()
    got = list(adapter.get_numpy_iterator())
    adapter.on_epoch_end()
    assert len(got) == 4 and all(_same(tuple(e), tuple(g)) for e, g in zip(batches, got))
    assert os.listdir(tmp_path) == []  # the workers wrote their batches there, all read and removed


def test_a_long_lived_worker_reuses_a_released_file_and_keeps_one_still_mapped(tmp_path, monkeypatch):
    monkeypatch.setitem(shared_batches._state, "worker", True)
    monkeypatch.setattr(shared_batches, "_files", {})
    first = pickle.loads(pickle.dumps(shared_batches.SharedBatch(_batch(), str(tmp_path))))
    second = pickle.loads(pickle.dumps(shared_batches.SharedBatch(_batch(), str(tmp_path))))
    assert len(os.listdir(tmp_path)) == 2 and _same(first, _batch()) and _same(second, _batch())
    del first
    gc.collect()
    assert sum(name.endswith(shared_batches.FREE) for name in os.listdir(tmp_path)) == 1
    bigger = (np.ones((3, 1000, 1000), np.float32),)
    third = pickle.loads(pickle.dumps(shared_batches.SharedBatch(bigger, str(tmp_path))))
    assert len(os.listdir(tmp_path)) == 2 and _same(third, bigger) and _same(second, _batch())
    shared_batches.remove_files_of(str(tmp_path), [os.getpid()])
    assert os.listdir(tmp_path) == [] and _same(third, bigger)
