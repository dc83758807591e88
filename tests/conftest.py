"""Shared fixtures: paths to the real data beside the repo, fake pipeline stages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REALTIME_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# Tests mirror the package in sub-folders; a few share helpers across them (``from test_reps import ...``).
for _folder in sorted(p for p in Path(__file__).parent.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))

from realtime.types import PoseResult, Prediction  # noqa: E402


def shared_file(relative: str) -> Path:
    """A file under ../shared/data, or skip the test when the data is not on this machine."""
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not present (real data lives in ../shared/data)")
    return path


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``gpu`` need CUDA: skip them without it (select them alone with ``-m gpu``)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (gpu marker)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture
def squat_clip() -> Path:
    return shared_file("workouttracker_reps/videos/squats/squat_24.mp4")


# --- the one test-video factory -------------------------------------------------------------------------------
BITS, BLOCK = 8, 16  # "bits" pattern: frame number in 8 blocks of 16x16 px along the top row, white = 1
Pattern = Callable[[int, int, int], np.ndarray]  # (frame index, height, width) -> (H, W, 3) uint8 BGR


def _ramp(step: int) -> Pattern:
    return lambda i, h, w: np.full((h, w, 3), (i * step) % 256, np.uint8)


def _bits(noise: bool) -> Pattern:
    rng = np.random.default_rng(0)

    def draw(i: int, h: int, w: int) -> np.ndarray:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if noise else np.full((h, w, 3), 64, np.uint8)
        img[:BLOCK + 8] = 0
        for b in range(BITS):
            if (i >> b) & 1:
                img[4:4 + BLOCK, b * BLOCK + 4:(b + 1) * BLOCK] = 255
        return img

    return draw


def _person() -> Pattern:
    rng = np.random.default_rng(0)

    def draw(i: int, h: int, w: int) -> np.ndarray:
        img = np.full((h, w, 3), 40, np.uint8)
        x = 20 + 5 * i
        img[40:h - 20, x:x + 60] = rng.integers(0, 255, 3, dtype=np.uint8)  # a moving "person"
        return img

    return draw


def _corner(i: int, h: int, w: int) -> np.ndarray:
    img = np.full((h, w, 3), 30, np.uint8)
    img[: h // 4, : w // 4] = 255  # white top-left corner: shows which way a frame was turned
    return img


def frame_number(image: np.ndarray) -> int:
    """The frame index drawn by the "bits" pattern."""
    cy = 4 + BLOCK // 2
    return sum(1 << b for b in range(BITS) if image[cy, b * BLOCK + 4 + BLOCK // 2].mean() > 128)


def white_corner(image: np.ndarray) -> tuple[bool, bool]:
    """(bottom?, right?) of the white block of the "corner" pattern."""
    ys, xs = np.nonzero(image.mean(axis=2) > 128)
    return bool(ys.mean() > image.shape[0] / 2), bool(xs.mean() > image.shape[1] / 2)


def write_video(path: Path, frames: int = 30, size: tuple[int, int] = (320, 240), fps: int = 30, *,
                codec: str = "libx264", pattern: str | Pattern = "ramp", step: int = 8, noise: bool = False,
                faststart: bool = False, rotate: int | None = None, options: dict[str, str] | None = None) -> Path:
    """Write a small test video and return its path.

    pattern: "ramp" (grey level ``i * step``), "bits" (frame number in the top row, see ``frame_number``; ``noise``
    fills the rest with random pixels), "person" (a moving bar), "corner" (white top-left block, see
    ``white_corner``) or a callable (i, h, w) -> BGR image. ``options`` go to the encoder (e.g. {"g": "15"}).
    ``rotate``: degrees stored as the stream's display rotation (``rotate`` tag, as a phone writes it) with the
    ffmpeg CLI; the test is skipped without it.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw = pattern if callable(pattern) else {"ramp": _ramp(step), "bits": _bits(noise), "person": _person(),
                                               "corner": _corner}[pattern]
    target = path.with_name(path.stem + ".unrotated" + path.suffix) if rotate is not None else path
    w, h = size
    with av.open(str(target), "w", options={"movflags": "+faststart"} if faststart else {}) as out:
        stream = out.add_stream(codec, rate=fps, options=dict(options or {}))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(draw(i, h, w), format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    if rotate is not None:
        if shutil.which("ffmpeg") is None:
            pytest.skip("ffmpeg CLI not installed (needed to tag a rotated clip)")
        subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(target), "-c", "copy", "-metadata:s:v:0",
                        f"rotate={rotate}", str(path)], check=True)
        target.unlink()
    return path


def ffmpeg_upright(path: Path) -> np.ndarray:
    """First frame as FFmpeg's own auto-rotation shows it (the reference for every decode path), BGR."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg CLI not installed")
    import cv2

    png = path.with_name(path.stem + ".ffmpeg.png")
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(path), "-frames:v", "1", str(png)], check=True)
    return cv2.imread(str(png))


class FakeEstimator:
    """Returns a fixed standing pose scaled to the frame; optional delay to imitate a slow model."""

    name = "fake"

    def __init__(self, delay_s: float = 0.0, fail_at: int | None = None) -> None:
        self.delay_s = delay_s
        self.fail_at = fail_at
        self.calls = 0
        self.resets = 0

    def estimate(self, image: np.ndarray) -> PoseResult:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("model exploded")
        if self.delay_s:
            time.sleep(self.delay_s)
        h, w = image.shape[:2]
        kp = np.zeros((17, 3), np.float32)
        ys = np.linspace(0.15, 0.9, 17) * h
        kp[:, 0] = w / 2 + np.where(np.arange(17) % 2 == 0, 20, -20)
        kp[:, 1] = ys
        kp[:, 2] = 0.9
        return PoseResult(keypoints=kp, box=np.array([0, 0, w, h], np.float32), infer_ms=self.delay_s * 1000)

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        pass


class FakeClassifier:
    classes = ("squat", "other")

    def push(self, keypoints, t=None):
        probs = np.array([0.8, 0.2], np.float32)
        return Prediction("squat", 0.8, probs, self.classes)

    def reset(self) -> None:
        pass


@dataclass(frozen=True)
class FakeUpdate:
    exercise: str | None
    count: int
    new_rep: object
    phase: str
    signal: float | None
    cues: tuple[str, ...]


class FakeReps:
    def __init__(self) -> None:
        self.frames = 0

    def update(self, frame_index, t, keypoints, label, confidence=1.0):
        self.frames += 1
        return FakeUpdate(label, self.frames // 10, None, "top", None, ())


def live_events(path: Path) -> list[dict]:
    """The lines of an events file that is still being written (a half-written last line is skipped)."""
    import json

    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out
