import os
import time
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from keras_maskrcnn.inference import sources
from keras_maskrcnn.inference.sources import (Frame, OutputError, SourceError, VideoWriter, iter_frames,
                                              resolve, video_info)


def write_video(path, frames=30, size=(64, 48), fps=10.0, fourcc="mp4v"):
    """A video whose frame i is grey level 8 * i, written with OpenCV itself."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    for index in range(frames):
        writer.write(np.full((size[1], size[0], 3), 8 * index, np.uint8))
    writer.release()
    return str(path)


def write_picture(path, value=100, size=(20, 10)):
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def test_video_is_read_back_as_30_frames_with_fps_and_size(video):
    frames = list(iter_frames(video))
    assert len(frames) == 30
    assert [frame.frame for frame in frames] == list(range(30))
    assert all(frame.error is None and frame.path == video for frame in frames)
    assert all(frame.fps == pytest.approx(10.0) and frame.source_size == (64, 48) for frame in frames)
    assert all(frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8 for frame in frames)
    # the frames come in order: frame i is grey 8 * i (within the codec's loss)
    means = [frame.image.mean() for frame in frames]
    np.testing.assert_allclose(means, 8.0 * np.arange(30), atol=4.0)
    assert video_info(video) == (pytest.approx(10.0), 64, 48, 30)


def test_vid_stride_and_max_frames(video):
    assert [frame.frame for frame in iter_frames(video, vid_stride=3)] == list(range(0, 30, 3))
    assert [frame.frame for frame in iter_frames(video, max_frames=7)] == list(range(7))
    assert [frame.frame for frame in iter_frames(video, vid_stride=4, max_frames=5)] == [0, 4, 8, 12, 16]
    # max_frames is per video
    assert len(list(iter_frames([video, video], max_frames=2))) == 4
    with pytest.raises(ValueError, match="vid_stride"):
        iter_frames(video, vid_stride=0)
    with pytest.raises(ValueError, match="max_frames"):
        iter_frames(video, max_frames=0)


@pytest.fixture
def tree(tmp_path):
    """root/a.png, root/b.jpg, root/notes.csv, root/sub/c.png, root/sub/deeper/d.png, root/clip.avi."""
    write_picture(tmp_path / "a.png", 10)
    write_picture(tmp_path / "b.jpg", 20)
    (tmp_path / "notes.csv").write_text("not a picture\n")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    write_picture(tmp_path / "sub" / "c.png", 30)
    write_picture(tmp_path / "sub" / "deeper" / "d.png", 40)
    write_video(tmp_path / "clip.avi", frames=3, fourcc="MJPG")
    return tmp_path


def names(resolved, root):
    return [os.path.relpath(source.path, root) if source.kind in ("image", "video") else source.path
            for source in resolved]


def test_folders_sorted_and_recursive(tree):
    assert names(resolve(str(tree)), tree) == ["a.png", "b.jpg", "clip.avi"]
    assert [source.kind for source in resolve(str(tree))] == ["image", "image", "video"]
    assert names(resolve(str(tree), recursive=True), tree) == [
        "a.png", "b.jpg", "clip.avi", os.path.join("sub", "c.png"), os.path.join("sub", "deeper", "d.png")]
    (tree / "empty").mkdir()
    with pytest.raises(SourceError, match="folder .*empty' holds no pictures or videos"):
        resolve(str(tree / "empty"))
    with pytest.raises(SourceError, match="missing.png' does not exist"):
        resolve(str(tree / "missing.png"))


def test_globs(tree):
    assert names(resolve(str(tree / "*.png")), tree) == ["a.png"]
    assert names(resolve(str(tree / "?.jpg")), tree) == ["b.jpg"]
    assert names(resolve(str(tree / "**" / "*.png")), tree) == [
        "a.png", os.path.join("sub", "c.png"), os.path.join("sub", "deeper", "d.png")]
    assert names(resolve(str(tree / "*")), tree) == ["a.png", "b.jpg", "clip.avi"]  # not notes.csv
    with pytest.raises(SourceError, match=r"pattern .*\*\.gif' matches no pictures or videos"):
        resolve(str(tree / "*.gif"))


def test_txt_list_relative_to_its_folder(tree):
    listing = tree / "sub" / "list.txt"
    listing.write_text("# pictures to predict\nc.png\n\n../a.png\ndeeper\n" + str(tree / "b.jpg") + "\n0\n")
    assert names(resolve(str(listing)), tree) == [
        os.path.join("sub", "c.png"), "a.png", os.path.join("sub", "deeper", "d.png"), "b.jpg", "0"]
    assert resolve(str(listing))[-1].kind == "camera"
    listing.write_text("c.png\nnothing.png\n")
    with pytest.raises(SourceError, match=r"list.txt line 2: .*nothing.png' does not exist"):
        resolve(str(listing))
    listing.write_text("# only a comment\n")
    with pytest.raises(SourceError, match="names no pictures"):
        resolve(str(listing))


def test_mixed_list_cameras_streams_and_kinds(tree, video):
    resolved = resolve([str(tree / "a.png"), video, 0, "1", "rtsp://camera.local/live", "HTTP://x/y.mjpg"])
    assert [source.kind for source in resolved] == ["image", "video", "camera", "camera", "stream", "stream"]
    assert [source.path for source in resolved[2:4]] == ["0", "1"]
    with pytest.raises(SourceError, match="cannot read pictures from a float"):
        resolve(1.5)


def test_pictures_are_read_as_a_viewer_shows_them(tmp_path):
    """EXIF orientation 6: stored 40 wide x 20 high, shown 20 wide x 40 high."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:5, :10] = 255
    picture = Image.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = 6
    path = str(tmp_path / "phone.jpg")
    picture.save(path, exif=exif, quality=100)
    (frame,) = iter_frames(path)
    assert frame.image.shape == (40, 20, 3) and frame.source_size == (20, 40)
    assert frame.frame is None and frame.fps is None and frame.error is None
    assert frame.image[:10, -5:].min() > 200 and frame.image[10:].max() < 50


def test_unreadable_picture_gives_an_error_frame_and_goes_on(tmp_path):
    (tmp_path / "a_broken.jpg").write_bytes(b"not a jpeg")
    write_picture(tmp_path / "b_good.png")
    frames = list(iter_frames(str(tmp_path)))
    assert [os.path.basename(frame.path) for frame in frames] == ["a_broken.jpg", "b_good.png"]
    assert frames[0].image is None and "a_broken.jpg" in frames[0].error and "\n" not in frames[0].error
    assert frames[1].error is None and frames[1].image.shape == (10, 20, 3)


def test_numpy_pictures_bgr_or_rgb(tmp_path):
    bgr = np.zeros((8, 6, 3), np.uint8)
    bgr[..., 0] = 255  # blue in BGR
    (frame,) = iter_frames(bgr)
    assert frame.path == "image0" and frame.source_size == (6, 8)
    np.testing.assert_array_equal(frame.image, bgr)
    frames = list(iter_frames([bgr, bgr], rgb=True))
    assert [frame.path for frame in frames] == ["image0", "image1"]
    assert frames[1].image[0, 0].tolist() == [0, 0, 255]  # the RGB array's first channel is red
    assert [frame.path for frame in iter_frames(np.stack([bgr] * 3))] == ["image0", "image1", "image2"]
    assert next(iter_frames(bgr[..., 0])).image.shape == (8, 6, 3)  # grey
    with pytest.raises(SourceError, match="image0: numpy pictures must be uint8"):
        iter_frames(bgr.astype(np.float32))
    with pytest.raises(SourceError, match=r"image1: numpy pictures must be \(H, W, 3\)"):
        iter_frames([bgr, np.zeros((8, 6, 2), np.uint8)])


def test_missing_camera_and_unopenable_video_are_one_line_errors(tmp_path):
    started = time.monotonic()
    with pytest.raises(SourceError) as raised:
        list(iter_frames(9))
    assert str(raised.value).startswith("camera 9 cannot be opened") and "\n" not in str(raised.value)
    with pytest.raises(SourceError, match="camera 9 cannot be opened"):
        video_info("9")
    assert time.monotonic() - started < 30  # not a timing test: a hang would show here
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match=r"^cannot open video '.*bad.mp4'"):
        list(iter_frames(str(tmp_path / "bad.mp4")))


class FakeCapture:
    """A cv2.VideoCapture stand-in: `frames` frames, of which the indices in `broken` fail to read,
    a header announcing `count` frames (0: a live stream)."""

    def __init__(self, frames, broken=(), count=None):
        self.frames, self.broken, self.count = frames, set(broken), frames if count is None else count
        self.position, self.released, self.current_ok = 0, False, False

    def isOpened(self):
        return True

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 25.0, cv2.CAP_PROP_FRAME_WIDTH: 4, cv2.CAP_PROP_FRAME_HEIGHT: 2,
                cv2.CAP_PROP_FRAME_COUNT: self.count}.get(prop, 0)

    def grab(self):
        index = self.position
        self.position += 1
        self.current = index
        self.current_ok = index < self.frames and index not in self.broken
        return self.current_ok

    def retrieve(self):
        if not self.current_ok:
            return False, None
        return True, np.full((2, 4, 3), self.current, np.uint8)

    def release(self):
        self.released = True


def fake(monkeypatch, capture):
    monkeypatch.setattr(sources, "_open_capture", lambda source: capture)
    return capture


def test_broken_frames_in_the_middle_give_error_frames(monkeypatch, video):
    capture = fake(monkeypatch, FakeCapture(12, broken={5, 6}))
    frames = list(iter_frames(video))
    assert [frame.frame for frame in frames] == list(range(12))
    assert [frame.frame for frame in frames if frame.error] == [5, 6]
    assert "frame 5 of video" in frames[5].error and frames[5].image is None
    assert [int(frame.image[0, 0, 0]) for frame in frames if not frame.error] == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]
    assert capture.released
    # with a stride, only the broken frames the stride would have shown
    fake(monkeypatch, FakeCapture(12, broken={5, 6}))
    assert [(frame.frame, frame.error is None) for frame in iter_frames(video, vid_stride=3)] == [
        (0, True), (3, True), (6, False), (9, True)]


def test_a_corrupted_frame_of_a_real_file_gives_one_error_frame(tmp_path):
    """A Motion JPEG .avi whose 11th JPEG is overwritten: FFmpeg cannot decode frame 10."""
    path = write_video(tmp_path / "clip.avi", frames=30, fourcc="MJPG")
    data = bytearray(open(path, "rb").read())
    starts = [index for index in range(len(data) - 1) if data[index] == 0xFF and data[index + 1] == 0xD8]
    assert len(starts) == 30
    data[starts[10]:starts[10] + 200] = bytes(200)
    broken = str(tmp_path / "broken.avi")
    with open(broken, "wb") as handle:
        handle.write(data)
    frames = list(iter_frames(broken))
    assert [frame.frame for frame in frames] == list(range(30))
    assert [frame.frame for frame in frames if frame.error] == [10]
    np.testing.assert_allclose(frames[11].image.mean(), 88.0, atol=4.0)  # the frames after it are read


def test_a_video_ending_before_its_header_count_warns_and_stops(monkeypatch, video):
    fake(monkeypatch, FakeCapture(12, count=40))
    with pytest.warns(UserWarning, match="ended at frame 12, before the 40 frames"):
        frames = list(iter_frames(video))
    assert len(frames) == 12 and not any(frame.error for frame in frames)


def test_end_of_a_stream_stops_cleanly(monkeypatch):
    capture = fake(monkeypatch, FakeCapture(8, count=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frames = list(iter_frames("rtsp://camera.local/live"))
    assert len(frames) == 8 and frames[0].fps == 25.0 and frames[0].source_size == (4, 2)
    assert capture.released


def test_closing_the_iterator_releases_the_video(monkeypatch):
    capture = fake(monkeypatch, FakeCapture(100, count=0))
    frames = iter_frames(0)
    next(frames)
    frames.close()  # what an interrupt in the caller's loop does
    assert capture.released


def test_video_writer_round_trip(tmp_path, video):
    fps, width, height, _ = video_info(video)
    path = str(tmp_path / "out.mp4")
    with VideoWriter(path, fps, (width, height)) as writer:
        for frame in iter_frames(video):
            writer.write(frame.image)
    assert writer.path == path and writer.frames == 30 and os.path.getsize(path) > 0
    assert video_info(path) == (pytest.approx(10.0), 64, 48, 30)
    with pytest.raises(ValueError, match=r"takes uint8 frames of shape \(48, 64, 3\), got uint8 \(10, 10, 3\)"):
        with VideoWriter(str(tmp_path / "other.mp4"), fps, (64, 48)) as writer:
            writer.write(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(OutputError, match="folder .*nowhere' does not exist"):
        VideoWriter(str(tmp_path / "nowhere" / "out.mp4"), 10, (64, 48))
    assert issubclass(OutputError, OSError)


def test_video_writer_falls_back_to_mjpeg_avi(tmp_path, monkeypatch):
    real_open = VideoWriter._open
    monkeypatch.setattr(VideoWriter, "_open",
                        lambda self, path, fourcc: None if fourcc == "mp4v" else real_open(self, path, fourcc))
    with pytest.warns(UserWarning, match="writing Motion JPEG to .*out.avi"):
        writer = VideoWriter(str(tmp_path / "out.mp4"), None, (64, 48))
    with writer:
        for _ in range(3):
            writer.write(np.zeros((48, 64, 3), np.uint8))
    assert writer.path.endswith("out.avi") and writer.fps == 30.0
    assert video_info(writer.path)[1:] == (64, 48, 3)


def test_video_writer_close_checks_the_file(tmp_path, monkeypatch):
    writer = VideoWriter(str(tmp_path / "gone.mp4"), 10, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer._writer.release()
    os.remove(writer.path)
    with pytest.raises(OutputError, match="gone.mp4' was not written"):
        writer.close()


def test_frame_defaults():
    frame = Frame(None, "x")
    assert (frame.frame, frame.error, frame.fps, frame.source_size) == (None, None, None, None)
