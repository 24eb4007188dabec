"""The wheel a user installs: built like a release (sdist, then the wheel from it), it holds every module,
the LICENSE and the console scripts, no tests, and its modules import from outside the checkout.

The full check, a new virtual environment that installs the wheel and runs the tools, is `make dist`
(tests/dist_check.py); this is its cheaper part, so that a file left out of the wheel fails the suite.
"""

import importlib.metadata
import json
import subprocess
import sys
import zipfile

import pytest

import keras_maskrcnn
from tests.dist_check import ROOT, build, console_scripts, parse_console_scripts, wheel_problems

# Run with `python -I` (no cwd, no PYTHONPATH, no user site on sys.path) and the unzipped wheel put first
# on sys.path by hand: imports every module the wheel holds, runs every console script's --help, and
# reports where each module came from.
IMPORT_EVERYTHING = r"""
import contextlib, importlib, io, json, sys
site, modules, scripts = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
sys.path.insert(0, site)
files, errors = {}, {}
for name in modules:
    try:
        files[name] = importlib.import_module(name).__file__
    except Exception as error:
        errors[name] = f"{type(error).__name__}: {error}"
helps = {}
for script, target in scripts.items():
    module, function = target.split(":")
    out, code = io.StringIO(), None
    with contextlib.redirect_stdout(out):
        try:
            getattr(importlib.import_module(module), function)(["--help"])
        except SystemExit as stop:
            code = stop.code
        except Exception as error:
            code = f"{type(error).__name__}: {error}"
    helps[script] = [code, out.getvalue()[:200]]
print(json.dumps({"files": files, "errors": errors, "helps": helps}))
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """build()'s dict of a release build of the source, with the names in the wheel."""
    built = build(tmp_path_factory.mktemp("dist"))
    with zipfile.ZipFile(built["wheel"]) as archive:
        built["names"] = archive.namelist()
    return built


def test_wheel_holds_every_module_the_license_and_the_console_scripts(dist):
    wheel, names = dist["wheel"], dist["names"]
    assert wheel_problems(wheel, dist["files"], dist["scripts"]) == []
    modules = {name for name in names if name.endswith(".py")}
    expected = {name for name in dist["files"] if name.endswith(".py")}
    assert modules == expected
    assert "keras_maskrcnn/bin/train.py" in modules and "keras_maskrcnn/__init__.py" in modules
    assert not [name for name in names if name.endswith("_test.py") or "testdata" in name or name.startswith("tests/")]
    dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(wheel) as archive:
        license_text, entry_points, metadata = (archive.read(f"{dist_info}/{name}").decode()
                                                for name in ("licenses/LICENSE", "entry_points.txt", "METADATA"))
    assert license_text == (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    assert parse_console_scripts(entry_points) == dist["scripts"] != {}
    assert dist["scripts"]["maskrcnn-train"] == console_scripts()["maskrcnn-train"] == "keras_maskrcnn.bin.train:main"
    headers = dict(line.split(": ", 1) for line in metadata.split("\n\n")[0].splitlines() if ": " in line)
    assert headers["Version"] == keras_maskrcnn.__version__
    assert headers["License-Expression"] == "Apache-2.0"
    assert headers["License-File"] == "LICENSE"


def test_sdist_holds_the_license_changelog_and_build_files_but_no_tests(dist):
    import tarfile

    sdist = dist["sdist"]
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "setup.py"} <= names
    assert "keras_maskrcnn/models/maskrcnn.py" in names
    assert not [name for name in names if name.endswith("_test.py") or "testdata" in name or name.startswith("tests/")]


def test_wheel_problems_names_a_file_left_out(dist, tmp_path):
    wheel, names = dist["wheel"], dist["names"]
    thinner = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(thinner, "w") as target:
        for name in names:
            if name != "keras_maskrcnn/models/saving.py":
                target.writestr(name, source.read(name))
    problems = wheel_problems(thinner, dist["files"], dist["scripts"])
    assert len(problems) == 1 and "lacks 1 package files: keras_maskrcnn/models/saving.py" in problems[0]


def test_wheel_imports_and_runs_help_outside_the_checkout(dist, tmp_path):
    """Every module of the unzipped wheel imports from there (not from the checkout, which the
    editable install of the test environment also offers), and every console script's --help works."""
    wheel, names = dist["wheel"], dist["names"]
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    modules = sorted(name[:-3].replace("/", ".").removesuffix(".__init__") for name in names
                     if name.endswith(".py"))
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run([sys.executable, "-I", "-c", IMPORT_EVERYTHING, str(site), json.dumps(modules),
                             json.dumps(dist["scripts"])], cwd=work, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert sorted(report["files"]) == modules
    elsewhere = {name: path for name, path in report["files"].items() if not path.startswith(str(site) + "/")}
    assert elsewhere == {}
    for script, (code, usage) in report["helps"].items():
        assert code == 0 and usage.startswith(f"usage: {script}"), (script, code, usage)


def test_version_is_the_installed_metadata_version():
    assert keras_maskrcnn.__version__ == importlib.metadata.version("keras-maskrcnn")
