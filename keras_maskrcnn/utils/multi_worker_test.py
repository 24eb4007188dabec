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
    assert sorted(os.listdir(snapshots)) == ["vgg16_csv.csv", "vgg16_csv_01.keras"]
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
