"""The release check behind `make dist`: builds the sdist and the wheel, checks their metadata, installs
the wheel into a new virtual environment outside the checkout and runs the console scripts there.

Steps, each printed with its time:
  1. `python -m build` on a clean copy of the source (the sdist, then the wheel from the sdist) into dist/;
  2. `twine check --strict` on both;
  3. the wheel's file list, checked: every module of the package and every other file under
     keras_maskrcnn/ but the tests (the `*_test.py` modules and `testdata/` folders beside the code,
     which must not be in it), the LICENSE, the entry points of pyproject's [project.scripts];
  4. a new virtual environment in a temporary folder, `pip install <wheel>[tensorflow]`;
  5. from a temporary folder outside the checkout: the import (from the environment's site-packages),
     every console script's --help, `maskrcnn-shapes`, a two-step `maskrcnn-train`, `maskrcnn-predict`
     and `maskrcnn-evaluate` on the snapshot it wrote.

Run from the repository: `python tests/dist_check.py` (`make dist`). The functions that read
pyproject.toml and check a wheel are used by tests/test_dist.py too.
"""

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "keras_maskrcnn"
# Folders and files of a work tree that a fresh clone does not have and a build must not see.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", "demo-output", "*.pyc", "*.keras")
TINY = ["--backbone", "mobilenetv2", "--image-min-side", "64", "--image-max-side", "64"]


class DistError(RuntimeError):
    """A step of the release check failed; the message says which and why."""


def console_scripts(root=ROOT):
    """The console scripts of pyproject.toml's [project.scripts]: dict name -> "module:function"."""
    with open(Path(root) / "pyproject.toml", "rb") as handle:
        return dict(tomllib.load(handle)["project"].get("scripts", {}))


def is_test_file(name):
    """Whether a path inside the package ("keras_maskrcnn/models/maskrcnn_test.py") is a test module
    or test data (a `testdata` folder beside the tests), which stay out of the wheel and the sdist."""
    parts = name.split("/")
    return parts[-1].endswith("_test.py") or "testdata" in parts[:-1] or parts[0] == "tests"


def package_files(root=ROOT):
    """The files under keras_maskrcnn/ that a wheel must hold, as sorted paths relative to root
    ("keras_maskrcnn/models/maskrcnn.py"): every file but the tests (is_test_file) and compiled or
    cached ones."""
    root = Path(root)
    files = []
    for path in (root / PACKAGE).rglob("*"):
        relative = path.relative_to(root)
        if not path.is_file() or "__pycache__" in relative.parts or path.suffix in (".pyc", ".pyo"):
            continue
        if is_test_file(relative.as_posix()):
            continue
        files.append(relative.as_posix())
    return sorted(files)


def copy_source(destination, root=ROOT, commit=None):
    """Copies the source to destination and returns destination as a Path: the work tree without
    virtual environments, builds, caches and outputs (what a fresh clone has, plus the changes not
    yet committed), or with commit (a git revision such as HEAD) the files of that commit."""
    destination = Path(destination)
    if commit is None:
        shutil.copytree(root, destination, ignore=NOT_SOURCE)
        return destination
    destination.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", commit], capture_output=True)
    if archive.returncode != 0:
        raise DistError(f"git archive {commit} failed: {archive.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, filter="data")
    return destination


def build(outdir, root=ROOT, wheel_only=False, commit=None):
    """Builds the sdist and the wheel from it (or the wheel alone) of a clean copy of root (of its
    git commit when given, see copy_source) into outdir with `python -m build`.

    Returns a dict: sdist (path or None), wheel (path), and the copy's package_files and
    console_scripts (what the wheel must hold, as built, whatever changes in the work tree meanwhile).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="keras-maskrcnn-source-") as scratch:
        source = copy_source(Path(scratch) / "source", root, commit)
        expected = dict(files=package_files(source), scripts=console_scripts(source))
        command = [sys.executable, "-m", "build", "--outdir", str(outdir), str(source)]
        if wheel_only:
            command.insert(3, "--wheel")
        run(command, quiet=True)
    wheels = sorted(outdir.glob("*.whl"))
    sdists = sorted(outdir.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) > 1:
        raise DistError(f"expected one wheel and at most one sdist in {outdir}, found {wheels + sdists}")
    return dict(expected, sdist=sdists[0] if sdists else None, wheel=wheels[0])


def wheel_problems(wheel, files, scripts):
    """What is wrong with the wheel's contents: a list of sentences, empty when it holds every file of
    files (package_files of the source it was built from), no test module or test data, the LICENSE, and exactly
    the console scripts of scripts (dict name -> "module:function")."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = {name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info")}
        if len(dist_info) != 1:
            return [f"{wheel.name} has {len(dist_info)} .dist-info folders"]
        dist_info = dist_info.pop()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode() \
            if f"{dist_info}/entry_points.txt" in names else ""
    problems = []
    missing = sorted(set(files) - set(names))
    if missing:
        problems.append(f"{wheel.name} lacks {len(missing)} package files: {', '.join(missing)}")
    tests = sorted(name for name in names if is_test_file(name))
    if tests:
        problems.append(f"{wheel.name} holds tests: {', '.join(tests)}")
    if f"{dist_info}/licenses/LICENSE" not in names:
        problems.append(f"{wheel.name} has no {dist_info}/licenses/LICENSE")
    if parse_console_scripts(entry_points) != scripts:
        problems.append(f"{wheel.name}'s console scripts {parse_console_scripts(entry_points)} "
                        f"differ from pyproject's {scripts}")
    return problems


def parse_console_scripts(entry_points_text):
    """The [console_scripts] section of an entry_points.txt: dict name -> "module:function"."""
    scripts, section = {}, None
    for line in entry_points_text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and section == "console_scripts":
            name, target = (part.strip() for part in line.split("=", 1))
            scripts[name] = target
    return scripts


def run(command, cwd=None, env=None, quiet=False, timeout=1800, shown=None):
    """Runs command, printing it and its output (quiet: only the last 3 lines, or the first `shown`);
    raises DistError when it fails, after printing all of it. Returns its output (stdout and stderr)."""
    print("  $ " + " ".join(str(part) if str(part) else "''" for part in command), flush=True)
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=timeout)
    lines = result.stdout.rstrip().splitlines()
    if quiet and result.returncode == 0:
        lines = lines[:shown] if shown else lines[-3:]
    for line in lines:
        print("    " + line)
    if result.returncode != 0:
        raise DistError(f"{Path(str(command[0])).name} exited with status {result.returncode}")
    return result.stdout


def clean_environment(venv):
    """os.environ for commands of the virtual environment venv: its bin/ first on PATH, and no
    PYTHONPATH, PYTHONHOME or VIRTUAL_ENV of the caller (they could point into the checkout)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def outside_checkout(path):
    """path, after checking that it is not inside the repository."""
    path = Path(path).resolve()
    if path == ROOT or ROOT in path.parents:
        raise DistError(f"{path} is inside the checkout {ROOT}; set TMPDIR to a folder outside it")
    return path


class Steps:
    """Prints numbered steps with the time each took."""

    def __init__(self):
        self.number, self.started = 0, time.monotonic()

    def __call__(self, title):
        self.number += 1
        print(f"\n[{self.number}] {title}", flush=True)
        return self

    def __enter__(self):
        self.step_started = time.monotonic()

    def __exit__(self, *exc):
        print(f"    ({time.monotonic() - self.step_started:.1f} s)", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist-dir", default=str(ROOT / "dist"), help="folder for the sdist and wheel (emptied)")
    parser.add_argument("--keep", action="store_true", help="keep the virtual environment and the work folder")
    parser.add_argument("--extra", default="tensorflow", help="the extra installed with the wheel (default tensorflow)")
    parser.add_argument("--commit", default=None,
                        help="build from this git revision (e.g. HEAD) instead of the work tree as it is")
    args = parser.parse_args(argv)
    step = Steps()
    dist_dir = Path(args.dist_dir)
    scratch = outside_checkout(tempfile.mkdtemp(prefix="keras-maskrcnn-dist-"))
    try:
        source = f"git revision {args.commit}" if args.commit else "the work tree"
        with step(f"build the sdist and the wheel (python -m build on a clean copy of {source})"):
            shutil.rmtree(dist_dir, ignore_errors=True)
            built = build(dist_dir, commit=args.commit)
            sdist, wheel, scripts = built["sdist"], built["wheel"], built["scripts"]
            for path in (sdist, wheel):
                print(f"    {path.relative_to(ROOT) if ROOT in path.parents else path}: {path.stat().st_size} bytes")
        with step("twine check --strict"):
            run([sys.executable, "-m", "twine", "check", "--strict", sdist, wheel])
        with step(f"the wheel's files ({wheel.name})"):
            with zipfile.ZipFile(wheel) as archive:
                for info in archive.infolist():
                    print(f"    {info.file_size:8d}  {info.filename}")
            problems = wheel_problems(wheel, built["files"], scripts)
            if problems:
                raise DistError("; ".join(problems))
            print(f"    all {len(built['files'])} package files, the LICENSE and the {len(scripts)} console scripts "
                  "are in it; no tests")
        venv = scratch / "venv"
        with step(f"a new virtual environment outside the checkout, pip install {wheel.name}[{args.extra}]"):
            run([sys.executable, "-m", "venv", venv])
            env = clean_environment(venv)
            requirement = f"{wheel.resolve()}[{args.extra}]" if args.extra else str(wheel.resolve())
            run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 requirement], env=env, quiet=True)
        work = scratch / "work"
        work.mkdir()
        with step("import keras_maskrcnn there"):
            output = run([venv / "bin" / "python", "-c",
                          "import importlib.metadata as m, keras_maskrcnn; print(keras_maskrcnn.__file__); "
                          "print('with', *(f'{name} {m.version(name)}' for name in ('keras', 'tensorflow', 'numpy'))); "
                          "print(keras_maskrcnn.__version__, m.version('keras-maskrcnn'))"],
                         cwd=work, env=env)
            where, _, versions = output.strip().splitlines()[-3:]
            if venv.resolve() not in Path(where).resolve().parents:
                raise DistError(f"keras_maskrcnn was imported from {where}, not from {venv}")
            code_version, installed_version = versions.split()
            if code_version != installed_version:
                raise DistError(f"__version__ {code_version} differs from the installed {installed_version}")
        with step(f"--help of the {len(scripts)} console scripts of pyproject.toml"):
            for name in scripts:
                output = run([venv / "bin" / name, "--help"], cwd=work, env=env, quiet=True, shown=1)
                if not output.startswith(f"usage: {name}"):
                    raise DistError(f"{name} --help printed no usage line: {output[:200]!r}")
        with step("maskrcnn-shapes: a train and a val set of 64 px pictures"):
            for subset, images, seed in (("train", 8, 1), ("val", 4, 2)):
                run(["maskrcnn-shapes", work / "data" / subset, "--images", images, "--size", 64, "--seed", seed],
                    cwd=work, env=env)
            anchors = work / "anchors.ini"
            anchors.write_text("[anchor_parameters]\nsizes = 16 32 64 128 256\nstrides = 8 16 32 64 128\n"
                               "ratios = 0.5 1 2\nscales = 1 1.26 1.59\n")
        snapshot = work / "snapshots" / "mobilenetv2_csv_01.keras"
        with step("maskrcnn-train: two steps of one epoch"):
            run(["maskrcnn-train", *TINY, "--config", anchors, "--feature-size", 64, "--mask-feature-size", 32,
                 "--batch-size", 2, "--steps", 2, "--epochs", 1, "--mask-rois", 2, "--max-detections", 5,
                 "--seed", 0, "--snapshot-path", work / "snapshots", "--tensorboard-dir", "", "--no-evaluation",
                 "csv", work / "data/train/annotations.csv", work / "data/train/classes.csv"], cwd=work, env=env)
            if not snapshot.is_file():
                raise DistError(f"maskrcnn-train wrote no {snapshot}")
        with step("maskrcnn-predict on the val pictures"):
            run(["maskrcnn-predict", snapshot, work / "data/val/images", "--output-dir", work / "predictions"],
                cwd=work, env=env)
            images = sorted((work / "data/val/images").iterdir())
            missing = [f"{image.stem}.png" for image in images
                       if not (work / "predictions" / f"{image.stem}.png").is_file()]
            if not (work / "predictions" / "results.json").is_file():
                missing.append("results.json")
            if missing:
                raise DistError(f"maskrcnn-predict did not write {', '.join(missing)} into {work / 'predictions'}")
            print(f"    a picture for each of the {len(images)} images, and results.json")
        with step("maskrcnn-evaluate on the val set"):
            output = run(["maskrcnn-evaluate", *TINY, "--config", anchors, "--max-detections", 5,
                          "csv", work / "data/val/annotations.csv", work / "data/val/classes.csv", snapshot],
                         cwd=work, env=env)
            if "mAP" not in output:
                raise DistError("maskrcnn-evaluate printed no mAP")
    except (DistError, subprocess.TimeoutExpired) as error:
        if not args.keep:  # the virtual environment takes gigabytes; the outputs are kept to look at
            shutil.rmtree(scratch / "venv", ignore_errors=True)
        print(f"\nmake dist FAILED: {error}\n(kept: {scratch}; the virtual environment only with --keep)",
              file=sys.stderr)
        return 1
    print(f"\nmake dist: {wheel.name} and {sdist.name} in {dist_dir} install and run outside the checkout "
          f"({time.monotonic() - step.started:.0f} s in all)")
    if args.keep:
        print(f"kept {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
