"""Worker processes that build a generator's batches and live as long as the generator.

Keras starts a new pool of processes for a `use_multiprocessing` PyDataset at every epoch: each
epoch pays for forking the training process, for the copy-on-write faults of the first batches and
for a cold anchor cache, and the first batch waits for all of that. A generator made with
`use_multiprocessing=True` instead gives Keras threads (as with `use_multiprocessing=False`), and
each thread hands its batch to one pool of `workers` processes started at the first batch and
kept until the generator goes away. A worker gets what changes between epochs (the epoch, the
batch's images) with each request and returns the batch through shared_batches (a file in
/dev/shm, not the pipe).

    processes = BatchProcesses(generator, 2)
    batch = processes.run("batch", index, group, ...)  # generator.batch(index, group, ...) in a worker
"""

import multiprocessing
import pickle
import signal
import threading
import weakref

from . import shared_batches

_worker = {}  # in a worker process: the generator it builds batches with
_inherited = {}  # pool key: weak reference to its generator, which forked workers find here


class BatchProcesses:
    """A pool of `count` processes, each with its own copy of `generator` (copied when the first
    batch is asked for, so it sees the generator as it is then: what changes per epoch goes with
    every request)."""

    def __init__(self, generator, count):
        if int(count) < 1:
            raise ValueError(f"a pool needs at least 1 process, got {count!r}")
        self.count = int(count)
        self._generator = weakref.ref(generator)
        self._pool = None
        self._lock = threading.Lock()

    def _start(self):
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context()
                # Under fork the workers inherit the generator (also a worker started later to
                # replace one that died); other start methods get it pickled.
                key = id(self)
                _inherited[key] = self._generator
                copy = None if context.get_start_method() == "fork" else pickle.dumps(self._generator())
                self._pool = context.Pool(self.count, initializer=_initialize, initargs=(key, copy))
                self._finalizer = weakref.finalize(self, _stop, self._pool, key, self._generator().batch_folder)
        return self._pool

    def run(self, method, *args, state=None):
        """generator.<method>(*args) in a worker, after setting the generator's attributes in the
        dict `state`; the worker's exceptions are raised here."""
        return self._start().apply(_run, (method, args, state or {}))

    def close(self):
        """Stops the workers and removes their batch files (a later run starts new ones)."""
        with self._lock:
            if self._pool is not None:
                self._finalizer()
                self._pool = None

    def __getstate__(self):
        raise TypeError("a BatchProcesses pool cannot be pickled; the generator's copies leave it out")


def _stop(pool, key, folder):
    pids = [process.pid for process in pool._pool]
    pool.terminate()
    _inherited.pop(key, None)
    shared_batches.remove_files_of(folder, pids)


def _initialize(key, copy):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the training process, which stops these
    generator = _inherited[key]() if copy is None else pickle.loads(copy)
    generator.processes = None
    _worker["generator"] = generator
    shared_batches.mark_worker()


def _run(method, args, state):
    generator = _worker["generator"]
    for name, value in state.items():
        setattr(generator, name, value)
    return shared_batches.for_transfer(getattr(generator, method)(*args), generator.batch_folder)
