"""The camera list: repeated --source (cam0, cam1, NAME=URL), --cameras cameras.toml with per-camera settings, bad
lists refused in one line with exit 2 before anything starts; a single --source keeps its old behaviour."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write_video
from test_cli import ENV, decode_count, read_events, run_cli

from realtime.cli import build_parser
from realtime.errors import RealtimeError
from realtime.settings import CameraSettings, RunSettings, settings_from_args, split_named_source


def settings(*argv: str) -> RunSettings:
    return settings_from_args(build_parser().parse_args(list(argv)))


# -------------------------------------------------------------------------------------------- --source, N times


def test_repeated_source_names_the_cameras_in_order_with_the_shared_options():
    s = settings("--source", "a.mp4", "--source", "rtsp://10.0.0.7/live", "--source", "2", "--exercise", "squat",
                 "--strictness", "strict", "--rtsp-transport", "udp", "--realtime", "--pick", "left")
    assert [c.name for c in s.cameras] == ["cam0", "cam1", "cam2"]
    assert [c.source for c in s.cameras] == ["a.mp4", "rtsp://10.0.0.7/live", "2"]
    assert s.multi
    for cam in s.cameras:  # the command line's options are every camera's defaults
        assert (cam.exercise, cam.strictness, cam.rtsp_transport, cam.realtime, cam.pick) == \
            ("squat", "strict", "udp", True, "left")


@pytest.mark.parametrize(("spec", "name", "source"), [
    ("front=rtsp://10.0.0.5:554/stream", "front", "rtsp://10.0.0.5:554/stream"),
    ("rack_2=videos/squat.mp4", "rack_2", "videos/squat.mp4"),
    ("back=rtsp://u:p@cam.local/s?token=a=b", "back", "rtsp://u:p@cam.local/s?token=a=b"),
    # a URL or path holding '=' is a source, not NAME=SOURCE
    ("rtsp://cam.local/live?channel=1&subtype=0", None, "rtsp://cam.local/live?channel=1&subtype=0"),
    ("http://cam.local/x.m3u8?a=b", None, "http://cam.local/x.m3u8?a=b"),
    ("/data/runs/set=3.mp4", None, "/data/runs/set=3.mp4"),
    ("C:/clips/a=b.mp4", None, "C:/clips/a=b.mp4"),
    ("rtsp://u:p=q@cam.local/s", None, "rtsp://u:p=q@cam.local/s"),
    ("=x.mp4", None, "=x.mp4"),
])
def test_named_sources_and_urls_with_equals(spec, name, source):
    assert split_named_source(spec) == (name, source)
    s = settings("--source", "first.mp4", "--source", spec)
    assert s.cameras[1].name == (name or "cam1") and s.cameras[1].source == source


def test_a_single_source_is_cam0_with_the_old_defaults():
    s = settings("--source", "clip.mp4")
    assert s.cameras == (CameraSettings("cam0", "clip.mp4"),) and not s.multi
    assert (s.pose_model, s.backend, s.max_batch, s.max_wait_ms, s.smooth, s.dashboard) == \
        ("auto", "auto", 16, 4.0, True, True)
    assert settings().cameras == (CameraSettings("cam0", "0"),)  # no --source: webcam 0, as before
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cameras[0].source = "other.mp4"  # type: ignore[misc]


# -------------------------------------------------------------------------------------------------- --cameras


def test_camera_list_with_per_camera_settings(tmp_path):
    toml = tmp_path / "cameras.toml"
    toml.write_text("""
[[camera]]
name = "rack"
source = "rtsp://10.0.0.5/rack?stream=1"
exercise = "squat"
strictness = "strict"
rtsp_transport = "udp"

[[camera]]
name = "bar"
source = "bar.mp4"
pick = 1
realtime = true
analysis_fps = 10

[[camera]]
name = "webcam"
source = 0
pick = "center"
""")
    s = settings("--cameras", str(toml), "--strictness", "relaxed", "--exercise", "pushup", "--analysis-fps", "12.5")
    rack, bar, webcam = s.cameras
    assert rack == CameraSettings("rack", "rtsp://10.0.0.5/rack?stream=1", exercise="squat", strictness="strict",
                                  rtsp_transport="udp", analysis_fps=12.5)
    # what a camera does not set comes from the command line
    assert bar == CameraSettings("bar", "bar.mp4", exercise="pushup", pick=1, strictness="relaxed", realtime=True,
                                 analysis_fps=10)
    assert webcam == CameraSettings("webcam", "0", exercise="pushup", pick="center", strictness="relaxed",
                                    analysis_fps=12.5)
    assert s.multi


# ---------------------------------------------------------------------------- bad settings: one line, exit 2

GOOD_CAMERA = '[[camera]]\nname = "a"\nsource = "{clip}"\n'
BAD = {  # case: (arguments, with {toml} / {clip} filled in; camera list text or None; text the error must contain)
    "unknown-key": (["--cameras", "{toml}"], GOOD_CAMERA + 'fps = 30\n', "unknown key(s) fps"),
    "unknown-top-level-key": (["--cameras", "{toml}"], 'workers = 2\n' + GOOD_CAMERA, "unknown key(s) workers"),
    "duplicate-name": (["--cameras", "{toml}"], GOOD_CAMERA * 2, "duplicate camera name 'a'"),
    "missing-source": (["--cameras", "{toml}"], GOOD_CAMERA + '[[camera]]\nname = "b"\n', "missing source"),
    "missing-name": (["--cameras", "{toml}"], '[[camera]]\nsource = "{clip}"\n', "missing name"),
    "empty-source": (["--cameras", "{toml}"], '[[camera]]\nname = "a"\nsource = " "\n', "has no source"),
    "bad-name": (["--cameras", "{toml}"], '[[camera]]\nname = "rack 1"\nsource = "{clip}"\n', "'rack 1'"),
    "bad-toml": (["--cameras", "{toml}"], '[[camera]\nname = "a"\n', "not valid TOML"),
    "no-cameras": (["--cameras", "{toml}"], '# nothing here\n', "no [[camera]] tables"),
    "list-not-found": (["--cameras", "{missing}"], None, "camera list not found"),
    "bad-exercise": (["--cameras", "{toml}"], GOOD_CAMERA + 'exercise = "juggling"\n', "juggling"),
    "bad-strictness": (["--cameras", "{toml}"], GOOD_CAMERA + 'strictness = "harsh"\n', "strictness"),
    "bad-transport": (["--cameras", "{toml}"], GOOD_CAMERA + 'rtsp_transport = "http"\n', "rtsp_transport"),
    "realtime-not-bool": (["--cameras", "{toml}"], GOOD_CAMERA + 'realtime = "yes"\n', "realtime"),
    "bad-pick": (["--cameras", "{toml}"], GOOD_CAMERA + 'pick = "tallest"\n', "tallest"),
    "analysis-fps-zero": (["--cameras", "{toml}"], GOOD_CAMERA + 'analysis_fps = 0\n', "analysis_fps must be"),
    "analysis-fps-text": (["--cameras", "{toml}"], GOOD_CAMERA + 'analysis_fps = "ten"\n', "'ten'"),
    "analysis-fps-option-negative": (["--source", "{clip}", "--analysis-fps", "-5"], None, "analysis_fps must be"),
    "analysis-fps-option-nan": (["--source", "{clip}", "--analysis-fps", "nan"], None, "analysis_fps must be"),
    "analysis-fps-option-text": (["--source", "{clip}", "--analysis-fps", "fast"], None, "invalid float value"),
    "cameras-and-source": (["--cameras", "{toml}", "--source", "{clip}"], GOOD_CAMERA, "not both"),
    "duplicate-source-names": (["--source", "a={clip}", "--source", "a={clip}"], None, "duplicate camera name 'a'"),
    "bad-pick-option": (["--source", "{clip}", "--source", "{clip}", "--pick", "tallest"], None, "tallest"),
    # options checked once the engine is up, still before any output is made
    "missing-classifier": (["--source", "{clip}", "--source", "{clip}", "--classifier", "{nofile}.safetensors"],
                           None, "nope.safetensors"),
    "missing-form-config": (["--source", "{clip}", "--form-config", "{nofile}.toml"], None, "nope.toml"),
    "several-cameras-save-to-a-file": (["--source", "{clip}", "--source", "{clip}", "--save", "{out}/v.mp4"], None,
                                       "takes a folder"),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Every bad case run at once (each is a separate run_live.py; they fail before loading anything)."""
    root = tmp_path_factory.mktemp("bad")
    clip = write_video(root / "clip.mp4", frames=10, size=(160, 120))
    procs = {}
    for case, (args, text, _) in BAD.items():
        folder = root / case
        folder.mkdir()
        toml = folder / "cameras.toml"
        if text is not None:
            toml.write_text(text.format(clip=clip))
        out = folder / "out"
        fill = {"toml": toml, "clip": clip, "missing": folder / "nope.toml", "out": out, "nofile": folder / "nope"}
        argv = [a.format(**fill) for a in args]
        if "--save" not in argv:
            argv += ["--save", f"{out}/videos"]
        argv += ["--events", f"{out}/events/", "--report", f"{out}/report", "--headless", "--no-dashboard"]
        procs[case] = (subprocess.Popen([sys.executable, str(REPO / "run_live.py"), *argv], cwd=REPO, env=ENV,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out)
    results = {}
    for case, (proc, out) in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        results[case] = (subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), out)
    return results


@pytest.mark.parametrize("case", list(BAD))
def test_bad_settings_are_one_line_exit_2_and_nothing_started(bad_runs, case):
    proc, out = bad_runs[case]
    needle = BAD[case][2]
    assert proc.returncode == 2, (case, proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr  # no log lines: nothing was loaded
    assert needle in lines[0], lines[0]
    assert proc.stdout == ""
    assert not out.exists()  # no events, video or report folder made


def test_settings_errors_are_realtime_errors(tmp_path):
    (tmp_path / "c.toml").write_text(GOOD_CAMERA.format(clip="x.mp4") * 2)
    with pytest.raises(RealtimeError, match="duplicate camera name 'a'"):
        settings("--cameras", str(tmp_path / "c.toml"))


# ---------------------------------------------------------------------------------- one camera, as before


FRAME_KEYS = {"type", "frame", "t", "label", "confidence", "ruled_out", "keypoints", "exercise", "reps", "status",
              "camera"}


def test_a_single_source_keeps_its_outputs_and_events_carry_cam0(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames=12, size=(160, 120), pattern="person")
    out, ev, report = tmp_path / "o.mp4", tmp_path / "e.jsonl", tmp_path / "report"
    proc = run_cli("--source", str(clip), "--headless", "--no-dashboard", "--max-frames", "8", "--save", str(out),
                   "--events", str(ev), "--report", str(report), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("done (max-frames): ")  # no camera name in front of a single camera's summary
    assert "cam0" not in proc.stdout
    events = read_events(ev)
    assert all(e["camera"] == "cam0" for e in events)
    assert events[0]["type"] == "start" and events[0]["source"] == str(clip) and events[0]["size"] == [160, 120]
    assert events[-1]["type"] == "summary" and events[-1]["stopped_by"] == "max-frames"
    frames = [e for e in events if e["type"] == "frame"]
    assert len(frames) == events[-1]["frames_processed"] == 8
    assert all(set(f) == FRAME_KEYS for f in frames)
    assert [f["frame"] for f in frames] == list(range(8))
    assert "engine" not in events[-1]  # BlazePose: no batcher figures
    assert out.is_file() and decode_count(out) == 8  # --save is the file itself, not a folder
    assert sorted(p.name for p in report.iterdir()) == ["reps.csv", "summary.json", "timeline.png"]
    assert json.loads((report / "summary.json").read_text())["total_reps"] == 0
