import gc
import os
import pickle

import numpy as np
import pytest
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

from keras_maskrcnn.preprocessing import shared_batches
from keras_maskrcnn.preprocessing.batch_processes import BatchProcesses
from keras_maskrcnn.preprocessing.generator_test import MemoryGenerator, make_entry, small_kwargs
from keras_maskrcnn.preprocessing.shared_batches_test import _same
from keras_maskrcnn.utils.image import UnreadableImageError


def _entries(count=6):
    return [make_entry((64, 64), [(5, 5, 40, 30)], rng=np.random.default_rng(i)) for i in range(count)]


def _epochs(generator, epochs):
    adapter = PyDatasetAdapter(generator)
    batches = []
    for _ in range(epochs):
        adapter.on_epoch_begin()
        batches.append(list(adapter.get_numpy_iterator()))
        adapter.on_epoch_end()
    return batches


def _pids(generator):
    return sorted(process.pid for process in generator.processes._pool._pool)


def test_worker_processes_outlive_the_epoch_and_give_the_main_process_batches():
    kwargs = small_kwargs(batch_size=2, seed=0)  # shuffled groups: every epoch differs
    expected = _epochs(MemoryGenerator(_entries(), **kwargs), 2)
    generator = MemoryGenerator(_entries(), workers=2, use_multiprocessing=True, **kwargs)
    assert (generator.workers, generator.use_multiprocessing, generator.processes.count) == (3, False, 2)
    got = _epochs(generator, 1)
    pids = _pids(generator)
    got += _epochs(generator, 1)
    assert _pids(generator) == pids and os.getpid() not in pids
    assert [len(epoch) for epoch in got] == [3, 3]
    assert all(_same(tuple(e), tuple(g)) for e_epoch, g_epoch in zip(expected, got) for e, g in zip(e_epoch, g_epoch))
    del got
    gc.collect()
    files = shared_batches.files_of(generator.batch_folder, pids)
    assert files and all(name.endswith(shared_batches.FREE) for name in files)  # released, not one per batch
    assert len(files) <= 2 * generator.max_queue_size
    generator.processes.close()
    assert shared_batches.files_of(generator.batch_folder, pids) == []


def test_shards_are_built_in_the_workers_with_the_main_process_shard():
    kwargs = small_kwargs(batch_size=2, group_method="none", shuffle_groups=False, seed=0)
    expected = MemoryGenerator(_entries(), **kwargs).shard(1, 2)[1]
    generator = MemoryGenerator(_entries(), workers=1, use_multiprocessing=True, **kwargs).shard(1, 2)
    assert _same(tuple(expected), tuple(generator[1]))


class _Failing(MemoryGenerator):
    def load_image(self, image_index):
        raise UnreadableImageError(f"image file 'memory/{image_index}.png' could not be read: broken")


def test_an_error_in_a_worker_is_raised_in_the_main_process_with_its_message():
    generator = _Failing(_entries(2), workers=1, use_multiprocessing=True, **small_kwargs(shuffle_groups=False))
    with pytest.raises(UnreadableImageError, match=r"image file 'memory/0.png' could not be read"):
        generator[0]
    generator.processes.close()
    assert generator.processes._pool is None
    with pytest.raises(UnreadableImageError, match=r"image file 'memory/0.png' could not be read"):
        generator[0]  # in a new pool
    generator.processes.close()


def test_the_pool_is_not_pickled_with_the_generator_and_needs_a_process():
    generator = MemoryGenerator(_entries(2), workers=2, use_multiprocessing=True, **small_kwargs())
    assert pickle.loads(pickle.dumps(generator)).processes is None
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(generator.processes)
    with pytest.raises(ValueError, match="at least 1 process, got 0"):
        BatchProcesses(generator, 0)
    assert MemoryGenerator(_entries(2), workers=0, use_multiprocessing=True, **small_kwargs()).processes is None


def test_maskrcnn_train_sharded_epochs_build_their_shards_in_the_workers():
    from keras_maskrcnn.preprocessing.epoch_data import ShardedEpochData

    kwargs = small_kwargs(batch_size=2, group_method="none", shuffle_groups=False, seed=0)
    expected = MemoryGenerator(_entries(), **kwargs).compute_shard(2, 1, 2)
    generator = MemoryGenerator(_entries(), workers=1, use_multiprocessing=True, **kwargs)
    data = ShardedEpochData(generator, steps=3, shards=[1], count=2)
    assert (data.workers, data.use_multiprocessing) == (2, False)
    assert _same(tuple(expected), tuple(data[2])) and generator.processes._pool is not None
