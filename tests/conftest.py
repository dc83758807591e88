"""Shared fixtures: paths to the real data beside the repo, fake pipeline stages."""

from __future__ import annotations

import os
import sys
import time
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


@pytest.fixture
def squat_clip() -> Path:
    return shared_file("workouttracker_reps/videos/squats/squat_24.mp4")


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
