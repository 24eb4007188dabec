"""Where pictures come from: files, folders, globs, `.txt` lists, numpy arrays, video files, cameras
and stream URLs, read one `Frame` at a time; and `VideoWriter`, the overlay video's writer.

    from keras_maskrcnn.inference.sources import iter_frames

    for frame in iter_frames(["photos/", "clip.mp4"], vid_stride=2):
        if frame.error:
            print("skipped", frame.path, frame.frame, frame.error)
            continue
        ...  # frame.image is BGR uint8 (H, W, 3)

Pictures are returned as a viewer shows them (EXIF orientation applied). Videos, cameras and
streams are read with OpenCV (`cv2.VideoCapture`, its FFmpeg back end for files and URLs).
"""

import contextlib
import glob
import os
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from ..utils.files import OutputError
from ..utils.image import UnreadableImageError, read_image_bgr

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")
GLOB_CHARACTERS = ("*", "?", "[")

READ_RETRIES = 5
"""Consecutive failed reads after which a video is taken to have ended (a file whose header
announces more frames) or a stream to have stopped."""


class SourceError(ValueError):
    """A source that names nothing readable (missing path, empty folder, unmatched glob, a video or
    camera that cannot be opened); the message names it, on one line."""


@dataclass
class Frame:
    """One picture or video frame.

    image: (H, W, 3) BGR uint8, or None when it could not be read (then `error` says why).
    path: the file, video path, camera index (as a string), URL, or "image0", "image1"... for arrays.
    frame: index of the frame in its video (counted from 0), None for pictures.
    error: None, or the message saying why the picture or frame could not be read.
    fps: frames per second of the video (None for pictures and when the video does not say).
    source_size: (width, height) of the picture or video, None when unknown.
    """

    image: np.ndarray | None
    path: str
    frame: int | None = None
    error: str | None = None
    fps: float | None = None
    source_size: tuple[int, int] | None = None


@dataclass(eq=False)
class Source:
    """One resolved source. kind: "image", "video", "camera", "stream" or "array"; path: the file,
    camera index (as a string), URL or "image<i>" name; array: the picture when kind is "array"."""

    kind: str
    path: str
    array: np.ndarray | None = None

    def __repr__(self):
        return f"Source({self.kind!r}, {self.path!r})"


def _is_camera(item):
    if isinstance(item, (bool, np.bool_)):
        return False
    if isinstance(item, (int, np.integer)):
        return True
    return isinstance(item, str) and item.strip().isdigit()


def _kind_of_file(path):
    return "video" if path.lower().endswith(VIDEO_EXTENSIONS) else "image"


def _folder_files(folder, recursive):
    """Image and video files of a folder (sorted; with recursive, of its subfolders too)."""
    wanted = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
    if recursive:
        found = []
        for root, folders, names in os.walk(folder):
            folders.sort()
            found.extend(os.path.join(root, name) for name in names if name.lower().endswith(wanted))
        return sorted(found)
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.lower().endswith(wanted) and os.path.isfile(os.path.join(folder, name)))


def _check_array(array, name):
    """The picture of a numpy source as (H, W, 3) uint8 (grey (H, W) repeated, a 4th channel
    dropped); SourceError naming it for anything else."""
    if array.dtype != np.uint8:
        raise SourceError(f"{name}: numpy pictures must be uint8 (H, W, 3), got {array.dtype} {array.shape}")
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.shape[0] == 0 or array.shape[1] == 0:
        raise SourceError(f"{name}: numpy pictures must be (H, W, 3), got shape {array.shape}")
    return array[:, :, :3]


def resolve(sources, recursive=False):
    """[Source, ...]: the pictures, videos, cameras and streams that `sources` names, in order.

    Args:
        sources: a path (picture, video, folder, `.txt` list of paths, one a line, relative to the
            list's folder; blank lines and lines starting with # are skipped), a glob pattern
            (`*`, `?`, `[...]`, `**` for any depth), a camera index (int or digit string "0"), a
            stream URL (rtsp://, rtmp://, http://, https://), a numpy picture (H, W, 3) uint8 or a
            stack of them (N, H, W, 3), or a list of any of these.
        recursive: folders contribute the pictures and videos of their subfolders too.

    Returns:
        list of Source; numpy pictures are named "image0", "image1"... in order.

    Raises:
        SourceError (a ValueError, one line naming the source): a path that does not exist, a
            folder without pictures or videos, a glob that matches none, a bad numpy picture, a
            `.txt` line that names nothing (with the list's name and line number).
    """
    resolved = []
    counter = [0]

    def add(item, where, depth):
        if isinstance(item, np.ndarray):
            pictures = [item] if item.ndim in (2, 3) else list(item) if item.ndim == 4 else None
            if pictures is None:
                raise SourceError(f"numpy pictures must be (H, W, 3) or (N, H, W, 3), got shape {item.shape}")
            for picture in pictures:
                name = f"image{counter[0]}"
                counter[0] += 1
                resolved.append(Source("array", name, _check_array(picture, name)))
            return
        if isinstance(item, (list, tuple)):
            for element in item:
                add(element, where, depth)
            return
        if _is_camera(item):
            resolved.append(Source("camera", str(int(item))))
            return
        if isinstance(item, os.PathLike):
            item = os.fspath(item)
        if not isinstance(item, str):
            raise SourceError(f"{where}cannot read pictures from a {type(item).__name__} ({item!r:.60})")
        if item.lower().startswith(STREAM_PREFIXES):
            resolved.append(Source("stream", item))
            return
        path = os.path.expanduser(item)
        if os.path.isdir(path):
            files = _folder_files(path, recursive)
            if not files:
                raise SourceError(f"{where}folder {item!r} holds no pictures or videos "
                                  f"({', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)})")
            resolved.extend(Source(_kind_of_file(name), name) for name in files)
        elif os.path.isfile(path):
            if path.lower().endswith(".txt"):
                if depth > 8:
                    raise SourceError(f"{where}list {item!r} is nested too deeply (does it list itself?)")
                add_list(path, depth + 1)
            else:
                resolved.append(Source(_kind_of_file(path), path))
        elif any(character in item for character in GLOB_CHARACTERS):
            matches = sorted(name for name in glob.glob(path, recursive=True)
                             if os.path.isfile(name) and name.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS))
            if not matches:
                raise SourceError(f"{where}pattern {item!r} matches no pictures or videos")
            resolved.extend(Source(_kind_of_file(name), name) for name in matches)
        else:
            raise SourceError(f"{where}{item!r} does not exist")

    def add_list(list_path, depth):
        folder = os.path.dirname(list_path)
        try:
            with open(list_path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise SourceError(f"list {list_path!r} could not be read: {error}") from None
        before = len(resolved)
        for number, line in enumerate(lines, start=1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            if not (entry.lower().startswith(STREAM_PREFIXES) or _is_camera(entry) or os.path.isabs(entry)):
                entry = os.path.join(folder, os.path.expanduser(entry))
            add(entry, f"{list_path} line {number}: ", depth)
        if len(resolved) == before:
            raise SourceError(f"list {list_path!r} names no pictures or videos")

    add(sources, "", 0)
    return resolved


@contextlib.contextmanager
def _quiet_opencv():
    """OpenCV's own warnings (a camera index it cannot open, a missing libavdevice) off for a while:
    the caller reports the failure in one line of its own."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(level)


def _open_capture(source):
    """An opened cv2.VideoCapture for a video, camera or stream Source; SourceError in one line
    when it cannot be opened."""
    target = int(source.path) if source.kind == "camera" else source.path
    with _quiet_opencv():
        capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        if source.kind == "camera":
            raise SourceError(f"camera {source.path} cannot be opened (no such camera, or it is busy)")
        if source.kind == "stream":
            raise SourceError(f"cannot open stream {source.path!r}")
        raise SourceError(f"cannot open video {source.path!r} (not a video OpenCV can decode)")
    return capture


def _capture_info(capture):
    fps = capture.get(cv2.CAP_PROP_FPS)
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return (float(fps) if fps and np.isfinite(fps) and fps > 0 else None, width, height,
            count if count > 0 else None)


def video_info(path):
    """(fps, width, height, frame_count) of a video file, camera index or stream URL; fps and
    frame_count are None when the video does not say (cameras, live streams). For files, width
    and height are those of the first decoded frame (turned by the video's rotation metadata,
    as the frames come), for cameras and streams what the device or stream announces.

    Raises:
        SourceError (a ValueError): the file does not exist or cannot be opened, or no such camera.
    """
    if _is_camera(path):
        source = Source("camera", str(int(path)))
    else:
        path = os.fspath(path)
        if path.lower().startswith(STREAM_PREFIXES):
            source = Source("stream", path)
        elif not os.path.isfile(path):
            raise SourceError(f"video {path!r} does not exist")
        else:
            source = Source("video", path)
    capture = _open_capture(source)
    try:
        fps, width, height, count = _capture_info(capture)
        if source.kind == "video":
            # the decoded frame's size: OpenCV turns phone videos by their rotation metadata,
            # which the header's width and height may not show
            ok, image = capture.read()
            if ok and image is not None and image.size:
                height, width = image.shape[:2]
        return fps, width, height, count
    finally:
        capture.release()


def _video_frames(source, vid_stride, max_frames):
    """Frames of one video, camera or stream: every vid_stride-th frame, at most max_frames."""
    capture = _open_capture(source)
    try:
        fps, width, height, count = _capture_info(capture)
        size = (width, height) if width > 0 and height > 0 else None
        is_file = source.kind == "video"
        index = yielded = 0
        failed = []  # indices of consecutive failed reads, not yet known to be in the middle
        while max_frames is None or yielded < max_frames:
            wanted = index % vid_stride == 0
            ok = capture.grab()
            image = None
            if ok and wanted:
                ok, image = capture.retrieve()
                ok = ok and image is not None and image.size > 0
            if not ok:
                failed.append(index)
                if len(failed) > READ_RETRIES or (is_file and count is not None and index >= count):
                    break
                index += 1
                continue
            for broken in failed:  # a frame read after them: they were broken frames in the middle
                if broken % vid_stride == 0 and (max_frames is None or yielded < max_frames):
                    yielded += 1
                    yield Frame(None, source.path, broken, f"frame {broken} of {source.kind} "
                                f"{source.path!r} could not be decoded", fps, size)
            failed = []
            if max_frames is not None and yielded >= max_frames:
                break
            if wanted:
                if image.ndim == 2:
                    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
                size = (image.shape[1], image.shape[0])  # as decoded (turned by rotation metadata)
                yielded += 1
                yield Frame(image, source.path, index, None, fps, size)
            index += 1
        if is_file and count is not None and failed and failed[0] < count - 1:
            warnings.warn(f"video {source.path!r} ended at frame {failed[0]}, before the "
                          f"{count} frames its header announces", stacklevel=3)
    finally:
        capture.release()


def iter_frames(sources, recursive=False, vid_stride=1, max_frames=None, rgb=False):
    """Iterator of Frame: the pictures and video frames of `sources`, one at a time, in order.

    Args:
        sources: anything `resolve` takes (paths, folders, globs, `.txt` lists, numpy pictures,
            video files, camera indices, stream URLs, lists of these).
        recursive: folders contribute their subfolders' files too.
        vid_stride: of videos, cameras and streams, every vid_stride-th frame (frames 0, n, 2n...).
        max_frames: at most this many frames of each video, camera or stream (None: all).
        rgb: numpy pictures are RGB (as PIL and matplotlib hold them) rather than BGR.

    Returns:
        iterator of Frame with BGR uint8 images. A picture that cannot be read, or a broken frame
        in the middle of a video, gives a Frame with image None and `error` set, and the
        iteration goes on; the end of a video or stream ends its frames. Closing the iterator
        (or an interrupt) releases the open video.

    Raises:
        SourceError (a ValueError, one line): what `resolve` raises, before any frame is read;
            a video, stream or camera that cannot be opened, when its turn comes.
    """
    if isinstance(vid_stride, bool) or not isinstance(vid_stride, (int, np.integer)) or vid_stride < 1:
        raise ValueError(f"vid_stride must be a whole number >= 1, got {vid_stride!r}")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer))
                                   or max_frames < 1):
        raise ValueError(f"max_frames must be a whole number >= 1 or None, got {max_frames!r}")
    resolved = resolve(sources, recursive=recursive)
    return _frames(resolved, int(vid_stride), max_frames, rgb)


def _frames(resolved, vid_stride, max_frames, rgb):
    for source in resolved:
        if source.kind == "array":
            image = source.array[:, :, ::-1] if rgb else source.array
            image = np.ascontiguousarray(image)
            yield Frame(image, source.path, source_size=(image.shape[1], image.shape[0]))
        elif source.kind == "image":
            try:
                image = read_image_bgr(source.path, orient=True)
            except UnreadableImageError as error:
                yield Frame(None, source.path, error=str(error))
                continue
            yield Frame(image, source.path, source_size=(image.shape[1], image.shape[0]))
        else:
            yield from _video_frames(source, vid_stride, max_frames)


class VideoWriter:
    """Writes BGR uint8 frames of one size to a video file (MPEG-4 part 2 in .mp4, or Motion JPEG in
    .avi when this OpenCV cannot write .mp4), as a context manager:

        with VideoWriter("out.mp4", fps=25, size=(640, 480)) as writer:
            writer.write(image)
        print("written to", writer.path)

    Args:
        path: the file to write; its folder must exist.
        fps: frames per second (the input's); None or <= 0 gives 30.
        size: (width, height) of every frame.

    Attributes:
        path: the file actually written (the .avi name after a fall-back); frames: frames written.

    Raises:
        OutputError (an OSError naming the file): the file cannot be opened for writing, or is
            missing or empty when closed.
    """

    def __init__(self, path, fps, size):
        path = os.fspath(path)
        width, height = (int(side) for side in size)
        if width <= 0 or height <= 0:
            raise ValueError(f"video size must be (width, height) > 0, got {size!r}")
        self.size = (width, height)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.frames = 0
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            raise OutputError(f"cannot write video {path!r}: folder {folder!r} does not exist")
        self.path = path
        self._writer = self._open(path, "mp4v")
        if self._writer is None:
            fallback = os.path.splitext(path)[0] + ".avi"
            self._writer = self._open(fallback, "MJPG")
            if self._writer is None:
                raise OutputError(f"cannot write video {path!r}: OpenCV opens neither mp4v (.mp4) "
                                  f"nor MJPG (.avi) for writing there")
            warnings.warn(f"OpenCV cannot write mp4v video to {path!r}; writing Motion JPEG to "
                          f"{fallback!r} instead", stacklevel=2)
            self.path = fallback

    def _open(self, path, fourcc):
        with _quiet_opencv():
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), self.fps, self.size)
        if writer.isOpened():
            return writer
        writer.release()
        return None

    def write(self, image):
        """Appends one BGR uint8 (height, width, 3) frame of the writer's size; ValueError otherwise
        (OpenCV would drop it silently)."""
        if self._writer is None:
            raise ValueError(f"video {self.path!r} is closed")
        image = np.asarray(image)
        width, height = self.size
        if image.dtype != np.uint8 or image.shape != (height, width, 3):
            raise ValueError(f"video {self.path!r} takes uint8 frames of shape {(height, width, 3)}, "
                             f"got {image.dtype} {image.shape}")
        self._writer.write(np.ascontiguousarray(image))
        self.frames += 1

    def close(self):
        """Finishes the file; returns its path. OutputError if it is missing or empty."""
        if self._writer is None:
            return self.path
        self._writer.release()
        self._writer = None
        if not os.path.isfile(self.path) or os.path.getsize(self.path) == 0:
            raise OutputError(f"video {self.path!r} was not written (missing or empty after closing)")
        return self.path

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.close()
        elif self._writer is not None:  # keep the original exception; leave what was written
            self._writer.release()
            self._writer = None
        return False
