"""The live hub and its pushed channels over a real server: frames are encoded only while watched, capped in rate
and size; Server-Sent Events carry states (coalesced), reps and events; a client that stops reading is dropped
and never slows the publishing (analyzer) threads."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import cv2
import httpx
import numpy as np
import pytest

from realtime.web import LiveHub

pytest_plugins = ["webfakes"]  # fixtures (not a conftest.py: that would shadow tests/conftest.py)


@pytest.fixture
def hub():
    h = LiveHub(["cam0", "cam1"], max_fps=5.0, max_width=320, push_hz=20.0)
    yield h
    h.close()


class SseReader:
    """Parses Server-Sent Events from a streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.iter_bytes()
        self.buffer = b""

    def until(self, done, timeout: float = 5.0) -> list[tuple[str, dict]]:
        """Events read until ``done(events)`` is true (or ``timeout``)."""
        events: list[tuple[str, dict]] = []
        deadline = time.monotonic() + timeout
        while not done(events) and time.monotonic() < deadline:
            self.buffer += next(self.chunks)
            while b"\n\n" in self.buffer:
                block, self.buffer = self.buffer.split(b"\n\n", 1)
                fields = dict(line.split(": ", 1) for line in block.decode().splitlines() if ": " in line)
                if "event" in fields:
                    events.append((fields["event"], json.loads(fields["data"])))
        return events


def jpeg_parts(data: bytes) -> list[bytes]:
    return [p.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n-frame") for p in data.split(b"--frame\r\n")[1:]
            if b"\r\n\r\n" in p and p.split(b"\r\n\r\n", 1)[1].startswith(b"\xff\xd8")]


def test_frames_encoded_only_while_watched_and_capped(hub, live_server, fakes):
    server = live_server(hub, None)
    big = np.full((720, 1280, 3), 128, np.uint8)
    for _ in range(20):
        hub.publish_frame("cam0", big)
    time.sleep(0.2)
    assert hub.stats()["cameras"]["cam0"]["frames_encoded"] == 0  # nobody watches: no JPEG work at all
    got = b""
    with httpx.stream("GET", server.url + "api/cameras/cam0/stream.mjpeg", timeout=5) as response:
        assert response.headers["content-type"] == "multipart/x-mixed-replace; boundary=frame"
        stop = threading.Event()

        def publish():
            n = 0
            while not stop.is_set():
                n += 1
                hub.publish_frame("cam0", fakes.synthetic_frame("cam0", n, 1280, 720))
                time.sleep(1 / 60)

        thread = threading.Thread(target=publish)
        t0 = time.monotonic()
        thread.start()
        try:
            for chunk in response.iter_bytes():
                got += chunk
                if time.monotonic() - t0 > 2.0:
                    break
        finally:
            stop.set()
            thread.join()
    elapsed = time.monotonic() - t0
    frames = jpeg_parts(got)
    assert 3 <= len(frames) <= 5.0 * elapsed + 2  # at most max_fps=5 while 60 fps are published
    image = cv2.imdecode(np.frombuffer(frames[-1], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1] == 320 and image.shape[0] == 180  # downscaled to max_width
    assert len({f for f in frames}) == len(frames)  # every frame differs (the drawn counter)
    time.sleep(0.3)
    assert hub.stats()["cameras"]["cam0"]["viewers"] == 0  # the closed viewer is gone
    encoded = hub.stats()["cameras"]["cam0"]["frames_encoded"]
    for _ in range(20):
        hub.publish_frame("cam0", big)
    time.sleep(0.2)
    assert hub.stats()["cameras"]["cam0"]["frames_encoded"] == encoded


def test_push_channel_carries_states_reps_events_and_engine(hub, live_server, fakes):
    server = live_server(hub, None)
    hub.publish_state("cam0", {"state": "live", "reps": 1})
    with httpx.stream("GET", server.url + "api/events", timeout=5) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        sse = SseReader(response)
        first = sse.until(lambda e: len(e) >= 2)
        assert {(k, d["camera"], d["state"]) for k, d in first} == {("state", "cam0", "live"),
                                                                    ("state", "cam1", "starting")}
        for i in range(500):  # a burst of states is coalesced: the client sees the latest, not all 500
            hub.publish_state("cam0", {"state": "live", "reps": i})
        hub.publish_rep("cam0", fakes.fake_rep("squat", 7))
        hub.publish_event("cam1", {"type": "source_lost", "message": "no frames for 5 s"})
        hub.publish_engine({"batch_size": 2.0, "latency_ms": 9.5})
        events = sse.until(lambda e: any(d.get("reps") == 499 for k, d in e if k == "state")
                          and any(k == "engine" for k, _ in e) and any(k == "camera_event" for k, _ in e))
    kinds = [k for k, _ in events]
    assert kinds.count("state") < 50
    (rep,) = [d for k, d in events if k == "rep"]
    assert rep["index"] == 7 and rep["camera"] == "cam0" and "wall_t" in rep
    assert [d["message"] for k, d in events if k == "camera_event"] == ["no frames for 5 s"]
    assert [d for k, d in events if k == "engine"] == [{"batch_size": 2.0, "latency_ms": 9.5}]


def test_push_channel_for_one_camera(hub, live_server, fakes):
    server = live_server(hub, None)
    with httpx.stream("GET", server.url + "api/events?camera=cam1", timeout=5) as response:
        sse = SseReader(response)
        sse.until(lambda e: len(e) >= 1)
        hub.publish_rep("cam0", fakes.fake_rep("squat", 1))
        hub.publish_rep("cam1", fakes.fake_rep("squat", 2))
        hub.publish_event("cam1", {"type": "source_lost", "message": "lost rtsp://admin:pw123@192.168.1.9/live"})
        hub.publish_state("cam1", {"state": "reconnecting", "error": "rtsp://admin:pw123@192.168.1.9/live: timeout"})
        events = sse.until(lambda e: any(k == "camera_event" for k, _ in e)
                           and any(d.get("state") == "reconnecting" for k, d in e if k == "state"))
    assert [d["camera"] for k, d in events if k == "rep"] == ["cam1"]
    text = json.dumps(events)
    assert "pw123" not in text and "192.168.1.9" not in text and "rtsp" not in text  # names only, never URLs


def stalled_client(port: int, path: str) -> socket.socket:
    """Connects, asks for ``path`` and never reads (tiny receive buffer so the server's send side fills up)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    return s


@pytest.mark.parametrize("path", ["/api/cameras/cam0/stream.mjpeg", "/api/events"])
def test_a_stalled_client_is_dropped_without_blocking_publishers(live_server, path):
    hub = LiveHub(["cam0"], max_fps=30.0, max_width=960, jpeg_quality=95)
    server = live_server(hub, None, send_timeout_s=1.0)
    stalled = stalled_client(server.port, path)
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 255, (540, 960, 3), np.uint8) for _ in range(3)]  # ~300 kB JPEGs fill buffers fast
    big_event = {"type": "log", "message": "x" * 20000}
    worst = 0.0
    healthy_frames = 0
    try:
        with httpx.stream("GET", server.url + "api/cameras/cam0/stream.mjpeg", timeout=10) as healthy:
            chunks = healthy.iter_bytes()
            t0 = time.monotonic()
            n = 0
            while time.monotonic() - t0 < 15 and not hub.stats()["clients_dropped"]:
                n += 1
                start = time.perf_counter()
                hub.publish_frame("cam0", noise[n % 3])
                hub.publish_state("cam0", {"state": "live", "reps": n})
                hub.publish_event("cam0", big_event)
                worst = max(worst, time.perf_counter() - start)
                if n % 3 == 0:  # the healthy viewer keeps reading
                    healthy_frames += next(chunks).count(b"\xff\xd8")
                time.sleep(1 / 30)
            dropped_after = time.monotonic() - t0
    finally:
        stalled.close()
    print(f"{path}: stalled client dropped after {dropped_after:.2f} s, slowest publish {worst * 1000:.2f} ms")
    assert hub.stats()["clients_dropped"] == 1, f"stalled client not dropped after {dropped_after:.1f} s"
    assert worst < 0.05, f"a publish call took {worst * 1000:.1f} ms while a client was stalled"
    assert healthy_frames > 0
    time.sleep(0.3)
    assert hub.stats()["event_clients"] == 0 and hub.stats()["stream_clients"] == 0
    hub.close()


def test_stop_ends_open_streams_quickly(hub, live_server):
    server = live_server(hub, None)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client(timeout=5))
        readers = []  # keep the iterators: a discarded one closes its connection
        for path in ("api/events", "api/cameras/cam0/stream.mjpeg"):
            readers.append(stack.enter_context(client.stream("GET", server.url + path)).iter_bytes())
            next(readers[-1])
        assert hub.stats()["event_clients"] == 1 and hub.stats()["stream_clients"] == 1
        t0 = time.monotonic()
        server.stop(5.0)
        assert not server.running and time.monotonic() - t0 < 4.0


def test_publish_for_unknown_camera_and_odd_values(hub):
    hub.publish_state("late", {"state": "live", "confidence": float("nan"), "extra": np.arange(3)})
    assert hub.state("late") == {"state": "live", "confidence": None, "extra": [0, 1, 2], "camera": "late"}
    hub.publish_frame("nobody", np.zeros((10, 10, 3), np.uint8))  # unknown and unwatched: ignored
    assert "nobody" not in hub.cameras()


def test_configured_source_strings_are_replaced_by_a_placeholder():
    hub = LiveHub(["a"], redact=["/srv/cams/rack1.mp4"])
    hub.publish_state("a", {"state": "error", "error": "cannot open /srv/cams/rack1.mp4: no such file"})
    assert hub.state("a")["error"] == "cannot open <source>: no such file"
    hub.close()


def test_wall_tiles_and_full_size_encoded_apart_longer_side_capped(live_server, fakes):
    hub = LiveHub(["cam0"], max_fps=20.0, max_width=320, tile_width=120)
    server = live_server(hub, None)
    portrait = fakes.synthetic_frame("cam0", 1, 720, 1280)  # 720 wide, 1280 high (a phone held upright)
    try:
        sizes = {}
        for size in ("tile", "full"):
            with httpx.stream("GET", server.url + f"api/cameras/cam0/stream.mjpeg?size={size}", timeout=5) as response:
                got = b""
                for chunk in response.iter_bytes():
                    got += chunk
                    if jpeg_parts(got):
                        break
                    hub.publish_frame("cam0", portrait)
                    time.sleep(0.06)
            image = cv2.imdecode(np.frombuffer(jpeg_parts(got)[0], np.uint8), cv2.IMREAD_COLOR)
            sizes[size] = image.shape[:2]
            assert hub.wanted_side("cam0") in (0, hub.sides[size])
        assert sizes == {"tile": (120, 68), "full": (320, 180)}
    finally:
        hub.close()
