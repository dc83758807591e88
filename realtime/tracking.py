"""Person box for top-down pose: detect when lost, otherwise follow the lifter's keypoints."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class PersonDetector(Protocol):
    """Finds people in a frame."""

    def detect(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """BGR image -> list of (box xyxy float32 px, score)."""
        ...


def box_from_keypoints(keypoints: np.ndarray, min_score: float = 0.3, margin: float = 0.25) -> np.ndarray | None:
    """Box around the confident keypoints, grown by ``margin`` of its size on every side."""
    good = keypoints[:, 2] >= min_score
    if good.sum() < 4:
        return None
    xy = keypoints[good, :2]
    x1, y1 = xy.min(0)
    x2, y2 = xy.max(0)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    return np.array([x1 - margin * w, y1 - margin * h, x2 + margin * w, y2 + margin * h], np.float32)


class PersonTracker:
    """Chooses the crop box for each frame.

    Starts from the detector's pick (or the whole frame when there is no detector), then follows the box
    derived from the previous keypoints, smoothed; resets when the pose confidence collapses.
    """

    def __init__(
        self,
        detector: PersonDetector | None = None,
        min_mean_score: float = 0.3,
        smoothing: float = 0.5,
        margin: float = 0.25,
    ) -> None:
        self.detector = detector
        self.min_mean_score = min_mean_score
        self.smoothing = smoothing
        self.margin = margin
        self._box: np.ndarray | None = None

    def reset(self) -> None:
        self._box = None

    def next_box(self, image: np.ndarray) -> tuple[np.ndarray | None, bool]:
        """Box to crop for this frame and whether the detector ran; (None, True) = nobody found."""
        if self._box is not None:
            return self._clip(self._box, image.shape), False
        h, w = image.shape[:2]
        if self.detector is None:
            return np.array([0, 0, w, h], np.float32), False
        found = self.detector.detect(image)
        if not found:
            return None, True
        box = max(found, key=lambda item: (item[0][2] - item[0][0]) * (item[0][3] - item[0][1]) * item[1])[0]
        return self._clip(np.asarray(box, np.float32), image.shape), True

    def update(self, keypoints: np.ndarray | None) -> None:
        """Derive the next frame's box from this frame's keypoints (or reset when they are unreliable)."""
        if keypoints is None or float(keypoints[:, 2].mean()) < self.min_mean_score:
            self._box = None
            return
        box = box_from_keypoints(keypoints, margin=self.margin)
        if box is None:
            self._box = None
        elif self._box is None:
            self._box = box
        else:
            self._box = self.smoothing * self._box + (1 - self.smoothing) * box

    @staticmethod
    def _clip(box: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        h, w = shape[:2]
        return np.array([max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h)], np.float32)


def create_tracker(pick: str = "largest") -> PersonTracker:
    """The tracker used by top-down engines; ``pick`` chooses the lifter when several people are in view."""
    return PersonTracker(detector=None)
