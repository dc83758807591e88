"""LiveHub: thread-safe fan-out from the analyzer threads to web clients.

The analyzer calls ``publish_*`` from its camera threads; every call only stores a reference, bumps a counter and, at
most once per pending wake-up, schedules a wake-up on a client's event loop, so it never waits for a client.
Frames are JPEG-encoded on the hub's encoder thread, only for cameras somebody watches, at most ``max_fps`` per
camera, in two sizes: ``full`` (longer side ``max_width``, one camera large) and ``tile`` (``tile_width``, the
wall), each only while somebody watches it; one encoded frame is shared by all viewers of that camera and size. Each
client has a bounded queue that drops its oldest entry when the client falls behind.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from realtime.store.jsonable import to_jsonable
from realtime.web.frames import FramePacer, shrink

STATES = ("starting", "live", "no person", "reconnecting", "pose server unreachable", "ended", "error")
_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s'\"<>]+")
BOUNDARY = "frame"


class LivePublisher(Protocol):
    """What the analyzer publishes into: a ``LiveHub`` in the same process, or ``WebProcess`` for one of its own."""

    def publish_state(self, camera: str, state: dict) -> None: ...
    def state(self, camera: str) -> dict: ...
    def publish_rep(self, camera: str, rep: dict) -> None: ...
    def publish_event(self, camera: str, event: dict) -> None: ...
    def publish_engine(self, figures: dict) -> None: ...
    def publish_frame(self, camera: str, image_bgr: np.ndarray) -> None: ...
    def wants_frame(self, camera: str) -> bool: ...


def sse_message(kind: str, payload: Any) -> bytes:
    """One Server-Sent Events message (``event: kind`` + one JSON data line)."""
    return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'), allow_nan=False)}\n\n".encode()


class Subscriber:
    """One web client: a bounded queue filled from any thread, drained on the client's asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxlen: int, camera: str | None = None,
                 size: str = "full") -> None:
        self.loop = loop
        self.camera = camera
        self.size = size  # video: "full" (one camera large) or "tile" (the wall)
        self.queue: deque[bytes] = deque(maxlen=maxlen)
        self.event = asyncio.Event()
        self.wake_pending = False
        self.closed = False
        self.dropped_items = 0  # entries dropped because the client fell behind

    def offer(self, item: bytes) -> None:
        """Queue ``item`` (dropping the oldest when full) and wake the client; never blocks. Any thread."""
        if len(self.queue) == self.queue.maxlen:
            self.dropped_items += 1
        self.queue.append(item)
        self.wake()

    def wake(self) -> None:
        if self.wake_pending or self.closed:
            return
        self.wake_pending = True
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # the client's loop is gone (server stopped)
            self.closed = True

    def drain(self) -> list[bytes]:
        """Everything queued so far, without waiting. On the client's loop."""
        self.event.clear()
        self.wake_pending = False
        items = []
        while self.queue:
            items.append(self.queue.popleft())
        return items

    async def wait(self, timeout: float | None = None) -> list[bytes]:
        """Wait for a wake-up (or ``timeout``), then return everything queued so far. On the client's loop."""
        if not self.queue and not self.closed:
            try:
                await asyncio.wait_for(self.event.wait(), timeout)
            except TimeoutError:
                pass
        return self.drain()


@dataclass
class _Camera:
    name: str
    state: dict | None = None
    state_seq: int = 0
    state_cache: tuple[int, dict, bytes] | None = None  # (seq, clean state, SSE message)
    state_cache_t: float = 0.0
    reps: deque = field(default_factory=lambda: deque(maxlen=200))
    events: deque = field(default_factory=lambda: deque(maxlen=50))
    reps_total: int = 0
    watchers: tuple[Subscriber, ...] = ()
    frames_encoded: int = 0
    frames_replaced: int = 0  # offered to the encoder but replaced by a newer one before it was encoded
    last_part: dict[str, bytes] = field(default_factory=dict)  # size -> latest MJPEG part (headers, JPEG, boundary)
    last_jpeg: dict[str, bytes] = field(default_factory=dict)  # size -> latest JPEG


class LiveHub:
    """Latest state/frame of every camera plus pushed reps and events, for any number of web clients."""

    def __init__(
        self,
        cameras: list[str],
        *,
        max_fps: float = 10.0,
        max_width: int = 960,
        tile_width: int = 640,
        jpeg_quality: int = 75,
        push_hz: float = 10.0,
        client_queue: int = 256,
        redact: Iterable[str] = (),
        encoder_threads: int = 1,
    ) -> None:
        if max_fps <= 0 or min(max_width, tile_width) < 16 or not 1 <= jpeg_quality <= 100 or push_hz <= 0:
            raise ValueError("max_fps and push_hz must be > 0, max_width and tile_width >= 16, jpeg_quality in 1..100")
        self.max_fps = float(max_fps)
        self._pacer = FramePacer(self.max_fps)
        self.max_width = int(max_width)
        self.sides = {"full": self.max_width, "tile": min(int(tile_width), self.max_width)}  # longer side, pixels
        self.jpeg_quality = int(jpeg_quality)
        self.push_interval = 1.0 / float(push_hz)
        self.client_queue = int(client_queue)
        self._redact = sorted({s for s in redact if s and len(s) >= 3}, key=len, reverse=True)
        self._lock = threading.Lock()
        self._cams: dict[str, _Camera] = {name: _Camera(name) for name in cameras}
        self._event_subs: tuple[Subscriber, ...] = ()
        self._engine: dict = {}
        self._engine_seq = 0
        self._engine_cache: tuple[int, bytes] | None = None
        self._pending: dict[str, np.ndarray] = {}
        self._cond = threading.Condition(self._lock)
        self._encoders: list[threading.Thread] = []
        self._encoder_threads = max(1, int(encoder_threads))
        self._closed = False
        self.clients_dropped = 0  # clients cut off because they stopped reading
        self.clients_total = 0

    # ------------------------------------------------------------------ publishing (analyzer threads)
    def _camera(self, camera: str) -> _Camera:
        cam = self._cams.get(camera)
        if cam is None:
            with self._lock:
                cam = self._cams.setdefault(camera, _Camera(camera))
        return cam

    def publish_state(self, camera: str, state: dict) -> None:
        """Keep ``state`` as the camera's latest (called for every processed frame)."""
        cam = self._camera(camera)
        cam.state = dict(state)
        cam.state_seq += 1
        for sub in self._event_subs:
            if sub.camera is None or sub.camera == camera:
                sub.wake()

    def wants_frame(self, camera: str) -> bool:
        """Whether ``publish_frame`` would take a frame of ``camera`` now (someone watches and one is due)."""
        cam = self._cams.get(camera)
        return cam is not None and bool(cam.watchers) and not self._closed and self._pacer.due(camera)

    def publish_frame(self, camera: str, image_bgr: np.ndarray, *, copy: bool = True, paced: bool = False) -> None:
        """Offer the latest overlay frame; encoded only while someone watches, at most ``max_fps``.

        ``copy=False``: the image is the caller's to give away; ``paced=True``: the sender already keeps to
        ``max_fps`` (the web process's relay), so a frame that comes a little early is not skipped."""
        cam = self._cams.get(camera)
        if cam is None or not cam.watchers or self._closed:
            return
        if not paced and not self._pacer.take(camera):
            return
        # the caller may reuse its buffer; shrunk on the encoder thread
        image = np.array(image_bgr, copy=True) if copy else image_bgr
        with self._cond:
            if camera in self._pending:
                cam.frames_replaced += 1
            self._pending[camera] = image
            self._cond.notify()
        if not self._encoders:
            self._start_encoders()

    def publish_rep(self, camera: str, rep: dict) -> None:
        """Push a finished rep (already committed to the database) to every client."""
        cam = self._camera(camera)
        clean = self.clean({"wall_t": time.time(), **rep, "camera": camera})
        cam.reps.append(clean)
        cam.reps_total += 1
        self._broadcast(camera, sse_message("rep", clean))

    def publish_event(self, camera: str, event: dict) -> None:
        """Push a camera event (source lost/back, pose server unreachable, an error)."""
        cam = self._camera(camera)
        clean = self.clean({"wall_t": time.time(), **event, "camera": camera})
        cam.events.append(clean)
        self._broadcast(camera, sse_message("camera_event", clean))

    def publish_engine(self, figures: dict) -> None:
        """Shared pose-engine figures (e.g. batch_size, latency_ms, queue); numeric keys become /metrics gauges."""
        self._engine = self.clean(dict(figures))
        self._engine_seq += 1
        for sub in self._event_subs:
            sub.wake()

    def _broadcast(self, camera: str, message: bytes) -> None:
        for sub in self._event_subs:
            if sub.camera is None or sub.camera == camera:
                sub.offer(message)

    # ------------------------------------------------------------------ sanitising
    def clean(self, value: Any) -> Any:
        """JSON-safe copy of ``value`` with every URL and every configured source string replaced (names only)."""
        return self._scrub(to_jsonable(value))

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._redact:
                value = value.replace(secret, "<source>")
            return _URL_RE.sub("<url>", value)
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        return value

    # ------------------------------------------------------------------ reading (web server)
    def cameras(self) -> list[str]:
        return list(self._cams)

    def has_camera(self, camera: str) -> bool:
        return camera in self._cams

    def _state_cache(self, cam: _Camera, *, max_age: float = 0.0) -> tuple[int, dict, bytes]:
        """(seq, clean state, SSE message) of the latest state; reused while younger than ``max_age`` seconds, so
        many clients share one JSON encoding however often the analyzer publishes."""
        cached = cam.state_cache
        seq = cam.state_seq
        now = time.monotonic()
        if cached is not None and (cached[0] == seq or now - cam.state_cache_t < max_age):
            return cached
        state = self.clean(cam.state) if cam.state is not None else {"camera": cam.name, "state": "starting"}
        state["camera"] = cam.name
        cached = (seq, state, sse_message("state", state))
        cam.state_cache, cam.state_cache_t = cached, now
        return cached

    def state(self, camera: str) -> dict:
        """The camera's latest state, sanitised (a 'starting' placeholder before the first one)."""
        return dict(self._state_cache(self._cams[camera])[1])

    def recent_reps(self, camera: str) -> list[dict]:
        return list(self._cams[camera].reps)

    def recent_events(self, camera: str) -> list[dict]:
        return list(self._cams[camera].events)

    def engine(self) -> dict:
        return dict(self._engine)

    def wanted_side(self, camera: str) -> int:
        """Longer side (pixels) of the frames ``camera``'s viewers need now: 0 when nobody watches, the tile size
        when only the wall does, else ``max_width``."""
        cam = self._cams.get(camera)
        sizes = {sub.size for sub in cam.watchers} if cam is not None else set()
        return max((self.sides[size] for size in sizes), default=0)

    def latest_jpeg(self, camera: str) -> bytes | None:
        jpegs = self._cams[camera].last_jpeg
        return jpegs.get("full") or jpegs.get("tile")

    def latest_part(self, camera: str, size: str) -> bytes | None:
        return self._cams[camera].last_part.get(size)

    def stats(self) -> dict:
        """Web-side counters (for /metrics and tests)."""
        return {
            "cameras": {
                name: {
                    "viewers": len(cam.watchers), "frames_encoded": cam.frames_encoded,
                    "frames_replaced": cam.frames_replaced, "reps_published": cam.reps_total,
                }
                for name, cam in list(self._cams.items())
            },
            "event_clients": len(self._event_subs),
            "stream_clients": sum(len(cam.watchers) for cam in list(self._cams.values())),
            "clients_total": self.clients_total,
            "clients_dropped": self.clients_dropped,
        }

    def camera_counters(self) -> list[tuple[str, dict | None, int, int]]:
        """(name, raw latest state, reps published, frames encoded) per camera, for the metrics collector."""
        return [(name, cam.state, cam.reps_total, cam.frames_encoded) for name, cam in list(self._cams.items())]

    # ------------------------------------------------------------------ subscriptions (web server loop)
    def subscribe_frames(self, camera: str, size: str = "full") -> Subscriber:
        """A viewer of ``camera``'s MJPEG stream, ``full`` or ``tile`` size (frames get encoded while one exists)."""
        if size not in self.sides:
            raise ValueError(f"size must be one of {sorted(self.sides)}")
        sub = Subscriber(asyncio.get_running_loop(), maxlen=1, camera=camera, size=size)
        cam = self._cams[camera]
        with self._lock:
            cam.watchers = (*cam.watchers, sub)
            self.clients_total += 1
        return sub

    def subscribe_events(self, camera: str | None = None) -> Subscriber:
        """A push-channel client (all cameras, or one)."""
        sub = Subscriber(asyncio.get_running_loop(), maxlen=self.client_queue, camera=camera)
        with self._lock:
            self._event_subs = (*self._event_subs, sub)
            self.clients_total += 1
        return sub

    def unsubscribe(self, sub: Subscriber, *, stalled: bool = False) -> None:
        sub.closed = True
        with self._lock:
            if stalled:
                self.clients_dropped += 1
            self._event_subs = tuple(s for s in self._event_subs if s is not sub)
            cam = self._cams.get(sub.camera) if sub.camera is not None else None
            if cam is not None and sub in cam.watchers:
                cam.watchers = tuple(s for s in cam.watchers if s is not sub)

    def pending_states(self, sub: Subscriber, sent: dict[str, int]) -> tuple[list[bytes], bool]:
        """SSE messages for the cameras (and engine) whose state changed since ``sent`` (updated in place), and
        whether a newer state than the one sent already exists (the client should come back soon)."""
        out = []
        behind = False
        names = [sub.camera] if sub.camera is not None else list(self._cams)
        for name in names:
            cam = self._cams.get(name)
            if cam is not None and sent.get(name) != cam.state_seq:
                seq, _, message = self._state_cache(cam, max_age=self.push_interval / 2)
                if sent.get(name) != seq:
                    sent[name] = seq
                    out.append(message)
                behind = behind or seq != cam.state_seq
        if sub.camera is None and self._engine and sent.get("\0engine") != self._engine_seq:
            cached = self._engine_cache
            if cached is None or cached[0] != self._engine_seq:
                cached = self._engine_cache = (self._engine_seq, sse_message("engine", self._engine))
            sent["\0engine"] = cached[0]
            out.append(cached[1])
        return out, behind

    def close_clients(self) -> None:
        """End every stream (server shutdown)."""
        with self._lock:
            subs = list(self._event_subs) + [s for cam in self._cams.values() for s in cam.watchers]
        for sub in subs:
            sub.closed = True
            sub.wake_pending = False
            try:
                sub.loop.call_soon_threadsafe(sub.event.set)
            except RuntimeError:
                pass

    def close(self) -> None:
        """Stop the encoder threads and end every stream."""
        self.close_clients()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._encoders:
            thread.join(timeout=2.0)

    # ------------------------------------------------------------------ encoding
    def _start_encoders(self) -> None:
        with self._lock:
            if self._encoders or self._closed:
                return
            for i in range(self._encoder_threads):
                thread = threading.Thread(target=self._encode_loop, name=f"web-jpeg-{i}", daemon=True)
                self._encoders.append(thread)
                thread.start()

    def _encode_loop(self) -> None:
        params = [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                camera = next(iter(self._pending))  # oldest pending camera first: no camera starves
                image = self._pending.pop(camera)
            cam = self._cams[camera]
            watchers = cam.watchers
            # largest size first: the tile is shrunk from the full-size frame, not from the camera's
            for size in sorted({sub.size for sub in watchers}, key=self.sides.get, reverse=True):
                image = shrink(image, self.sides[size])
                ok, buf = cv2.imencode(".jpg", image, params)
                if not ok:
                    continue
                jpeg = buf.tobytes()
                part = (
                    f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    + jpeg + f"\r\n--{BOUNDARY}\r\n".encode()
                )
                cam.last_jpeg[size], cam.last_part[size] = jpeg, part
                cam.frames_encoded += 1
                for sub in watchers:
                    if sub.size == size:
                        sub.offer(part)
