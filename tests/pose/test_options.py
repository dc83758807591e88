"""Pose options are checked up front (a typo is exit 2 everywhere), and bad --weights say "not found" / "not a
checkpoint" also with --pose-model auto, instead of "cannot tell which ViTPose size"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, write_video

from realtime.errors import RealtimeError, WeightsError
from realtime.pose import BACKENDS, create_pose_estimator, validate_pose_options, vitpose
from realtime.training.train import main as train_main


def _one_line(exc: pytest.ExceptionInfo, *fragments: str) -> str:
    text = str(exc.value)
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text, text
    return text


def test_known_names_pass():
    for backend in BACKENDS:
        validate_pose_options("auto", backend, "auto")
    assert "triton" in BACKENDS
    validate_pose_options("blazepose-lite,vitpose-s", "torch,onnxruntime", "fp16", allow_lists=True)
    validate_pose_options("vitpose-b", "triton", "int8", "random")
    validate_pose_options("vitpose-b", weights="usyd-community/vitpose-base-simple")  # a hub id: not checked here


@pytest.mark.parametrize("kwargs, fragment", [
    ({"backend": "cuda"}, "unknown --backend 'cuda'; choose one of auto, tensorrt"),
    ({"backend": "torch,cuda", "allow_lists": True}, "unknown --backend 'cuda'"),
    ({"backend": "torch,onnxruntime"}, "unknown --backend 'torch,onnxruntime'"),  # lists are for --bench only
    ({"precision": "fp64"}, "unknown --precision 'fp64'"),
    ({"pose_model": "vitpose-x"}, "unknown --pose-model 'vitpose-x'"),
])
def test_typos_are_one_line_errors(kwargs, fragment):
    with pytest.raises(RealtimeError) as err:
        validate_pose_options(**kwargs)
    _one_line(err, fragment)


def test_missing_weights_are_caught_before_anything_loads(tmp_path):
    with pytest.raises(WeightsError) as err:
        validate_pose_options(weights=str(tmp_path / "vitpose.pth"))
    _one_line(err, "weights not found")


def test_typo_on_the_default_blazepose_path_is_an_error_not_a_note():
    with pytest.raises(RealtimeError) as err:
        create_pose_estimator("auto", backend="cuda")
    _one_line(err, "unknown --backend 'cuda'")
    with pytest.raises(RealtimeError):
        create_pose_estimator("blazepose-lite", precision="half")


def _bad(tmp_path: Path, kind: str) -> str:
    if kind == "missing":
        return str(tmp_path / "weights.pth")
    if kind == "missing, no suffix":
        return str(tmp_path / "weights")
    path = tmp_path / {"random bytes": "weights.pth", "random bytes, no suffix": "weights",
                       "text file": "weights.txt", "text as .safetensors": "w.safetensors",
                       "garbage .onnx": "w.onnx"}[kind]
    if kind.startswith("random"):
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    else:
        path.write_text("these are not weights\n")
    return str(path)


@pytest.mark.parametrize("kind, fragment", [
    ("missing", "weights not found"), ("missing, no suffix", "weights not found"),
    ("random bytes", "not a readable PyTorch checkpoint"), ("random bytes, no suffix", "not a checkpoint"),
    ("text file", "not a checkpoint"), ("text as .safetensors", "not a readable safetensors file"),
    ("garbage .onnx", "not a checkpoint"),
])
def test_bad_weights_with_pose_model_auto_name_the_real_problem(tmp_path, kind, fragment):
    weights = _bad(tmp_path, kind)
    with pytest.raises(WeightsError) as err:
        vitpose.guess_variant(weights)
    text = _one_line(err, fragment)
    assert "cannot tell which ViTPose size" not in text
    with pytest.raises(WeightsError) as err:  # the --pose-model auto path of the run, extract and bench
        create_pose_estimator("auto", weights=weights)
    _one_line(err, fragment)


def test_a_name_that_is_only_unknown_still_says_so():
    with pytest.raises(WeightsError) as err:
        vitpose.guess_variant("someone/pose-model")  # a hub id: offline, its size cannot be told
    _one_line(err, "cannot tell which ViTPose size")


def test_extract_rejects_a_backend_typo_before_reading_videos(tmp_path, capsys):
    write_video(tmp_path / "videos" / "squat" / "a.mp4", 4, (64, 48))
    assert train_main(["extract", str(tmp_path / "videos"), str(tmp_path / "out"), "--backend", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: unknown --backend 'cuda'; choose one of " + ", ".join(BACKENDS)
    assert not (tmp_path / "out").exists()


def test_main_run_exits_2_on_a_backend_typo(tmp_path):
    clip = write_video(tmp_path / "c.mp4", 4, (64, 48))
    proc = subprocess.run([sys.executable, str(REPO / "run_live.py"), "--source", str(clip), "--headless",
                           "--no-dashboard", "--backend", "cuda"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: unknown --backend 'cuda'; choose one of " + ", ".join(BACKENDS)]
