"""Causal keypoint normalisation and the bounded window of recent frames the classifier looks at.

The classifier never sees pixels: each COCO-17 frame is centred on the hip midpoint and divided by a running
estimate of the person's torso length, so the same movement gives the same numbers whatever the camera
distance or resolution. Everything here is *causal* (frame t uses frames <= t only), so running it on a whole
sequence at once and one frame at a time gives identical results; ``Normaliser`` carries the state between calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from realtime.types import NUM_JOINTS

WINDOW_LENGTH = 150  # frames the classifier is trained on / looks back (5 s at 30 fps)
MIN_SCORE = 0.3  # joints below this confidence count as missing
SCALE_DECAY = 0.99  # running size estimate forgets 1 %/frame (half-life ~2.3 s at 30 fps) ...
SCALE_GROWTH = 1.25  # ... and may grow at most 25 %/frame, so one wild joint cannot blow it up
MOTION_ALPHA = 1 / 15  # EMA weight for the body-centre reference (time constant ~0.5 s at 30 fps)
CLIP = 5.0  # normalised coordinates are clipped to +-CLIP torso lengths
MIN_SCALE_PX = 1.0

_L_SH, _R_SH, _L_HIP, _R_HIP = 5, 6, 11, 12
# Limb segments (a, b) and the torso/segment length ratio of an average adult (Winter's anthropometric
# tables: torso ~0.30 H, thigh/shin ~0.25 H, upper arm ~0.19 H); used when the torso itself is not seen
# or is foreshortened (bending towards the camera).
_LIMBS: tuple[tuple[int, int, float], ...] = (
    (11, 13, 1.2), (12, 14, 1.2), (13, 15, 1.2), (14, 16, 1.2), (5, 7, 1.6), (6, 8, 1.6),
)


def _pair_mid(xy: np.ndarray, ok: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Midpoint of joints a, b per frame (one of them when only one is seen) and whether any was seen."""
    both = ok[:, a] & ok[:, b]
    mid = np.where(both[:, None], (xy[:, a] + xy[:, b]) / 2, np.where(ok[:, a, None], xy[:, a], xy[:, b]))
    return mid, ok[:, a] | ok[:, b]


def _row_nanmedian(a: np.ndarray) -> np.ndarray:
    """Median of the finite values of each row (NaN where none); much faster than np.nanmedian on small rows."""
    s = np.sort(a, axis=1)  # NaN sorts last
    n = np.isfinite(a).sum(1)
    lo = np.take_along_axis(s, np.maximum((n - 1) // 2, 0)[:, None], 1)[:, 0]
    hi = np.take_along_axis(s, np.maximum(n // 2, 0)[:, None], 1)[:, 0]
    return np.where(n > 0, (lo + hi) / 2, np.nan)


def _ffill(values: np.ndarray, have: np.ndarray, init: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Carry the last available row forward (starting from ``init``); returns values and availability."""
    t = len(values)
    idx = np.where(have, np.arange(t), -1)
    idx = np.maximum.accumulate(idx) if t else idx
    out = np.empty_like(values)
    seen = idx >= 0
    out[seen] = values[idx[seen]]
    if init is not None:
        out[~seen] = init
        return out, np.ones(t, bool)
    out[~seen] = 0
    return out, seen


@dataclass
class Normaliser:
    """Causal, stateful normalisation of (T, 17, 3) pixel keypoints to hip-centred, torso-scaled units.

    Per frame: centre = hip midpoint (else shoulder midpoint + last seen shoulder->hip vector, else the last
    centre, else the mean of the seen joints); size = max(torso length, median of limb-based estimates), fed
    through a running "decaying maximum" so bending or foreshortening does not shrink it. Joints with a score
    below ``min_score`` become (0, 0, 0); seen joints get score 1.0, because raw confidences mean different
    things for different pose engines (BlazePose visibility, ViTPose heatmap peak, hand labels).
    ``transform`` also gives the body centre's motion (offset from its ~0.5 s moving average, torso units).
    ``drop_joints`` are always zeroed (the shipped model ignores eyes/ears, which Penn Action lacks).
    """

    min_score: float = MIN_SCORE
    decay: float = SCALE_DECAY
    growth: float = SCALE_GROWTH
    drop_joints: tuple[int, ...] = ()
    motion_alpha: float = MOTION_ALPHA
    centre: np.ndarray | None = None  # last centre, (2,)
    torso_vec: np.ndarray | None = None  # last shoulder-mid -> hip-mid vector, (2,)
    scale: float | None = None
    ref: np.ndarray | None = None  # moving average of the centre, (2,)
    motion: np.ndarray | None = None  # (T, 2) motion of the last call

    def reset(self) -> None:
        self.centre = self.torso_vec = self.scale = self.ref = self.motion = None

    def __call__(self, keypoints: np.ndarray) -> np.ndarray:
        """Normalise the next (T, 17, 3) frames (T may be 1); updates the state."""
        kp = np.asarray(keypoints, dtype=np.float32)
        if kp.ndim != 3 or kp.shape[1:] != (NUM_JOINTS, 3):
            raise ValueError(f"keypoints must be (T, 17, 3), got {kp.shape}")
        t = len(kp)
        xy = kp[..., :2].astype(np.float64)
        ok = np.isfinite(kp).all(-1) & (kp[..., 2] >= self.min_score)
        if self.drop_joints:
            ok[:, list(self.drop_joints)] = False
        xy = np.where(ok[..., None], xy, 0.0)

        sh, has_sh = _pair_mid(xy, ok, _L_SH, _R_SH)
        hip, has_hip = _pair_mid(xy, ok, _L_HIP, _R_HIP)
        both = has_sh & has_hip
        tv, has_tv = _ffill(hip - sh, both, self.torso_vec)
        # Direct centre: hips, else shoulders shifted by the last seen torso vector.
        direct = has_hip | (has_sh & has_tv)
        c_direct = np.where(has_hip[:, None], hip, sh + tv)
        n_ok = ok.sum(1)
        mean_ok = xy.sum(1) / np.maximum(n_ok, 1)[:, None]
        if self.centre is None:
            # Before any centre exists the mean of the seen joints starts the chain.
            first = np.flatnonzero(direct | (n_ok > 0))
            if len(first) and not direct[first[0]]:
                c_direct[first[0]] = mean_ok[first[0]]
                direct[first[0]] = True
        centre, has_c = _ffill(c_direct, direct, self.centre)

        # Size measurements.
        torso = np.where(both, np.linalg.norm(hip - sh, axis=1), np.nan)
        limbs = np.full((t, len(_LIMBS)), np.nan)
        for i, (a, b, ratio) in enumerate(_LIMBS):
            seen = ok[:, a] & ok[:, b]
            limbs[seen, i] = ratio * np.linalg.norm(xy[seen, a] - xy[seen, b], axis=1)
        measure = np.fmax(torso, _row_nanmedian(limbs))  # fmax ignores NaN
        scale = np.empty(t)
        s = self.scale
        for i, m in enumerate(measure.tolist()):
            if m == m:  # not NaN
                m = max(m, MIN_SCALE_PX)
                s = m if s is None else min(max(m, s * self.decay), s * self.growth)
            scale[i] = np.nan if s is None else s
        self.scale = s
        if t:
            if has_c[-1]:
                self.centre = centre[-1].copy()
            if has_tv[-1]:
                self.torso_vec = tv[-1].copy()

        good = has_c & np.isfinite(scale)
        out = np.zeros((t, NUM_JOINTS, 3), np.float32)
        sc = np.where(good, scale, 1.0)[:, None, None]
        norm = np.clip((xy - centre[:, None, :]) / sc, -CLIP, CLIP)
        keep = ok & good[:, None]
        out[..., :2] = np.where(keep[..., None], norm, 0.0)
        out[..., 2] = keep

        # Whole-body motion that hip-centring removes (hopping, the body rising in a pull-up, hips sinking in
        # a squat): the centre's offset from its own exponential moving average, in torso lengths.
        motion = np.zeros((t, 2), np.float32)
        ref = self.ref
        a = self.motion_alpha
        for i in np.flatnonzero(good).tolist():
            c = centre[i]
            if ref is None:
                ref = c.copy()
            motion[i] = np.clip((c - ref) / scale[i], -CLIP, CLIP)
            ref = ref + a * (c - ref)
        self.ref = ref
        self.motion = motion
        return out

    def transform(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like calling the normaliser, but also returns the (T, 2) whole-body motion (centre minus its EMA)."""
        out = self(keypoints)
        return out, self.motion


def normalise(keypoints: np.ndarray, min_score: float = MIN_SCORE, drop_joints: tuple[int, ...] = ()) -> np.ndarray:
    """(T, 17, 3) pixel keypoints -> (T, 17, 3) hip-centred, torso-scaled keypoints (fresh causal state)."""
    return Normaliser(min_score=min_score, drop_joints=tuple(drop_joints))(keypoints)


class KeypointWindow:
    """The last ``maxlen`` (17, 3) frames (or rows of ``shape``) in a preallocated ring buffer (bounded memory)."""

    def __init__(self, maxlen: int = WINDOW_LENGTH, shape: tuple[int, ...] = (NUM_JOINTS, 3)) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self.maxlen = maxlen
        self._buf = np.zeros((maxlen, *shape), np.float32)
        self._n = 0  # frames pushed in total

    def push(self, keypoints: np.ndarray | None) -> None:
        """Append one frame; None (nobody in view) is stored as an all-zero (score 0) frame."""
        self._buf[self._n % self.maxlen] = 0.0 if keypoints is None else keypoints
        self._n += 1

    def array(self) -> np.ndarray:
        """The buffered frames, oldest first, (len, 17, 3) copy."""  # (len, *shape) in general
        if self._n <= self.maxlen:
            return self._buf[: self._n].copy()
        start = self._n % self.maxlen
        return np.concatenate([self._buf[start:], self._buf[:start]])

    def clear(self) -> None:
        self._n = 0

    @property
    def full(self) -> bool:
        return self._n >= self.maxlen

    @property
    def total(self) -> int:
        """Frames pushed since the last clear (may exceed maxlen)."""
        return self._n

    def __len__(self) -> int:
        return min(self._n, self.maxlen)
