"""Where results go: the events log (JSONL), the overlay video (H.264 via PyAV), the screen (OpenCV).

A file sink that fails mid-run (disk full) stops writing and keeps ``error`` and a lost count; the run goes on."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from realtime.errors import RealtimeError
from realtime.types import FrameResult

log = logging.getLogger(__name__)


def _round_keypoints(keypoints: np.ndarray | None) -> list[list[float]] | None:
    if keypoints is None:
        return None
    return [[round(float(x), 1), round(float(y), 1), round(float(s), 3)] for x, y, s in keypoints]


def _reason(exc: BaseException) -> str:
    """An OS/FFmpeg error in a few words ("No space left on device"), one line."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def frame_records(result: FrameResult) -> list[dict[str, Any]]:
    """The events-log lines of one processed frame: the frame line, and the rep line when a rep ended on it."""
    pose, pred = result.pose, result.prediction
    raw = pose.raw_keypoints if pose.raw_keypoints is not None else pose.keypoints
    records: list[dict[str, Any]] = [{
        "type": "frame",
        "frame": result.frame.index,
        "t": round(result.t, 4),
        "label": pred.label if pred else None,
        "confidence": round(pred.confidence, 4) if pred else None,
        "ruled_out": list(pred.ruled_out) if pred else [],
        "keypoints": _round_keypoints(raw),
        "exercise": result.exercise,
        "reps": result.rep_count,
        "status": result.status,
    }]
    if result.new_rep is not None:
        records.append(result.new_rep.to_json())
    return records


class EventLogSink:
    """One JSON object per line: a line per processed frame, rep and source events, a final summary.

    Each line is flushed as written, so a crash or a kill loses nothing already processed. Thread-safe: several
    cameras (and their capture threads) may share one sink. A write that fails (disk full, file system gone) does
    not stop the run: the sink stops writing, keeps ``error`` (one line, logged once) and counts ``lost_records``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise RealtimeError(f"cannot write events file {self.path}: {exc.strerror}") from None
        self._lock = threading.Lock()  # one line at a time from any thread
        self.records_written = 0
        self.lost_records = 0
        self.error: str | None = None

    def _fail(self, exc: OSError) -> None:
        """Called with the lock held: stop writing, remember and report the failure once."""
        self.error = f"events file {self.path} stopped after {self.records_written} records: {_reason(exc)}"
        log.error("%s; the analysis goes on without it", self.error)
        try:
            self._file.close()
        except OSError:
            pass  # the same failure, already reported

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            if self.error is not None:
                self.lost_records += 1
                return
            if self._file.closed:
                return
            try:
                self._file.write(line + "\n")  # line-buffered: flushed here, so a full disk shows up here
            except OSError as exc:
                self.lost_records += 1
                self._fail(exc)
            else:
                self.records_written += 1

    def frame(self, result: FrameResult) -> None:
        for record in frame_records(result):
            self.write(record)

    def close(self, summary: dict[str, Any] | None = None) -> None:
        with self._lock:
            if self._file.closed and self.error is None:
                return
        if summary is not None:
            self.write({"type": "summary", **summary})
        with self._lock:
            if self._file.closed:
                return
            try:
                self._file.close()
            except OSError as exc:
                self.lost_records += 1  # the last buffered line at most (line buffering)
                self._fail(exc)

    def status(self) -> dict[str, Any]:
        """For the run summary: where the events went and what was lost."""
        return {"path": str(self.path), "records": self.records_written, "lost_records": self.lost_records,
                "error": self.error}


# --save extensions -> FFmpeg container: all take H.264 and are written so that a killed run stays playable.
VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def video_format(path: str | os.PathLike) -> str:
    """The container for a --save path from its extension; a one-line RealtimeError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_FORMATS:
        shown = f"extension {suffix!r}" if suffix else "no extension"
        raise RealtimeError(f"cannot write video {path}: {shown}; --save writes H.264 in "
                            f"{', '.join(VIDEO_FORMATS)} (e.g. {Path(path).with_suffix('.mp4').name})")
    return VIDEO_FORMATS[suffix]


class VideoFileSink:
    """Overlay frames -> browser-playable H.264 (.mp4/.m4v/.mov/.mkv), encoded on its own thread behind a bounded
    queue.

    MP4/MOV are fragmented (moov first, a fragment per keyframe), Matroska is written as a stream, so even a run
    that is killed leaves a playable file up to its last fragment. A writer that fails (disk full) does not stop the
    run: ``error`` says why (one line, logged once) and ``lost_frames`` counts the frames not saved.
    """

    _END = object()

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], queue_size: int = 8) -> None:
        import av

        self.path = Path(path)
        w, h = size
        self._size = (w - w % 2, h - h % 2)  # yuv420p needs even dimensions
        fps = fps if fps and 1 <= fps <= 240 else 30.0
        if self.path.is_dir():
            raise RealtimeError(f"cannot write video {self.path}: it is a folder; give a file name such as "
                                f"{self.path / 'run.mp4'}")
        fmt = video_format(self.path)
        options = {} if fmt == "matroska" else {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "wb"):  # FFmpeg opens the file only at the first frame: fail now, not after the run
                pass
            self._container = av.open(str(self.path), "w", format=fmt, options=options)
        except (OSError, av.FFmpegError) as exc:
            raise RealtimeError(f"cannot write video {self.path}: {_reason(exc)}") from None
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._stream.width, self._stream.height = self._size
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"preset": "veryfast", "crf": "23", "g": str(int(round(fps * 2)))}
        self.frames_written = 0
        self.lost_frames = 0
        self.error: str | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="video-writer", daemon=True)
        self._thread.start()

    def write(self, image: np.ndarray) -> None:
        """Queue one BGR frame; blocks when the encoder is behind (bounded memory)."""
        if self.error is None:
            self._queue.put(image)
        else:
            self.lost_frames += 1

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = f"video {self.path} stopped after {self.frames_written} frames: {_reason(exc)}"
            log.error("%s; the analysis goes on without it", self.error)
            log.debug("video writer failure", exc_info=exc)

    def _run(self) -> None:
        import av

        w, h = self._size
        try:
            while (item := self._queue.get()) is not self._END:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(item[:h, :w]), format="bgr24")
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
                self.frames_written += 1
        except Exception as exc:  # keep draining so producers never block on a dead writer
            self.lost_frames += 1  # the frame being encoded
            self._fail(exc)
            while self._queue.get() is not self._END:
                self.lost_frames += 1
        finally:
            try:
                if self.error is None:
                    for packet in self._stream.encode():
                        self._container.mux(packet)
            except Exception as exc:  # noqa: BLE001 - finalising must not hide the first error
                self._fail(exc)
            try:
                self._container.close()
            except Exception as exc:  # noqa: BLE001 - e.g. the disk filled up while writing the trailer
                self._fail(exc)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._queue.put(self._END)
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        """For the run summary: where the video went and what was lost."""
        return {"path": str(self.path), "frames": self.frames_written, "lost_frames": self.lost_frames,
                "error": self.error}


class ScreenSink:
    """An OpenCV window; ``show`` returns False when the user pressed q or Esc or closed the window."""

    def __init__(self, title: str = "realtime gym analyzer") -> None:
        import cv2

        self._cv2 = cv2
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        self._shown = False

    def show(self, image: np.ndarray) -> bool:
        cv2 = self._cv2
        if not self._shown:
            h, w = image.shape[:2]
            scale = min(1.0, 1280 / w, 800 / h)
            cv2.resizeWindow(self.title, int(w * scale), int(h * scale))
            self._shown = True
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return False

    def close(self) -> None:
        try:
            self._cv2.destroyWindow(self.title)
            self._cv2.waitKey(1)
        except self._cv2.error:
            pass


def display_available() -> bool:
    """True when a window can be opened (X11/Wayland display, or macOS/Windows)."""
    if os.name == "nt" or os.uname().sysname == "Darwin":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
