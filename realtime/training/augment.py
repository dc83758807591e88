"""Training-time augmentation of (T, 17, 3) pixel keypoint sequences, imitating what a live pose engine gives.

All functions take and return (T, 17, 3) float32 arrays (x, y pixels, score; score 0 = missing joint) and a
``numpy.random.Generator``; none modifies its input. ``Augmenter`` chains them with the probabilities used
for the shipped model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from realtime.types import COCO17_FLIP_PAIRS, NUM_JOINTS

_FLIP = np.arange(NUM_JOINTS)
for _a, _b in COCO17_FLIP_PAIRS:
    _FLIP[_a], _FLIP[_b] = _b, _a


def _valid(kp: np.ndarray) -> np.ndarray:
    return kp[..., 2] > 0


def body_size(kp: np.ndarray) -> float:
    """Median torso length in pixels (shoulder-mid to hip-mid), else a third of the median body height."""
    ok = _valid(kp)
    both = ok[:, [5, 6, 11, 12]].all(1)
    if both.any():
        sh = kp[both][:, [5, 6], :2].mean(1)
        hp = kp[both][:, [11, 12], :2].mean(1)
        return float(max(np.median(np.linalg.norm(sh - hp, axis=1)), 1.0))
    y = kp[..., 1]
    rows = ok.sum(1) >= 2
    if not rows.any():
        return 50.0
    heights = np.where(ok, y, -np.inf).max(1) - np.where(ok, y, np.inf).min(1)
    return float(max(np.median(heights[rows]) / 3, 1.0))


def mirror(kp: np.ndarray) -> np.ndarray:
    """Horizontal flip about the sequence's mean x, with left/right joints swapped."""
    out = kp[:, _FLIP].copy()
    ok = _valid(out)
    cx = out[..., 0][ok].mean() if ok.any() else 0.0
    out[..., 0] = np.where(ok, 2 * cx - out[..., 0], 0)
    return out


def affine(kp: np.ndarray, rng: np.random.Generator, scale: tuple[float, float] = (0.6, 1.5),
           rotate_deg: float = 12.0, aspect: float = 0.1, shift_frac: float = 0.5,
           size: float | None = None) -> np.ndarray:
    """Random scale, in-plane rotation, aspect change and translation (one transform for the whole sequence)."""
    out = kp.copy()
    ok = _valid(out)
    if not ok.any():
        return out
    c = out[..., :2][ok].mean(0)
    s = np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1])))
    a = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg))
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * s
    r = r @ np.diag([1 + rng.uniform(-aspect, aspect), 1.0])
    shift = rng.uniform(-shift_frac, shift_frac, 2) * (size or body_size(kp))
    xy = (out[..., :2] - c) @ r.T + c + shift
    out[..., :2] = np.where(ok[..., None], xy, 0)
    return out.astype(np.float32)


def time_warp(kp: np.ndarray, factor: float) -> np.ndarray:
    """Resample in time so the motion runs ``factor`` times faster (new length ~ T / factor).

    Positions are interpolated linearly where both neighbours are seen; otherwise the nearer frame is used.
    """
    t = len(kp)
    n = max(1, int(round(t / factor)))
    if n == t or t < 2:
        return kp.copy()
    src = np.linspace(0, t - 1, n)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, t - 1)
    w = (src - i0)[:, None, None]
    a, b = kp[i0], kp[i1]
    both = (_valid(a) & _valid(b))[..., None]
    near = np.where(w < 0.5, a, b)
    out = np.where(both, a * (1 - w) + b * w, near)
    return out.astype(np.float32)


def jitter(kp: np.ndarray, rng: np.random.Generator, sigma_frac: float, drift_frac: float = 0.0,
           size: float | None = None) -> np.ndarray:
    """Per-joint Gaussian noise (sigma = sigma_frac x torso) plus a slow random drift per joint."""
    out = kp.copy()
    size = size or body_size(kp)
    noise = rng.normal(0, sigma_frac * size, (len(kp), NUM_JOINTS, 2))
    if drift_frac > 0 and len(kp) > 1:
        steps = rng.normal(0, drift_frac * size / 4, (len(kp), NUM_JOINTS, 2))
        drift = np.cumsum(steps, 0)
        drift -= drift.mean(0)
        noise += np.clip(drift, -2 * drift_frac * size, 2 * drift_frac * size)
    ok = _valid(out)[..., None]
    out[..., :2] = np.where(ok, out[..., :2] + noise, 0)
    return out.astype(np.float32)


def drop_joints(kp: np.ndarray, rng: np.random.Generator, p: float, burst_p: float = 0.0,
                max_burst: int = 15) -> np.ndarray:
    """Lose single joints at random (rate p) and, with rate burst_p per joint, for runs of frames."""
    out = kp.copy()
    t = len(kp)
    lost = rng.random((t, NUM_JOINTS)) < p
    if burst_p > 0:
        for j in np.flatnonzero(rng.random(NUM_JOINTS) < burst_p * max(1, t / 30)):
            start = rng.integers(0, t)
            lost[start:start + rng.integers(1, max_burst + 1), j] = True
    out[lost] = 0
    return out


def drop_hidden(kp: np.ndarray, threshold: float = 0.6) -> np.ndarray:
    """Lose the joints a labeller marked hidden / an engine was unsure of (score below threshold)."""
    out = kp.copy()
    out[(out[..., 2] > 0) & (out[..., 2] < threshold)] = 0
    return out


def drop_frames(kp: np.ndarray, rng: np.random.Generator, p: float, max_run: int = 6) -> np.ndarray:
    """Whole frames without a person (detector misses): runs of 1..max_run frames starting at rate p."""
    out = kp.copy()
    for start in np.flatnonzero(rng.random(len(kp)) < p):
        out[start:start + rng.integers(1, max_run + 1)] = 0
    return out


# Body parts a camera frame or an occluder often hides as a whole.
PARTS: dict[str, tuple[int, ...]] = {
    "arms": (7, 8, 9, 10), "legs": (13, 14, 15, 16), "lower_legs": (15, 16), "left": (5, 7, 9, 11, 13, 15),
    "right": (6, 8, 10, 12, 14, 16), "head": (0, 1, 2, 3, 4),
}


def drop_part(kp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hide one body part (arms, legs, one side, ...) for the whole sequence or a long stretch of it, so the
    model cannot depend on any single part (legs cut off by the frame, arms behind the body, side views)."""
    out = kp.copy()
    joints = list(PARTS[str(rng.choice(list(PARTS)))])
    t = len(kp)
    start, stop = (0, t) if rng.random() < 0.5 else sorted(rng.integers(0, t + 1, 2))
    out[start:stop, joints] = 0
    return out


def rescore(kp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random confidence scale/noise on seen joints (scores differ between pose engines)."""
    out = kp.copy()
    ok = _valid(out)
    s = out[..., 2] * rng.uniform(0.6, 1.1) + rng.normal(0, 0.1, ok.shape)
    out[..., 2] = np.where(ok, np.clip(s, 0.01, 1.0), 0)
    out[out[..., 2] <= 0] = 0
    return out


@dataclass
class Augmenter:
    """The augmentation chain used for training (probabilities / ranges are fields)."""

    p_mirror: float = 0.5
    speed: tuple[float, float] = (0.7, 1.4)
    p_affine: float = 0.9
    p_drop_hidden: float = 0.5
    noise: tuple[float, float] = (0.0, 0.04)  # sigma range as a fraction of the torso length
    drift: float = 0.05
    p_joint: tuple[float, float] = (0.0, 0.06)
    burst_p: float = 0.03
    p_frame: tuple[float, float] = (0.0, 0.02)
    p_rescore: float = 0.5
    p_part: float = 0.15

    def __call__(self, kp: np.ndarray, rng: np.random.Generator, base_speed: float = 1.0) -> np.ndarray:
        """Augment one sequence; ``base_speed`` first brings it to the model's frame rate (fps / 30)."""
        out = np.asarray(kp, np.float32)
        if rng.random() < self.p_mirror:
            out = mirror(out)
        factor = base_speed * np.exp(rng.uniform(np.log(self.speed[0]), np.log(self.speed[1])))
        out = time_warp(out, factor)
        size = body_size(out)
        if rng.random() < self.p_affine:
            out = affine(out, rng, size=size)
            size = body_size(out)
        if rng.random() < self.p_drop_hidden:
            out = drop_hidden(out)
        out = jitter(out, rng, rng.uniform(*self.noise), self.drift * rng.random(), size=size)
        out = drop_joints(out, rng, rng.uniform(*self.p_joint), self.burst_p)
        if rng.random() < self.p_part:
            out = drop_part(out, rng)
        out = drop_frames(out, rng, rng.uniform(*self.p_frame))
        if rng.random() < self.p_rescore:
            out = rescore(out, rng)
        return out


# --- real-body edits: hold a pose, re-pose the arms ----------------------------------------------------------

def hold(frame: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Repeat one (17, 3) frame ``length`` times with jitter and a slow sway: a person standing / holding still."""
    seq = np.repeat(frame[None].astype(np.float32), length, 0)
    size = body_size(seq[:1])
    t = np.arange(length)
    sway = 0.04 * size * np.sin(2 * np.pi * t / rng.uniform(45, 150) + rng.uniform(0, 6))
    ok = _valid(seq)
    seq[..., 0] = np.where(ok, seq[..., 0] + sway[:, None], 0)
    return jitter(seq, rng, rng.uniform(0.005, 0.03), 0.03, size=size)


def _body_frame(kp: np.ndarray) -> dict | None:
    """Per-frame body axes from shoulders/hips: up (unit), torso length, half-shoulder vectors, forward vector
    (the facing direction projected into the image; short in front views); None if the torso is not seen."""
    ok = _valid(kp)
    need = ok[:, [5, 6, 11, 12]].all(1)
    if need.mean() < 0.8:
        return None
    sh = kp[:, [5, 6], :2].astype(np.float64)
    mid = sh.mean(1)
    hip = kp[:, [11, 12], :2].mean(1)
    up = mid - hip
    length = np.linalg.norm(up, axis=1, keepdims=True)
    length[length < 1] = 1
    up = up / length
    side = np.stack([-up[:, 1], up[:, 0]], 1)  # image-plane perpendicular to the torso
    width = np.median(np.linalg.norm(sh[need, 0] - sh[need, 1], axis=1) / length[need, 0])
    sin_yaw = np.sqrt(np.clip(1 - (width / 0.8) ** 2, 0, 1))  # shoulder width ~0.8 torso seen from the front
    knees = kp[:, [13, 14], :2].mean(1) - hip
    knee_ok = ok[:, 13] & ok[:, 14]
    facing = np.sign(np.sum((knees * side)[knee_ok])) if knee_ok.any() else 1.0
    return {"up": up, "len": length, "half": sh - mid[:, None], "fwd": side * (facing or 1.0) * sin_yaw,
            "sh": sh, "ok": need}


def _place_arms(kp: np.ndarray, bf: dict, elbow: np.ndarray, wrist: np.ndarray) -> np.ndarray:
    """Write elbows/wrists given per-side offsets in (forward, up, outward) torso units, shape (T, 2, 3)."""
    out = kp.copy()
    for side, (el, wr) in enumerate(((7, 9), (8, 10))):
        half = bf["half"][:, side]
        out_unit = half / np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-6)
        # outward offsets (torso units) shrink with the seen shoulder width (foreshortened in side views)
        out_len = np.linalg.norm(half, axis=1, keepdims=True) / 0.4
        for j, off in ((el, elbow[:, side]), (wr, wrist[:, side])):
            pos = (bf["sh"][:, side] + bf["len"] * (off[:, :1] * bf["fwd"] + off[:, 1:2] * bf["up"])
                   + off[:, 2:3] * out_len * out_unit)
            out[:, j, :2] = pos
            out[:, j, 2] = np.where(bf["ok"], np.minimum(kp[:, 5 + side, 2], 1.0), 0)
    out[~bf["ok"][:, None].repeat(17, 1) & (np.arange(17) >= 7) & (np.arange(17) <= 10)] = 0
    return out


def _hip_depth(kp: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Per-frame squat depth in [0, 1] (0 = the highest the hips get in the clip, 1 = the lowest) and the index
    of the highest-hip (standing) frame; None without enough frames where both hips are seen."""
    ok = _valid(kp)[:, [11, 12]].all(1)
    if ok.sum() < 2:
        return None
    hy = kp[:, [11, 12], 1].mean(1)
    top, low = hy[ok].min(), hy[ok].max()
    depth = np.where(ok, (hy - top) / max(low - top, 1e-6), 0.0)
    return np.clip(depth, 0, 1), int(np.flatnonzero(ok)[np.argmin(hy[ok])])


def squat_depth(kp: np.ndarray, rng: np.random.Generator, depth: tuple[float, float] = (0.3, 0.8)) -> np.ndarray:
    """A shallower squat: every joint moves only a fraction (``depth``) of the way from the clip's standing frame
    (highest hips) to where it is in each frame.

    Penn Action's and UI-PRMD's squats are deep; quarter and half squats, seen from the front, are otherwise
    unknown to the model (the shipped model called 69 of 70 front-view UI-PRMD test squats scaled to 35 % depth
    with the arms forward ``other``: the shallow knee bend with the hands at the shoulders looks like a jerk dip).
    Apply to clean keypoints, before ``Augmenter``.
    """
    found = _hip_depth(kp)
    if found is None:
        return np.array(kp, np.float32, copy=True)
    ref = kp[found[1]]
    out = np.array(kp, np.float32, copy=True)
    both = _valid(out) & _valid(ref[None])
    a = rng.uniform(*depth)
    moved = ref[None, :, :2] + a * (out[..., :2] - ref[None, :, :2])
    out[..., :2] = np.where(both[..., None], moved, out[..., :2])
    return out


def squat_arms(kp: np.ndarray, rng: np.random.Generator, counterbalance: bool = False) -> np.ndarray:
    """Re-pose the arms of a squat (legs untouched): hanging, forward, goblet, on the hips, crossed or overhead, and
    with ``counterbalance`` also hanging when standing and raised forward as the hips go down (the common
    bodyweight squat).

    Penn Action squats are mostly barbell back squats; people at home squat with their arms forward or on the
    hips, and the class must be carried by the legs and hips, not by where the hands are.
    """
    bf = _body_frame(kp)
    if bf is None:
        return kp.copy()
    t = len(kp)
    poses = {  # (elbow, wrist) offsets in (forward, up, outward) torso units
        "sides": ((0.0, -0.48, 0.1), (0.05, -0.93, 0.1)),
        "forward": ((0.48, 0.0, 0.0), (0.93, 0.0, -0.1)),
        "goblet": ((0.25, -0.45, 0.05), (0.35, -0.3, -0.3)),
        "hips": ((-0.1, -0.45, 0.25), (0.0, -0.95, -0.1)),
        "crossed": ((0.25, -0.25, -0.05), (0.2, -0.15, -0.55)),
        "overhead": ((0.0, 0.45, 0.1), (0.0, 0.9, 0.15)),
    }
    choice = str(rng.choice([*poses, "counterbalance"] if counterbalance else list(poses)))
    noise = rng.normal(0, 0.05, (2, 2, 3))
    if choice == "counterbalance":
        found = _hip_depth(kp)
        d = (found[0] if found is not None else np.zeros(t))[:, None, None]
        (e0, w0), (e1, w1) = poses["sides"], poses["forward"]
        e = np.array(e0) + d * (np.array(e1) - np.array(e0)) + noise[0]
        w = np.array(w0) + d * (np.array(w1) - np.array(w0)) + noise[1]
        return _place_arms(kp, bf, np.broadcast_to(e, (t, 2, 3)), np.broadcast_to(w, (t, 2, 3)))
    elbow, wrist = poses[choice]
    e = np.broadcast_to(np.array(elbow) + noise[0], (t, 2, 3))
    w = np.broadcast_to(np.array(wrist) + noise[1], (t, 2, 3))
    return _place_arms(kp, bf, e, w)


def animate_arms(frame: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray | None:
    """A real standing pose held still while the arms do a curl, front/lateral raise or overhead press
    (gym moves that are not our classes, i.e. ``other``); None if the frame's torso is not usable."""
    seq = hold(frame, length, rng)
    bf = _body_frame(seq)
    if bf is None or np.median(bf["up"][:, 1]) > -0.8:  # torso must be roughly upright (image y points down)
        return None
    t = np.arange(length)
    ph = 0.5 - 0.5 * np.cos(2 * np.pi * t / rng.uniform(40, 100) + rng.uniform(0, 6))
    move = str(rng.choice(["curl", "front_raise", "lateral_raise", "press"]))
    z = np.zeros(length)
    if move == "curl":
        a = ph * rng.uniform(1.8, 2.5)
        e = np.stack([z, z - 0.48, z + 0.03], -1)
        w = e + 0.45 * np.stack([np.sin(a), -np.cos(a), z], -1)
    elif move == "front_raise":
        a = ph * rng.uniform(1.3, 1.7)
        d = np.stack([np.sin(a), -np.cos(a), z], -1)
        e, w = 0.48 * d, 0.93 * d
    elif move == "lateral_raise":
        a = 0.1 + ph * rng.uniform(1.2, 1.6)
        d = np.stack([z, -np.cos(a), np.sin(a)], -1)
        e, w = 0.48 * d, 0.93 * d
    else:
        e = np.stack([z, -0.05 + 0.5 * ph, 0.45 - 0.35 * ph], -1)
        w = np.stack([z, 0.4 + 0.5 * ph, 0.45 - 0.3 * ph], -1)
    alt = rng.random() < 0.3
    e2 = np.stack([e, np.roll(e, length // 2, 0) if alt else e], 1)
    w2 = np.stack([w, np.roll(w, length // 2, 0) if alt else w], 1)
    return _place_arms(seq, bf, e2, w2)
