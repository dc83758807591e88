"""One Euro keypoint smoother: jitter drops on a still joint, small lag on a moving one, lost joints pass through."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.pose.smoothing import KeypointSmoother

FPS = 30.0


def run(smoother: KeypointSmoother, ys: np.ndarray, score: float | np.ndarray = 0.9) -> np.ndarray:
    """Feed joint 0 moving along y (others fixed); return joint 0's smoothed y per frame."""
    out = []
    scores = np.broadcast_to(score, ys.shape)
    for i, y in enumerate(ys):
        kp = np.zeros((17, 3), np.float32)
        kp[:, 0], kp[:, 1], kp[:, 2] = 640.0, 360.0, 0.9
        kp[0, 1], kp[0, 2] = y, scores[i]
        out.append(smoother.filter(kp, i / FPS)[0, 1])
    return np.array(out)


def test_jitter_on_a_still_joint_drops_at_least_3x():
    rng = np.random.default_rng(1)
    noisy = 400 + rng.normal(0, 2.0, 300)  # 2 px of detector noise, typical of 720p keypoints
    smooth = run(KeypointSmoother(), noisy)
    raw_jitter = np.std(np.diff(noisy[30:]))
    assert np.std(np.diff(smooth[30:])) < raw_jitter / 3
    assert abs(smooth[30:].mean() - 400) < 1.0  # no bias


def test_small_lag_on_a_ramp_and_a_squat():
    t = np.arange(300) / FPS
    ramp = 100 + 300 * t  # 300 px/s: a brisk squat on a 720p frame
    smooth = run(KeypointSmoother(), ramp)
    lag_px = ramp[100:] - smooth[100:]
    assert np.all(lag_px >= 0) and lag_px.max() < 0.5 * 300 / FPS  # under half a frame behind

    squat = 400 + 150 * np.sin(2 * np.pi * t / 2.0)  # 2 s reps, 300 px range of motion
    smooth = run(KeypointSmoother(), squat)
    assert np.abs(smooth[30:] - squat[30:]).max() < 10.0
    assert smooth[30:].max() - smooth[30:].min() > 0.95 * 300  # range of motion kept


def test_low_score_joints_pass_through_and_restart():
    sm = KeypointSmoother()
    ys = np.r_[np.full(20, 100.0), np.full(5, 500.0), np.full(10, 300.0)]
    scores = np.r_[np.full(20, 0.9), np.full(5, 0.05), np.full(10, 0.9)]
    out = run(sm, ys, scores)
    assert np.allclose(out[20:25], 500.0)  # below min_score: raw values, untouched
    assert out[25] == pytest.approx(300.0)  # back: starts from the new value, not dragged from 100
    # scores are never changed
    kp = np.zeros((17, 3), np.float32)
    kp[:, 2] = np.linspace(0, 1, 17)
    assert np.array_equal(KeypointSmoother().filter(kp, 0.0)[:, 2], kp[:, 2])


def test_long_gap_and_reset_restart_the_filter():
    sm = KeypointSmoother()
    run(sm, np.full(10, 100.0))
    kp = np.zeros((17, 3), np.float32)
    kp[:, 1], kp[:, 2] = 600.0, 0.9
    assert sm.filter(kp, 10.0)[0, 1] == pytest.approx(600.0)  # 10 s later: no drag from 100
    sm.reset()
    assert sm.filter(kp * [1, 0.5, 1], 0.0)[0, 1] == pytest.approx(300.0)


def test_repeated_timestamp_and_nan_are_safe():
    sm = KeypointSmoother()
    kp = np.full((17, 3), 0.9, np.float32)
    kp[:, :2] = 100.0
    sm.filter(kp, 0.0)
    again = sm.filter(kp + [50, 50, 0], 0.0)  # same time: no step, no division by zero
    assert np.isfinite(again).all()
    bad = kp.copy()
    bad[3, :2] = np.nan
    out = sm.filter(bad, 0.1)
    assert np.isnan(out[3, 0]) and np.isfinite(out[[0, 1, 2, 4]]).all()
    with pytest.raises(ValueError):
        KeypointSmoother(min_cutoff=0)
