"""Training on two worker processes on 127.0.0.1, against one process on one device.

Each worker is a subprocess bounded in time; both are killed when one fails or the time runs
out. The ports are free ones chosen by the test.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from keras_maskrcnn.utils import multi_worker
from keras_maskrcnn.utils.distribution_test import BATCH_AND_MODEL

# One SGD step on the global batch of distribution_test (2 images with different numbers of
# objects, frozen batch normalisation) in the cluster, image i on worker i, from the same initial
# weights. Worker 0 first takes the same step on one device, outside the cluster's scope, as the
# reference: one process fewer than with a reference process of its own (the test on both backends
# took 116 s of CPU against 148 s). Each writes its logs and updated weights to an .npz: the
# worker's to the first argument, worker 0's reference to the second.
_STEP_SCRIPT = textwrap.dedent("""
    import json
    import sys
    import numpy as np
    import keras
    from keras_maskrcnn.utils import multi_worker

    out, reference_out = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None
    workers = multi_worker.initialize()
""") + BATCH_AND_MODEL + textwrap.dedent("""
    x, y, positives = global_batch()

    def save(path, model, logs, about):
        weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
        np.savez(path, logs=json.dumps(logs), about=json.dumps(about), **weights)

    class Shard(keras.utils.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            shards, count = workers.local_shards()
            assert count == 2 and len(shards) == 1, (shards, count)
            i = shards[0]
            return ({k: v[i:i + 1] for k, v in x.items()}, {k: v[i:i + 1] for k, v in y.items()})

    if reference_out:
        single = build()
        initial = single.get_weights()
        save(reference_out, single, one_step(single), dict(positives=positives))
    else:
        initial = build().get_weights()
    with workers.scope():
        model = build()
        model.set_weights(initial)
        if workers.strategy is not None:
            multi_worker.prepare_for_fit(model, Shard()[0])
        history = model.fit(workers.fit_data(Shard()), epochs=1, steps_per_epoch=1, verbose=0)
    logs = {k: float(v[0]) for k, v in history.history.items()}
    save(out, model, logs, dict(workers=workers.num_workers, index=workers.worker_index, replicas=workers.replicas))
""")


def free_ports(count):
    """`count` TCP ports of 127.0.0.1 free at the time of asking."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_environments(backend, count=2):
    """The environment of each of `count` workers on 127.0.0.1, as the backend expects it."""
    ports = free_ports(count)
    environments = []
    for index in range(count):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        env["XLA_FLAGS"] = " ".join(flag for flag in env.get("XLA_FLAGS", "").split()
                                    if "device_count" not in flag)  # one CPU device per worker
        if backend == "tensorflow":
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                           "task": {"type": "worker", "index": index}})
        else:
            env.update(KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{ports[0]}",
                       KERAS_DISTRIBUTION_NUM_PROCESSES=str(count), KERAS_DISTRIBUTION_PROCESS_ID=str(index))
        environments.append(env)
    return environments


def run_workers(command, environments, timeout, cwd=None):
    """Runs `command` (or a list of commands, one per environment) once per environment at the
    same time; returns their (returncode, stdout, stderr). All are killed when one fails or when
    `timeout` seconds have passed (then an AssertionError shows what each printed)."""
    commands = command if isinstance(command[0], list) else [command] * len(environments)
    processes = [subprocess.Popen(c, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for c, env in zip(commands, environments)]
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in processes):
            if any(p.poll() not in (None, 0) for p in processes) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    results = [(p.returncode, *p.communicate()) for p in processes]
    if any(code != 0 for code, _, _ in results):
        report = "\n".join(f"--- worker {i} (exit {code}):\n{out[-1500:]}\n{err[-2500:]}"
                           for i, (code, out, err) in enumerate(results))
        raise AssertionError(f"a worker failed or ran out of {timeout} s:\n{report}")
    return results


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_step_on_two_workers_equals_a_step_on_one_device(backend, tmp_path):
    import numpy as np

    if backend == "jax":
        pytest.importorskip("jax", reason="the JAX variant needs jax installed")
    outputs = [tmp_path / f"{name}.npz" for name in ("single", "worker0", "worker1")]
    commands = [[sys.executable, "-c", _STEP_SCRIPT, str(outputs[1]), str(outputs[0])],
                [sys.executable, "-c", _STEP_SCRIPT, str(outputs[2])]]
    run_workers(commands, cluster_environments(backend), timeout=240)
    single, *reports = [np.load(out) for out in outputs]
    single_logs, count = json.loads(str(single["logs"])), len(single.files) - 2
    initial_positives = json.loads(str(single["about"]))["positives"]
    assert initial_positives[0] != initial_positives[1]
    for index, report in enumerate(reports):
        about, logs = json.loads(str(report["about"])), json.loads(str(report["logs"]))
        print(backend, index, about, logs, single_logs)
        assert about == dict(workers=2, index=index, replicas=2)
        for name in single_logs:
            assert abs(logs[name] - single_logs[name]) <= 1e-6 * max(1.0, abs(single_logs[name])), name
        difference = max(float(np.max(np.abs(report[f"w{i}"] - single[f"w{i}"]))) for i in range(count))
        print("largest weight difference", difference)
        assert difference <= 1e-6, f"weights differ by up to {difference}"


def test_tf_config_gives_the_worker_count_and_index(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
                                                "task": {"type": "worker", "index": 1}}))
    assert multi_worker.tf_config_task() == (3, 2)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["b:1"]}, "task": {"type": "worker",
                                                                                          "index": 1}}))
    with pytest.raises(ValueError, match="task worker 1 is not in the cluster"):
        multi_worker.tf_config_task()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not a cluster and task description"):
        multi_worker.tf_config_task()
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ValueError, match="TF_CONFIG is not set"):
        multi_worker.tf_config_task()


def test_two_worker_maskrcnn_train_writes_one_snapshot_that_opens(small_shapes, tmp_path):
    """Two TensorFlow workers train 2 steps of a global batch of 2 (VGG16, the backbone with the fewest
    layers to trace: 76 s of CPU against 108 s for MobileNetV2); only the chief writes into
    --snapshot-path (one snapshot, one CSV log), and load_model opens the snapshot."""
    import numpy as np

    from keras_maskrcnn.models import load_model

    snapshots = tmp_path / "snapshots"
    command = [os.path.join(os.path.dirname(sys.executable), "maskrcnn-train"), "--multi-worker",
               "--backbone", "vgg16", "--image-min-side", "64", "--image-max-side", "64",
               "--config", small_shapes["config"], "--feature-size", "16", "--mask-feature-size", "16",
               "--batch-size", "2", "--epochs", "1", "--steps", "2", "--mask-rois", "2", "--max-detections", "5",
               "--snapshot-path", str(snapshots), "--tensorboard-dir", "",
               "csv", small_shapes["train"], small_shapes["classes"], "--val-annotations", small_shapes["val"]]
    results = run_workers(command, cluster_environments("tensorflow"), timeout=240, cwd=str(tmp_path))
    chief, other = (out for _, out, _ in results)
    assert "worker 0 of 2 (chief: writes snapshots and logs)" in chief
    assert "no evaluation during training" in chief and "--seed 0" in chief
    assert "worker 1 of 2," in other and "saved snapshot" not in other
    written = set(os.listdir(snapshots))
    assert {"vgg16_csv.csv", "vgg16_csv_01.keras"} <= written <= {"vgg16_csv.csv", "vgg16_csv_01.keras",
                                                                   "training_curves.png"}
    model = load_model(str(snapshots / "vgg16_csv_01.keras"), "vgg16")
    boxes, scores, labels, masks = model.predict_on_batch(np.zeros((1, 64, 64, 3), np.float32))[-4:]
    assert boxes.shape == (1, 5, 4) and masks.shape == (1, 5, 28, 28, 3)


def test_multi_worker_without_a_cluster_is_a_clear_error(small_shapes, no_model_building, monkeypatch, capsys):
    from keras_maskrcnn.bin import train

    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", raising=False)
    args = ["--multi-worker", "--backbone", "mobilenetv2", "--seed", "0",
            "csv", small_shapes["train"], small_shapes["classes"]]
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert exit_info.value.code == 2
    assert "--multi-worker: TF_CONFIG is not set" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--multi-worker", "--multi-gpu", "2", *args[1:]])
    assert "--multi-worker: not allowed with --multi-gpu" in capsys.readouterr().err


# --- workers fail together -----------------------------------------------------------------------

import signal  # noqa: E402
import threading  # noqa: E402


class _Stops:
    """on_stop recorder for in-process watches: one event and message per worker."""

    def __init__(self, count):
        self.events = [threading.Event() for _ in range(count)]
        self.messages = [None] * count

    def callback(self, index):
        def on_stop(message):
            self.messages[index] = message
            self.events[index].set()
        return on_stop

    def wait(self, indices, timeout=10):
        return all(self.events[i].wait(timeout) for i in indices)


@pytest.fixture
def watch_port(monkeypatch):
    port = free_ports(1)[0]
    monkeypatch.setenv(multi_worker.WATCH_ADDRESS_VARIABLE, f"127.0.0.1:{port}")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    return port


def _watches(count, port, stops, timeout=5.0):
    watches = [multi_worker.WorkerWatch(count, i, ("127.0.0.1", port), timeout=timeout, on_stop=stops.callback(i),
                                        log=lambda text: None) for i in range(count)]
    for watch in watches:
        watch.start()
    assert all(watch.wait_connected(10) for watch in watches), "the watches did not connect"
    return watches


def test_watch_address_from_the_cluster(monkeypatch):
    monkeypatch.delenv(multi_worker.WATCH_ADDRESS_VARIABLE, raising=False)
    monkeypatch.delenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", raising=False)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:5000", "localhost:5001",
                                                                       "other:5002"]},
                                                "task": {"type": "worker", "index": 1}}))
    assert multi_worker.watch_address() == ("localhost", 5002)  # 5001 is worker 1's
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234")
    assert multi_worker.watch_address() == ("10.0.0.1", 1235)
    monkeypatch.setenv(multi_worker.WATCH_ADDRESS_VARIABLE, "[::1]:7000")
    assert multi_worker.watch_address() == ("::1", 7000)
    monkeypatch.delenv(multi_worker.WATCH_ADDRESS_VARIABLE)
    monkeypatch.delenv("KERAS_DISTRIBUTION_JOB_ADDRESSES")
    assert multi_worker.watch_address() is None


def test_exit_reasons():
    assert multi_worker.exit_reason(None) is None
    assert multi_worker.exit_reason(SystemExit(0)) is None and multi_worker.exit_reason(SystemExit()) is None
    assert multi_worker.exit_reason(SystemExit(2)) == "exited with status 2"
    assert multi_worker.exit_reason(SystemExit(2), "prog: error: bad") == "exited with status 2: prog: error: bad"
    assert multi_worker.exit_reason(SystemExit("maskrcnn-train: error: too\nmany")) == \
        "exited with status 1: maskrcnn-train: error: too many"
    assert multi_worker.exit_reason(KeyboardInterrupt()) == "interrupted (Ctrl+C or SIGINT)"
    assert multi_worker.exit_reason(RuntimeError("boom")) == "RuntimeError: boom"


def test_a_worker_whose_connection_closes_stops_the_others(watch_port):
    stops = _Stops(3)
    watches = _watches(3, watch_port, stops)
    try:
        watches[2].close()  # as a killed process: the connection closes without a word
        assert stops.wait([0, 1])
        assert stops.messages[0] == ("--multi-worker: worker 2 of 3 stopped: its connection closed without a word "
                                     "(killed, or crashed); worker 0 stops too")
        assert stops.messages[1].startswith("--multi-worker: worker 2 of 3 stopped: its connection closed")
        assert stops.messages[1].endswith("; worker 1 stops too")
        assert not stops.events[2].is_set()
    finally:
        for watch in watches:
            watch.close()


def test_a_worker_that_says_why_stops_the_others_with_its_reason(watch_port):
    stops = _Stops(3)
    watches = _watches(3, watch_port, stops)
    reason = "maskrcnn-train: error: training set: 3 of 10 images cannot be read, more than --max-bad-images 1"
    try:
        with pytest.raises(SystemExit):
            with watches[1]:
                sys.exit(reason)
        assert stops.wait([0, 2])
        for index in (0, 2):
            assert stops.messages[index] == (f"--multi-worker: worker 1 of 3 stopped: exited with status 1: {reason}; "
                                             f"worker {index} stops too")
        assert not stops.events[1].is_set()
    finally:
        for watch in watches:
            watch.close()


def test_the_chief_stopping_stops_every_worker(watch_port):
    stops = _Stops(3)
    watches = _watches(3, watch_port, stops)
    try:
        watches[0].stop("RuntimeError: out of memory")
        assert stops.wait([1, 2])
        assert stops.messages[2] == ("--multi-worker: worker 0 (the chief) of 3 stopped: RuntimeError: out of memory; "
                                     "worker 2 stops too")
    finally:
        for watch in watches:
            watch.close()


def test_workers_that_finish_stop_nobody(watch_port):
    stops = _Stops(3)
    watches = _watches(3, watch_port, stops, timeout=0.6)
    try:
        with watches[2]:
            pass
        time.sleep(1.5)  # longer than the timeout: the finished worker's silence is no stop
        watches[1].done()
        watches[0].done()
        time.sleep(0.3)
        assert not any(event.is_set() for event in stops.events), stops.messages
    finally:
        for watch in watches:
            watch.close()


def test_a_silent_worker_counts_as_stopped_after_the_timeout(watch_port):
    """A worker that joined and then says nothing (its machine gone): stopped after `timeout` s."""
    stops = _Stops(1)
    chief = multi_worker.WorkerWatch(2, 0, ("127.0.0.1", watch_port), timeout=0.6, on_stop=stops.callback(0)).start()
    try:
        sock = socket.create_connection(("127.0.0.1", watch_port), timeout=5)
        sock.sendall(f"hello {multi_worker._PROTOCOL} 1 {chief.token}\n".encode())
        assert sock.makefile("r").readline().split() == [multi_worker._PROTOCOL, chief.token]
        started = time.monotonic()
        assert stops.wait([0])
        assert time.monotonic() - started >= 0.6 - 0.2
        assert stops.messages[0] == ("--multi-worker: worker 1 of 2 stopped: sent nothing for 0.6 s (hung, or its "
                                     "machine or network is down?); worker 0 stops too")
        sock.close()
    finally:
        chief.close()


def test_a_worker_that_never_joins_counts_as_stopped(watch_port):
    stops = _Stops(1)
    chief = multi_worker.WorkerWatch(2, 0, ("127.0.0.1", watch_port), timeout=0.5, on_stop=stops.callback(0)).start()
    try:
        assert stops.wait([0])
        assert "worker 1 of 2 stopped: did not join the worker watch within 0.5 s" in stops.messages[0]
    finally:
        chief.close()


def test_a_port_in_use_turns_the_watch_off_with_a_note(watch_port):
    blocker = socket.create_server(("127.0.0.1", watch_port))
    notes = []
    try:
        for index in (0, 1):
            watch = multi_worker.WorkerWatch(2, index, ("127.0.0.1", watch_port), timeout=1.0,
                                             on_stop=lambda message: notes.append(message), log=notes.append).start()
            started = time.monotonic()
            assert not watch.wait_connected(5)
            assert time.monotonic() - started < 4.5
            watch.close()
    finally:
        blocker.close()
    assert len(notes) == 2, notes
    assert notes[0].startswith(f"--multi-worker: cannot listen at 127.0.0.1:{watch_port} for the worker watch")
    assert "is not this cluster's worker watch" in notes[1] or "cannot reach worker 0's watch" in notes[1]


def test_strangers_are_not_let_in(watch_port):
    stops = _Stops(1)
    chief = multi_worker.WorkerWatch(2, 0, ("127.0.0.1", watch_port), timeout=5, on_stop=stops.callback(0)).start()
    try:
        sock = socket.create_connection(("127.0.0.1", watch_port), timeout=5)
        sock.sendall(b"hello keras-maskrcnn-watch-1 1 0000000000000000\n")
        sock.makefile("r").readline()
        assert sock.recv(10) == b""  # closed by the chief
        sock.close()
        time.sleep(0.2)
        assert chief.peers == {} and not stops.events[0].is_set()
    finally:
        chief.close()


_WATCHED_SCRIPT = textwrap.dedent("""
    import sys
    import time
    from keras_maskrcnn.utils import multi_worker

    count, index, mode, timeout = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    with multi_worker.watching():
        watch = multi_worker.start_watch((count, index), timeout=timeout)
        assert watch.wait_connected(20)
        print("started", flush=True)
        if mode == "bad-images":
            time.sleep(1.0)
            sys.exit("maskrcnn-train: error: training set: 2 of 4 images cannot be read, more than "
                     "--max-bad-images 0 allows")
        time.sleep(600)  # stands for a collective operation that never returns
""")


def _start_watched(count, modes, timeout, port):
    env = dict(os.environ, **{multi_worker.WATCH_ADDRESS_VARIABLE: f"127.0.0.1:{port}"})
    env.pop("TF_CONFIG", None)
    processes = [subprocess.Popen([sys.executable, "-c", _WATCHED_SCRIPT, str(count), str(i), modes[i], str(timeout)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(count)]
    for process in processes:
        assert process.stdout.readline().strip() == "started"
    return processes


def _wait_all(processes, timeout):
    """{index: (exit status, stderr, seconds from now to its exit)}; kills what is still running at the end."""
    started, results = time.monotonic(), {}
    try:
        while len(results) < len(processes) and time.monotonic() - started < timeout:
            for i, process in enumerate(processes):
                if i not in results and process.poll() is not None:
                    results[i] = (process.returncode, process.stderr.read(), time.monotonic() - started)
            time.sleep(0.02)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
    return results


def test_killing_one_worker_process_stops_the_others(watch_port):
    """Three processes on 127.0.0.1, each in a 'collective' that never returns; worker 1 is killed
    (SIGKILL): workers 0 and 2 exit with WORKER_STOPPED_EXIT naming worker 1, long before the
    60 s timeout (the closed connection is seen at once)."""
    processes = _start_watched(3, ["wait"] * 3, 60, watch_port)
    processes[1].send_signal(signal.SIGKILL)
    results = _wait_all(processes, timeout=30)
    assert results[1][0] == -signal.SIGKILL
    for index in (0, 2):
        code, err, seconds = results[index]
        print(f"worker {index} exited {seconds:.2f} s after worker 1 was killed")
        assert code == multi_worker.WORKER_STOPPED_EXIT
        assert (f"--multi-worker: worker 1 of 3 stopped: its connection closed without a word (killed, or crashed); "
                f"worker {index} stops too") in err


def test_a_worker_past_max_bad_images_stops_the_others(watch_port):
    processes = _start_watched(2, ["wait", "bad-images"], 60, watch_port)
    results = _wait_all(processes, timeout=30)
    assert results[1][0] == 1 and "more than --max-bad-images 0 allows" in results[1][1]
    code, err, seconds = results[0]
    print(f"worker 0 exited {seconds:.2f} s after worker 1 started to stop")
    assert code == multi_worker.WORKER_STOPPED_EXIT
    assert ("--multi-worker: worker 1 of 2 stopped: exited with status 1: maskrcnn-train: error: training set: "
            "2 of 4 images cannot be read, more than --max-bad-images 0 allows; worker 0 stops too") in err


def test_killing_the_chief_stops_the_workers(watch_port):
    processes = _start_watched(2, ["wait", "wait"], 60, watch_port)
    processes[0].send_signal(signal.SIGKILL)
    results = _wait_all(processes, timeout=30)
    code, err, seconds = results[1]
    print(f"worker 1 exited {seconds:.2f} s after the chief was killed")
    assert code == multi_worker.WORKER_STOPPED_EXIT
    assert "--multi-worker: worker 0 (the chief) of 2 stopped: its connection closed without a word" in err


def _train_command(small_shapes, annotations, snapshots, *extra):
    return [os.path.join(os.path.dirname(sys.executable), "maskrcnn-train"), "--multi-worker",
            "--backbone", "vgg16", "--image-min-side", "64", "--image-max-side", "64",
            "--config", small_shapes["config"], "--feature-size", "16", "--mask-feature-size", "16",
            "--batch-size", "2", "--epochs", "1", "--steps", "2", "--mask-rois", "2", "--max-detections", "5",
            "--snapshot-path", str(snapshots), "--tensorboard-dir", "", "--no-evaluation", *extra,
            "csv", annotations, small_shapes["classes"]]


def _run_train_workers(commands, environments, cwd, kill_after=None):
    """Starts the maskrcnn-train workers; kills worker 1 once it printed `kill_after` (if given); returns
    {index: (status, stdout, stderr, seconds from worker 1's end to this one's)}."""
    processes = [subprocess.Popen(c, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for c, env in zip(commands, environments)]
    outputs = [[] for _ in processes]

    def pump(index):
        for line in processes[index].stdout:
            outputs[index].append(line)

    threads = [threading.Thread(target=pump, args=(i,), daemon=True) for i in range(len(processes))]
    for thread in threads:
        thread.start()
    deadline, ended, killed = time.monotonic() + 240, {}, False
    try:
        while len(ended) < len(processes) and time.monotonic() < deadline:
            if kill_after and not killed and any(kill_after in line for line in outputs[1]):
                processes[1].send_signal(signal.SIGKILL)
                killed = True
            for i, process in enumerate(processes):
                if i not in ended and process.poll() is not None:
                    ended[i] = time.monotonic()
            time.sleep(0.05)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        for thread in threads:
            thread.join(10)
    assert len(ended) == len(processes), "".join(outputs[0][-30:])
    return {i: (p.returncode, "".join(outputs[i]), ended[i] - ended[1]) for i, p in enumerate(processes)}


def test_maskrcnn_train_workers_stop_together(small_shapes, tmp_path):
    """Two TensorFlow maskrcnn-train workers on 127.0.0.1: (1) worker 1 reads a CSV with an unreadable
    image and --max-bad-images 0: it stops while worker 0 goes on to build its model, and worker 0
    exits with status 3 naming worker 1 and its reason; (2) worker 1 is killed (SIGKILL) once it joined
    the cluster: worker 0 exits with status 3 naming it."""
    bad = tmp_path / "bad.csv"
    folder = os.path.dirname(small_shapes["train"])
    rows = [line.split(",") for line in open(small_shapes["train"]).read().splitlines() if line.strip()]
    rows = [[os.path.join(folder, row[0]), *row[1:6], os.path.join(folder, row[6])] for row in rows]
    rows.append([rows[0][0].replace(".png", "-missing.png"), *rows[0][1:]])
    bad.write_text("".join(",".join(row) + "\n" for row in rows))
    environments = cluster_environments("tensorflow")
    commands = [_train_command(small_shapes, small_shapes["train"], tmp_path / "s0"),
                _train_command(small_shapes, str(bad), tmp_path / "s1", "--max-bad-images", "0")]
    results = _run_train_workers(commands, environments, str(tmp_path))
    status, output, _ = results[1]
    assert status == 2 and "--max-bad-images" in output, output[-2000:]
    status, output, seconds = results[0]
    print(f"max-bad-images: worker 0 exited {seconds:.2f} s after worker 1's process ended")
    assert status == multi_worker.WORKER_STOPPED_EXIT, output[-3000:]
    assert ("--multi-worker: worker 1 of 2 stopped: exited with status 2: maskrcnn-train: error: training set: "
            "1 of 5 images cannot be read" in output), output[-3000:]

    environments = cluster_environments("tensorflow")
    commands = [_train_command(small_shapes, small_shapes["train"], tmp_path / f"k{i}") for i in range(2)]
    results = _run_train_workers(commands, environments, str(tmp_path), kill_after="--multi-worker: worker 1 of 2")
    assert results[1][0] == -signal.SIGKILL
    status, output, seconds = results[0]
    print(f"kill: worker 0 exited {seconds:.2f} s after worker 1 was killed")
    assert status == multi_worker.WORKER_STOPPED_EXIT, output[-3000:]
    assert ("--multi-worker: worker 1 of 2 stopped: its connection closed without a word (killed, or crashed); "
            "worker 0 stops too") in output
    assert not os.path.exists(tmp_path / "k0" / "vgg16_csv_01.keras")
