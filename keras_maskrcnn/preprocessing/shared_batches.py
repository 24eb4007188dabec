"""Batches from worker processes to the training process through files in shared memory.

Worker processes (batch_processes, Keras's `use_multiprocessing`) return each batch pickled through a pipe. A
batch at 800 x 1333 is about 13 MB, and reading that from a pipe costs the training process more
CPU than building the batch (benchmarks/data.py: two processes were slower than two threads).
Here a worker writes the batch's arrays into one file of a folder in /dev/shm (RAM; the temp folder
where there is none); only the file's name and the arrays' layout go through the pipe, and
unpickling reads the file back into arrays and removes it.

    folder = prepare()                  # in the training process, once
    batch = for_transfer(batch, folder) # in a worker process a SharedBatch, elsewhere unchanged

A long-lived worker (batch_processes, see mark_worker) keeps its files: the training process
renames a file to <name>.free once the batch's arrays are gone, and the worker writes a later
batch into the same, already allocated pages (writing fresh /dev/shm pages costs about 3x more).
A Keras worker, which lives one epoch, writes a new file per batch, removed when it is read.

When a file cannot be written (a full /dev/shm: Docker gives 64 MB by default), the batch goes
through the pipe as before, with one warning per worker process. The folder is removed when the
training process exits, and a folder left by a process that was killed is removed by the next one.
"""

import atexit
import contextlib
import mmap
import multiprocessing
import os
import shutil
import tempfile
import warnings
import weakref

import keras
import numpy as np

PREFIX = "keras-maskrcnn-batches-"
ALIGN = 64  # bytes: every array starts at a multiple of this in its file
FREE = ".free"  # suffix of a file that the training process no longer maps: its worker may reuse it
_state = dict(owner=None, count=0, warned=False, worker=False)
_files = {}  # in a marked worker process: the files it reuses (a dict for their order)


def mark_worker():
    """Makes this process a long-lived worker process, whose batches for_transfer wraps. Its files
    are reused: the training process renames one to <name>.free when its arrays are gone, and the
    worker writes a later batch into the same pages, allocated already."""
    _state["worker"] = True


def files_of(folder, pids):
    """Names of the batch files (in use or .free) of the worker processes `pids` in `folder`."""
    pids = {str(pid) for pid in pids}
    return [name for name in (os.listdir(folder) if os.path.isdir(folder) else []) if name.split("-")[0] in pids]


def remove_files_of(folder, pids):
    """Removes the batch files of the worker processes `pids` from `folder` (a mapped one stays
    readable)."""
    for name in files_of(folder, pids):
        with contextlib.suppress(OSError):
            os.remove(os.path.join(folder, name))


def in_worker():
    """True in a process marked by mark_worker or in a worker process of a Keras PyDataset
    (Keras names them Keras_worker_...)."""
    return _state["worker"] or multiprocessing.current_process().name.startswith("Keras_worker")


def _root():
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def prepare():
    """The folder for this process's batches. The first call in a process removes the folders
    of processes that no longer run and has this one's removed at exit."""
    folder = os.path.join(_root(), f"{PREFIX}{os.getpid()}")
    if _state["owner"] != os.getpid():
        _state["owner"] = os.getpid()
        for name in os.listdir(_root()):
            pid = name[len(PREFIX):]
            if name.startswith(PREFIX) and pid.isdigit() and not _running(int(pid)):
                shutil.rmtree(os.path.join(_root(), name), ignore_errors=True)
        atexit.register(shutil.rmtree, folder, True)
    return folder


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def for_transfer(batch, folder):
    """`batch` as a SharedBatch writing into `folder` inside a worker process, else unchanged
    (also on Windows, where a mapped file cannot be removed)."""
    return SharedBatch(batch, folder) if in_worker() and os.name != "nt" else batch


class SharedBatch:
    """A batch (a `keras.tree` structure of numpy arrays and small values) that pickles as a file
    in `folder`, written when pickled, and unpickles as the batch itself."""

    def __init__(self, batch, folder):
        self.batch, self.folder = batch, folder

    def __reduce__(self):
        leaves = keras.tree.flatten(self.batch)
        positions = [i for i, leaf in enumerate(leaves) if isinstance(leaf, np.ndarray)]
        arrays = [leaves[i] for i in positions]
        specs = [(array.shape, array.dtype.str) for array in arrays]
        reused = _state["worker"]
        try:
            path = _write(self.folder, arrays, specs, reuse=reused)
        except OSError as error:
            if not _state["warned"]:
                _state["warned"] = True
                warnings.warn(f"cannot write a batch into {self.folder} ({error}); this worker process sends "
                              f"its batches through a pipe, which costs the training process more CPU")
            return _same, (self.batch,)
        others = [None if isinstance(leaf, np.ndarray) else leaf for leaf in leaves]
        return read_batch, (path, keras.tree.map_structure(lambda _: 0, self.batch), others, positions, specs, reused)


def _same(batch):
    return batch


def _offsets(specs):
    """(byte offset of each array, bytes up to the last array's end) for arrays of specs [(shape, dtype)]."""
    offsets, end = [], 0
    for shape, dtype in specs:
        start = -(-end // ALIGN) * ALIGN
        offsets.append(start)
        end = start + int(np.prod(shape)) * np.dtype(dtype).itemsize
    return offsets, end


def _write(folder, arrays, specs, reuse=False):
    """Path of a file holding `arrays` at _offsets(specs): a new file, or with `reuse` one of this
    worker's that the training process released (writing into its allocated pages is about 3x
    faster than into new ones; the file only grows)."""
    offsets, need = _offsets(specs)
    path = next((path for path in _files if _claim(path)), None) if reuse else None
    fresh = path is None
    if fresh:
        os.makedirs(folder, exist_ok=True)
        _state["count"] += 1
        path = os.path.join(folder, f"{os.getpid()}-{_state['count']}")
    try:
        with open(path, "wb" if fresh else "r+b") as handle:
            for array, offset in zip(arrays, offsets):
                if array.size:
                    handle.seek(offset)
                    handle.write(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)
            if os.fstat(handle.fileno()).st_size < need:
                handle.truncate(need)
    except OSError:
        _files.pop(path, None)
        with contextlib.suppress(OSError):
            os.remove(path)
        raise
    if reuse:
        _files[path] = None
    return path


def _claim(path):
    try:
        os.rename(path + FREE, path)
        return True
    except FileNotFoundError:
        return False


def _release(path):
    with contextlib.suppress(OSError):  # the folder may be gone at exit
        os.rename(path, path + FREE)


def read_batch(path, structure, others, positions, specs, reused=False):
    """The batch a worker wrote to `path`: its arrays map the file. A reused file is released
    to its worker when the last array is gone; another is removed at once (its memory is freed
    with the last array). structure: the batch's nesting (`keras.tree`); others: its flattened
    leaves, with the arrays left out at `positions`; specs: their (shape, dtype)."""
    offsets, need = _offsets(specs)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        buffer = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY) if size else b""
    if reused and size:
        weakref.finalize(buffer, _release, path)
    else:
        os.remove(path)
    if size < need:
        raise OSError(f"batch file {path} holds {size} bytes, fewer than its arrays need ({need})")
    arrays = (np.frombuffer(buffer, np.dtype(dtype), count=int(np.prod(shape)), offset=offset).reshape(shape)
              for (shape, dtype), offset in zip(specs, offsets))
    leaves = list(others)
    for position, array in zip(positions, arrays):
        leaves[position] = array
    return keras.tree.pack_sequence_as(structure, leaves)
