"""The documentation site must build and its examples must run.

- `mkdocs build --strict` builds the site (mkdocs.yml, docs/) into a temporary folder: a broken
  link between pages, a missing anchor, an API reference to something that does not exist
  (mkdocstrings) or a missing included file (CHANGELOG.md, benchmarks/README.md) fails the build.
- Every ```python block of docs/*.md runs as written, each in a fresh Python process in an empty
  folder. Blocks that must not run here (they need a trained model, a data set of the user's, a
  download or minutes of CPU) are fenced ```py instead: shown the same, never run. Runnable
  blocks use tiny models (VGG16 with 32-channel heads) and 96 px pictures, and there are few of
  them, so that this file takes well under a minute of CPU.
- The pages, the README and benchmarks/README.md speak of the library and its results only: no
  account of how the project was developed.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _python_blocks():
    """[(page name, index on the page, code)] of every ```python block of the site's pages."""
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        for index, code in enumerate(re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)):
            blocks.append((str(page.relative_to(DOCS)), index, code))
    return blocks


BLOCKS = _python_blocks()


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-5000:]
    site = tmp_path / "site"
    for page in ("getting-started", "datasets", "training", "evaluation", "prediction", "deploying",
                 "old-models", "distributed", "benchmarks", "changelog", "api/predictor", "api/models",
                 "api/preprocessing", "api/evaluation", "api/runtimes"):
        assert (site / page / "index.html").is_file(), page
    # the API reference is rendered from the docstrings
    assert "score_threshold" in (site / "api" / "predictor" / "index.html").read_text()
    assert "load_model" in (site / "api" / "models" / "index.html").read_text()
    assert "YoloGenerator" in (site / "api" / "preprocessing" / "index.html").read_text()


def test_there_are_runnable_blocks_and_few():
    assert 2 <= len(BLOCKS) <= 5, [(page, index) for page, index, _ in BLOCKS]


@pytest.mark.parametrize("page,index,code", BLOCKS, ids=[f"{page}[{index}]" for page, index, _ in BLOCKS])
def test_python_block_runs_as_written(page, index, code, tmp_path):
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, f"{page} block {index}:\n{result.stderr[-3000:]}"
    if "Predictor(" in code:
        assert "shapes/images/00000.png" in result.stdout and (tmp_path / "prediction.png").is_file()
    if "CSVGenerator(" in code and "evaluate_model" not in code:
        assert result.stdout.startswith("4 3 (96, 96, 3)\n")
    if "evaluate_model" in code:
        assert "mask AP" in result.stdout and "circle" in result.stdout


# words of a diary: sessions, rounds, virtual machines, dates of work, commit hashes
HISTORY = re.compile(r"\bsessions?\b|\bVMs?\b|\blast time\b|\bwe tried\b|\brounds? of work\b|\b20\d\d-\d\d-\d\d\b|"
                     r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b", flags=re.I)


@pytest.mark.parametrize("path", ["README.md", "benchmarks/README.md"] +
                         sorted(str(page.relative_to(ROOT)) for page in DOCS.rglob("*.md")))
def test_pages_hold_no_account_of_the_projects_history(path):
    text = (ROOT / path).read_text()
    found = sorted({match.group(0) for match in HISTORY.finditer(text)})
    assert not found, f"{path}: {found}"
