"""Several cameras in one analyzer, end to end through ``run_live.py``: per-camera outputs equal to single runs on
real clips, isolation (an RTSP camera killed and restarted, a file that cannot be opened, a live camera down at
start), Ctrl-C with four cameras, and the ``--bench --streams`` report."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, live_events, shared_file, write_video
from test_cli import ENV, decode_count, read_events, run_cli

VIDEOS = "workouttracker_reps/videos"


def start_cli(tmp: Path, *args: str) -> subprocess.Popen:
    """run_live.py in the background; stdout/stderr go to files (a pipe nobody reads could fill up)."""
    with (tmp / "stdout.txt").open("w") as out, (tmp / "stderr.txt").open("w") as err:
        return subprocess.Popen([sys.executable, str(REPO / "run_live.py"), *args], cwd=REPO, env=ENV, stdout=out,
                                stderr=err, text=True)


def stop_cli(proc: subprocess.Popen, tmp: Path, timeout: float = 20) -> tuple[float, str, str]:
    """SIGINT, then wait: (seconds it took to exit, stdout, stderr)."""
    t = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        pytest.fail(f"the analyzer did not stop within {timeout} s of SIGINT")
    return time.monotonic() - t, (tmp / "stdout.txt").read_text(), (tmp / "stderr.txt").read_text()


def frames_in(path: Path) -> int:
    return sum(e.get("type") == "frame" for e in live_events(path))


def wait_for(cond, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


def clip_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return container.streams.video[0].frames


def without_camera(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "camera"}


# ------------------------------------------------------------------------------- same answers as single runs

# camera name: (clip, its [[camera]] settings, the same settings as single-run options)
CAMERAS = {
    "rack": ("squats/squat_9.mp4", {"exercise": "squat"}, ["--exercise", "squat"]),
    "bar": ("pull-ups/pull-up_8.mp4", {}, []),
    "floor": ("push-ups/push-up_1.mp4", {"strictness": "strict"}, ["--strictness", "strict"]),
    "rack2": ("squats/squat_29.mp4", {}, []),  # 55 frames: ends before --max-frames
}
MAX_FRAMES = "60"


def test_four_real_clips_give_each_camera_the_answers_of_a_single_run(tmp_path):
    clips = {name: shared_file(f"{VIDEOS}/{clip}") for name, (clip, _, _) in CAMERAS.items()}
    toml = "".join(
        f'[[camera]]\nname = "{name}"\nsource = "{clips[name]}"\n' + "".join(f'{k} = "{v}"\n' for k, v in extra.items())
        for name, (_, extra, _) in CAMERAS.items()
    )
    (tmp_path / "cameras.toml").write_text(toml)
    multi = tmp_path / "multi"
    multi.mkdir()
    # The single runs go at the same time as the multi-camera run (the answers do not depend on timing).
    singles = {}
    for name, (_, _, options) in CAMERAS.items():
        (tmp_path / name).mkdir()
        singles[name] = start_cli(tmp_path / name, "--source", str(clips[name]), *options, "--headless",
                                  "--no-dashboard", "--max-frames", MAX_FRAMES, "--events", str(tmp_path / name / "e.jsonl"),
                                  "--report", str(tmp_path / name / "report"))
    try:
        proc = run_cli("--cameras", str(tmp_path / "cameras.toml"), "--headless", "--no-dashboard", "--max-frames",
                       MAX_FRAMES, "--events", f"{multi / 'events'}/", "--save", str(multi / "videos"), "--report",
                       str(multi / "reports"))
        for name, single in singles.items():
            assert single.wait(240) == 0, (tmp_path / name / "stderr.txt").read_text()
    finally:
        for single in singles.values():
            if single.poll() is None:
                single.kill()
                single.wait(5)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (multi / "events").iterdir()) == sorted(f"{n}.jsonl" for n in CAMERAS)
    assert sorted(p.name for p in (multi / "videos").iterdir()) == sorted(f"{n}.mp4" for n in CAMERAS)
    total_reps = 0
    for name in CAMERAS:
        got = read_events(multi / "events" / f"{name}.jsonl")
        alone = read_events(tmp_path / name / "e.jsonl")
        assert all(e["camera"] == name for e in got) and all(e["camera"] == "cam0" for e in alone)
        assert got[0]["type"] == "start" and got[-1]["type"] == "summary"
        frames = [without_camera(e) for e in got if e["type"] == "frame"]
        frames_alone = [without_camera(e) for e in alone if e["type"] == "frame"]
        assert len(frames) == len(frames_alone) == got[-1]["frames_processed"] == min(int(MAX_FRAMES),
                                                                                    clip_frames(clips[name]))
        # Per frame: label, confidence, exercise, rep count, status and keypoints. BlazePose on LiteRT is
        # deterministic (two single runs give bit-identical keypoints), so the keypoints must be equal too.
        for i, (a, b) in enumerate(zip(frames, frames_alone, strict=True)):
            assert a == b, (name, i, a, b)
        reps = [without_camera(e) for e in got if e["type"] == "rep"]
        assert reps == [without_camera(e) for e in alone if e["type"] == "rep"], name
        total_reps += len(reps)
        summary, summary_alone = got[-1], alone[-1]
        assert summary["reps"] == summary_alone["reps"], name  # counts, form faults, labels
        assert summary["stopped_by"] == summary_alone["stopped_by"]
        assert (multi / "reports" / name / "reps.csv").read_text() == (tmp_path / name / "report" / "reps.csv").read_text()
        assert json.loads((multi / "reports" / name / "summary.json").read_text()) == \
            json.loads((tmp_path / name / "report" / "summary.json").read_text())
        assert (multi / "reports" / name / "timeline.png").stat().st_size > 0
        assert decode_count(multi / "videos" / f"{name}.mp4") == len(frames)
        assert f"{name} done (" in proc.stdout
    assert total_reps >= 3  # the comparison covers real reps, not only empty lists
    # the per-camera settings of the camera list were applied to that camera only
    summaries = {n: read_events(multi / "events" / f"{n}.jsonl")[-1]["reps"] for n in CAMERAS}
    assert summaries["rack"]["exercise_mode"] == "fixed" and summaries["bar"]["exercise_mode"] == "auto"
    assert summaries["floor"]["strictness"] == "strict" and summaries["rack2"]["strictness"] == "normal"


# --------------------------------------------------------------------------------------------------- isolation


def test_a_file_that_cannot_be_opened_is_skipped_and_the_other_camera_completes(tmp_path):
    clip = write_video(tmp_path / "ok.mp4", frames=20, size=(160, 120), pattern="bits")
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 20)
    shared = tmp_path / "events.jsonl"
    proc = run_cli("--source", str(clip), "--source", f"broken={tmp_path / 'notes.mp4'}", "--headless",
                   "--no-dashboard", "--events", str(shared), "--save", str(tmp_path / "videos"), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: broken: ") and "notes.mp4" in errors[0], proc.stderr
    events = read_events(shared)  # --events FILE: one file, every line with its camera
    assert {e["camera"] for e in events} == {"cam0", "broken"}
    cam0 = [e for e in events if e["camera"] == "cam0"]
    broken = [e for e in events if e["camera"] == "broken"]
    assert [e["type"] for e in broken] == ["start", "summary"]
    assert "notes.mp4" in broken[-1]["error"] and broken[-1]["frames_processed"] == 0
    assert cam0[0]["type"] == "start" and cam0[-1]["type"] == "summary"
    assert cam0[-1]["error"] is None and cam0[-1]["stopped_by"] == "end"
    assert sum(e["type"] == "frame" for e in cam0) == cam0[-1]["frames_processed"] == 20
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["cam0.mp4"]
    assert decode_count(tmp_path / "videos" / "cam0.mp4") == 20
    assert "cam0 done (end): read 20, processed 20" in proc.stdout


def test_a_live_camera_down_at_start_does_not_stop_a_file_camera(tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as s:  # a port nobody listens on once closed
        port = s.getsockname()[1]
    clip = write_video(tmp_path / "ok.mp4", frames=20, size=(160, 120), pattern="bits")
    events = tmp_path / "events"
    proc = start_cli(tmp_path, "--source", str(clip), "--source", f"door=rtsp://127.0.0.1:{port}/stream",
                     "--headless", "--no-dashboard", "--events", f"{events}/", "--save", str(tmp_path / "videos"))
    try:
        assert wait_for(lambda: frames_in(events / "cam0.jsonl") == 20, 90), "the file camera did not finish"
        time.sleep(1.0)
        assert proc.poll() is None  # the live camera is still being retried
    finally:
        took, out, err = stop_cli(proc, tmp_path)
    # The live camera never delivered a frame: a run-time failure (exit 1) named in its summary, not a clean end.
    assert proc.returncode == 1, err
    assert took < 10
    assert "Traceback" not in err and "retrying" in err
    door = read_events(events / "door.jsonl")
    assert door[0]["type"] == "start" and door[-1]["type"] == "summary"
    lost = [e for e in door if e["type"] == "source"]
    assert lost and lost[0]["state"] == "lost" and "refused" in lost[0]["reason"]  # recorded for that camera
    assert not any(e["type"] == "source" and e["state"] == "back" for e in door)
    assert door[-1]["frames_processed"] == 0 and door[-1]["stopped_by"] == "user"
    assert "never connected" in door[-1]["error"]
    cam0 = read_events(events / "cam0.jsonl")
    assert cam0[-1]["type"] == "summary" and cam0[-1]["stopped_by"] == "end" and cam0[-1]["frames_processed"] == 20
    assert not any(e["type"] == "source" for e in cam0)
    assert decode_count(tmp_path / "videos" / "cam0.mp4") == 20
    assert "cam0 done (end): read 20, processed 20" in out


def test_sigint_with_four_cameras_finalises_every_video_and_events_file(tmp_path):
    clips = [write_video(tmp_path / f"c{i}.mp4", frames=300, size=(160, 120), pattern="bits", noise=i % 2 == 1)
             for i in range(4)]
    events = tmp_path / "events"
    args = [a for c in clips for a in ("--source", str(c))]
    proc = start_cli(tmp_path, *args, "--realtime", "--headless", "--no-dashboard", "--events", f"{events}/",
                     "--save", str(tmp_path / "videos"))
    try:
        assert wait_for(lambda: all(frames_in(events / f"cam{i}.jsonl") >= 15 for i in range(4)), 90), \
            "not every camera got going"
        assert proc.poll() is None  # 10-s clips paced like cameras: still running
    finally:
        took, out, err = stop_cli(proc, tmp_path)
    assert proc.returncode == 0, err
    assert took < 8, took
    check_stopped_outputs(events, tmp_path / "videos", 4, out)


def check_stopped_outputs(events: Path, videos: Path, cameras: int, out: str) -> None:
    """After Ctrl-C: cam0..camN-1 each have a complete events log ending in its summary, a video with as many frames
    as it processed, and its line in the printed summary."""
    for i in range(cameras):
        got = read_events(events / f"cam{i}.jsonl")  # every line complete JSON
        assert got[0]["type"] == "start" and got[-1]["type"] == "summary", i
        assert got[-1]["stopped_by"] == "user" and got[-1]["camera"] == f"cam{i}"
        frames = sum(e["type"] == "frame" for e in got)
        assert 15 <= frames == got[-1]["frames_processed"] < 300
        assert decode_count(videos / f"cam{i}.mp4") == frames
        assert f"cam{i} done (user)" in out


@pytest.mark.rtsp
def test_rtsp_camera_killed_and_restarted_while_two_file_cameras_keep_running(tmp_path):
    from test_rtsp import PASSWORD, USER, Server, _free_port, _server_unavailable

    reason = _server_unavailable()
    if reason:
        pytest.skip(reason)
    feed = write_video(tmp_path / "feed.mp4", 60, (160, 120), step=4,
                       options={"g": "15", "preset": "ultrafast", "tune": "zerolatency"})
    files = write_video(tmp_path / "long.mp4", frames=900, size=(160, 120), pattern="bits")  # 30 s paced
    port = _free_port()
    server = Server(feed, port)
    server.start()
    url = f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{port}/stream"
    events = tmp_path / "events"
    live, files_ev = events / "door.jsonl", [events / "rack.jsonl", events / "bar.jsonl"]
    proc = start_cli(tmp_path, "--source", f"rack={files}", "--source", f"door={url}", "--source", f"bar={files}",
                     "--realtime", "--headless", "--no-dashboard", "--events", f"{events}/")
    try:
        assert wait_for(lambda: frames_in(live) > 30, 60), "no frames from the RTSP camera"
        server.kill()
        assert wait_for(lambda: any(e.get("state") == "lost" for e in live_events(live)), 15), "loss not noticed"
        at_loss = [frames_in(p) for p in files_ev]
        live_at_loss = frames_in(live)
        time.sleep(3.0)
        during = [frames_in(p) for p in files_ev]
        assert not any(e.get("state") == "back" for e in live_events(live))  # still inside the outage
        # The file cameras kept going while the RTSP camera was down: paced at 30 fps, ~90 frames in 3 s on a quiet
        # machine; at least 10 each on a busy one (a stall would leave them where they were).
        assert all(b - a >= 10 for a, b in zip(at_loss, during, strict=True)), (at_loss, during)
        assert frames_in(live) <= live_at_loss + 5  # the dead camera itself produced (next to) nothing
        server = Server(feed, port)
        server.start()
        assert wait_for(lambda: any(e.get("state") == "back" for e in live_events(live)), 40), "no reconnect"
        resumed = frames_in(live)
        assert wait_for(lambda: frames_in(live) > resumed + 15, 30), "the RTSP camera's frames did not resume"
        assert proc.poll() is None
    finally:
        took, out, err = stop_cli(proc, tmp_path)
        server.kill()
    assert proc.returncode == 0, err
    assert took < 10
    door = read_events(live)
    assert [e["state"] for e in door if e["type"] == "source"][:2] == ["lost", "back"]
    assert door[-1]["type"] == "summary" and door[-1]["stopped_by"] == "user"
    for path in files_ev:
        got = read_events(path)
        assert not any(e["type"] == "source" for e in got)  # the outage touched the RTSP camera only
        assert got[-1]["type"] == "summary" and got[-1]["error"] is None
    everything = "".join(p.read_text() for p in events.iterdir()) + out + err
    assert PASSWORD not in everything and f"{USER}:" not in everything


# ---------------------------------------------------------------------------------------------------- bench


def test_bench_streams_writes_one_row_per_camera_count(tmp_path):
    clip = write_video(tmp_path / "c.mp4", frames=30, size=(320, 240), pattern="person")
    out = tmp_path / "streams.json"
    proc = run_cli("--bench", "--source", str(clip), "--pose-model", "blazepose-lite", "--streams", "1,2",
                   "--stream-seconds", "3", "--bench-frames", "30", "--bench-json", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())["streams"]
    rows = report["rows"]
    assert [r["streams"] for r in rows] == [1, 2]
    for row in rows:
        for key in ("fps_per_camera", "min_fps", "drop_rate", "e2e_p50_ms", "e2e_p95_ms", "mean_batch",
                    "cpu_cores_used", "rss_mb", "holds"):
            assert key in row, key
        assert row["engine"] == "blazepose-lite" and row["fps_per_camera"] > 0 and row["seconds"] > 1
        assert 0 <= row["drop_rate"] <= 1 and row["e2e_p95_ms"] > 0 and row["rss_mb"] > 50
        assert row["cpu_cores_used"] > 0 and isinstance(row["holds"], bool)
        assert row["mean_batch"] is None  # BlazePose does not batch: behind the fair gate, no batcher
    assert report["max_streams_holding"] in (0, 1, 2)
    assert "most cameras holding 30 fps" in proc.stdout


def test_bench_streams_in_worker_processes_reports_the_engine_process_apart(tmp_path):
    clip = write_video(tmp_path / "c.mp4", frames=30, size=(320, 240), pattern="person")
    out = tmp_path / "streams.json"
    proc = run_cli("--bench", "--source", str(clip), "--pose-model", "blazepose-lite", "--streams", "2",
                   "--workers", "2", "--bench-no-overlay", "--stream-seconds", "3", "--bench-frames", "30",
                   "--bench-json", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["streams"]["rows"]
    assert row["workers"] == 2 and row["overlay"] is False
    assert row["fps_per_camera"] > 0 and row["seconds"] > 1 and row["e2e_p95_ms"] > 0
    assert row["cpu_cores_used"] > row["engine_process_cores"] >= 0  # the cameras' work is in the workers
    assert row["host_ms_per_frame"]["draw"] == 0  # no overlay drawn
    assert row["rss_mb"] > 100  # the workers' memory is counted too
    assert "no overlay drawn" in proc.stdout
