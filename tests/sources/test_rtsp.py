"""Capture against a real RTSP server on 127.0.0.1 (tests/rtsp_server.py, GStreamer): loss, reconnect, stop, redaction.

The server runs under Debian's /usr/bin/python3 (the only interpreter with ``gi``); without it these tests skip.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import write_video

from realtime.errors import SourceError
from realtime.sources.capture import Capture

pytestmark = pytest.mark.rtsp

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).resolve().parents[1] / "rtsp_server.py"
USER, PASSWORD = "coach", "s3cr3t-pw"
_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
    "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
    "missing = [e for e in ('appsrc', 'appsink', 'qtdemux', 'h264parse', 'rtph264pay')"
    " if Gst.ElementFactory.find(e) is None]; print(','.join(missing))"
)


def _server_unavailable() -> str | None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found"
    try:
        r = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run {SYSTEM_PYTHON}: {e}"
    if r.returncode != 0:
        return f"{SYSTEM_PYTHON} cannot import GstRtspServer (install python3-gi gir1.2-gst-rtsp-server-1.0)"
    if r.stdout.strip():
        return f"GStreamer elements missing: {r.stdout.strip()} (install gstreamer1.0-plugins-base/good/bad)"
    return None


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    reason = _server_unavailable()
    if reason:
        pytest.skip(reason)
    return write_video(tmp_path_factory.mktemp("rtsp") / "loop.mp4", 60, (160, 120), step=4,
                       options={"g": "15", "preset": "ultrafast", "tune": "zerolatency"})


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


class Server:
    """tests/rtsp_server.py as a subprocess; start() waits for READY."""

    def __init__(self, clip: Path, port: int, auth: bool = True) -> None:
        self.cmd = [SYSTEM_PYTHON, str(SERVER), "--file", str(clip), "--port", str(port)]
        if auth:
            self.cmd += ["--user", USER, "--password", PASSWORD]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("READY"):
            self.kill()
            pytest.fail(f"RTSP server did not start: {line!r}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()


def _collect(cap: Capture, seconds: float, until=None) -> list[int]:
    """Frame indices seen within ``seconds`` (stops early once ``until(indices)`` is true)."""
    idx: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        f = cap.get(0.1)
        if f is not None:
            idx.append(f.index)
            if until is not None and until(idx):
                break
    return idx


def _wait(cond, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_lost_reconnect_back_and_redaction(clip, caplog):
    caplog.set_level(logging.DEBUG, logger="realtime")
    port = _free_port()
    server = Server(clip, port)
    events: list[dict] = []
    url = f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{port}/stream"
    server.start()
    try:
        cap = Capture(url, read_timeout_s=2.0, open_timeout_s=3.0, max_backoff_s=1.0, on_event=events.append)
        cap.open().start()
        assert cap.is_live and cap.size == (160, 120) and cap.fps == pytest.approx(30.0)
        before = _collect(cap, 5.0, until=lambda i: len(i) >= 20)
        assert len(before) >= 20 and before == sorted(set(before))

        server.signal(signal.SIGKILL)
        server.kill()
        killed = time.monotonic()
        assert _wait(lambda: cap.state == "reconnecting", 5.0), cap.state
        lost = [e for e in events if e["state"] == "lost"]
        assert len(lost) == 1 and lost[0]["type"] == "source" and lost[0]["t"] - killed < 5.0
        time.sleep(0.5)  # at least one failed attempt against the dead port
        while cap.get(0) is not None:  # frames buffered before the loss
            pass

        server.start()  # same port
        assert _wait(lambda: any(e["state"] == "back" for e in events), 10.0), events
        after = _collect(cap, 5.0, until=lambda i: len(i) >= 15)
        assert len(after) >= 15
        assert after[0] > before[-1] and after == sorted(set(after))  # indices keep increasing
        assert cap.state == "running" and cap.stats().reconnects == 1

        t0 = time.monotonic()
        cap.stop()
        assert time.monotonic() - t0 < 2.0 and not cap._thread.is_alive()
        assert cap.state == "ended"
    finally:
        server.kill()
    texts = [caplog.text, repr(events), cap.source_id, str(cap.error)]
    assert all(PASSWORD not in t for t in texts)
    assert cap.source_id == f"rtsp://***@127.0.0.1:{port}/stream"
    assert "lost" in caplog.text and "back" in caplog.text


def test_stop_interrupts_a_stalled_read(clip):
    """A frozen server (SIGSTOP) leaves the read blocked for read_timeout_s; stop() must not wait for it."""
    port = _free_port()
    server = Server(clip, port, auth=False)
    server.start()
    try:
        events: list[dict] = []
        cap = Capture(f"rtsp://127.0.0.1:{port}/stream", read_timeout_s=1.5, on_event=events.append).open().start()
        assert len(_collect(cap, 5.0, until=lambda i: len(i) >= 10)) >= 10
        server.signal(signal.SIGSTOP)
        t_stall = time.monotonic()
        assert _wait(lambda: cap.state == "reconnecting" and events, 5.0)  # a stall is noticed, not a hang
        assert "stalled" in events[0]["reason"] and events[0]["t"] - t_stall < 3.5
        time.sleep(1.0)  # now inside a reconnect attempt the frozen server never answers (open timeout 5 s)

        t0 = time.monotonic()
        cap.stop()
        assert time.monotonic() - t0 < 2.0 and not cap._thread.is_alive()
    finally:
        server.signal(signal.SIGKILL)
        server.kill()


def test_stop_during_blocked_read_with_long_timeout(clip):
    port = _free_port()
    server = Server(clip, port, auth=False)
    server.start()
    try:
        cap = Capture(f"rtsp://127.0.0.1:{port}/stream", read_timeout_s=10.0).open().start()
        assert len(_collect(cap, 5.0, until=lambda i: len(i) >= 5)) >= 5
        server.signal(signal.SIGSTOP)
        time.sleep(0.7)  # the capture thread is now blocked in FFmpeg waiting for data
        assert cap.state == "running"
        t0 = time.monotonic()
        cap.stop()
        assert time.monotonic() - t0 < 2.0 and not cap._thread.is_alive()
    finally:
        server.signal(signal.SIGKILL)
        server.kill()


def test_wrong_password_and_udp(clip, caplog):
    port = _free_port()
    server = Server(clip, port)
    server.start()
    try:
        with pytest.raises(SourceError, match="refused the login") as info:
            Capture(f"rtsp://{USER}:wrong-{PASSWORD}@127.0.0.1:{port}/stream").open()
        assert PASSWORD not in str(info.value) and "\n" not in str(info.value)
        with Capture(f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{port}/stream", rtsp_transport="udp") as cap:
            cap.start()
            idx = _collect(cap, 5.0, until=lambda i: len(i) >= 10)
        assert len(idx) >= 10 and idx == sorted(set(idx))
    finally:
        server.kill()
    assert PASSWORD not in caplog.text
