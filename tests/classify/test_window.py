"""Causal keypoint normalisation and the bounded keypoint window."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.classify.window import KeypointWindow, Normaliser, normalise


def _person(t: int, scale: float = 100.0, cx: float = 300.0, cy: float = 200.0, seed: int = 0) -> np.ndarray:
    """A plausible front-view COCO-17 person (torso = ``scale`` px) with small random motion."""
    base = np.array([
        (0, -1.4), (0.06, -1.45), (-0.06, -1.45), (0.13, -1.4), (-0.13, -1.4), (0.33, -1), (-0.33, -1),
        (0.38, -0.5), (-0.38, -0.5), (0.4, -0.07), (-0.4, -0.07), (0.17, 0), (-0.17, 0), (0.18, 0.82),
        (-0.18, 0.82), (0.19, 1.62), (-0.19, 1.62)], np.float32)
    rng = np.random.default_rng(seed)
    kp = np.zeros((t, 17, 3), np.float32)
    kp[..., :2] = base * scale + (cx, cy) + rng.normal(0, 0.02 * scale, (t, 17, 2))
    kp[..., 2] = 0.9
    return kp


def test_centred_on_hips_and_scaled_by_torso():
    kp = _person(20, scale=100)
    out = normalise(kp)
    hip_mid = (out[:, 11, :2] + out[:, 12, :2]) / 2
    np.testing.assert_allclose(hip_mid, 0, atol=1e-5)
    sh_mid = (out[:, 5, :2] + out[:, 6, :2]) / 2
    torso = np.linalg.norm(sh_mid - hip_mid, axis=1)
    assert np.all(torso <= 1.0 + 1e-5) and np.all(torso > 0.85)  # running max of a noisy torso length
    assert np.all(out[..., 2] == 1.0)


def test_scale_and_translation_invariant():
    a = normalise(_person(30, scale=60, cx=100, cy=80, seed=1))
    kp = _person(30, scale=60, cx=100, cy=80, seed=1)
    kp[..., :2] = kp[..., :2] * 3.0 + 500.0
    np.testing.assert_allclose(normalise(kp), a, atol=1e-5)


def test_low_score_and_nan_joints_become_zero():
    kp = _person(5)
    kp[:, 9, 2] = 0.1  # left wrist unsure
    kp[2, 15, :2] = np.nan
    out = normalise(kp, min_score=0.3)
    assert np.all(out[:, 9] == 0)
    assert np.all(out[2, 15] == 0)
    assert out[1, 15, 2] == 1.0


def test_missing_hips_fall_back_to_shoulders_and_last_torso_vector():
    kp = _person(10)
    full = normalise(kp)
    kp2 = kp.copy()
    kp2[5:, 11:13, 2] = 0  # hips lost for the second half
    out = normalise(kp2)
    # the centre is extrapolated from the shoulders, so the shoulders stay close to where they were
    np.testing.assert_allclose(out[5:, 5:7, :2], full[5:, 5:7, :2], atol=0.1)
    assert np.all(out[5:, 11:13] == 0)


def test_empty_frames_and_no_person_give_zeros():
    kp = np.zeros((4, 17, 3), np.float32)
    assert np.all(normalise(kp) == 0)
    mix = _person(6)
    mix[2] = 0
    out = normalise(mix)
    assert np.all(out[2] == 0) and np.all(out[3, :, 2] == 1)


def test_one_wild_joint_cannot_blow_up_the_scale():
    kp = _person(40, scale=100)
    kp[20, 13:17, :2] += 5000  # detector glitch on the legs in one frame
    out = normalise(kp)
    assert abs(out[25, 5, 0]) > 0.25  # shoulders still ~0.33 torso from the centre, not squashed to ~0


def test_drop_joints_are_always_zero():
    out = normalise(_person(3), drop_joints=(1, 2, 3, 4))
    assert np.all(out[:, 1:5] == 0) and np.all(out[:, 0, 2] == 1)


def test_stepwise_equals_whole_sequence():
    rng = np.random.default_rng(3)
    kp = _person(80, seed=3)
    kp[rng.random((80, 17)) < 0.2, 2] = 0.05  # random missing joints, incl. hips/shoulders
    kp[10:14] = 0  # nobody in view
    whole = normalise(kp)
    n = Normaliser()
    steps = np.concatenate([n(kp[i:i + 1]) for i in range(len(kp))])
    np.testing.assert_allclose(steps, whole, atol=1e-6)
    n.reset()
    chunks = np.concatenate([n(kp[:33]), n(kp[33:])])
    np.testing.assert_allclose(chunks, whole, atol=1e-6)


def test_bad_shape():
    with pytest.raises(ValueError):
        normalise(np.zeros((3, 18, 3)))


def test_keypoint_window_is_bounded_and_ordered():
    w = KeypointWindow(5)
    assert len(w) == 0 and w.array().shape == (0, 17, 3)
    for i in range(12):
        w.push(np.full((17, 3), i, np.float32))
    assert len(w) == 5 and w.full and w.total == 12
    np.testing.assert_array_equal(w.array()[:, 0, 0], [7, 8, 9, 10, 11])
    w.push(None)
    assert np.all(w.array()[-1] == 0)
    w.clear()
    assert len(w) == 0


def test_motion_channels_follow_the_body_and_stream_exactly():
    kp = _person(60)
    kp[30:, :, 1] += np.linspace(0, 150, 30)[:, None]  # the whole body sinks 1.5 torso lengths
    n = Normaliser()
    pose, motion = n.transform(kp)
    assert np.allclose(motion[:30], 0, atol=0.05) and motion[45:, 1].min() > 0.3
    np.testing.assert_allclose(pose[40, 11:13, :2].mean(0), 0, atol=1e-5)  # the pose itself stays hip-centred
    n2 = Normaliser()
    steps = np.concatenate([n2.transform(kp[i:i + 1])[1] for i in range(len(kp))])
    np.testing.assert_allclose(steps, motion, atol=1e-6)
