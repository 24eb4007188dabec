"""maskrcnn-train killed with SIGKILL at random moments, twice while writing a snapshot, and
resumed each time with `--snapshot latest`: every snapshot stays whole, training reaches its last
epoch, and no epoch is trained twice except the one a kill interrupted.

The runs are subprocesses (vgg16 with 16/8 channels at 64 px, 3 steps per epoch, --run-eagerly so
that no run spends its seconds compiling); the test hook KERAS_MASKRCNN_SAVE_PAUSE makes each
save wait 1 s between writing its temporary file and renaming it, so that a kill can land inside
a save.
"""

import csv
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from keras_maskrcnn.models import load_model, read_metadata
from keras_maskrcnn.models.saving import PAUSE_VARIABLE, TEMPORARY_SUFFIX, is_complete_snapshot

EPOCHS = 3
RUN_SECONDS = 240  # each run's bound; a run is killed when it takes longer


@pytest.fixture
def command(small_shapes, tmp_path):
    snapshots = tmp_path / "snapshots"
    args = [sys.executable, "-m", "keras_maskrcnn.bin.train", "--snapshot", "latest", "--run-eagerly",
            "--backbone", "vgg16",
            "--feature-size", "16", "--mask-feature-size", "8", "--batch-size", "1", "--steps", "3",
            "--epochs", str(EPOCHS), "--image-min-side", "64", "--image-max-side", "64", "--mask-rois", "2",
            "--max-detections", "5", "--lr", "1e-4", "--tensorboard-dir", "", "--no-evaluation", "--seed", "0",
            "--config", small_shapes["config"], "--snapshot-path", str(snapshots),
            "csv", small_shapes["train"], small_shapes["classes"]]
    return args, snapshots


class Run:
    """One maskrcnn-train subprocess, its output in a file read while it runs."""

    def __init__(self, args, log):
        self.log = log
        env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3", **{PAUSE_VARIABLE: "1"})
        with open(log, "wb") as handle:
            self.process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env)
        self.deadline = time.monotonic() + RUN_SECONDS

    def output(self):
        return open(self.log, errors="replace").read().replace("\r", "\n")

    def wait_for(self, condition, what):
        """Polls until condition() holds; fails when the run ends or takes too long first."""
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"maskrcnn-train ended (status {self.process.returncode}) before {what}:\n"
                            f"{self.output()[-3000:]}")
            if time.monotonic() > self.deadline:
                pytest.fail(f"no {what} within {RUN_SECONDS} s:\n{self.output()[-3000:]}")
            time.sleep(0.02)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def finish(self):
        try:
            return self.process.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"maskrcnn-train did not finish within {RUN_SECONDS} s:\n{self.output()[-3000:]}")

    def epochs_started(self):
        return [int(epoch) for epoch in re.findall(rf"^Epoch (\d+)/{EPOCHS}$", self.output(), flags=re.M)]


def temporaries(folder, run=None):
    """Temporary snapshot files in folder (of the run's process only, when given)."""
    names = [name for name in os.listdir(folder) if name.endswith(TEMPORARY_SUFFIX)] if folder.is_dir() else []
    return [name for name in names if run is None or name.endswith(f"~{run.process.pid}{TEMPORARY_SUFFIX}")]


def snapshot_files(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".keras"))


def check_snapshots_whole(folder):
    for name in snapshot_files(folder):
        assert is_complete_snapshot(str(folder / name)), name


def test_killed_training_resumes_from_the_latest_whole_snapshot(command, tmp_path):
    args, snapshots = command
    rng = random.Random(12)
    runs = []
    try:
        # 1: killed while writing the first snapshot, before its rename
        run = Run(args, tmp_path / "run1.log")
        runs.append(run)
        run.wait_for(lambda: temporaries(snapshots, run), "a temporary snapshot file")
        run.kill()
        assert snapshot_files(snapshots) == [] and len(temporaries(snapshots)) == 1
        assert "no complete snapshot in" in run.output()

        # 2: starts afresh (nothing whole to resume from), removes the stale temporary; killed at a
        # random moment of epoch 2 (training or saving)
        run = Run(args, tmp_path / "run2.log")
        runs.append(run)
        run.wait_for(lambda: 2 in run.epochs_started(), "epoch 2")
        time.sleep(rng.uniform(0.0, 2.0))
        run.kill()
        assert "left by a run that was stopped while saving" in run.output()
        assert snapshot_files(snapshots)[:1] == ["vgg16_csv_01.keras"]
        check_snapshots_whole(snapshots)

        # 3: resumes; killed inside its first snapshot write
        run = Run(args, tmp_path / "run3.log")
        runs.append(run)
        run.wait_for(lambda: temporaries(snapshots, run), "a temporary snapshot file")
        time.sleep(rng.uniform(0.0, 0.5))
        run.kill()
        check_snapshots_whole(snapshots)

        # 4: resumes and finishes
        run = Run(args, tmp_path / "run4.log")
        runs.append(run)
        assert run.finish() == 0, run.output()[-3000:]
    finally:
        for run in runs:
            if run.process.poll() is None:
                run.kill()

    outputs = [run.output() for run in runs]
    for output in outputs[2:]:
        assert re.search(r"--snapshot latest: resuming from .*vgg16_csv_0\d\.keras", output)
    assert temporaries(snapshots) == []
    names = snapshot_files(snapshots)
    assert names == [f"vgg16_csv_{epoch:02d}.keras" for epoch in range(1, EPOCHS + 1)]
    assert read_metadata(str(snapshots / names[-1]))["epoch"] == EPOCHS
    for name in names:
        model = load_model(str(snapshots / name), "vgg16")
        assert model.outputs[-1].shape[1:] == (5, 28, 28, 3)

    # An epoch is started again only by the run after the one killed during it (a run that
    # finds the last epoch done starts none).
    started = [epochs for epochs in (run.epochs_started() for run in runs) if epochs]
    assert started[0] == [1] and started[-1][-1] == EPOCHS, started
    for earlier, later in zip(started, started[1:]):
        assert later[0] in (earlier[-1], earlier[-1] + 1), started
        assert later == list(range(later[0], later[0] + len(later))), started
    assert sum(len(epochs) for epochs in started) <= EPOCHS + len(runs) - 1, started
    # The CSV log has each finished epoch at most once, in order.
    with open(snapshots / "vgg16_csv.csv") as handle:
        logged = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert logged == sorted(set(logged)) and logged[-1] == EPOCHS - 1
