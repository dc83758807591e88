"""Kinematic plausibility of the classifier's labels: an exercise is only named once its defining movement is seen.

The TCN judges the shape of the last 5 s of movement, and some shapes are shared: a bodyweight squat with the arms
raised forward looks like the clean's front rack, a curl's hanging arms look like a deadlift's lockout. Each rule
below is a movement the exercise cannot be done without:

- clean & jerk, snatch: the hands go overhead (the jerk / the catch) or down to the knees (the bar on the floor);
- deadlift: the hands come down to the knees (the bar passes them on every rep);
- pull-up: the hands are above the head, and the body rises (the shoulders move up and down by a third of a torso
  length; in an overhead press it is the hands that move);
- jumping jacks: the hands go above the head.

If, over the last ``window`` frames (10 s: the live classifier feeds its 30 Hz time base, ``realtime.classify.ticks``;
twice the classifier's window, because a lifter may hold the bar in the front rack for several seconds between
the clean and the jerk), the joints a rule needs were seen for at least ``min_seen`` frames and the movement never
happened, the exercise is ruled out: its probability goes to its ``FALLBACK`` class where it has one (a clean & jerk
or snatch without the bar overhead or on the floor is the squat inside it), else it is set to zero and the rest
renormalised (so it mostly goes to ``other``). Where the joints were not seen long enough
nothing is ruled out (no evidence is not counter-evidence). Heights are in torso lengths (the window's median
shoulder-to-hip distance), so the rules do not depend on camera distance. Causal: frame t uses frames <= t only.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from realtime.classify.window import MIN_SCORE, WINDOW_LENGTH
from realtime.types import NUM_JOINTS

# exercise -> what it needs: every group must be met, a group by any one of its movements
RULES: dict[str, tuple[tuple[str, ...], ...]] = {
    "clean_and_jerk": (("overhead", "low"),),
    "snatch": (("overhead", "low"),),
    "deadlift": (("low",),),
    "pullup": (("overhead",), ("rises",)),
    "jumping_jacks": (("overhead",),),
}
MOVEMENTS: tuple[str, ...] = ("overhead", "low", "rises")
# Where a ruled-out class's probability goes (instead of being shared by all the others): a clean & jerk or a snatch
# whose bar never goes overhead or to the floor is the squat inside it (the front squat of the clean, the jerk's
# dip, the catch). What the network calls a clean without those movements is mostly a bodyweight squat with the
# arms raised forward, seen from the front: the hands at the shoulders look like a front rack.
FALLBACK: dict[str, str] = {"clean_and_jerk": "squat", "snatch": "squat"}
# A wrist half a torso length above the shoulders is overhead; arms raised forward to shoulder height (a front
# rack, a squat's counterbalance) stay near 0, arms locked out overhead are near +1.
OVERHEAD_TORSO = 0.5
# A wrist at most 0.15 torso lengths above the knee is "low"; hanging arms of a person standing upright end
# around mid-thigh, about 0.4 torso lengths above the knee.
LOW_TORSO = -0.15
EVIDENCE_FRAMES = 2 * WINDOW_LENGTH  # how far back a movement counts (see the module docstring)
# The shoulders' height range over the window, in torso lengths, that counts as the body rising (a pull-up moves
# them by about a torso length; standing still, pressing or curling moves them by a few hundredths).
RISE_TORSO = 0.3
MIN_SEEN = 30  # frames (1 s at 30 fps) in which a movement could have been seen before its absence counts

_SH, _HIP, _WRIST, _KNEE = (5, 6), (11, 12), (9, 10), (13, 14)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def frame_measures(kp: np.ndarray | None) -> tuple[float, float, float, float]:
    """(torso length px, highest wrist above the shoulders px, lowest wrist below the knees px, shoulder height
    (image y) px); NaN = not seen.

    Image y points down, so "above" is a smaller y. Plain Python on 17 rows: numpy's per-call cost would be most
    of the time here.
    """
    if kp is None:
        return math.nan, math.nan, math.nan, math.nan
    rows = kp.tolist()
    seen = [s >= MIN_SCORE and math.isfinite(x) and math.isfinite(y) for x, y, s in rows]

    def pick(joints: tuple[int, int]) -> list[list[float]]:
        return [rows[j] for j in joints if seen[j]]

    sh, hip, knee, wrists = pick(_SH), pick(_HIP), pick(_KNEE), [r[1] for r in pick(_WRIST)]
    torso = math.nan
    if sh and hip:
        torso = math.hypot(_mean([r[0] for r in sh]) - _mean([r[0] for r in hip]),
                           _mean([r[1] for r in sh]) - _mean([r[1] for r in hip]))
    sh_y, knee_y = _mean([r[1] for r in sh]), _mean([r[1] for r in knee])
    over = sh_y - min(wrists) if wrists and sh else math.nan
    low = max(wrists) - knee_y if wrists and knee else math.nan
    return torso, over, low, sh_y


class KinematicGate:
    """Per-stream rule check over the last ``window`` frames; ``update`` gives the classes ruled out now."""

    def __init__(self, classes: tuple[str, ...] | list[str], window: int = EVIDENCE_FRAMES,
                 min_seen: int = MIN_SEEN) -> None:
        self.classes = tuple(classes)
        self.min_seen = min_seen
        self._rules = [(i, RULES[c]) for i, c in enumerate(self.classes) if c in RULES]
        # ring of per-frame (torso, over, low, shoulder y) measures; NaN = not measured (or not filled yet)
        self._hist = np.full((window, 4), np.nan)
        self._next = 0
        self.ruled_out: tuple[str, ...] = ()

    def reset(self) -> None:
        self._hist[:] = np.nan
        self._next = 0
        self.ruled_out = ()

    def movements(self) -> dict[str, bool | None]:
        """For each movement: seen in the window (True), clearly absent (False) or not enough evidence (None)."""
        torso, over, low, shoulder_y = self._hist.T
        have = np.isfinite(torso) & (torso > 1.0)
        if not have.any():
            return dict.fromkeys(MOVEMENTS)
        scale = float(np.median(torso[have]))
        out: dict[str, bool | None] = {}
        for name, value, threshold in (("overhead", over, OVERHEAD_TORSO), ("low", low, LOW_TORSO)):
            measured = np.isfinite(value)
            if (measured & have).any() and np.any(value[measured] >= threshold * scale):
                out[name] = True
            else:
                out[name] = False if int((measured & have).sum()) >= self.min_seen else None
        measured = np.isfinite(shoulder_y) & have
        if measured.any() and np.ptp(shoulder_y[measured]) >= RISE_TORSO * scale:
            out["rises"] = True
        else:
            out["rises"] = False if int(measured.sum()) >= self.min_seen else None
        return out

    def update(self, keypoints: np.ndarray | None) -> np.ndarray:
        """Add one frame's (17, 3) pixel keypoints (None = nobody); returns a (C,) mask, 0 = ruled out."""
        if keypoints is not None and np.asarray(keypoints).shape != (NUM_JOINTS, 3):
            raise ValueError(f"keypoints must be (17, 3); got {np.asarray(keypoints).shape}")
        self._hist[self._next] = frame_measures(None if keypoints is None else np.asarray(keypoints))
        self._next = (self._next + 1) % len(self._hist)
        mask = np.ones(len(self.classes), np.float32)
        if self._rules:
            seen = self.movements()
            for i, needs in self._rules:
                if any(all(seen[m] is False for m in group) for group in needs):
                    mask[i] = 0.0
        self.ruled_out = tuple(c for c, m in zip(self.classes, mask, strict=True) if m == 0.0)
        return mask


@functools.cache
def _fallback_pairs(classes: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """(ruled-out class, fallback class) index pairs of ``FALLBACK`` among ``classes`` (looked up once per class
    list: ``apply_mask`` runs on every model step)."""
    return tuple((classes.index(src), classes.index(dst)) for src, dst in FALLBACK.items()
                 if src in classes and dst in classes)


def apply_mask(probs: np.ndarray, mask: np.ndarray, classes: tuple[str, ...] | list[str] | None = None
               ) -> np.ndarray:
    """Zero the ruled-out classes and renormalise (unchanged if everything would be ruled out).

    With ``classes``, a ruled-out class in ``FALLBACK`` first hands its probability to its fallback class (when that
    one is not ruled out itself); (C,) or (T, C) ``probs`` with a mask of the same shape.
    """
    gated = probs * mask
    if classes is not None:
        for i, j in _fallback_pairs(tuple(classes)):
            gated[..., j] += probs[..., i] * (1 - mask[..., i]) * mask[..., j]
    total = gated.sum(-1, keepdims=True)
    return np.where(total > 0, gated / np.where(total > 0, total, 1.0), probs).astype(probs.dtype)


def gate_sequence(classes: tuple[str, ...] | list[str], keypoints: np.ndarray,
                  window: int = EVIDENCE_FRAMES) -> np.ndarray:
    """(T, 17, 3) pixel keypoints (NaN rows = nobody) -> (T, C) masks, as a fresh ``KinematicGate`` gives them."""
    gate = KinematicGate(classes, window)
    rows = []
    for kp in np.asarray(keypoints, np.float32):
        rows.append(gate.update(None if np.isnan(kp).all() else kp))
    return np.stack(rows) if rows else np.ones((0, len(gate.classes)), np.float32)
