"""Typed records shared by the pipeline stages (and nothing else).

Coordinates are pixels of the (rotation-corrected) frame, times are ``time.monotonic()`` seconds.
Keypoints are always COCO-17 order, shape (17, 3) float32: x, y, score in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_JOINTS = 17
# Pairs swapped by a horizontal mirror (left <-> right).
COCO17_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO17_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame. ``image`` is (H, W, 3) uint8 BGR, already rotated upright."""

    image: np.ndarray
    index: int  # position in the source (0-based), counting frames that were dropped later
    t: float  # monotonic capture time, seconds
    source_id: str = ""  # redacted source name (no credentials)
    media_t: float | None = None  # presentation time in the file, seconds (files only)


@dataclass(frozen=True, slots=True)
class PoseResult:
    """The lifter's pose in one frame; ``keypoints`` is None when nobody is in view."""

    keypoints: np.ndarray | None  # (17, 3) float32 x, y px, score
    box: np.ndarray | None = None  # (4,) float32 x1, y1, x2, y2 px: the person box the pose came from
    infer_ms: float = 0.0  # time spent in the model(s) for this frame
    detected: bool = False  # True when the person detector ran on this frame
    track_id: int = 0
    raw_keypoints: np.ndarray | None = None  # unsmoothed keypoints when ``keypoints`` are smoothed

    @property
    def present(self) -> bool:
        return self.keypoints is not None


@dataclass(frozen=True, slots=True)
class Prediction:
    """Classifier output for the newest frame."""

    label: str
    confidence: float
    probs: np.ndarray  # (C,) float32, sums to 1
    classes: tuple[str, ...]
    ruled_out: tuple[str, ...] = ()  # exercises whose defining movement was not seen (realtime.classify.plausibility)


@dataclass(frozen=True, slots=True)
class RepEvent:
    """One finished repetition, as written to the events log."""

    exercise: str
    index: int  # 1-based rep number for this exercise
    start_frame: int
    end_frame: int
    start_t: float
    end_t: float
    range_of_motion: float
    bottom_frame: int | None = None
    measures: dict[str, float] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    view: str = "unknown"
    skipped: list[str] = field(default_factory=list)  # checks the camera view (or missing joints) did not allow

    @property
    def duration_s(self) -> float:
        return self.end_t - self.start_t

    def to_json(self) -> dict:
        return {
            "type": "rep",
            "exercise": self.exercise,
            "index": self.index,
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "bottom_frame": self.bottom_frame,
            "start_t": round(self.start_t, 4),
            "end_t": round(self.end_t, 4),
            "duration_s": round(self.duration_s, 4),
            "range_of_motion": round(float(self.range_of_motion), 4),
            "view": self.view,
            "form": {
                "measures": {k: round(float(v), 3) for k, v in self.measures.items()},
                "faults": list(self.faults),
                "skipped": list(self.skipped),
            },
        }


@dataclass(frozen=True, slots=True)
class FrameResult:
    """Everything the analysis produced for one frame; what the sinks consume."""

    frame: Frame
    pose: PoseResult
    prediction: Prediction | None
    t: float = 0.0  # analysis clock, s: media time for files, time since the first frame for live sources
    rep_count: int = 0
    exercise: str | None = None  # exercise the rep counter is following
    new_rep: RepEvent | None = None
    last_rep: RepEvent | None = None
    cues: tuple[str, ...] = ()
    stage_ms: dict[str, float] = field(default_factory=dict)  # pose, classifier, reps, ...
    status: str = "ok"  # ok | no person | reconnecting


# Class names shared by the classifier, the rep counter and form analysis.
EXERCISES: tuple[str, ...] = (
    "squat", "deadlift", "bench_press", "pushup", "pullup", "situp",
    "jumping_jacks", "jump_rope", "clean_and_jerk", "snatch",
)
OTHER_LABEL = "other"  # idle / walking / not a gym exercise
