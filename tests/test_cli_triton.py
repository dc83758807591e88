"""``--backend triton`` end to end through the real CLI against a real Triton Inference Server on 127.0.0.1.

The server (PyPI nvidia-pytriton's ``tritonserver``, tests/backends/triton_server.py) serves tiny random ViTPoses
exported by our own ``run_live.py export-triton --format python-onnx``:

- ``vitpose_b``: for comparing keypoints with ``--backend onnxruntime`` on the same ONNX file. A random network
  makes the tracker's follow loop chaotic: the server's ONNX Runtime (1.20, numpy 1) and the analyzer's differ by
  ~1e-6 in the heatmaps, that flips an argmax now and then, the followed box moves and the two runs drift apart
  for dozens of frames. So its head is scaled (weights x 0.25, bias 0.175) to put every crop's mean keypoint score
  between the estimator's presence threshold (``VitPoseEstimator.MIN_MEAN_SCORE`` 0.2: the frame is "ok") and the
  tracker's follow threshold (0.3: the next box comes from the person detector again). Each frame's crop then
  comes from the same detector box in both runs, and the keypoints must agree frame by frame.
- ``cameras_b``: the plain tiny random model (the tracker follows the person, few detector runs) with a 20 ms
  batcher queue delay, for several cameras sharing the server and for the outage.
- ``wrong_io``: a 224x224 input, not ViTPose's.

Everything skips, saying why, only when the server venv (``bash scripts/setup_triton.sh``) or the clips in
``../shared/data`` are missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, shared_file
from triton_server import TritonServer, require_server_venv, start_session_server

from realtime.backends import triton_backend as tb
from realtime.backends import triton_repo

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
ENV.pop("DISPLAY", None)
SQUAT = "workouttracker_reps/videos/squats/squat_24.mp4"
LONG_CLIP = "workouttracker_reps/videos/pull-ups/pull-up_9.mp4"  # 12 s: room for an outage and the recovery
STEADY, CAMERAS, WRONG = "vitpose_b", "cameras_b", "wrong_io"
DOWN, BACK = "pose server unreachable", "pose server back"


def cli(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "run_live.py"), *args]


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=ENV)


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def frames_of(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "frame"]


def tiny_onnx(path: Path, steady: bool) -> Path:
    """A tiny random ViTPose (hidden 32, depth 2) as a dynamic-batch ONNX file; ``steady``: see the module doc."""
    import torch

    from realtime.pose import vitpose

    torch.manual_seed(0)
    model = vitpose.build_vitpose("b", tiny=True)
    if steady:
        with torch.no_grad():
            model.head.conv.weight.mul_(0.25)
            model.head.conv.bias.fill_(0.175)
    return vitpose.export_onnx(model, path)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    require_server_venv()
    folder = tmp_path_factory.mktemp("triton-cli-onnx")
    return {STEADY: tiny_onnx(folder / "steady.onnx", steady=True),
            CAMERAS: tiny_onnx(folder / "plain.onnx", steady=False)}


@pytest.fixture(scope="module")
def repository(models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton-cli-repo") / "model_repository"
    exports = {name: subprocess.Popen(cli("export-triton", "--pose-model", "vitpose-b", "--weights", str(models[name]),
                                          "--format", "python-onnx", "--max-batch", "16", "--out", str(out), *extra),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV)
               for name, extra in ((STEADY, ()), (CAMERAS, ("--model-name", CAMERAS, "--queue-delay-us", "20000")))}
    for name, proc in exports.items():
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert (out / name / "1" / "model.py").is_file() and (out / name / "1" / "model.onnx").is_file()
    wrong = triton_repo.export_model_repository(out, models[STEADY], fmt="python-onnx", name=WRONG, max_batch=4)
    inp, outp = triton_repo.onnx_io(models[STEADY])
    bad = triton_repo.TensorSpec(inp.name, inp.data_type, (3, 224, 224))
    triton_repo.write_config(wrong / "config.pbtxt", triton_repo.build_config(WRONG, "python-onnx", bad, outp,
                                                                               max_batch=4))
    return out


@pytest.fixture(scope="module")
def server(repository, tmp_path_factory):
    with start_session_server(repository, tmp_path_factory.mktemp("triton-cli-log") / "server.log") as started:
        yield started


def crops_run(url: str, model: str, before: dict[int, int]) -> dict[int, int]:
    """{batch size: executions} the server ran for ``model`` since the ``before`` snapshot."""
    after = tb.server_batch_counts(url, model)
    return {size: n - before.get(size, 0) for size, n in after.items() if n > before.get(size, 0)}


def test_real_clip_keypoints_through_triton_equal_onnxruntime(server, models, tmp_path):
    clip = shared_file(SQUAT)
    frames_wanted = 45
    common = ["--source", str(clip), "--headless", "--no-dashboard", "--pose-model", "vitpose-b", "--weights",
              str(models[STEADY]), "--max-frames", str(frames_wanted)]
    before = tb.server_batch_counts(server.url, STEADY)
    runs = {}
    for backend, extra in (("triton", ("--triton-url", server.url)), ("onnxruntime", ())):  # both at once
        runs[backend] = subprocess.Popen(cli(*common, "--backend", backend, *extra, "--events",
                                             str(tmp_path / f"{backend}.jsonl")),
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV)
    for backend, proc in runs.items():
        _out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{backend}: {err}"
        assert "Traceback" not in err
    events = {backend: read_events(tmp_path / f"{backend}.jsonl") for backend in runs}
    assert f"triton[{STEADY}@{server.url},fp32]" in events["triton"][0]["pose"]  # the network ran on the server
    assert "onnxruntime" in events["onnxruntime"][0]["pose"]
    ours, ref = frames_of(events["triton"]), frames_of(events["onnxruntime"])
    assert [f["frame"] for f in ours] == [f["frame"] for f in ref] == list(range(frames_wanted))
    assert [f["status"] for f in ours] == [f["status"] for f in ref]
    both = [(a["keypoints"], b["keypoints"]) for a, b in zip(ours, ref, strict=True)
            if a["keypoints"] is not None and b["keypoints"] is not None]
    assert len(both) >= 0.8 * frames_wanted, Counter(f["status"] for f in ours)  # the lifter found in most frames
    ka, kb = np.array([a for a, _ in both]), np.array([b for _, b in both])
    # Events round x, y to 0.1 px and scores to 0.001; the server runs another ONNX Runtime build (~1e-6 apart).
    dxy, dscore = np.abs(ka[..., :2] - kb[..., :2]), np.abs(ka[..., 2] - kb[..., 2])
    assert dxy.max() <= 0.15 and dscore.max() <= 0.0015, (dxy.max(), dscore.max())
    assert ka[..., :2].std(axis=0).mean() > 5.0  # the keypoints move with the image: agreement is not trivial
    # Every crop went to the server once: at least one per frame with a pose, at most one per frame.
    crops = sum(size * n for size, n in crops_run(server.url, STEADY, before).items())
    assert len(both) <= crops <= frames_wanted


def test_several_cameras_share_the_server_and_get_batched(server, tmp_path):
    clip = shared_file(SQUAT)
    before = tb.server_batch_counts(server.url, CAMERAS)
    proc = run_cli("--source", str(clip), "--source", str(clip), "--source", str(clip), "--realtime", "--headless",
                   "--no-dashboard", "--pose-model", "vitpose-b", "--backend", "triton", "--triton-url", server.url,
                   "--triton-model", CAMERAS, "--max-frames", "60", "--events", str(tmp_path / "events") + "/")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    formed = crops_run(server.url, CAMERAS, before)
    processed = 0
    for cam in ("cam0", "cam1", "cam2"):
        frames = frames_of(read_events(tmp_path / "events" / f"{cam}.jsonl"))
        assert frames and all(f["status"] != DOWN for f in frames)
        processed += len(frames)
    crops = sum(size * n for size, n in formed.items())
    assert 0 < crops <= processed  # at most one crop per processed frame, each run once
    mean = crops / sum(formed.values())
    assert max(formed) > 1 and mean > 1.0, formed  # the server merged crops of different cameras
    print(f"3 cameras: server batches {dict(sorted(formed.items()))}, mean {mean:.2f}, {processed} frames")


def test_server_killed_and_restarted_mid_run(repository, tmp_path):
    clip = shared_file(LONG_CLIP)
    import cv2

    capture = cv2.VideoCapture(str(clip))
    clip_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    require_server_venv()
    server = TritonServer(repository, tmp_path / "server.log", model=CAMERAS)
    server.start()
    events_dir = tmp_path / "events"
    cams = ("cam0", "cam1", "cam2")
    proc = subprocess.Popen(cli("--source", str(clip), "--source", str(clip), "--source", str(clip), "--realtime",
                                "--headless", "--no-dashboard", "--pose-model", "vitpose-b", "--backend", "triton",
                                "--triton-url", server.url, "--triton-model", CAMERAS,
                                "--events", str(events_dir) + "/"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV)

    def every_camera(condition, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if all(condition(frames_of(read_events(events_dir / f"{cam}.jsonl"))) for cam in cams):
                    return True
            except (OSError, ValueError):  # not written yet, or a line half-written
                pass
            time.sleep(0.1)
        return False

    restart_s = None
    try:
        assert every_camera(lambda fs: sum(f["status"] == "ok" for f in fs) >= 2, within=60), "no pose before"
        server.kill()
        killed = time.monotonic()
        assert every_camera(lambda fs: any(f["status"] == DOWN for f in fs), within=15), "outage not seen"
        # Down >= 1 s, then the same ports again. The client probes 0.5, 1.5, 3.5, 7.5 s after the first failure
        # (backoff doubling, capped at 10 s): with a restart under 6 s it is back before the 12-s clip ends.
        time.sleep(max(0.0, killed + 1.0 - time.monotonic()))
        restart_s = server.start()
        out, err = proc.communicate(timeout=90)
        ended = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        served = sum(tb.server_batch_counts(server.url, CAMERAS).values()) if restart_s is not None else 0
        server.stop()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Traceback" not in out
    print(f"server killed {ended - killed:.1f} s before the run's end, restarted in {restart_s:.1f} s")
    for cam in cams:
        events = read_events(events_dir / f"{cam}.jsonl")
        states = [e for e in events if e["type"] == "source" and e.get("state") in (DOWN, BACK)]
        assert [e["state"] for e in states][:2] == [DOWN, BACK], (cam, states, f"restart took {restart_s:.1f} s")
        down = states[0]
        assert f"127.0.0.1:{server.grpc_port}" in down["reason"] and "\n" not in down["reason"]
        frames = frames_of(events)
        index = [f["frame"] for f in frames]
        assert index == sorted(set(index))  # in order, none twice
        statuses = [f["status"] for f in frames]
        first_down = statuses.index(DOWN)
        first_back = next(i for i in range(first_down, len(statuses)) if statuses[i] != DOWN)
        outage = frames[first_down:first_back]
        # The cameras kept reading while the server was away: the outage frames span more than a second of video
        # (>= 1.5 s down, plus the restart and the client's next probe), and frames with poses follow it.
        assert outage[-1]["frame"] - outage[0]["frame"] >= 30, (cam, [f["frame"] for f in outage])
        assert all(f["keypoints"] is None for f in outage)
        assert any(s == "ok" for s in statuses[first_back:]), cam
        summary = events[-1]
        assert summary["type"] == "summary" and summary["error"] is None and summary["stopped_by"] == "end"
        assert summary["frames_read"] >= 0.95 * clip_frames  # capture read the whole clip, outage or not
    assert served > 0  # the restarted server served the cameras again


def test_a_server_model_that_is_not_vitpose_is_one_line_exit_2_at_start(server, tmp_path):
    clip = shared_file(SQUAT)
    events = tmp_path / "e.jsonl"
    proc = run_cli("--source", str(clip), "--headless", "--no-dashboard", "--pose-model", "vitpose-b", "--backend",
                   "triton", "--triton-url", server.url, "--triton-model", WRONG, "--events", str(events))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors == proc.stderr.strip().splitlines()[-1:], proc.stderr
    assert "not a ViTPose 256x192 export" in errors[0] and "224" in errors[0] and WRONG in errors[0]
    assert not events.exists() or not frames_of(read_events(events))  # refused before any frame was analysed


def test_cameras_failing_together_start_the_backoff_once(server):
    """Requests of several cameras in flight when the server goes away are one failure: the first retry comes after
    0.5 s, not 0.5 * 2**(cameras - 1) s (which made 3 cameras wait 2 s, then 4, then 8 for a 1-s restart)."""
    from concurrent.futures import ThreadPoolExecutor

    from realtime.errors import PoseServerUnavailable

    backend = tb.create(None, None, triton_url=server.url, triton_model=CAMERAS, triton_timeout_s=1.0)
    crop = np.zeros((1, 3, 256, 192), np.float32)
    backend.infer(crop)

    def camera(_: int) -> str:
        try:
            backend.infer(crop)
        except PoseServerUnavailable as exc:
            return str(exc)
        return "answered"

    server.pause()  # every request times out after 1 s, all at about the same moment
    try:
        with ThreadPoolExecutor(4) as pool:
            messages = list(pool.map(camera, range(4)))
    finally:
        server.resume()
    waits = [float(m.rsplit("next try in ", 1)[1].split(" ")[0]) for m in messages]
    assert all("DEADLINE_EXCEEDED" in m for m in messages) and max(waits) <= 0.5, messages
    backend.close()
