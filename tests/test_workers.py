"""``--workers``: a multi-camera run's cameras in worker processes around one pose engine, end to end through
``run_live.py``: the same answers as one process (BlazePose, and ViTPose hosted in the analyzer for the workers),
Ctrl-C finalising every worker's outputs, and options that cannot work with workers refused in one line."""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file, write_video
from test_cli import ENV, read_events, run_cli
from test_multicam import check_stopped_outputs, frames_in, start_cli, stop_cli, wait_for

SQUAT = "workouttracker_reps/videos/squats/squat_24.mp4"
PULLUP = "workouttracker_reps/videos/pull-ups/pull-up_8.mp4"
TIMING = ("t", "ms", "fps")


def analysis(path: Path) -> list[dict]:
    """The frame and rep lines of an events log without what depends on timing."""
    out = []
    for record in read_events(path):
        if record["type"] in ("frame", "rep"):
            out.append({k: v for k, v in record.items() if k not in TIMING and not k.endswith("_ms")})
    return out


def two_cameras() -> list[str]:
    return ["--source", f"rack={shared_file(SQUAT)}", "--source", f"bar={shared_file(PULLUP)}"]


def test_two_workers_give_each_camera_the_answers_of_a_one_process_run(tmp_path):
    runs = {}
    for workers in ("1", "2"):
        events = tmp_path / f"w{workers}"
        proc = run_cli(*two_cameras(), "--headless", "--no-dashboard", "--max-frames", "60", "--workers", workers,
                       "--events", f"{events}/")
        assert proc.returncode == 0, proc.stderr
        assert "rack done" in proc.stdout and "bar done" in proc.stdout  # one summary, every camera
        runs[workers] = {name: analysis(events / f"{name}.jsonl") for name in ("rack", "bar")}
    for name in ("rack", "bar"):
        assert len(runs["1"][name]) >= 60
        assert runs["2"][name] == runs["1"][name], name


def test_vitpose_in_workers_runs_on_the_analyzers_one_network(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent / "pose"))
    from test_vitpose import centre_peaked_tiny

    centre_peaked_tiny().save_pretrained(tmp_path / "hf")
    env = {**ENV, "REALTIME_ENGINES_DIR": str(tmp_path / "engines"), "HF_HUB_OFFLINE": "1"}
    runs = {}
    for workers in ("1", "2"):
        events = tmp_path / f"w{workers}"
        proc = run_cli(*two_cameras(), "--pose-model", "vitpose-b", "--backend", "onnxruntime", "--weights",
                       str(tmp_path / "hf"), "--headless", "--no-dashboard", "--max-frames", "30", "--workers",
                       workers, "--events", f"{events}/", "-v", env=env)
        assert proc.returncode == 0, proc.stderr
        if workers == "2":
            assert "shared by 2 camera worker processes" in proc.stderr
        runs[workers] = {name: read_events(events / f"{name}.jsonl") for name in ("rack", "bar")}
    for name in ("rack", "bar"):
        start = runs["2"][name][0]
        assert start["type"] == "start" and start["pose"].startswith("vitpose-b/onnxruntime")
        one = [r for r in runs["1"][name] if r["type"] == "frame"]
        two = [r for r in runs["2"][name] if r["type"] == "frame"]
        assert len(one) == len(two) == 30
        found = [(a, b) for a, b in zip(one, two, strict=True) if a["keypoints"]]
        assert len(found) >= 20, name  # the person was found and the crops went through the network
        for a, b in found:  # batched with the other worker's crops or alone: the same keypoints
            np.testing.assert_allclose(np.array(b["keypoints"]), np.array(a["keypoints"]), atol=0.5)


def test_sigint_stops_every_worker_and_finalises_its_outputs(tmp_path):
    clips = [write_video(tmp_path / f"c{i}.mp4", frames=300, size=(160, 120), pattern="bits") for i in range(3)]
    events = tmp_path / "events"
    args = [a for c in clips for a in ("--source", str(c))]
    proc = start_cli(tmp_path, *args, "--realtime", "--headless", "--no-dashboard", "--workers", "2",
                     "--events", f"{events}/", "--save", str(tmp_path / "videos"))
    try:
        assert wait_for(lambda: all(frames_in(events / f"cam{i}.jsonl") >= 15 for i in range(3)), 120), \
            (tmp_path / "stderr.txt").read_text()
        assert proc.poll() is None  # 10-s clips paced like cameras: still running
    finally:
        took, out, err = stop_cli(proc, tmp_path, timeout=40)
    assert proc.returncode == 0, err
    assert took < 10, took
    check_stopped_outputs(events, tmp_path / "videos", 3, out)  # the analyzer prints every worker's cameras
    assert "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers 0: give 1 or more processes"),
    (["--workers", "2", "--events", "all.jsonl"], "give a folder (--events DIR/)"),
    (["--workers", "2", "--classifier", "nope.safetensors"], "classifier weights not found"),
])
def test_options_that_cannot_work_with_workers_are_refused_in_one_line(tmp_path, args, message):
    args = [a.replace("all.jsonl", str(tmp_path / "all.jsonl")) for a in args]
    started = time.monotonic()
    proc = run_cli(*two_cameras(), "--headless", "--no-dashboard", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and time.monotonic() - started < 60
    assert not (tmp_path / "all.jsonl").exists()


def test_the_dashboard_shows_a_row_for_every_camera_of_every_worker(tmp_path, monkeypatch):
    import realtime.outputs.dashboard as dashboard_module
    from realtime.app import run
    from realtime.settings import CameraSettings, RunSettings

    shown: list[list[str]] = []

    class Recorder:  # stands in for the rich dashboard (it needs a terminal)
        def __init__(self, header: str) -> None:
            self.header = header

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

        def update_many(self, snapshots, engine, now, force=False, engine_note=None) -> None:
            shown.append([s.extra.get("camera") for s in snapshots])

    monkeypatch.setattr(dashboard_module, "Dashboard", Recorder)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    clips = [write_video(tmp_path / f"c{i}.mp4", frames=90, size=(320, 240), pattern="person") for i in range(3)]
    cameras = tuple(CameraSettings(name=f"cam{i}", source=str(c), realtime=True) for i, c in enumerate(clips))
    code = run(RunSettings(cameras=cameras, pose_model="blazepose-lite", headless=True, workers=2),
               install_signals=False)
    assert code == 0
    assert ["cam0", "cam2", "cam1"] in shown  # worker 0 has cam0 and cam2, worker 1 cam1: every camera has its row


def start_two_live_cameras_in_two_workers(tmp_path: Path, frames: int):
    """Two paced synthetic clips as cameras, one per worker; returns once both have 10 frames in their logs."""
    clips = [write_video(tmp_path / f"c{i}.mp4", frames=frames, size=(160, 120), pattern="bits") for i in range(2)]
    events = tmp_path / "events"
    args = [a for c in clips for a in ("--source", str(c))]
    proc = start_cli(tmp_path, *args, "--realtime", "--headless", "--no-dashboard", "--workers", "2",
                     "--events", f"{events}/")
    if not wait_for(lambda: all(frames_in(events / f"cam{i}.jsonl") >= 10 for i in range(2)), 120):
        proc.kill()
        pytest.fail((tmp_path / "stderr.txt").read_text())
    return proc


def test_a_worker_that_dies_fails_only_its_own_cameras(tmp_path):
    import psutil

    proc = start_two_live_cameras_in_two_workers(tmp_path, frames=240)
    try:
        workers = [p for p in psutil.Process(proc.pid).children()
                   if "spawn_main" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline())]
        assert len(workers) == 2
        workers[0].kill()
        proc.wait(120)  # cam1 runs to the end of its file
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp_path / "stderr.txt").read_text()
    out = (tmp_path / "stdout.txt").read_text()
    assert proc.returncode == 1, err  # a run-time failure, not bad input
    lost = re.findall(r"error: (cam[01]): camera worker exited \(code -9\)", err)
    assert len(lost) == 1, err
    other = "cam1" if lost[0] == "cam0" else "cam0"
    assert f"{other} done (end)" in out  # the other worker's camera ran to the end of its file
    assert "Traceback" not in err


def test_a_second_ctrl_c_aborts_the_workers_at_once(tmp_path):
    proc = start_two_live_cameras_in_two_workers(tmp_path, frames=300)
    try:
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)  # two signals sent at once may arrive as one (they are not queued)
        if proc.poll() is not None:
            pytest.skip("the run had already stopped cleanly before the second Ctrl-C could be sent")
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (tmp_path / "stderr.txt").read_text()
    assert took < 10, took
