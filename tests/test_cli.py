"""The CLI end to end on real clips, bad inputs (one line, exit 2, no traceback), and clean shutdown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import REPO, shared_file, write_video

from realtime.pose.blazepose import OUTSIDE_MARGIN

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
SHIPPED_CLASSIFIER = REPO / "realtime" / "models" / "classifier.safetensors"
ENV.pop("DISPLAY", None)


def run_cli(*args: str, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_live.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env or ENV)


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def decode_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_real_squat_clip_headless_with_video_and_events(tmp_path, squat_clip):
    out, ev, report = tmp_path / "o.mp4", tmp_path / "e.jsonl", tmp_path / "report"
    proc = run_cli("--source", str(squat_clip), "--headless", "--save", str(out), "--events", str(ev),
                   "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    events = read_events(ev)
    frames = [e for e in events if e["type"] == "frame"]
    n_labels = len(Path(str(squat_clip).replace("videos", "labels").replace(".mp4", ".csv")).read_text().splitlines()) - 1
    assert len(frames) == n_labels  # every decoded frame processed, none dropped
    assert decode_count(out) == len(frames)
    with av.open(str(out)) as c:
        w, h = c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height
    found = [f for f in frames if f["keypoints"] is not None]
    assert len(found) > 0.8 * len(frames)  # the lifter is found in most frames
    for f in found:
        xy = np.array(f["keypoints"])[:, :2]
        conf = np.array(f["keypoints"])[:, 2] > 0.5
        # a confident joint lies in the frame, or at most OUTSIDE_MARGIN torso lengths beyond its edge
        m = OUTSIDE_MARGIN * np.linalg.norm(xy[[5, 6]].mean(0) - xy[[11, 12]].mean(0)) + 5
        assert (xy[conf, 0] >= -m).all() and (xy[conf, 0] <= w + m).all()
        assert (xy[conf, 1] >= -m).all() and (xy[conf, 1] <= h + m).all()
        assert f["label"] is not None and 0 <= f["confidence"] <= 1
        assert f["label"] not in f["ruled_out"]  # the plausibility rules never leave a ruled-out label shown
    assert all(set(f["ruled_out"]) <= {"deadlift", "clean_and_jerk", "pullup", "jumping_jacks"} for f in frames)
    summary = events[-1]
    assert summary["type"] == "summary" and summary["frames_processed"] == len(frames)
    assert summary["frames_dropped"] == 0 and "pose" in summary["stage_ms"]
    assert (report / "reps.csv").exists() and (report / "summary.json").exists() and (report / "timeline.png").exists()
    labels = summary["reps"]["labels"]  # what the classifier said, printed at the end as well
    assert abs(sum(labels.values()) - 1) < 1e-3 and "classifier: " in proc.stdout  # results on stdout, logs on stderr


def test_max_frames(tmp_path, squat_clip):
    ev = tmp_path / "e.jsonl"
    proc = run_cli("--source", str(squat_clip), "--headless", "--max-frames", "12", "--events", str(ev))
    assert proc.returncode == 0, proc.stderr
    assert sum(e["type"] == "frame" for e in read_events(ev)) == 12


def test_analysis_fps_analyses_every_third_frame_and_saves_a_true_speed_video(tmp_path, squat_clip):
    out, ev = tmp_path / "o.mp4", tmp_path / "e.jsonl"
    proc = run_cli("--source", str(squat_clip), "--headless", "--analysis-fps", "10", "--save", str(out),
                   "--events", str(ev))
    assert proc.returncode == 0, proc.stderr
    events = read_events(ev)
    frames = [e for e in events if e["type"] == "frame"]
    n = len(Path(str(squat_clip).replace("videos", "labels").replace(".mp4", ".csv")).read_text().splitlines()) - 1
    assert [f["frame"] for f in frames] == list(range(0, n, 3))  # the clip's own frame numbers, evenly spaced
    assert events[0]["type"] == "start" and events[0]["analysis_fps"] == 10
    summary = events[-1]
    assert (summary["frames_read"], summary["frames_processed"]) == (n, len(frames))
    assert summary["frames_skipped"] == n - len(frames) and summary["frames_dropped"] == 0
    assert f"skipped {n - len(frames)} (analysis rate)" in proc.stdout
    with av.open(str(out)) as c:  # 10 frames a second of video: it plays as long as the clip, not 3x faster
        stream = c.streams.video[0]
        assert stream.average_rate == 10
        assert sum(1 for _ in c.decode(video=0)) == len(frames)


BAD_INPUTS = [
    "missing-file", "empty-file", "text-as-mp4", "truncated-mp4", "unknown-scheme", "no-such-webcam",
    "missing-weights", "corrupt-weights", "corrupt-classifier", "classifier-with-other-classes",
    "missing-classifier", "unknown-pose-model",
    "zero-max-frames", "unknown-exercise", "save-to-a-folder", "report-into-a-file",
]


def _bad_input(case: str, tmp: Path) -> tuple[list[str], str]:
    """(arguments, text the one-line error must contain) for each bad input."""
    clip = write_video(tmp / "ok.mp4")
    if case == "missing-file":
        return ["--source", str(tmp / "missing.mp4")], "missing.mp4"
    if case == "empty-file":
        (tmp / "empty.mp4").write_bytes(b"")
        return ["--source", str(tmp / "empty.mp4")], "empty.mp4"
    if case == "text-as-mp4":
        (tmp / "notes.mp4").write_text("this is not a video\n" * 20)
        return ["--source", str(tmp / "notes.mp4")], "notes.mp4"
    if case == "truncated-mp4":  # moov atom at the end is cut off: nothing can be decoded
        (tmp / "truncated.mp4").write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
        return ["--source", str(tmp / "truncated.mp4")], "truncated.mp4"
    if case == "unknown-scheme":
        return ["--source", "ftp://example.invalid/x.mp4"], "ftp"
    if case == "no-such-webcam":
        return ["--source", "97"], "97"
    if case == "missing-weights":
        return ["--source", str(clip), "--pose-model", "vitpose-b", "--weights", str(tmp / "nope")], "nope"
    if case == "corrupt-weights":
        (tmp / "weights.pth").write_bytes(b"garbage" * 100)
        return ["--source", str(clip), "--pose-model", "vitpose-b", "--weights", str(tmp / "weights.pth")], "weights.pth"
    if case == "corrupt-classifier":  # valid metadata beside corrupt weights
        shutil.copy(SHIPPED_CLASSIFIER.with_suffix(".json"), tmp / "clf.json")
        (tmp / "clf.safetensors").write_bytes(b"\x00" * 64)
        return ["--source", str(clip), "--classifier", str(tmp / "clf.safetensors")], "clf.safetensors"
    if case == "classifier-with-other-classes":  # the shipped weights, metadata naming a different class list
        meta = json.loads(SHIPPED_CLASSIFIER.with_suffix(".json").read_text())
        meta["classes"] = ["squat", "snatch", "other"]
        (tmp / "other.json").write_text(json.dumps(meta))
        shutil.copy(SHIPPED_CLASSIFIER, tmp / "other.safetensors")
        return ["--source", str(clip), "--classifier", str(tmp / "other.safetensors")], "other"
    if case == "missing-classifier":
        return ["--source", str(clip), "--classifier", str(tmp / "none.safetensors")], "none.safetensors"
    if case == "unknown-pose-model":
        return ["--source", str(clip), "--pose-model", "nonsense"], "nonsense"
    if case == "zero-max-frames":
        return ["--source", str(clip), "--max-frames", "0"], "max-frames"
    if case == "unknown-exercise":
        return ["--source", str(clip), "--exercise", "juggling"], "juggling"
    if case == "save-to-a-folder":  # refused before the run, not after it
        (tmp / "videos").mkdir()
        return ["--source", str(clip), "--save", str(tmp / "videos")], "videos"
    if case == "report-into-a-file":
        (tmp / "notes.txt").write_text("not a folder")
        return ["--source", str(clip), "--report", str(tmp / "notes.txt")], "notes.txt"
    raise AssertionError(case)


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(tmp_path, case):
    args, needle = _bad_input(case, tmp_path)
    extra = ["--headless"] + ([] if "--max-frames" in args else ["--max-frames", "5"])
    proc = run_cli(*args, *extra, timeout=120)
    err = proc.stderr.strip()
    assert proc.returncode == 2, (args, proc.returncode, err)
    assert "Traceback" not in err and "Traceback" not in proc.stdout
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, err
    assert needle in error_lines[0], err


def test_video_that_breaks_midway_keeps_everything_up_to_the_break(tmp_path):
    """A fragmented/fast-start MP4 cut in the middle: frames before the cut are analysed and kept."""
    clip = write_video(tmp_path / "src.mp4", frames=90)
    whole = tmp_path / "faststart.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-c", "copy", "-movflags", "+faststart", str(whole)],
                   check=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    out, ev = tmp_path / "o.mp4", tmp_path / "e.jsonl"
    proc = run_cli("--source", str(cut), "--headless", "--save", str(out), "--events", str(ev))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    events = read_events(ev)
    frames = sum(e["type"] == "frame" for e in events)
    assert 10 < frames < 90
    assert events[-1]["type"] == "summary" and events[-1]["error"]
    assert decode_count(out) == frames


def test_sigint_mid_run_finalises_video_and_events(tmp_path):
    clip = shared_file("workouttracker_reps/videos/push-ups/push-up_1.mp4")
    out, ev = tmp_path / "o.mp4", tmp_path / "e.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "run_live.py"), "--source", str(clip), "--realtime", "--headless",
         "--save", str(out), "--events", str(ev)],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # wait until it is really processing
        if ev.exists() and sum(1 for _ in ev.open()) > 30:
            break
        time.sleep(0.2)
    t = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t < 10
    assert proc.returncode == 0, err
    events = read_events(ev)
    assert events[-1]["type"] == "summary" and events[-1]["stopped_by"] == "user"
    frames = sum(e["type"] == "frame" for e in events)
    assert frames > 20
    assert decode_count(out) == frames


def test_bench_alternates_baseline_and_pipeline_and_writes_its_report(tmp_path):
    clip = write_video(tmp_path / "c.mp4", frames=12)
    out = tmp_path / "bench.json"
    r = run_cli("--bench", "--source", str(clip), "--bench-frames", "12", "--bench-repeats", "2",
                "--pose-model", "blazepose-lite", "--bench-json", str(out))
    assert r.returncode == 0, r.stderr
    assert "overhead" in r.stdout and "blazepose-lite" in r.stdout
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert run["repeats"] == 2 and len(run["pipeline_overhead_per_repeat"]) == 2
    assert run["pipeline_overhead"] == pytest.approx(float(np.median(run["pipeline_overhead_per_repeat"])))
    assert run["frames"] == 12 and run["dropped"] == 0
    assert {"pose", "classifier", "reps", "draw"} <= set(run["stages_ms"])
    assert report["machine"]["cores"] >= 1


def test_bench_decodes_files_with_opencv_where_pyav_is_missing(squat_clip, monkeypatch):
    from realtime.benchmark import cli_bench as bench

    with_av, fps_av, _ = bench.load_frames(str(squat_clip), 5)
    monkeypatch.setattr(bench, "_has_pyav", lambda: False)
    frames, fps, label = bench.load_frames(str(squat_clip), 5)
    assert len(frames) == 5 and "OpenCV" in label and abs(fps - fps_av) < 0.01
    assert frames[0].shape == with_av[0].shape
    assert np.abs(frames[0].astype(int) - with_av[0].astype(int)).mean() < 3  # same picture, decoder rounding aside
