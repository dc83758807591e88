"""The real ``run_live.py serve`` (a subprocess) on real clips from ../shared/data, looked at with a real browser
(Debian's chromium through Playwright): the token page, two tiles whose video moves, the rep counters reaching the
clips' counts (the plain CLI's for the clip analysed frame by frame), the closed sets in the history; SIGKILL in the
middle of a set and a restart on the same database; the wall on the redistributable clip (the README's screenshot)."""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import REPO, live_events, shared_file

pytest_plugins = ["webfakes"]  # the chromium fixture (not a conftest.py: that would shadow tests/conftest.py)

pytestmark = pytest.mark.slow

SQUAT = "workouttracker_reps/videos/squats/squat_19.mp4"  # 5.7 s, 2 reps
PULLUPS = "workouttracker_reps/videos/pull-ups/pull-up_9.mp4"  # 12.2 s, 4 reps
CURL = "pose_trainer/sample_bicep_curl.mp4"  # GPL-3.0, the one clip whose frames may be shown
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
# REALTIME_WALL_SCREENSHOT=docs/img/wall.png makes the curl test (re)write the README's screenshot.
README_SHOT = os.environ.get("REALTIME_WALL_SCREENSHOT")


class Serve:
    """``run_live.py serve ... --port 0`` as a child process; ``url`` once it printed where it listens."""

    def __init__(self, args: list[str], log: Path, token: str | None = None, start_timeout: float = 30.0) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, str(REPO / "run_live.py"), "serve", "--port", "0", *args],
                                     cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(headers=headers, timeout=10.0)
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise AssertionError(f"serve printed no URL in {start_timeout} s: {self.stderr()}") from None
            if line.startswith("serving "):
                self.url = line.split()[1].rstrip("/") + "/"
                break

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def stderr(self) -> str:
        return self.log_path.read_text()[-3000:]

    def get(self, path: str):
        response = self.http.get(self.url + path.lstrip("/"))
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
        return response.json()

    def wait_for(self, what: str, check, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited ({self.proc.returncode}) waiting for {what}: {self.stderr()}"
            found = check()
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}: {self.stderr()}")

    def stop(self) -> int:
        """Ctrl-C; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.http.close()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def serve(tmp_path):
    started: list[Serve] = []

    def start(*args: str, token: str | None = None, name: str = "serve") -> Serve:
        handle = Serve(list(args), tmp_path / f"{name}-{len(started)}.log", token=token)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


def _rep_lines(path: Path) -> list[dict]:
    return [record for record in live_events(path) if record.get("type") == "rep"]  # a line cut by the kill skipped


def _summary_reps(path: Path) -> int:
    """total_reps from the summary line an events file ends with."""
    for line in reversed(path.read_text().splitlines()):
        record = json.loads(line)
        if record.get("type") == "summary":
            return int(record["reps"]["total_reps"])
    raise AssertionError(f"{path} has no summary line")


def _cli_count(clip: Path, events: Path) -> subprocess.Popen:
    """The plain CLI on ``clip`` alone (no --realtime: every frame of the file is analysed); its count is the
    summary line of ``events`` once it exits."""
    return subprocess.Popen([sys.executable, str(REPO / "run_live.py"), "--source", str(clip), "--headless",
                             "--events", str(events)], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _reps_shown(page, camera: str) -> int:
    return int(page.locator(f'[data-camera="{camera}"] [data-testid="reps"]').inner_text())


def _videos_playing(page, n: int) -> None:
    page.wait_for_function(
        "n => { const v = [...document.querySelectorAll('img[data-testid=video]')];"
        " return v.length === n && v.every(i => i.naturalWidth > 0); }", arg=n, timeout=20_000)


def test_serve_two_real_clips_in_chromium(chromium, serve, tmp_path):
    """pullup-bar plays at camera speed, analysed at 15 fps (frames are dropped when the CPU is short, so its count is
    the one serve logged); squat-rack is analysed frame by frame, so its count must be the plain CLI's for that clip
    alone."""
    clips = {"squat-rack": shared_file(SQUAT), "pullup-bar": shared_file(PULLUPS)}
    cli_run = _cli_count(clips["squat-rack"], tmp_path / "cli.jsonl")  # runs beside serve
    cameras = tmp_path / "cameras.toml"
    cameras.write_text(f'[[camera]]\nname = "squat-rack"\nsource = {json.dumps(str(clips["squat-rack"]))}\n\n'
                       f'[[camera]]\nname = "pullup-bar"\nsource = {json.dumps(str(clips["pullup-bar"]))}\n'
                       'realtime = true\nanalysis_fps = 15\n')
    token = secrets.token_hex(16)  # 32 characters
    events = tmp_path / "events"
    server = serve("--cameras", str(cameras), "--db", str(tmp_path / "gym.sqlite"), "--set-rest", "3",
                   "--events", f"{events}/", "--token", token, token=token)
    context = chromium.new_context(viewport={"width": 1360, "height": 820})
    page = context.new_page()
    try:
        # The token page: no token or a wrong one is refused, the right one leads to the wall.
        response = page.goto(server.url)
        assert response.status == 401 and page.locator("form#login").is_visible()
        page.fill("#token", "x" * 32)
        with page.expect_navigation() as nav:
            page.click("button[type=submit]")
        assert nav.value.status == 401 and "Wrong token" in page.content()
        assert httpx.get(server.url + "api/cameras", headers={"Authorization": "Bearer " + "y" * 32}).status_code == 401
        page.fill("#token", token)
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.url == server.url

        tiles = page.locator('[data-testid="tile"]')
        tiles.first.wait_for()
        assert [tiles.nth(i).get_attribute("data-camera") for i in range(tiles.count())] == list(clips)
        _videos_playing(page, 2)
        shown_first = {name: _reps_shown(page, name) for name in clips}
        videos = {name: page.locator(f'[data-camera="{name}"] img[data-testid="video"]') for name in clips}
        first = {name: v.screenshot() for name, v in videos.items()}
        time.sleep(1.0)
        second = {name: v.screenshot() for name, v in videos.items()}
        for name in clips:
            assert first[name] != second[name], f"{name}: the video did not change between two screenshots"

        # The counters rise to the clips' counts: what serve logged, and for squat-rack also what the CLI counted.
        def counted() -> dict[str, int] | None:
            if not all((events / f"{n}.jsonl").exists() and '"summary"' in (events / f"{n}.jsonl").read_text()
                       for n in clips):
                return None
            return {n: _summary_reps(events / f"{n}.jsonl") for n in clips}

        expected = server.wait_for("the clips to end", counted, timeout=60)
        _, cli_err = cli_run.communicate(timeout=60)
        assert cli_run.returncode == 0, cli_err[-2000:]
        cli = _summary_reps(tmp_path / "cli.jsonl")
        assert cli >= 2, f"the squat clip should give several reps, the CLI counted {cli}"
        assert expected["squat-rack"] == cli, f"serve counted {expected['squat-rack']}, the CLI alone {cli}"
        summary = live_events(events / "pullup-bar.jsonl")[-1]  # half the 30-fps clip skipped by its analysis rate
        assert summary["frames_skipped"] >= summary["frames_read"] // 2 - 1, summary
        assert summary["frames_processed"] + summary["frames_dropped"] + summary["frames_skipped"] == \
            summary["frames_read"]
        assert server.get("api/cameras/pullup-bar")["state"]["frames_skipped"] > 0
        deadline = time.monotonic() + 10
        while (shown := {n: _reps_shown(page, n) for n in clips}) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert shown == expected, f"the page shows {shown}, serve counted {expected}"
        assert shown_first["squat-rack"] < expected["squat-rack"], "the counter should rise while the page watches"

        # The clips end; the sets close; the history lists each with its count.
        def closed_sets():
            sets = server.get("api/sets")
            cameras = {n for n, count in expected.items() if count}
            return sets if {s["camera"] for s in sets} == cameras and all(s["status"] != "open" for s in sets) else None

        sets = server.wait_for("the sets to close", closed_sets, timeout=30)
        page.goto(server.url + "history")
        page.locator('[data-testid="set-row"]').first.wait_for()
        for name, count in expected.items():
            rows = page.locator('[data-testid="set-row"]', has_text=name)
            assert rows.count() == len([s for s in sets if s["camera"] == name])
            shown = [int(rows.nth(i).locator(".set-reps").inner_text()) for i in range(rows.count())]
            assert sum(shown) == count, f"{name}: the history shows {shown}, serve counted {count}"
            assert all("done" in rows.nth(i).inner_text() for i in range(rows.count()))
        page.screenshot(path=str(tmp_path / "history.png"), full_page=True)
    finally:
        context.close()
        if cli_run.poll() is None:
            cli_run.kill()
            cli_run.communicate()
    assert server.stop() == 0, server.stderr()


def test_sigkill_mid_set_then_restart(serve, tmp_path):
    clip = shared_file(PULLUPS)
    db, events = tmp_path / "gym.sqlite", tmp_path / "kill.jsonl"
    first = serve("--source", f"bar={clip}", "--realtime", "--db", str(db), "--set-rest", "30", "--events",
                  str(events), name="killed")
    first.wait_for("two reps", lambda: len(_rep_lines(events)) >= 2, timeout=40)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    assert first.proc.returncode == -signal.SIGKILL
    written = _rep_lines(events)
    assert not any('"type":"summary"' in line for line in events.read_text().splitlines()), "the clip had ended"

    # Restart on the same database (a camera that stops after one frame): it opens, the set is interrupted.
    second = serve("--source", f"other={clip}", "--max-frames", "1", "--db", str(db), name="restarted")
    assert second.get("healthz")["database"] == "ok"
    sets = second.get("api/sets?camera=bar")
    assert len(sets) == 1 and sets[0]["status"] == "interrupted", sets
    reps = second.get(f"api/sets/{sets[0]['id']}/reps")
    assert sets[0]["reps"] == len(reps) >= len(written)
    stored = [(r["index"], r["exercise"]) for r in reps]
    for rep in written:
        assert (rep["index"], rep["exercise"]) in stored, f"rep {rep['index']} has an event line but is not stored"
    assert second.stop() == 0, second.stderr()


def test_wall_on_the_redistributable_clip(chromium, serve, tmp_path):
    """Two tiles of Pose Trainer's sample curl (GPL-3.0); with REALTIME_WALL_SCREENSHOT set, the README's image."""
    clip = shared_file(CURL)
    server = serve("--source", f"curl-bench={clip}", "--source", f"curl-mirror={clip}", "--realtime",
                   "--db", str(tmp_path / "gym.sqlite"), name="curl")
    context = chromium.new_context(viewport={"width": 1240, "height": 292})
    page = context.new_page()
    try:
        page.goto(server.url)
        _videos_playing(page, 2)
        tiles = page.locator('[data-testid="tile"]')
        assert [tiles.nth(i).get_attribute("data-camera") for i in range(2)] == ["curl-bench", "curl-mirror"]
        page.wait_for_function("() => [...document.querySelectorAll('.badge')].every(b => b.textContent === 'live')"
                               " && document.getElementById('conn').className.includes('ok')", timeout=10_000)
        time.sleep(0.6)  # a frame from the middle of the 2.2 s clip
        shot = tmp_path / "wall.png"
        page.screenshot(path=str(shot))
    finally:
        context.close()
    assert shot.stat().st_size < 400_000
    if README_SHOT:
        shutil.copyfile(shot, REPO / README_SHOT)
    assert server.stop() == 0, server.stderr()
