"""Where results go: the events log (JSONL), the overlay video (H.264 via PyAV), the screen (OpenCV)."""

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


class EventLogSink:
    """One JSON object per line: a line per processed frame, rep and source events, a final summary.

    Each line is flushed as written, so a crash or a kill loses nothing already processed.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise RealtimeError(f"cannot write events file {self.path}: {exc.strerror}") from None
        self._lock = threading.Lock()  # source events arrive from the capture thread

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")

    def frame(self, result: FrameResult) -> None:
        pose, pred = result.pose, result.prediction
        raw = pose.raw_keypoints if pose.raw_keypoints is not None else pose.keypoints
        record: dict[str, Any] = {
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
        }
        self.write(record)
        if result.new_rep is not None:
            self.write(result.new_rep.to_json())

    def close(self, summary: dict[str, Any] | None = None) -> None:
        with self._lock:
            if self._file.closed:
                return
        if summary is not None:
            self.write({"type": "summary", **summary})
        with self._lock:
            self._file.close()


class VideoFileSink:
    """Overlay frames -> browser-playable H.264 MP4, encoded on its own thread behind a bounded queue.

    The MP4 is fragmented (moov first, a fragment per keyframe), so even a run that is killed leaves
    a playable file up to its last fragment.
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "wb"):  # FFmpeg opens the file only at the first frame: fail now, not after the run
                pass
            self._container = av.open(
                str(self.path), "w", format="mp4",
                options={"movflags": "frag_keyframe+empty_moov+default_base_moof"},
            )
        except (OSError, av.FFmpegError) as exc:
            raise RealtimeError(f"cannot write video {self.path}: {exc}") from None
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._stream.width, self._stream.height = self._size
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"preset": "veryfast", "crf": "23", "g": str(int(round(fps * 2)))}
        self.frames_written = 0
        self.error: str | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="video-writer", daemon=True)
        self._thread.start()

    def write(self, image: np.ndarray) -> None:
        """Queue one BGR frame; blocks when the encoder is behind (bounded memory)."""
        if self.error is None:
            self._queue.put(image)

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
            log.exception("video writer failed")
            self.error = f"video writer failed for {self.path}: {exc}"
            while self._queue.get() is not self._END:
                pass
        finally:
            try:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            except Exception:  # noqa: BLE001 - finalising must not hide the first error
                log.exception("flushing the encoder failed")
            self._container.close()

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._queue.put(self._END)
            self._thread.join(timeout)


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
