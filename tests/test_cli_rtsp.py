"""The whole analyzer on a real RTSP feed (local GStreamer server) that dies and comes back.

The analyzer must notice the loss, log it, reconnect when the server is back and carry on: frames keep
flowing, the rep count carries over (never resets), and the camera's credentials appear nowhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, live_events, shared_file
from test_rtsp import PASSWORD, USER, Server, _free_port, _server_unavailable

pytestmark = pytest.mark.rtsp


def _wait_for(cond, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.2)
    return False


def test_analyzer_survives_rtsp_server_restart(tmp_path):
    reason = _server_unavailable()
    if reason:
        pytest.skip(reason)
    clip = shared_file("workouttracker_reps/videos/squats/squat_18.mp4")
    port = _free_port()
    server = Server(clip, port)
    server.start()
    url = f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{port}/stream"
    ev = tmp_path / "events.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DISPLAY", None)
    app = subprocess.Popen(
        [sys.executable, str(REPO / "run_live.py"), "--source", url, "--headless", "--exercise", "squat",
         "--events", str(ev), "--no-dashboard", "-v"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert _wait_for(lambda: sum(e.get("type") == "frame" for e in live_events(ev)) > 60, 90), "no frames"
        server.kill()
        assert _wait_for(lambda: any(e.get("state") == "lost" for e in live_events(ev)), 15), "loss not noticed"
        before = live_events(ev)
        reps_before = max(e["reps"] for e in before if e["type"] == "frame")
        last_index_before = max(e["frame"] for e in before if e["type"] == "frame")
        time.sleep(1.0)
        server = Server(clip, port)
        server.start()
        assert _wait_for(lambda: any(e.get("state") == "back" for e in live_events(ev)), 30), "no reconnect"
        assert _wait_for(lambda: sum(e.get("type") == "frame" and e["frame"] > last_index_before
                                     for e in live_events(ev)) > 60, 60), "frames did not resume"
        assert app.poll() is None, "the analyzer exited"
        # The looping squat clip keeps being counted after the reconnect (slow machines drop more frames).
        assert _wait_for(lambda: max((e["reps"] for e in live_events(ev) if e.get("type") == "frame"), default=0)
                         > reps_before, 120), "no rep counted after the reconnect"
    finally:
        if app.poll() is None:
            app.send_signal(signal.SIGINT)
        _, err = app.communicate(timeout=30)
        server.kill()
    assert app.returncode == 0, err
    events = live_events(ev)
    assert events[-1]["type"] == "summary" and events[-1]["stopped_by"] == "user"
    states = [e["state"] for e in events if e["type"] == "source"]
    assert states[:2] == ["lost", "back"]
    frames = [e for e in events if e["type"] == "frame"]
    indices = [e["frame"] for e in frames]
    assert indices == sorted(indices)  # one increasing index across the reconnect
    reps = [e["reps"] for e in frames]
    assert reps == sorted(reps) and reps[-1] > reps_before  # the count carries on from where it was
    everything = ev.read_text() + err
    assert PASSWORD not in everything and f"{USER}:" not in everything
