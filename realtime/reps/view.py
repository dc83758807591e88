"""Camera view of the lifter (front / side / back) from 2D keypoints, so form checks run only where valid.

Rule: shoulder width divided by the body scale (≈ torso length) is large when the shoulders face the camera
(front or back, ≈ 0.7-0.9) and small from the side (≈ 0-0.3). A frontal view is "front" when the person's left
shoulder is on the image right (mirror order) and the face does not say otherwise (nose and both eyes confident
= visible face, all three unconfident = hidden face), else "back". Between the two thresholds the previous
view is kept (hysteresis); a majority vote over the last frames removes flicker.
"""

from __future__ import annotations

import math
from collections import Counter, deque

import numpy as np

from realtime.reps.angles import L_SHO, NOSE, R_SHO, dist

VIEWS: tuple[str, ...] = ("front", "side", "back", "unknown")
_L_EYE, _R_EYE = 1, 2


def frame_view(
    keypoints: np.ndarray, scale: float, previous: str = "unknown", side_max: float = 0.35,
    frontal_min: float = 0.5, face_min_score: float = 0.5, min_score: float = 0.3,
) -> str:
    """View for one frame from (17, 3) keypoints (x, y, score) and the body scale in px."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if not (scale > 0) or kp[L_SHO, 2] < min_score or kp[R_SHO, 2] < min_score:
        # a shoulder missing usually means it is hidden behind the body: a side view
        return "side" if max(kp[L_SHO, 2], kp[R_SHO, 2]) >= min_score and scale > 0 else previous
    ratio = dist(kp[L_SHO, :2], kp[R_SHO, :2]) / scale
    if not math.isfinite(ratio):
        return previous
    if ratio < side_max:
        return "side"
    if ratio < frontal_min and previous in VIEWS[:3]:
        return previous
    # front/back: the person's left shoulder appears on the image right when facing the camera; a confident face
    # votes for front, a hidden one for back; ties follow the shoulder order
    order = 1 if kp[L_SHO, 0] > kp[R_SHO, 0] else -1
    face_score = min(kp[NOSE, 2], kp[_L_EYE, 2], kp[_R_EYE, 2])
    face = 1 if face_score >= face_min_score else (-1 if face_score < min_score else 0)
    return "front" if order + face > 0 or (order + face == 0 and order > 0) else "back"

class ViewDetector:
    """Per-frame view with hysteresis plus a majority vote over a short window."""

    def __init__(self, side_max: float = 0.35, frontal_min: float = 0.5, face_min_score: float = 0.5,
                 window_frames: int = 15, min_score: float = 0.3) -> None:
        self.params = {"side_max": side_max, "frontal_min": frontal_min, "face_min_score": face_min_score,
                       "min_score": min_score}
        self._votes: deque[str] = deque(maxlen=max(1, int(window_frames)))
        self._last = "unknown"

    def reset(self) -> None:
        self._votes.clear()
        self._last = "unknown"

    def update(self, keypoints: np.ndarray | None, scale: float) -> str:
        if keypoints is None or not math.isfinite(scale):
            return self.view
        self._last = frame_view(keypoints, scale, self._last, **self.params)
        self._votes.append(self._last)
        return self.view

    @property
    def view(self) -> str:
        if not self._votes:
            return "unknown"
        return Counter(self._votes).most_common(1)[0][0]


def majority_view(views: list[str] | tuple[str, ...]) -> str:
    """Most frequent known view in a rep (``unknown`` when none is known)."""
    known = [v for v in views if v != "unknown"]
    return Counter(known).most_common(1)[0][0] if known else "unknown"
