"""An in-memory source with the ``Capture`` interface: for ``--bench``, the soak test and pipeline tests.

It replays a list of frames (a decoded clip, or generated frames) at a fixed rate like a camera (live: the
ring buffer drops the oldest frames when the consumer is slow) or as fast as the consumer takes them
(file-like: no drops).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from realtime.sources.capture import CaptureStats
from realtime.sources.ring_buffer import DropPolicy, RingBuffer
from realtime.types import Frame


def synthetic_frames(count: int = 60, size: tuple[int, int] = (1280, 720), seed: int = 0) -> list[np.ndarray]:
    """Textured frames with a moving bright block (no person: exercises the detector's 'nobody' path)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    base = np.kron(base, np.ones((8, 8, 1), np.uint8))[:h, :w]
    frames = []
    for i in range(count):
        img = base.copy()
        x = int((i * 17) % max(w - 100, 1))
        img[h // 3 : h // 3 + 100, x : x + 100] = 255
        frames.append(img)
    return frames


class SyntheticSource:
    """Replays ``frames`` (looping) at ``fps``; ends after ``duration_s`` or ``max_frames`` if given."""

    def __init__(
        self,
        frames: list[np.ndarray],
        fps: float = 30.0,
        live: bool = True,
        loop: bool = True,
        duration_s: float | None = None,
        max_frames: int | None = None,
        capacity: int = 4,
        source_id: str = "synthetic",
    ) -> None:
        if not frames:
            raise ValueError("SyntheticSource needs at least one frame")
        self._frames = frames
        self.fps = fps
        self.analysis_fps: float | None = None  # every frame is handed on
        self.delivered_fps = fps
        self.is_live = live
        self.loop = loop
        self.duration_s = duration_s
        self.max_frames = max_frames
        self.source_id = source_id
        self.size = (frames[0].shape[1], frames[0].shape[0])
        self.state = "running"
        self.error: str | None = None
        self._buffer: RingBuffer[Frame] = RingBuffer(capacity, DropPolicy.DROP_OLDEST if live else DropPolicy.BLOCK)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="synthetic-capture", daemon=True)
        self._read = 0
        self._t_start = 0.0

    def start(self) -> None:
        self._t_start = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        period = 1.0 / self.fps
        index = 0
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    break
                if not self.loop and index >= len(self._frames):
                    break
                now = time.monotonic()
                if self.duration_s is not None and now - self._t_start >= self.duration_s:
                    break
                if self.is_live:
                    due = self._t_start + index * period
                    if due > now:
                        self._stop.wait(due - now)
                image = self._frames[index % len(self._frames)]
                frame = Frame(image=image, index=index, t=time.monotonic(), source_id=self.source_id,
                              media_t=None if self.is_live else index * period)
                while not self._buffer.put(frame, timeout=0.1):
                    if self._stop.is_set() or self._buffer.closed:
                        return
                index += 1
                self._read = index
        finally:
            self.state = "ended"
            self._buffer.close()

    def get(self, timeout: float = 0.1) -> Frame | None:
        return self._buffer.get(timeout=timeout)

    @property
    def ended(self) -> bool:
        return self.state == "ended" and len(self._buffer) == 0

    def stats(self) -> CaptureStats:
        elapsed = time.monotonic() - self._t_start if self._t_start else 0.0
        return CaptureStats(
            frames_read=self._read,
            frames_dropped=self._buffer.dropped,
            buffer_fill=len(self._buffer),
            buffer_capacity=self._buffer.capacity,
            reconnects=0,
            fps_in=self._read / elapsed if elapsed > 0 else 0.0,
        )

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._buffer.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
