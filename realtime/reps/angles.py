"""Joint angles and body-size-normalised signals from COCO-17 keypoints (image pixels, y pointing down).

Conventions (shared with ``form_config.toml``):

* ``joint_angle(a, b, c)`` is the inner angle at ``b`` in degrees: 180 = straight limb, 90 = right angle.
* ``tilt_from_vertical(top, bottom)`` is the angle of the ``bottom -> top`` segment from the image vertical:
  0 = upright, 90 = horizontal; it is unsigned.
* Heights are "how far above" in **body units**: pixels divided by the body scale (≈ one torso length,
  shoulder-midpoint to hip-midpoint, when the torso is not foreshortened; see :func:`body_scale`).
  For the on-screen cues one body unit is taken as ≈ 50 cm (an adult torso); that conversion is approximate.

Missing joints are NaN; every helper propagates NaN rather than raising.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from realtime.types import COCO17_NAMES

J: dict[str, int] = {name: i for i, name in enumerate(COCO17_NAMES)}
NOSE = J["nose"]
L_SHO, R_SHO = J["left_shoulder"], J["right_shoulder"]
L_ELB, R_ELB = J["left_elbow"], J["right_elbow"]
L_WRI, R_WRI = J["left_wrist"], J["right_wrist"]
L_HIP, R_HIP = J["left_hip"], J["right_hip"]
L_KNE, R_KNE = J["left_knee"], J["right_knee"]
L_ANK, R_ANK = J["left_ankle"], J["right_ankle"]

BODY_UNIT_CM = 50.0  # rough adult torso length, only used to phrase cues in centimetres

# Typical segment length as a fraction of torso length (anthropometric tables, adults); used to turn each visible
# segment into an estimate of the torso length so that a foreshortened torso (front-view push-up) does not shrink
# the scale.
_SEGMENT_TO_TORSO: tuple[tuple[int, int, float], ...] = (
    (L_SHO, L_ELB, 0.62), (R_SHO, R_ELB, 0.62),
    (L_HIP, L_KNE, 0.82), (R_HIP, R_KNE, 0.82),
    (L_KNE, L_ANK, 0.82), (R_KNE, R_ANK, 0.82),
)


def clean_keypoints(keypoints: np.ndarray | None, min_score: float) -> np.ndarray | None:
    """(17, 3) x, y, score -> (17, 2) float64 with NaN where the score is below ``min_score``."""
    if keypoints is None:
        return None
    kp = np.asarray(keypoints, dtype=np.float64)
    xy = kp[:, :2].copy()
    if kp.shape[1] >= 3:
        xy[~(kp[:, 2] >= min_score)] = np.nan
    xy[~np.isfinite(xy).all(axis=1)] = np.nan
    return xy


def joint_angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Inner angle at ``b`` (degrees, 180 = straight); NaN when a point is missing or degenerate."""
    v1, v2 = a - b, c - b
    n1, n2 = math.hypot(*v1), math.hypot(*v2)
    if not (n1 > 1e-6 and n2 > 1e-6):  # also False for NaN
        return math.nan
    cos = float(np.dot(v1, v2) / (n1 * n2))
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def tilt_from_vertical(top: np.ndarray, bottom: np.ndarray) -> float:
    """Angle of the segment ``bottom -> top`` from the image vertical, degrees (0 upright, 90 horizontal)."""
    dx, dy = float(top[0] - bottom[0]), float(bottom[1] - top[1])
    if not (math.hypot(dx, dy) > 1e-6):
        return math.nan
    return math.degrees(math.atan2(abs(dx), dy))


def dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(math.hypot(*(a - b)))


def midpoint(xy: np.ndarray, i: int, j: int) -> np.ndarray:
    """Midpoint of joints i and j; the one that is present when the other is missing (side views)."""
    a, b = xy[i], xy[j]
    ok_a = math.isfinite(a[0]) and math.isfinite(a[1])  # per-joint math.isfinite: cheaper than numpy on 2 values
    ok_b = math.isfinite(b[0]) and math.isfinite(b[1])
    if ok_a and ok_b:
        return (a + b) / 2.0
    if ok_a:
        return a.copy()
    if ok_b:
        return b.copy()
    return np.array([np.nan, np.nan])


def side_mean(values: tuple[float, float]) -> float:
    """Mean of the left/right values that are present (NaN when none)."""
    ok = [v for v in values if math.isfinite(v)]
    return sum(ok) / len(ok) if ok else math.nan


def limb_angles(xy: np.ndarray, a: tuple[int, int], b: tuple[int, int], c: tuple[int, int]) -> tuple[float, float]:
    """(left, right) inner angle at joint b for the chains a-b-c given as (left index, right index) pairs."""
    return (joint_angle(xy[a[0]], xy[b[0]], xy[c[0]]), joint_angle(xy[a[1]], xy[b[1]], xy[c[1]]))


def knee_angles(xy: np.ndarray) -> tuple[float, float]:
    return limb_angles(xy, (L_HIP, R_HIP), (L_KNE, R_KNE), (L_ANK, R_ANK))


def hip_angles(xy: np.ndarray) -> tuple[float, float]:
    """Shoulder-hip-knee angle per side (180 = hips fully extended)."""
    return limb_angles(xy, (L_SHO, R_SHO), (L_HIP, R_HIP), (L_KNE, R_KNE))


def elbow_angles(xy: np.ndarray) -> tuple[float, float]:
    return limb_angles(xy, (L_SHO, R_SHO), (L_ELB, R_ELB), (L_WRI, R_WRI))


def body_line_angles(xy: np.ndarray) -> tuple[float, float]:
    """Shoulder-hip-ankle angle per side (180 = straight plank)."""
    return limb_angles(xy, (L_SHO, R_SHO), (L_HIP, R_HIP), (L_ANK, R_ANK))


def torso_length(xy: np.ndarray) -> float:
    return dist(midpoint(xy, L_SHO, R_SHO), midpoint(xy, L_HIP, R_HIP))


def body_scale(xy: np.ndarray) -> float:
    """Per-frame estimate of the torso length in px that survives foreshortening of any one segment.

    Each visible segment (torso, upper arms, thighs, shins) gives an estimate via its typical proportion; the
    second largest estimate is used (the largest may be a keypoint error, the small ones are foreshortened).
    """
    est = [torso_length(xy)]
    for i, j, frac in _SEGMENT_TO_TORSO:
        est.append(dist(xy[i], xy[j]) / frac)
    est = sorted(e for e in est if math.isfinite(e) and e > 1.0)
    if not est:
        return math.nan
    return est[-2] if len(est) >= 3 else est[-1]


class ScaleTracker:
    """Robust running body scale: a high percentile of the per-frame estimates over a time window.

    Foreshortening only ever shortens segments, so a high percentile over a few seconds follows the true size;
    it still adapts when the lifter walks towards or away from the camera.
    """

    def __init__(self, window_s: float = 3.0, percentile: float = 80.0) -> None:
        self.window_s = window_s
        self.percentile = percentile
        self._hist: deque[tuple[float, float]] = deque(maxlen=2048)

    def reset(self) -> None:
        self._hist.clear()

    def update(self, t: float, estimate: float) -> float:
        if math.isfinite(estimate):
            self._hist.append((t, estimate))
        while self._hist and t - self._hist[0][0] > self.window_s:
            self._hist.popleft()
        return self.value

    @property
    def value(self) -> float:
        if not self._hist:
            return math.nan
        return float(np.percentile([e for _, e in self._hist], self.percentile))


class GapFiller:
    """Causal gap handling for keypoints: a missing joint keeps its last position for at most ``max_gap_s``.

    Holding the last value is the causal (zero look-ahead) form of interpolating a short gap; longer gaps
    stay missing so that a lifter who leaves the frame reads as "no person", not as a frozen pose.
    """

    def __init__(self, max_gap_s: float = 0.3, hold_s: dict[int, float] | None = None) -> None:
        self.max_gap_s = max_gap_s
        self.hold_s = hold_s or {}  # per-joint override (ankles barely move in most lifts)
        self._last: np.ndarray | None = None
        self._last_t = np.full(17, -math.inf)

    def reset(self) -> None:
        self._last = None
        self._last_t[:] = -math.inf

    def update(self, t: float, xy: np.ndarray | None) -> np.ndarray | None:
        if xy is None:
            return None  # nobody in view: do not invent a person
        out = xy.copy()
        present = np.isfinite(xy).all(axis=1)
        if self._last is None:
            self._last = np.full((17, 2), np.nan)
        self._last[present] = xy[present]
        self._last_t[present] = t
        for j in np.flatnonzero(~present):
            if t - self._last_t[j] <= self.hold_s.get(int(j), self.max_gap_s):
                out[j] = self._last[j]
        return out


# ------------------------------------------------------------------ rep signals (physical "height": larger = higher)


def _hip_height(xy: np.ndarray, scale: float) -> float:
    return (midpoint(xy, L_ANK, R_ANK)[1] - midpoint(xy, L_HIP, R_HIP)[1]) / scale


def _shoulder_height(xy: np.ndarray, scale: float) -> float:
    return (midpoint(xy, L_ANK, R_ANK)[1] - midpoint(xy, L_SHO, R_SHO)[1]) / scale


def _elbow_angle(xy: np.ndarray, scale: float) -> float:
    return side_mean(elbow_angles(xy))


def _shoulders_above_wrists(xy: np.ndarray, scale: float) -> float:
    return (midpoint(xy, L_WRI, R_WRI)[1] - midpoint(xy, L_SHO, R_SHO)[1]) / scale


def _torso_upright(xy: np.ndarray, scale: float) -> float:
    return 90.0 - tilt_from_vertical(midpoint(xy, L_SHO, R_SHO), midpoint(xy, L_HIP, R_HIP))


def _jack_spread(xy: np.ndarray, scale: float) -> float:
    arms = side_mean((float(xy[L_SHO, 1] - xy[L_WRI, 1]), float(xy[R_SHO, 1] - xy[R_WRI, 1])))
    feet = abs(float(xy[L_ANK, 0] - xy[R_ANK, 0]))
    return (arms + feet) / scale


def _ankle_height(xy: np.ndarray, scale: float) -> float:
    return -midpoint(xy, L_ANK, R_ANK)[1] / scale


def _wrist_height(xy: np.ndarray, scale: float) -> float:
    return (midpoint(xy, L_ANK, R_ANK)[1] - midpoint(xy, L_WRI, R_WRI)[1]) / scale


# name -> f(xy (17, 2) px with NaN, body scale px) -> float (NaN when the joints are missing)
SIGNAL_FUNCS = {
    "hip_height": _hip_height,
    "shoulder_height": _shoulder_height,
    "elbow_angle": _elbow_angle,
    "shoulders_above_wrists": _shoulders_above_wrists,
    "torso_upright": _torso_upright,
    "jack_spread": _jack_spread,
    "ankle_height": _ankle_height,
    "wrist_height": _wrist_height,
}


def signal_value(name: str, xy: np.ndarray, scale: float) -> float:
    """Value of the rep signal ``name`` (units: bu for heights, degrees for angles); NaN when not measurable."""
    if not (scale > 0):
        return math.nan
    v = float(SIGNAL_FUNCS[name](xy, scale))
    return v if math.isfinite(v) else math.nan


def gate_ok(gate: str, xy: np.ndarray, scale: float) -> bool:
    """Posture a rep may start in: "horizontal" (torso not upright, or foreshortened towards the camera),
    "hands_overhead" (wrists above shoulders), "none"."""
    if gate == "none":
        return True
    sho, hip = midpoint(xy, L_SHO, R_SHO), midpoint(xy, L_HIP, R_HIP)
    if gate == "horizontal":
        lean = tilt_from_vertical(sho, hip)
        if not math.isfinite(lean):
            return False
        return lean > 45.0 or dist(sho, hip) < 0.6 * scale
    if gate == "hands_overhead":
        wri = midpoint(xy, L_WRI, R_WRI)
        return bool(wri[1] < sho[1])  # False when missing (NaN compares False)
    raise ValueError(f"unknown gate {gate!r}")
