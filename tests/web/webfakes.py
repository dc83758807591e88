"""Helpers and fixtures of the web tests: a fake analyzer publishing into a LiveHub (synthetic frames with a drawn
counter, rising rep counts, reps committed to the store before they are published), a live server on a free
loopback port, and Debian's chromium driven by Playwright (skipped where absent).

Not a conftest.py (a second conftest module would shadow tests/conftest.py for ``from conftest import ...``): a
test module under tests/web imports the fixtures it uses, e.g. ``from webfakes import chromium, store  # noqa``."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest

from realtime.store import SetRecorder, Store, open_store
from realtime.web import LiveHub, create_app, start_server


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


CHROMIUM = os.environ.get("REALTIME_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture
def fakes():
    """This module (synthetic_frame, fake_rep, FakePublisher) without importing it before pytest registers it."""
    return sys.modules[__name__]


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "gym.sqlite"))
    yield s
    s.close()


@pytest.fixture
def live_server():
    """``live_server(hub, store, token=..., **create_app kwargs)`` -> ServerHandle on a free loopback port."""
    handles = []

    def start(hub: LiveHub, store: Store | None, *, token: str | None = None, **kwargs):
        handle = start_server(create_app(hub, store, token=token, **kwargs), "127.0.0.1", 0)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop(5.0)


@pytest.fixture
def fake_publisher():
    """``fake_publisher(hub, store, cameras=..., **kw)`` -> a started FakePublisher, stopped at teardown."""
    publishers = []

    def start(hub: LiveHub, store: Store | None = None, **kwargs) -> FakePublisher:
        publisher = FakePublisher(hub, store, **kwargs).start()
        publishers.append(publisher)
        return publisher

    yield start
    for publisher in publishers:
        publisher.stop(close_sets=False)


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium through Playwright (its own browser download is not reachable here)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
