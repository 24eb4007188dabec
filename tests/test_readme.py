"""The README must never promise what does not work: its set-up commands and its Python snippets."""

import re
import subprocess
import sys
from pathlib import Path

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


def test_readme_training_snippet_runs_as_written(tmp_path):
    snippet = next(block for block in _python_blocks() if "training_model" in block)
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
