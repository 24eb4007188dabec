"""A quiet start-up for the command-line tools: TensorFlow's C++ start-up notices are not printed.

Importing TensorFlow prints lines that say nothing about the user's run: CUDA probing on a machine
without a GPU ("Could not find cuda drivers", "failed call to cuInit", "Unable to register cuDNN
factory"), the oneDNN notice, the CPU instruction note and absl's "All log messages before
absl::InitializeLog() ..." banner. Since TensorFlow 2.19 most of them come from absl before its
logging is set up and ignore `TF_CPP_MIN_LOG_LEVEL`, so setting that variable is not enough.

`quiet_startup()` therefore does two things, unless `--verbose` was given or the user set
`TF_CPP_MIN_LOG_LEVEL` himself (then nothing changes):

- sets `TF_CPP_MIN_LOG_LEVEL=1`, so TensorFlow's later C++ INFO lines are hidden while its warnings
  and errors still show;
- when TensorFlow is first imported (by Keras, tf2onnx or anyone else), that import and the device
  probe that follows it run with the process's stderr (file descriptor 2) captured; afterwards every
  captured line is written back to stderr except the known start-up notices listed in
  `STARTUP_NOTICES`. A real warning or error printed during the import still shows.

oneDNN stays on (`TF_ENABLE_ONEDNN_OPTS` is not touched: turning it off changes the numbers); only
its notice is hidden. Python warnings and Python logging (absl, `tf.get_logger()`) are untouched.
TensorFlow is not imported by this module: a tool that never needs it (for example one that runs an
ONNX export) does not pay for it.
"""

import contextlib
import importlib.abc
import os
import sys
import tempfile
import threading

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"

STARTUP_NOTICES = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "TF-TRT Warning: Could not find TensorRT",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
)
"""Substrings of the start-up lines that are dropped; any other line is written back."""

VERBOSE_HELP = "also print TensorFlow's start-up log lines (CUDA probing, oneDNN and CPU notices)"


def add_verbose_option(parser):
    """Adds `--verbose` to an argparse parser or a `common.FlagAdder`; returns nothing.

    Args:
        parser: an `argparse.ArgumentParser`, or a `FlagAdder` (then the option is accepted before
            and after the data set type).
    """
    add = parser.add if hasattr(parser, "add") and not hasattr(parser, "add_argument") else parser.add_argument
    add("--verbose", action="store_true", help=VERBOSE_HELP)


def is_startup_notice(line):
    """True when `line` (str) is one of TensorFlow's start-up notices (`STARTUP_NOTICES`)."""
    return any(notice in line for notice in STARTUP_NOTICES)


@contextlib.contextmanager
def filtered_stderr(keep=lambda line: not is_startup_notice(line)):
    """Captures file descriptor 2 (C++ and Python writes alike) inside the block; yields nothing.

    On leaving, the captured lines for which `keep(line)` is true are written to stderr, in order.
    The capture goes to an unnamed temporary file, so a long output cannot block the writer.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    capture = tempfile.TemporaryFile()
    try:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
    finally:
        os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", errors="replace")
        capture.close()
        kept = "".join(line for line in text.splitlines(keepends=True) if keep(line))
        if kept:
            sys.stderr.write(kept)
            sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs the wrapped loader's `exec_module` (and TensorFlow's device probe) in `filtered_stderr`."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # the module shows its own loader afterwards, for importlib.resources and inspect
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        with filtered_stderr():
            self.loader.exec_module(module)
            probe = getattr(getattr(module, "config", None), "list_physical_devices", None)
            if probe is not None:
                try:
                    probe()  # cuInit happens here; it does not fix the visible devices
                except Exception:  # a broken device setup shows up again where it is used
                    pass


class _TensorFlowImportFinder(importlib.abc.MetaPathFinder):
    """Finds the `tensorflow` package through the other finders and wraps its loader, once."""

    def __init__(self):
        self.lock = threading.Lock()

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow" or not self.lock.acquire(blocking=False):
            return None
        try:
            _remove_finder()
            for finder in list(sys.meta_path):
                find_spec = getattr(finder, "find_spec", None)
                spec = find_spec(fullname, path, target) if find_spec else None
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = _QuietLoader(spec.loader)
                    return spec
            return None
        finally:
            self.lock.release()


_finder = None


def _remove_finder():
    global _finder
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None


def quiet_startup(verbose=False, gpu=None, environ=None):
    """Hides TensorFlow's start-up notices for this process; returns True when it changed anything.

    Call it after the arguments are parsed and before TensorFlow is imported (the tools import it
    lazily). Nothing changes when `verbose` is true, when `TF_CPP_MIN_LOG_LEVEL` is already set (the
    user's choice wins), or, for the import filter, when TensorFlow is already imported.

    Args:
        verbose: the tool's `--verbose` flag.
        gpu: the tool's `--gpu` value, or None. It is applied (`common.select_gpu`) here in every
            case, because the quiet import probes the devices, and CUDA reads its visible
            devices only once, at that probe.
        environ: the environment to change; default `os.environ`.

    Returns:
        True when `TF_CPP_MIN_LOG_LEVEL` was set to 1 (and the import filter armed when
        TensorFlow was not yet imported), False when everything was left alone.
    """
    global _finder
    from .common import select_gpu

    select_gpu(gpu)
    environ = os.environ if environ is None else environ
    if verbose or LOG_LEVEL_VARIABLE in environ:
        return False
    environ[LOG_LEVEL_VARIABLE] = "1"
    if environ is os.environ and "tensorflow" not in sys.modules and _finder is None:
        _finder = _TensorFlowImportFinder()
        sys.meta_path.insert(0, _finder)
    return True
