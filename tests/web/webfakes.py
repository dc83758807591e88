"""A fake analyzer for the web tests: synthetic frames with a drawn counter, rising rep counts, reps committed to
the store before they are published. Import it as ``webfakes`` from tests under tests/web."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from realtime.store import SetRecorder, Store
from realtime.web import LiveHub


def synthetic_frame(camera: str, n: int, width: int = 640, height: int = 360) -> np.ndarray:
    """A frame that visibly changes every time: moving bar, frame counter and camera name drawn in."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = (40, 30 + (n * 3) % 60, 20)
    x = (n * 12) % width
    cv2.rectangle(image, (x, height - 60), (min(width - 1, x + 80), height - 20), (0, 200, 255), -1)
    cv2.putText(image, f"{camera} frame {n}", (20, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (255, 255, 255), 3)
    return image


def fake_rep(exercise: str, index: int, *, fault: bool = False, duration_s: float = 1.5) -> dict:
    start = index * 2.0
    return {
        "type": "rep", "exercise": exercise, "index": index, "start_frame": index * 60, "end_frame": index * 60 + 45,
        "bottom_frame": index * 60 + 25, "start_t": start, "end_t": start + duration_s, "duration_s": duration_s,
        "range_of_motion": 0.8 + 0.05 * (index % 4), "view": "side",
        "form": {"measures": {"knee_min": 80.0 + index, "lean_max": 25.0 + index % 5},
                 "faults": ["knees cave in"] if fault else [], "skipped": []},
    }


class FakePublisher:
    """Imitates the multi-camera analyzer: per camera a thread publishing frames/states, a rep every
    ``rep_every_s`` (committed to ``store`` through a SetRecorder before ``publish_rep``, as the analyzer must)."""

    def __init__(self, hub: LiveHub, store: Store | None = None, cameras: tuple[str, ...] = ("cam0", "cam1"), *,
                 fps: float = 15.0, rep_every_s: float = 1.0, exercise: str = "squat", rest_s: float = 60.0,
                 host: str = "test-host") -> None:
        self.hub, self.store, self.cameras = hub, store, cameras
        self.fps, self.rep_every_s, self.exercise = fps, rep_every_s, exercise
        self.recorders = {c: SetRecorder(store, c, host=host, rest_s=rest_s) for c in cameras} if store else {}
        self.reps = dict.fromkeys(cameras, 0)
        self.frames = dict.fromkeys(cameras, 0)
        self.publish_s: list[float] = []  # wall time of every publish_* call (to show they never block)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in cameras]

    def start(self) -> FakePublisher:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, close_sets: bool = True) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        if close_sets:
            for recorder in self.recorders.values():
                recorder.close()

    def _timed(self, fn: Callable, *args) -> None:
        t0 = time.perf_counter()
        fn(*args)
        self.publish_s.append(time.perf_counter() - t0)

    def _run(self, camera: str) -> None:
        n, last_rep_t, last = 0, time.monotonic(), None
        self._timed(self.hub.publish_event, camera, {"type": "source", "message": "source opened"})
        while not self._stop.is_set():
            n += 1
            self.frames[camera] = n
            if time.monotonic() - last_rep_t >= self.rep_every_s:
                last_rep_t = time.monotonic()
                count = self.reps[camera] + 1
                last = fake_rep(self.exercise, count, fault=count % 3 == 0, duration_s=min(1.5, 0.7 * self.rep_every_s))
                if camera in self.recorders:
                    self.recorders[camera].on_rep(last, time.time())  # committed before it is shown
                self.reps[camera] = count
                self._timed(self.hub.publish_rep, camera, last)
            state = {
                "camera": camera, "state": "live", "label": self.exercise, "confidence": 0.93,
                "exercise": self.exercise, "reps": self.reps[camera], "last_rep": last,
                "cues": list(last["form"]["faults"]) if last else [],
                "fps": self.fps, "frames_processed": n, "frames_dropped": n // 50, "error": None,
            }
            self._timed(self.hub.publish_state, camera, state)
            self._timed(self.hub.publish_frame, camera, synthetic_frame(camera, n))
            if camera in self.recorders:
                self.recorders[camera].tick(time.time())
            self._stop.wait(1.0 / self.fps)
