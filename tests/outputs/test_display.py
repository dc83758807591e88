"""The on-screen window really opens and draws: run the CLI on a virtual X display and take a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import REPO, shared_file

pytestmark = pytest.mark.display


def _free_display() -> int:
    for n in range(90, 130):
        if not os.path.exists(f"/tmp/.X11-unix/X{n}") and not os.path.exists(f"/tmp/.X{n}-lock"):
            return n
    pytest.skip("no free X display number")


def test_window_opens_and_shows_the_overlay(tmp_path):
    if not shutil.which("Xvfb") or not shutil.which("ffmpeg"):
        pytest.skip("Xvfb/ffmpeg not installed (scripts/setup.sh --dev installs them)")
    clip = shared_file("workouttracker_reps/videos/push-ups/push-up_1.mp4")
    display = _free_display()
    xvfb = subprocess.Popen(["Xvfb", f":{display}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**os.environ, "DISPLAY": f":{display}", "PYTHONUNBUFFERED": "1"}
    events = tmp_path / "e.jsonl"
    app = None
    try:
        time.sleep(1.0)
        app = subprocess.Popen(
            [sys.executable, str(REPO / "run_live.py"), "--source", str(clip), "--realtime", "--events", str(events),
             "--no-dashboard"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and app.poll() is None:
            if events.exists() and sum(1 for _ in events.open()) > 30:
                break
            time.sleep(0.2)
        assert app.poll() is None, app.communicate()[1]
        import cv2

        shot = tmp_path / "shot.png"
        lit, tries = 0.0, 0
        # The events log can run ahead of the window's first paint on a busy machine: look again for a few seconds.
        while lit <= 0.2 and tries < 10 and app.poll() is None:
            tries += 1
            subprocess.run(["ffmpeg", "-v", "error", "-f", "x11grab", "-video_size", "1280x800", "-i", f":{display}",
                            "-frames:v", "1", "-y", str(shot)], check=True, env=env, timeout=30)
            image = cv2.imread(str(shot))
            assert image is not None
            lit = (image.max(axis=2) > 30).mean()
            if lit <= 0.2:
                time.sleep(0.5)
        assert lit > 0.2, f"screen mostly blank ({lit:.0%} lit) after {tries} screenshots"
        assert image.std() > 20  # a real picture, not a flat fill
        # The overlay's skeleton colours (blue left side / orange right side) are on screen.
        blue = ((image[:, :, 0] > 200) & (image[:, :, 1] > 120) & (image[:, :, 1] < 200) & (image[:, :, 2] < 60))
        orange = ((image[:, :, 2] > 200) & (image[:, :, 1] > 100) & (image[:, :, 1] < 180) & (image[:, :, 0] < 60))
        assert blue.sum() > 50 and orange.sum() > 50
    finally:
        if app is not None and app.poll() is None:
            app.terminate()
            app.wait(timeout=20)
        xvfb.terminate()
        xvfb.wait(timeout=10)
