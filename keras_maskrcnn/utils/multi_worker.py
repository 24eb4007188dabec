"""Data-parallel training over several worker processes, on one machine or many.

Every worker runs the same `maskrcnn-train` command. Where they find each other comes from the
environment, as each backend expects it:

- TensorFlow: `TF_CONFIG`, e.g. on the first of two machines
  `{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, "task": {"type": "worker", "index": 0}}`;
  a `tf.distribute.MultiWorkerMirroredStrategy` then runs one replica on each GPU of each
  worker (on the CPU of a worker without GPUs) and all-reduces the gradients.
- JAX: `KERAS_DISTRIBUTION_JOB_ADDRESSES` (the coordinator's host:port, or every worker's,
  comma separated), `KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID`
  (or nothing, where `jax.distributed.initialize` finds the cluster itself, as under SLURM);
  a `keras.distribution.DataParallel` over the devices of every process follows. CPU-only
  processes exchange gradients through gloo.

Each worker reads its own shards of every global batch (`Generator.compute_shard`); worker 0 (TensorFlow's
"chief" task when the cluster has one) is the chief, which alone writes snapshots and logs.
"""

import dataclasses
import json
import os


@dataclasses.dataclass
class Workers:
    """The cluster as this process sees it: num_workers processes, this one worker_index of
    them; replicas: model replicas over all workers (devices), each on its part of a batch."""

    num_workers: int
    worker_index: int
    replicas: int
    strategy: object = None  # TensorFlow's MultiWorkerMirroredStrategy
    distribution: object = None  # JAX's keras.distribution.DataParallel

    @property
    def is_chief(self):
        return self.worker_index == 0

    def scope(self):
        """Context in which to build, compile and fit the model."""
        if self.strategy is not None:
            return self.strategy.scope()
        return self.distribution.scope()

    def check_batch_size(self, batch_size):
        """ValueError unless batch_size (images per step, all workers together) gives every
        worker and every replica the same number of images."""
        if batch_size % self.replicas or batch_size % self.num_workers:
            raise ValueError(f"the batch size {batch_size} must be a multiple of the {self.replicas} model "
                             f"replicas of the {self.num_workers} workers, so that each gets the same number of images")

    def local_shards(self):
        """(shards, count): the shards of every global batch of `count` equal shards that this
        worker reads, in the order its data must yield them. TensorFlow: one shard per local
        replica (the strategy hands each replica one element of the worker's data); JAX: one
        per worker (Keras splits it over the local devices)."""
        if self.strategy is not None:
            local = len(self.strategy.extended.worker_devices)
            return [self.worker_index * local + i for i in range(local)], self.num_workers * local
        return [self.worker_index], self.num_workers

    def fit_data(self, dataset):
        """What to give `fit` for a keras.utils.PyDataset of this worker's shards (local_shards):
        on TensorFlow a distributed dataset of its elements, one per local replica and step
        (so the strategy does not shard or rebatch them again); on JAX the PyDataset itself.
        Give fit its steps_per_epoch: without, on TensorFlow the epoch's per-output loss logs come
        out at half their value (the total is right)."""
        if self.strategy is None:
            return dataset
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

        return self.strategy.distribute_datasets_from_function(
            lambda context: PyDatasetAdapter(dataset, shuffle=False).get_tf_dataset())


def tf_config_task():
    """(num_workers, worker_index) from TF_CONFIG; ValueError naming what is missing or wrong."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError("TF_CONFIG is not set: every worker needs it, e.g. "
                         '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                         '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is not a cluster and task description ({error!r}): {text}") from None
    if kind not in ("chief", "worker") or index >= len(cluster.get(kind, [])) or index < 0:
        raise ValueError(f"TF_CONFIG: task {kind} {index} is not in the cluster {cluster}")
    return len(chiefs) + len(workers), (index if kind == "chief" else len(chiefs) + index)


def initialize(backend=None):
    """Joins the cluster the environment describes; returns its `Workers`. Call it before the
    backend runs any operation (TensorFlow cannot join a cluster later). ValueError when the
    environment does not describe a cluster, or on the torch backend."""
    import keras

    backend = backend or keras.backend.backend()
    if backend == "tensorflow":
        return _initialize_tensorflow()
    if backend == "jax":
        return _initialize_jax()
    raise ValueError(f"training on several workers needs the tensorflow or jax backend, not {backend} "
                     "(set KERAS_BACKEND)")


def _initialize_tensorflow():
    num_workers, worker_index = tf_config_task()
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return Workers(num_workers, worker_index, strategy.num_replicas_in_sync, strategy=strategy)


def _initialize_jax():
    import jax
    import keras

    known = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE")
    if not any(os.environ.get(name) for name in known):
        raise ValueError("KERAS_DISTRIBUTION_JOB_ADDRESSES is not set: every worker needs it (the coordinator's "
                         "host:port), with KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID "
                         "(under SLURM or mpirun JAX finds them itself)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices only; GPUs use NCCL
    keras.distribution.initialize()
    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    return Workers(jax.process_count(), jax.process_index(), len(devices), distribution=distribution)


def prepare_for_fit(model, batch):
    """Works around two faults of Keras 3's TensorFlow trainer under a MultiWorkerMirroredStrategy,
    for `model` built and compiled in the strategy's scope; batch: one local (inputs, targets).

    1. fit builds the compiled loss and metrics from its first distributed batch, reduced across
       workers with `strategy.reduce` on the whole (inputs, targets) structure, which fails
       ("Attempt to convert a value (PerReplica ...)", keras-team/keras#20585). They are built
       here from `batch` instead, and that step of fit is turned off for `model`.
    2. fit averages each step's logs over the workers with `strategy.reduce("MEAN", axis=0)`,
       which fails on the scalars train_step returns ("Invalid reduction dimension 0 for input
       with 0 dimensions"). train_step and test_step return them as shape (1,) here, which that
       reduction averages to the same scalars a single device gives.
    """
    model._symbolic_build(data_batch=tuple(batch))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    for name in ("train_step", "test_step"):
        model.__dict__[name] = _rank_one_logs(getattr(model, name))


def _rank_one_logs(step):
    import keras

    def wrapped(data):
        return {key: keras.ops.reshape(value, (1,)) for key, value in step(data).items()}

    return wrapped


# --- Workers fail together ---------------------------------------------------------------------------
#
# A worker that stops (an error, --max-bad-images, a kill) would leave the others waiting in their
# next collective operation until the backend's own timeout, often for hours. The watch is a small
# side channel beside the backend's: every worker keeps a TCP connection to worker 0 and sends a
# heartbeat; a worker that stops says why ("stop <reason>"), a worker that finishes says "done". Worker 0
# tells every other worker when one stops, and then each of them exits with WORKER_STOPPED_EXIT naming
# the worker that stopped. A killed process is noticed at once (its connection closes); a machine or
# network that goes silent after `timeout` seconds without heartbeats.

DEFAULT_WORKER_TIMEOUT = 60.0
"""Seconds without a heartbeat after which a worker counts as stopped (maskrcnn-train --worker-timeout)."""
WATCH_ADDRESS_VARIABLE = "KERAS_MASKRCNN_WATCH_ADDRESS"
"""host:port where worker 0 listens for the other workers' watch connections; by default worker 0's
cluster host and the first port above its cluster port that no worker of the cluster uses."""
WORKER_STOPPED_EXIT = 3
"""Exit status of a worker that stops because another worker stopped."""
_PROTOCOL = "keras-maskrcnn-watch-1"


def _split_address(address):
    host, _, port = address.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not a host:port address")
    return host.strip("[]"), int(port)


def cluster_addresses():
    """The cluster's host:port addresses from the environment, worker 0's (the chief's) first; [] if unknown."""
    text = os.environ.get("TF_CONFIG")
    if text:
        try:
            cluster = json.loads(text)["cluster"]
            return list(cluster.get("chief", [])) + list(cluster.get("worker", []))
        except (ValueError, KeyError, TypeError, AttributeError):
            return []
    jobs = os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES", "")
    return [address.strip() for address in jobs.split(",") if address.strip()]


def watch_address():
    """(host, port) where worker 0 listens for the watch, or None when the environment does not say.

    KERAS_MASKRCNN_WATCH_ADDRESS when set; otherwise worker 0's cluster host (TF_CONFIG's first
    chief or worker, or the first of KERAS_DISTRIBUTION_JOB_ADDRESSES) with the first port above
    its cluster port that no address of the cluster uses on that host.
    """
    given = os.environ.get(WATCH_ADDRESS_VARIABLE)
    if given:
        return _split_address(given)
    addresses = cluster_addresses()
    if not addresses:
        return None
    host, port = _split_address(addresses[0])
    used = set()
    for address in addresses:
        try:
            used.add(_split_address(address))
        except ValueError:
            continue
    port += 1
    while (host, port) in used:
        port += 1
    return host, port


def _cluster_token():
    """A short digest of the cluster description: only workers of the same cluster talk to each other."""
    import hashlib

    text = "|".join(cluster_addresses()) + "|" + (os.environ.get(WATCH_ADDRESS_VARIABLE) or "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _one_line(text, limit=600):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _default_on_stop(message):
    """Prints `message` to stderr and ends the process at once with WORKER_STOPPED_EXIT (the main thread
    may be blocked inside a collective operation that never returns)."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    try:
        os.write(2, (message + "\n").encode("utf-8", "replace"))
    except OSError:
        pass
    os._exit(WORKER_STOPPED_EXIT)


class _Peer:
    """One watch connection: a socket, a lock for sending, the time of the last message received."""

    def __init__(self, sock, index):
        import threading
        import time

        self.sock, self.index = sock, index
        self.lock = threading.Lock()
        self.last_heard = time.monotonic()
        self.finished = False
        self.gone = threading.Event()  # its connection has ended

    def end_sending(self):
        """No more lines from this side; the other side still reads what was sent (no reset)."""
        import socket

        with self.lock:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def send(self, line):
        with self.lock:
            try:
                self.sock.sendall((line + "\n").encode("utf-8", "replace"))
                return True
            except OSError:
                return False

    def close(self):
        import socket

        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class WorkerWatch:
    """Makes every worker exit within a bounded time when one of them stops, naming it and why.

    Worker 0 listens at `address`; every other worker connects to it. Each side sends a heartbeat
    every `timeout / 6` seconds (at most 5 s). Worker 0 counts a worker as stopped when it says so
    (`stop`), when its connection closes without a `done` (killed, crashed), or after `timeout`
    seconds without a message; it then tells the others and stops itself. The other workers stop
    when worker 0 tells them or stops itself the same ways. Stopping means calling `on_stop(message)`
    from the watch's thread: by default printing the message and `os._exit(WORKER_STOPPED_EXIT)`.

    Args:
        num_workers: the number of workers.
        worker_index: this worker's index (0 is the one that listens).
        address: (host, port) of worker 0's watch (see `watch_address`).
        timeout: seconds of silence after which a worker counts as stopped; also how long the
            workers wait for each other to connect.
        on_stop: called once with a one-line message when another worker stopped.
        log: called with one-line notes (a watch that cannot start); default: print to stderr.
    """

    def __init__(self, num_workers, worker_index, address, timeout=DEFAULT_WORKER_TIMEOUT, on_stop=None,
                 log=None):
        import threading

        if not timeout or timeout <= 0:
            raise ValueError(f"the worker timeout must be a positive number of seconds, not {timeout!r}")
        self.num_workers, self.worker_index = int(num_workers), int(worker_index)
        self.address, self.timeout = address, float(timeout)
        self.interval = max(0.05, min(5.0, self.timeout / 6))
        self.on_stop = on_stop or _default_on_stop
        self.log = log or self._print
        self.token = _cluster_token()
        self.peers = {}
        self.finished = False
        self.stopped = None  # the message given to on_stop
        self._lock = threading.Lock()
        self._joined = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._server = None
        self._threads = []
        self._off = False  # the watch could not start (or reach worker 0): nothing to wait for

    @staticmethod
    def _print(text):
        import sys

        print(text, file=sys.stderr, flush=True)

    def _name(self, index):
        return f"worker {index}" + (" (the chief)" if index == 0 else "")

    def _thread(self, target, *args):
        import threading

        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name=f"keras-maskrcnn-watch-{self.worker_index}")
        thread.start()
        self._threads.append(thread)

    # -- starting ---------------------------------------------------------------------------------

    def start(self):
        """Starts the watch's threads (listening on worker 0, connecting elsewhere); returns self."""
        if self.num_workers < 2:
            return self
        if self.worker_index == 0:
            import socket

            try:
                server = socket.create_server(self.address, reuse_port=False)
            except OSError as error:
                try:
                    server = socket.create_server(("", self.address[1]))
                except OSError:
                    self._turn_off(f"--multi-worker: cannot listen at {self.address[0]}:{self.address[1]} for the "
                                   f"worker watch ({error.strerror or error}); a worker that stops will not stop "
                                   f"the others (set {WATCH_ADDRESS_VARIABLE}=host:port to a free port)")
                    return self
            server.settimeout(self.interval)
            self._server = server
            self._thread(self._accept)
        else:
            self._thread(self._connect)
        self._thread(self._beat)
        return self

    def _accept(self):
        import socket
        import time

        started = time.monotonic()
        while not self._closing.is_set():
            try:
                sock, _ = self._server.accept()
            except socket.timeout:
                missing = [i for i in range(1, self.num_workers) if i not in self.peers]
                if missing and time.monotonic() - started > self.timeout:
                    self._stop(missing[0], f"did not join the worker watch within {self.timeout:g} s")
                    return
                continue
            except OSError:
                return
            self._thread(self._greet, sock)

    def _greet(self, sock):
        sock.settimeout(self.timeout)
        try:
            sock.sendall(f"{_PROTOCOL} {self.token}\n".encode())
            handle = sock.makefile("r", encoding="utf-8", errors="replace", newline="\n")
            words = handle.readline().split()
        except OSError:
            sock.close()
            return
        if len(words) != 4 or words[0] != "hello" or words[1] != _PROTOCOL or words[3] != self.token \
                or not words[2].isdigit() or not 0 < int(words[2]) < self.num_workers:
            sock.close()  # not a worker of this cluster
            return
        peer = _Peer(sock, int(words[2]))
        with self._lock:
            self.peers[peer.index] = peer
            self._joined.notify_all()
        sock.settimeout(None)
        self._read(peer, handle)

    def _connect(self):
        import socket
        import time

        deadline = time.monotonic() + self.timeout
        error = None
        while not self._closing.is_set() and time.monotonic() < deadline:
            try:
                sock = socket.create_connection(self.address, timeout=self.interval)
                sock.settimeout(self.timeout)
                sock.sendall(f"hello {_PROTOCOL} {self.worker_index} {self.token}\n".encode())
                handle = sock.makefile("r", encoding="utf-8", errors="replace", newline="\n")
                words = handle.readline().split()
                if words != [_PROTOCOL, self.token]:
                    sock.close()
                    self._turn_off(f"--multi-worker: {self.address[0]}:{self.address[1]} is not this cluster's "
                                   f"worker watch; a worker that stops will not stop the others "
                                   f"(set {WATCH_ADDRESS_VARIABLE})")
                    return
                sock.settimeout(None)
                peer = _Peer(sock, 0)
                with self._lock:
                    self.peers[0] = peer
                    self._joined.notify_all()
                self._read(peer, handle)
                return
            except OSError as failure:
                error = failure
                time.sleep(min(self.interval, 0.2))
        if not self._closing.is_set():
            self._turn_off(f"--multi-worker: cannot reach worker 0's watch at {self.address[0]}:{self.address[1]} "
                           f"({getattr(error, 'strerror', None) or error}); a worker that stops will not stop "
                           f"the others")

    # -- running ----------------------------------------------------------------------------------

    def wait_connected(self, timeout=None):
        """Whether every connection of this worker is up (worker 0: one from each other worker;
        the others: theirs to worker 0) within `timeout` seconds (None: the watch's timeout)."""
        wanted = self.num_workers - 1 if self.worker_index == 0 else 1
        with self._joined:
            self._joined.wait_for(lambda: len(self.peers) >= wanted or self._off,
                                  self.timeout if timeout is None else timeout)
            return len(self.peers) >= wanted

    def _turn_off(self, note):
        with self._joined:
            self._off = True
            self._joined.notify_all()
        self.log(note)

    def _read(self, peer, handle):
        import time

        said = None
        try:
            for line in handle:
                peer.last_heard = time.monotonic()
                word, _, rest = line.strip().partition(" ")
                if word == "done":
                    said = peer.finished = True
                    break
                if word == "stop":
                    index, _, text = rest.partition(" ")
                    said = True
                    self._stop(int(index) if index.isdigit() else peer.index, text or "no reason given")
                    break
        except (OSError, ValueError):
            pass
        if said is None and not self._closing.is_set():
            self._stop(peer.index, "its connection closed without a word (killed, or crashed)")
        peer.gone.set()
        if peer.finished:
            peer.close()

    def _beat(self):
        import time

        while not self._closing.wait(self.interval):
            now = time.monotonic()
            with self._lock:
                peers = list(self.peers.values())
            for peer in peers:
                if peer.finished:
                    continue
                peer.send("beat")
                if now - peer.last_heard > self.timeout:
                    self._stop(peer.index, f"sent nothing for {self.timeout:g} s (hung, or its machine or "
                                           f"network is down?)")
                    return

    def _stop(self, index, reason):
        """Another worker stopped: tell the rest (worker 0) and stop this one."""
        with self._lock:
            if self.stopped is not None or self.finished:
                return
            message = (f"--multi-worker: {self._name(index)} of {self.num_workers} stopped: {_one_line(reason)}; "
                       f"worker {self.worker_index} stops too")
            self.stopped = message
            peers = [peer for peer in self.peers.values() if peer.index != index]
        self._closing.set()
        if self.worker_index == 0:
            self._tell(peers, f"stop {index} {_one_line(reason)}")
        self.on_stop(message)

    def _tell(self, peers, line, wait=2.0):
        """Sends `line` to `peers`, then waits (at most `wait` s) for them to close their ends, so the
        line is read before this process's end could reset the connections."""
        import time

        for peer in peers:
            peer.send(line)
            peer.end_sending()
        deadline = time.monotonic() + min(wait, self.timeout)
        for peer in peers:
            peer.gone.wait(max(0.0, deadline - time.monotonic()))

    # -- this worker's end ------------------------------------------------------------------------

    def done(self):
        """This worker finished its work normally: the others do not count its end as a stop."""
        self._finish("done")

    def stop(self, reason):
        """This worker stops early for `reason` (one line): every other worker is told and stops."""
        if self.worker_index == 0:
            self._finish(f"stop 0 {_one_line(reason)}")
        else:
            self._finish(f"stop {self.worker_index} {_one_line(reason)}")

    def _finish(self, line):
        if self.num_workers > 1 and not self.finished and self.stopped is None:
            # a worker that ends before its connection is up would leave the others to their timeout
            self.wait_connected(min(self.timeout, 20.0))
        with self._lock:
            if self.finished or self.stopped is not None:
                return
            self.finished = True
            peers = [peer for peer in self.peers.values() if not peer.gone.is_set()]
        self._closing.set()
        self._tell(peers, line, wait=1.0)
        self.close()

    def close(self):
        """Ends the watch's threads and connections (without telling anyone anything)."""
        self._closing.set()
        with self._lock:
            peers = list(self.peers.values())
        for peer in peers:
            peer.close()
        if self._server is not None:
            self._server.close()

    # -- as a context -----------------------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        reason = exit_reason(error, getattr(_RECORDER, "last_line", None))
        if reason is None:
            self.done()
        else:
            self.stop(reason)
        return False


def exit_reason(error, last_error_line=None):
    """One line saying why a process ends with `error` (None: it ends normally: no error, or exit
    status 0); last_error_line: the last line it wrote to stderr, told with an integer exit status
    (argparse's parser.error prints its message, then exits with status 2)."""
    if error is None:
        return None
    if isinstance(error, SystemExit):
        code = error.code
        if code is None or code == 0:
            return None
        if isinstance(code, int):
            return f"exited with status {code}" + (f": {_one_line(last_error_line)}" if last_error_line else "")
        return f"exited with status 1: {_one_line(code)}"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl+C or SIGINT)"
    text = _one_line(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


_ACTIVE = None
_RECORDER = None


class _LastLineRecorder:
    """Stands for sys.stderr while a watch runs: passes everything on, remembers the last line written
    (the last "...error: ..." line when there was one, as parser.error's message may go on over lines)."""

    def __init__(self, stream):
        self._stream = stream
        self._pending = ""
        self._last = self._error = None

    @property
    def last_line(self):
        return self._error or self._last

    def write(self, text):
        try:
            *complete, self._pending = (self._pending + str(text)).split("\n")
            lines = [line.strip() for line in complete if line.strip()]
            if lines:
                self._last = lines[-1]
            errors = [line for line in lines if "error: " in line]
            if errors:
                self._error = errors[-1]
            self._pending = self._pending[-2000:]
        except Exception:  # noqa: BLE001 - recording must never break writing
            pass
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def start_watch(workers, timeout=DEFAULT_WORKER_TIMEOUT, on_stop=None, wait=True):
    """Starts this process's WorkerWatch for `workers` (a Workers, or (num_workers, worker_index));
    returns it, or None when there is one worker or the environment names no address (a note is
    printed). wait: return once the watch's connections are up (at most `timeout` seconds; the
    workers have just met in the backend's cluster, so they all run). Use `watching()` around the
    work so the others learn how this worker ends."""
    global _ACTIVE
    num_workers, worker_index = ((workers.num_workers, workers.worker_index) if isinstance(workers, Workers)
                                 else tuple(workers))
    if num_workers < 2:
        return None
    address = watch_address()
    if address is None:
        WorkerWatch._print(f"--multi-worker: no cluster address to run the worker watch at (set "
                           f"{WATCH_ADDRESS_VARIABLE}=host:port); a worker that stops will not stop the others")
        return None
    global _RECORDER
    if _ACTIVE is not None:
        _ACTIVE.close()
    _ACTIVE = WorkerWatch(num_workers, worker_index, address, timeout=timeout, on_stop=on_stop).start()
    import sys

    if _RECORDER is None and sys.stderr is not None:
        _RECORDER = sys.stderr = _LastLineRecorder(sys.stderr)
    if wait:
        _ACTIVE.wait_connected()
    return _ACTIVE


class watching:
    """Context manager around a command's work: when it ends, the watch that `start_watch` started
    inside it (if any) tells the other workers: done (no error, exit status 0) or stopped and why (an
    exception, a non-zero exit status). Without a watch it does nothing."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        global _ACTIVE, _RECORDER
        import sys

        watch, _ACTIVE = _ACTIVE, None
        try:
            if watch is not None:
                watch.__exit__(kind, error, traceback)
        finally:
            if _RECORDER is not None:
                if sys.stderr is _RECORDER:
                    sys.stderr = _RECORDER._stream
                _RECORDER = None
        return False
