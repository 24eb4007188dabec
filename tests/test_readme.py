"""The README must never promise what does not work: its set-up commands and its Python snippets."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_starts_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_readme_prediction_snippet_runs_as_written(tmp_path):
    snippet = next(block for block in _python_blocks() if "load_model" in block)
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(1, 100, 4) (1, 100) (1, 100) (1, 100, 28, 28, 3)" in result.stdout


def test_readme_old_model_snippet_runs_as_written_on_a_generated_file(tmp_path):
    """The snippet for users of the original, on a keras-maskrcnn 0.2 style file with 80 classes
    written by tests/legacy_h5_writer.py under the published model's name."""
    import cv2
    import numpy as np

    from keras_maskrcnn.models.legacy import legacy_maskrcnn
    from tests.legacy_h5_writer import write_legacy_h5

    snippet = next(block for block in _python_blocks() if "resnet50_coco_v0.2.0.h5" in block)
    write_legacy_h5(legacy_maskrcnn(80), str(tmp_path / "resnet50_coco_v0.2.0.h5"))
    cv2.imwrite(str(tmp_path / "photo.jpg"), np.random.default_rng(0).integers(0, 255, (150, 200, 3), np.uint8))
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(1, 100, 4) (1, 100) (1, 100) (1, 100, 28, 28, 80)" in result.stdout


def test_readme_export_snippet_runs_as_written(tmp_path):
    """The Deploy section's Python example: export to ONNX (checked against Keras), reload, predict."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    snippet = next(block for block in _python_blocks() if "export_model" in block)
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "True True\n(1, 100, 4) (1, 100) (1, 100) (1, 100, 28, 28, 3)" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]


def test_readme_predictor_snippet_runs_as_written(tmp_path):
    snippet = next(block for block in _python_blocks() if "Predictor(" in block)
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "shapes/images/00000.png" in result.stdout and (tmp_path / "prediction.png").is_file()
