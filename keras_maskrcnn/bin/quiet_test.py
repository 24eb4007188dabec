import importlib
import os
import subprocess
import sys

import pytest

from keras_maskrcnn.bin import quiet

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796644919.413070    6620 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
    "I0000 00:00:1796644919.413432    6620 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
    "will not be used.",
    "E0000 00:00:1796644951.690135    7110 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1758131045.203198 3722035 cuda_dnn.cc:8579] Unable to register cuDNN factory: Attempting to "
    "register factory for plugin cuDNN when one has already been registered",
    "I0000 00:00:1796644919.489733    6620 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
    "appropriate compiler flags.",
]
TOOLS = ["train", "evaluate", "debug", "export", "convert", "shapes"]


def test_quiet_startup_sets_the_log_level_unless_verbose_or_set_by_the_user():
    environ = {}
    assert quiet.quiet_startup(False, environ=environ)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "1"}

    environ = {}
    assert not quiet.quiet_startup(True, environ=environ)
    assert environ == {}

    environ = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    assert not quiet.quiet_startup(False, environ=environ)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "0"}


def test_filtered_stderr_drops_the_start_up_notices_and_keeps_everything_else(capfd):
    real = ["W0000 00:00:1.0 1 some_op.cc:10] a real warning",
            "E0000 00:00:1.0 1 other.cc:20] a real error",
            "Traceback (most recent call last):"]
    with quiet.filtered_stderr():
        for line in NOISE[:3] + real[:1] + NOISE[3:] + real[1:]:
            os.write(2, (line + "\n").encode())
    assert capfd.readouterr().err.splitlines() == real


def test_filtered_stderr_restores_stderr_after_an_exception(capfd):
    with pytest.raises(RuntimeError):
        with quiet.filtered_stderr():
            os.write(2, b"kept before the error\n")
            raise RuntimeError("boom")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "kept before the error\nafter\n"


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_accepts_verbose(tool, capsys):
    module = importlib.import_module(f"keras_maskrcnn.bin.{tool}")
    with pytest.raises(SystemExit):
        module.parse_args(["--help"])
    assert "--verbose" in capsys.readouterr().out


def _tool_run(tmp_path, *extra):
    """stderr of maskrcnn-debug on two 64 px shapes pictures (it imports TensorFlow through Keras)."""
    from keras_maskrcnn.datasets.shapes import make_shapes_dataset

    data = tmp_path / "shapes"
    if not data.exists():
        make_shapes_dataset(str(data), images=2, size=64, seed=0)
    environ = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    environ["KERAS_BACKEND"] = "tensorflow"
    command = [sys.executable, "-m", "keras_maskrcnn.bin.debug", "--output-dir", str(tmp_path / "out"),
               "--image-min-side", "64", "--image-max-side", "64", *extra,
               "csv", str(data / "annotations.csv"), str(data / "classes.csv")]
    run = subprocess.run(command, capture_output=True, text=True, env=environ, timeout=600)
    assert run.returncode == 0, run.stderr
    return run.stderr


def test_a_tool_starts_without_tensorflow_start_up_lines(tmp_path):
    pytest.importorskip("tensorflow")
    stderr = _tool_run(tmp_path)
    assert not [line for line in stderr.splitlines() if quiet.is_startup_notice(line)], stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["00000.png", "00001.png"]
