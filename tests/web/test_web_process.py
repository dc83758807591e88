"""The web server in its own process: what the analyzer publishes reaches the pages, frames cross in shared memory
only while someone watches, start errors are one line, and the process never outlives the analyzer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import cv2
import httpx
import numpy as np
import psutil
import pytest
from conftest import REPO

from realtime.errors import RealtimeError
from realtime.web.process import WebConfig, WebProcess

SECRET = "rtsp://coach:hunter2@10.0.0.7/rack"


def wait_for(what: str, check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def web():
    process = WebProcess(WebConfig(("rack", "floor"), port=0, max_fps=20.0, max_width=320,
                               tile_width=160, redact=(SECRET,)))
    url = process.start()
    assert url.startswith("http://127.0.0.1:")
    yield process
    process.stop()
    assert not process.alive


def test_states_reps_and_events_reach_the_api(web):
    web.publish_state("rack", {"camera": "rack", "state": "live", "reps": 3, "error": f"lost {SECRET}"})
    web.publish_rep("rack", {"type": "rep", "exercise": "squat", "index": 3})
    web.publish_event("floor", {"type": "source", "state": "reconnecting"})
    web.publish_engine({"batch_size": 2.5})
    with httpx.Client(base_url=web.url, timeout=5.0) as http:
        state = wait_for("the state", lambda: (s := http.get("api/cameras/rack").json())["reps"] and s)
        assert state["state"]["state"] == "live" and state["state"]["reps"] == 3
        assert [r["index"] for r in state["reps"]] == [3]
        assert "hunter2" not in http.get("api/cameras/rack").text  # the source URL never leaves the server
        floor = wait_for("the event", lambda: (s := http.get("api/cameras/floor").json())["events"] and s)
        assert floor["events"][0]["state"] == "reconnecting"
        assert wait_for("engine figures", lambda: http.get("api/engine").json()) == {"batch_size": 2.5}
        assert 'realtime_camera_rep_count{camera="rack"} 3.0' in http.get("metrics").text
    assert web.state("rack")["reps"] == 3  # the analyzer's side keeps what it sent
    assert web.state("nobody")["state"] == "starting"


def open_stream(url: str, received: bytearray, stop: threading.Event) -> threading.Thread:
    def watch() -> None:
        with httpx.stream("GET", url, timeout=10.0) as response:
            for chunk in response.iter_bytes():
                received.extend(chunk)
                if stop.is_set():
                    return

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    return reader


def test_frames_cross_only_while_watched_and_no_larger_than_needed(web):
    frame = np.zeros((720, 1280, 3), np.uint8)
    cv2.rectangle(frame, (0, 0), (640, 720), (0, 0, 255), -1)
    for _ in range(5):
        web.publish_frame("floor", frame)
    time.sleep(0.3)
    assert web.slots.sequence(1) == 0, "a frame was copied for a camera nobody watches"

    def one_jpeg(received: bytearray, shape: tuple[int, int, int]):
        """The stream's latest JPEG, once it has ``shape``: a viewer that just opened a larger view may first get
        the last frame written at the smaller size (latest-frame semantics), never again after that."""
        def found():
            web.publish_frame("floor", frame)
            end = received.rfind(b"\xff\xd9")
            start = received.rfind(b"\xff\xd8", 0, end)
            if start < 0 or end < 0:
                return None
            image = cv2.imdecode(np.frombuffer(bytes(received[start:end + 2]), np.uint8), cv2.IMREAD_COLOR)
            return (image,) if image is not None and image.shape == shape else None
        return wait_for(f"a {shape} JPEG on the stream", found)[0]

    stop = threading.Event()
    tile = bytearray()
    readers = [open_stream(web.url + "api/cameras/floor/stream.mjpeg?size=tile", tile, stop)]
    wait_for("the wall's size to be asked for", lambda: web.slots.wanted_side(1) == 160)
    image = one_jpeg(tile, (90, 160, 3))  # --tile-width
    assert image[45, 20, 2] > 200 and image[45, 140, 2] < 50  # left half red, right half black
    assert web.slots.read(1)[1].shape == (90, 160, 3)  # only the tile's size crossed over

    full = bytearray()
    readers.append(open_stream(web.url + "api/cameras/floor/stream.mjpeg", full, stop))
    wait_for("the full size to be asked for", lambda: web.slots.wanted_side(1) == 320)
    one_jpeg(full, (180, 320, 3))  # --stream-width
    tile.clear()
    one_jpeg(tile, (90, 160, 3))  # the wall still gets its tiles
    stop.set()
    for reader in readers:
        reader.join(15)
    wait_for("the viewers to be gone", lambda: web.slots.wanted_side(1) == 0)


def test_the_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        process = WebProcess(WebConfig(("a",), port=taken.getsockname()[1]))
        with pytest.raises(RealtimeError, match="cannot listen on 127.0.0.1") as err:
            process.start()
        assert "\n" not in str(err.value)
    assert not process.alive


def test_publishing_after_the_process_is_gone_does_not_raise():
    process = WebProcess(WebConfig(("a",), port=0))
    process.start()
    process.stop()
    process.publish_state("a", {"state": "live"})
    process.publish_frame("a", np.zeros((8, 8, 3), np.uint8))


def test_the_web_process_ends_with_a_killed_analyzer(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from realtime.web.process import WebConfig, WebProcess
        if __name__ == "__main__":
            web = WebProcess(WebConfig(("a",), port=0))
            print(web.start(), web._proc.pid, flush=True)
            time.sleep(120)
    """)
    path = tmp_path / "analyzer.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        url, pid = parent.stdout.readline().split()
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)

        def gone() -> bool:
            try:
                return psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        def port_free() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            except OSError:
                return True
            return False

        wait_for("the web process to exit", gone, timeout=10)
        # the main thread shows as a zombie while the other threads still close the process's files
        wait_for("the port to be free", port_free, timeout=5)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
