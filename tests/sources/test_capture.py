"""Capture on real files made here with PyAV (frame number coded in pixel blocks), plus one real clip."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import frame_number, write_video

from realtime.errors import SourceError
from realtime.sources.capture import Capture, SourceSpec, parse_source, redact
from realtime.types import Frame

W, H, FPS = 160, 120, 30
X264 = {"g": "15", "preset": "ultrafast"}
SHARED_CLIP = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "workouttracker_reps"


def read_all(cap: Capture, delay: float = 0.0, limit_s: float = 20.0) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + limit_s
    while not cap.ended and time.monotonic() < deadline:
        f = cap.get(0.2)
        if f is not None:
            frames.append(f)
            if delay:
                time.sleep(delay)
    assert cap.ended, "capture did not end in time"
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("cap") / "clip.mp4", 60, (W, H), FPS, pattern="bits", options=X264)


def test_redact_and_parse():
    assert redact("rtsp://admin:pa@ss@10.0.0.2:554/live") == "rtsp://***@10.0.0.2:554/live"
    assert redact("error at 'http://u@h/x?token=abc&fps=30'") == "error at 'http://***@h/x?token=***&fps=30'"
    assert redact("/data/clip.mp4") == "/data/clip.mp4"
    assert parse_source("0").kind == "webcam" and parse_source("0").target == 0
    s = parse_source("rtsps://u:p@cam/x")
    assert s.kind == "stream" and "p@" not in s.source_id
    assert parse_source("C:\\videos\\a.mp4").kind == "file"
    assert parse_source("clip.mp4").kind == "file"


def test_file_delivers_every_frame_in_order(clip):
    with Capture(clip, capacity=2) as cap:
        assert (cap.size, cap.fps, cap.is_live, cap.state) == ((W, H), 30.0, False, "idle")
        cap.start()
        frames = read_all(cap, delay=0.003)  # slower than decoding: a file must block, not drop
        stats = cap.stats()
    assert [f.index for f in frames] == list(range(60))
    assert [frame_number(f.image) for f in frames] == list(range(60))
    assert all(f.image.shape == (H, W, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(f.source_id == str(clip) for f in frames)
    media_t = [f.media_t for f in frames]
    assert media_t[0] == pytest.approx(0.0, abs=1e-3) and media_t[-1] == pytest.approx(59 / 30, abs=1e-3)
    assert stats.frames_read == 60 and stats.frames_dropped == 0 and stats.buffer_capacity == 2
    assert cap.state == "ended" and cap.error is None
    assert cap.get(0.01) is None


def test_realtime_file_is_paced_and_drops_for_slow_consumer(tmp_path):
    path = write_video(tmp_path / "rt.mp4", 45, (W, H), FPS, pattern="bits", options=X264)
    cap = Capture(path, realtime=True, capacity=2).open()
    assert cap.is_live
    t0 = time.monotonic()
    cap.start()
    frames = read_all(cap, delay=0.1)  # ~10 fps consumer against a 30 fps "camera"
    elapsed = time.monotonic() - t0
    stats = cap.stats()
    cap.stop()
    assert elapsed >= 44 / 30 - 0.05  # paced at the file's frame rate, not decoded as fast as possible
    idx = [f.index for f in frames]
    assert idx == sorted(set(idx)) and idx[-1] == 44  # increasing, gaps = drops, the last frame arrives
    assert [frame_number(f.image) for f in frames] == idx  # the index names the frame really delivered
    assert stats.frames_dropped > 0 and stats.frames_read == 45
    assert len(frames) + stats.frames_dropped == 45
    capture_t = [f.t for f in frames]
    assert all(b > a for a, b in zip(capture_t, capture_t[1:], strict=False))
    assert 20 < stats.fps_in < 40


@pytest.fixture
def converted(monkeypatch) -> list[int]:
    """One entry per PyAV frame converted to BGR by the capture."""
    import realtime.sources.capture as capture_module

    calls: list[int] = []
    real = capture_module.frame_to_bgr
    monkeypatch.setattr(capture_module, "frame_to_bgr", lambda f: calls.append(1) or real(f))
    return calls


def test_live_frames_dropped_for_a_slow_consumer_are_never_converted(tmp_path, converted):
    path = write_video(tmp_path / "rt.mp4", 45, (W, H), FPS, pattern="bits", options=X264)
    with Capture(path, realtime=True, capacity=2) as cap:
        cap.start()
        frames = read_all(cap, delay=0.1)  # ~10 fps consumer against a 30 fps "camera"
        stats = cap.stats()
    assert stats.frames_dropped > 0 and len(frames) + stats.frames_dropped == 45
    assert [frame_number(f.image) for f in frames] == [f.index for f in frames]  # converted late, still the right one
    # the consumer converts what it takes (the first frame was converted when the file was opened), never a dropped one
    assert len(frames) <= len(converted) <= len(frames) + 1 < 45


def test_analysis_rate_keeps_evenly_spaced_frames_and_never_converts_the_rest(clip, converted):
    with Capture(clip, capacity=2, analysis_fps=10) as cap:
        assert (cap.fps, cap.analysis_fps, cap.delivered_fps) == (30.0, 10.0, 10.0)
        cap.start()
        frames = read_all(cap, delay=0.003)
        stats = cap.stats()
    assert [f.index for f in frames] == list(range(0, 60, 3))  # indices stay the file's frame numbers
    assert [frame_number(f.image) for f in frames] == list(range(0, 60, 3))
    assert (stats.frames_read, stats.frames_skipped, stats.frames_dropped) == (60, 40, 0)
    assert len(converted) == 20  # the skipped frames were decoded (H.264 needs them) but never converted to BGR


def test_analysis_rate_keeps_the_same_frames_when_paced(clip):
    cap = Capture(clip, realtime=True, capacity=4, analysis_fps=10).open()
    t0 = time.monotonic()
    cap.start()
    frames = read_all(cap)
    elapsed = time.monotonic() - t0
    stats = cap.stats()
    cap.stop()
    assert [f.index for f in frames] == list(range(0, 60, 3))
    assert elapsed >= 57 / 30 - 0.05  # still paced at the file's own clock
    assert stats.frames_dropped == 0 and stats.frames_skipped == 40
    assert 7 < stats.fps_in < 13


def test_bad_analysis_rate_is_a_source_error(clip):
    with pytest.raises(SourceError, match="analysis rate must be a positive number"):
        Capture(clip, analysis_fps=0)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command to write rotation metadata")
@pytest.mark.parametrize("rotate", [90, 270, 180])
def test_rotation_metadata_is_honoured(clip, tmp_path, rotate):
    rotated = tmp_path / f"rot{rotate}.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-c", "copy", "-metadata:s:v:0",
                    f"rotate={rotate}", str(rotated)], check=True, timeout=30)
    # Reference: the ffmpeg command line applies the display matrix itself (autorotate).
    ref_w, ref_h = (H, W) if rotate in (90, 270) else (W, H)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(rotated), "-frames:v", "3", "-f", "rawvideo",
                          "-pix_fmt", "bgr24", "-"], check=True, capture_output=True, timeout=30).stdout
    ref = np.frombuffer(raw, np.uint8).reshape(3, ref_h, ref_w, 3)
    with Capture(rotated) as cap:
        assert cap.size == (ref_w, ref_h)
        cap.start()
        frames = read_all(cap)[:3]
    for f, r in zip(frames, ref, strict=True):
        assert f.image.shape == r.shape
        assert np.abs(f.image.astype(int) - r).mean() < 2.0
    # and it is not just any orientation: the unrotated frame would not match
    assert np.abs(np.rot90(frames[1].image, 2).astype(int) - ref[1]).mean() > 10


def test_truncated_file_keeps_frames_before_the_break(tmp_path):
    # Index first (faststart), so a cut keeps it; B-frames (preset medium) give the decoder a delay to flush.
    good = write_video(tmp_path / "good.mp4", 60, (W, H), FPS, pattern="bits", noise=True, faststart=True,
                       options={"g": "15", "preset": "medium"})
    cut = tmp_path / "cut.mp4"
    data = good.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    # Independent count of decodable frames: single-threaded ffprobe decodes up to the break too.
    ref = None
    if shutil.which("ffprobe"):
        out = subprocess.run(["ffprobe", "-v", "quiet", "-threads", "1", "-count_frames", "-select_streams", "v:0", "-show_entries",
                              "stream=nb_read_frames", "-of", "csv=p=0", str(cut)], capture_output=True, text=True,
                             timeout=30).stdout
        ref = int(out.strip().strip(","))
    with Capture(cut) as cap:
        cap.start()
        frames = read_all(cap)
    n = len(frames)
    assert 20 < n < 60
    if ref is not None:
        assert n == ref
    assert [f.index for f in frames] == list(range(n))
    assert [frame_number(f.image) for f in frames] == list(range(n))
    assert cap.state == "ended" and cap.ended
    assert cap.error is not None and "\n" not in cap.error and "truncated" in cap.error


class _SilentServer:
    """A TCP server that accepts connections and never answers (a hung camera)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            while True:
                self.conns.append(self.sock.accept()[0])
        except OSError:
            pass

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def test_bad_inputs_raise_one_line_source_errors(tmp_path, clip):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("this is not a video\n")
    cut = tmp_path / "no_index.mp4"  # moov atom at the end: a cut-off recording has no index at all
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    port = _free_port()
    cases = {
        str(tmp_path / "missing.mp4"): "not found",
        str(tmp_path / "empty.mp4"): "empty",
        str(tmp_path / "text.mp4"): "not a video file",
        str(tmp_path): "directory",
        str(cut): ("no video stream", "corrupt"),  # which one depends on where the cut falls
        "ftp://x": "unsupported source scheme",
        "foo://": "unsupported source scheme",
        "  ": "empty video source",
        "9": "webcam:9 not found",
        f"rtsp://admin:hunter2@127.0.0.1:{port}/live": "connection refused",
    }
    for spec, expected in cases.items():
        t0 = time.monotonic()
        with pytest.raises(SourceError) as info:
            Capture(spec).open()
        msg = str(info.value)
        assert any(e in msg for e in ((expected,) if isinstance(expected, str) else expected)), (spec, msg)
        assert "\n" not in msg and "hunter2" not in msg
        assert time.monotonic() - t0 < 5.0, spec  # fail fast


def test_stream_that_never_answers_times_out(caplog):
    server = _SilentServer()
    try:
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="within 1 s") as info:
            Capture(f"rtsp://admin:hunter2@127.0.0.1:{server.port}/live", open_timeout_s=1.0).open()
        assert time.monotonic() - t0 < 3.0
        assert "hunter2" not in str(info.value) and "rtsp://***@127.0.0.1" in str(info.value)
    finally:
        server.close()
    assert "hunter2" not in caplog.text


def test_stop_joins_quickly_while_producer_is_blocked(clip):
    cap = Capture(clip, capacity=1).open().start()
    time.sleep(0.2)  # the thread now waits for space in the full BLOCK buffer
    t0 = time.monotonic()
    cap.stop()
    assert time.monotonic() - t0 < 2.0
    assert not cap._thread.is_alive()  # joined, not abandoned
    cap.stop()  # idempotent
    assert cap.state == "ended"


def test_stop_joins_quickly_while_pacing(clip):
    cap = Capture(clip, realtime=True).open().start()
    assert cap.get(1.0) is not None
    t0 = time.monotonic()
    cap.stop()
    assert time.monotonic() - t0 < 2.0 and not cap._thread.is_alive()


def test_thread_failure_closes_buffer(clip, caplog, monkeypatch):
    cap = Capture(clip).open()

    def boom():
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(cap._reader, "read", boom)
    cap.start()
    assert cap.get(2.0) is None  # no hang: the thread closed the buffer
    cap._thread.join(2)
    assert cap.ended and cap.state == "failed" and cap.error and "\n" not in cap.error
    assert "decoder exploded" in caplog.text  # the traceback is logged


def test_http_file_is_read_like_a_file(clip):
    handler = functools.partial(_QuietHandler, directory=str(clip.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Capture(f"http://127.0.0.1:{server.server_address[1]}/{clip.name}") as cap:
            assert not cap.is_live  # a finished video on a web server is not a live feed
            cap.start()
            frames = read_all(cap)
        assert [frame_number(f.image) for f in frames] == list(range(60))
        assert cap.error is None and cap.stats().reconnects == 0
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_real_clip_frame_count_matches_labels():
    video = SHARED_CLIP / "videos" / "squats" / "squat_24.mp4"
    labels = SHARED_CLIP / "labels" / "squats" / "squat_24.csv"
    if not video.exists() or not labels.exists():
        pytest.skip("../shared/data/workouttracker_reps is absent")
    rows = sum(1 for line in labels.read_text().splitlines()[1:] if line.strip())
    with Capture(video) as cap:
        cap.start()
        frames = read_all(cap, limit_s=60)
    assert len(frames) == rows == 198
    assert frames[0].image.shape == (720, 1280, 3)
    assert cap.error is None and cap.fps == pytest.approx(30000 / 1001)


def test_webcam_path_with_opencv_reader(clip):
    """No camera here: point the webcam reader (OpenCV) at a file to exercise loss, reconnect and drop counting."""
    events: list[dict] = []
    cap = Capture("0", on_event=events.append, max_backoff_s=0.5)
    cap.spec = SourceSpec("webcam", str(clip), "webcam:0")  # OpenCV opens files like devices
    cap.open().start()
    assert cap.is_live and cap.size == (W, H)
    seen: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (len(seen) < 3 or not any(e["state"] == "back" for e in events)):
        f = cap.get(0.1)
        if f is not None:
            seen.append(f.index)
            assert frame_number(f.image) == f.index % 60
    # the "camera" stopped after 60 frames: lost, then reopened, and indices continue past 59
    assert [e["state"] for e in events][:2] == ["lost", "back"] and events[0]["source"] == "webcam:0"
    later = [cap.get(1.0) for _ in range(3)]
    assert all(f is not None and f.index >= 60 for f in later)
    assert seen == sorted(set(seen))
    cap.stop()
    assert cap.stats().reconnects >= 1 and cap.state == "ended"


def test_webcam_analysis_rate_retrieves_only_kept_frames(clip, monkeypatch):
    """OpenCV reader: every frame is grabbed, only the kept ones are retrieved (decoded to BGR)."""
    cap = Capture("0", reconnect=False, analysis_fps=5)
    cap.spec = SourceSpec("webcam", str(clip), "webcam:0")
    cap.open()
    retrieved = []
    real_cap = cap._reader.cap

    class Counting:
        def __getattr__(self, name):
            return getattr(real_cap, name)

        def retrieve(self):
            retrieved.append(1)
            return real_cap.retrieve()

    cap._reader.cap = Counting()
    cap.start()
    frames = read_all(cap)
    stats = cap.stats()
    cap.stop()
    # a "webcam" file is read as fast as it decodes, so capture times decide: far fewer frames than 60 are kept
    assert stats.frames_read == 60 and stats.frames_skipped == 60 - len(frames)
    assert len(frames) < 30 and len(retrieved) == len(frames) - 1  # the first frame came with open()
    assert all(frame_number(f.image) == f.index for f in frames)


def test_webcam_loss_without_reconnect_fails_cleanly(clip):
    cap = Capture("0", reconnect=False, capacity=2)
    cap.spec = SourceSpec("webcam", str(clip), "webcam:0")
    cap.open().start()
    frames = read_all(cap, delay=0.002)
    stats = cap.stats()
    assert cap.state == "failed" and cap.error == "lost webcam:0: camera stopped delivering frames"
    assert stats.frames_read == 60 and len(frames) + stats.frames_dropped == 60  # drops are counted, not hidden
