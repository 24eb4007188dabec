"""Output files that are written completely or fail loudly.

Every writer here puts the bytes under a temporary name in the target's folder and renames it onto
the target (``os.replace``), so a reader never sees half a file and a failed write leaves nothing
behind. Any failure (the encoder refusing, a full disk, a read-only file system, a missing
permission) raises :class:`OutputError`, an ``OSError`` whose message is one line naming the path
and the cause, for example ``cannot write 'out/a.png': No space left on device``.
"""

import csv
import errno as errno_codes
import io
import json
import os
import secrets

import cv2

__all__ = [
    "OutputError",
    "check_output_dir",
    "write_bytes",
    "write_csv",
    "write_image",
    "write_json",
    "write_text",
]


class OutputError(OSError):
    """A file or folder the tools write could not be written; ``str(error)`` is one line.

    Attributes:
        path: the file or folder that was not written.
        cause: what went wrong, in words (the OS's text for the error number, e.g.
            "No space left on device", "Read-only file system", "Permission denied").
        errno: the OS error number when the cause was an OS error, else None.
    """

    def __init__(self, message, path=None, cause=None, errno=None):
        super().__init__(message)
        self.message = " ".join(str(message).split())
        self.path = None if path is None else os.fspath(path)
        self.cause = cause
        self.errno = errno
        self.filename = self.path

    def __str__(self):
        return self.message

    def __reduce__(self):
        return (type(self), (self.message, self.path, self.cause, self.errno))


def _cause(exc):
    """(words, errno) for an exception raised while writing."""
    number = getattr(exc, "errno", None)
    if number == errno_codes.EISDIR:
        return "it is a folder", number
    if number:
        return os.strerror(number), number
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text, None


def _error(verb, path, exc):
    cause, number = _cause(exc)
    return OutputError(f"{verb} {os.fspath(path)!r}: {cause}", path=path, cause=cause, errno=number)


def check_output_dir(path, what="--output-dir"):
    """Makes sure ``path`` is a folder the run can write into, before any work is done; returns it.

    Creates the folder (and its parents) if needed, then creates, writes one byte to and removes a
    temporary file in it, so a read-only file system, a missing permission or a full disk is found
    before a model is loaded or a picture is predicted.

    Args:
        path: the folder (str or path-like).
        what: how the user named it, used in the message (an option such as "--save-path").

    Returns:
        str: ``path`` as a string.

    Raises:
        OutputError: (one line, naming ``what``, the path and the cause) if the path exists as a
            file, cannot be created or is not writable.
    """
    path = os.fspath(path)
    label = f"{what} {path!r}" if what else repr(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputError(f"{label} exists and is not a folder", path=path, cause="not a folder",
                          errno=errno_codes.ENOTDIR)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        cause, number = _cause(exc)
        raise OutputError(f"cannot create {label}: {cause}", path=path, cause=cause, errno=number) from None
    probe = os.path.join(path, f".write-check.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
    except OSError as exc:
        _remove_quietly(probe)
        cause, number = _cause(exc)
        raise OutputError(f"cannot write to {label}: {cause}", path=path, cause=cause, errno=number) from None
    _remove_quietly(probe)
    return path


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def write_bytes(path, data):
    """Writes ``data`` (bytes-like) to ``path`` completely, or raises OutputError and leaves no file.

    The bytes go to a temporary file in the same folder, which is then renamed onto ``path``
    (replacing an existing file). The parent folder is created if it is missing.

    Args:
        path: the file to write (str or path-like).
        data: bytes, bytearray, memoryview or a numpy uint8 buffer.

    Returns:
        str: ``path`` as a string.

    Raises:
        OutputError: one line naming the path and the cause (disk full, read-only file system,
            permission denied, the path is a folder...).
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    view = memoryview(data).cast("B")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(errno_codes.EISDIR, os.strerror(errno_codes.EISDIR), path)
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            written = 0
            while written < len(view):
                count = os.write(fd, view[written:])
                if count <= 0:  # never seen from a regular file, but never loop on it
                    raise OSError(errno_codes.EIO, os.strerror(errno_codes.EIO))
                written += count
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise _error("cannot write", path, exc) from None
    return path


def write_text(path, text, encoding="utf-8"):
    """Writes the string ``text`` to ``path`` (no newline translation); see write_bytes.

    Returns:
        str: ``path`` as a string.

    Raises:
        OutputError: one line naming the path and the cause.
    """
    return write_bytes(path, text.encode(encoding))


def write_json(path, obj, **dump_kwargs):
    """Writes ``obj`` as JSON (``json.dumps(obj, **dump_kwargs)`` and a newline) to ``path``.

    The object is serialised before any file is touched: an object JSON cannot hold raises
    json's own TypeError/ValueError and writes nothing.

    Returns:
        str: ``path`` as a string.

    Raises:
        OutputError: one line naming the path and the cause.
    """
    return write_text(path, json.dumps(obj, **dump_kwargs) + "\n")


def write_csv(path, rows, header=None):
    """Writes ``rows`` (an iterable of sequences) as CSV, after an optional ``header`` row.

    Uses the csv module's default dialect (comma, quoting when needed, "\\r\\n" line ends as
    RFC 4180 says).

    Returns:
        str: ``path`` as a string.

    Raises:
        OutputError: one line naming the path and the cause.
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def write_image(path, image_bgr, params=None):
    """Encodes ``image_bgr`` by the extension of ``path`` (OpenCV) and writes it; see write_bytes.

    Args:
        path: the file to write; its extension (.png, .jpg, .tif, .bmp, .webp...) picks the format.
        image_bgr: (H, W, 3) BGR or (H, W) grey array, as cv2.imwrite takes.
        params: optional cv2.imencode parameters, e.g. [cv2.IMWRITE_JPEG_QUALITY, 90].

    Returns:
        str: ``path`` as a string.

    Raises:
        OutputError: one line naming the path and the cause, also when OpenCV cannot encode the
            array in that format (unknown extension, unsupported dtype or shape).
    """
    path = os.fspath(path)
    extension = os.path.splitext(path)[1]
    if not extension:
        raise OutputError(f"cannot write {path!r}: no file extension to choose a picture format",
                          path=path, cause="no file extension")
    try:
        ok, encoded = cv2.imencode(extension, image_bgr, [] if params is None else list(params))
    except cv2.error as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[-1] if lines else "OpenCV error"
        raise OutputError(f"cannot write {path!r}: OpenCV cannot encode it as {extension}: {detail}",
                          path=path, cause="encode failed") from None
    if not ok:
        raise OutputError(f"cannot write {path!r}: OpenCV cannot encode it as {extension}",
                          path=path, cause="encode failed")
    return write_bytes(path, encoded)
