"""Kinematic plausibility rules: which exercises are ruled out, when, and how the classifier applies them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from realtime.classify.classifier import (
    IN_CHANNELS,
    LabelSmoother,
    StreamingClassifier,
    load_model,
    predict_sequence,
    save_checkpoint,
)
from realtime.classify.plausibility import EVIDENCE_FRAMES, MIN_SEEN, KinematicGate, apply_mask, gate_sequence
from realtime.classify.tcn import CausalTCN
from realtime.types import OTHER_LABEL

CLASSES = ("squat", "deadlift", "pullup", "jumping_jacks", "clean_and_jerk", OTHER_LABEL)
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def person(wrist_y: float, score: float = 0.9, lift: float = 0.0) -> np.ndarray:
    """A standing person, torso 60 px (shoulders y=70, hips y=130, knees y=190), both wrists at ``wrist_y``;
    ``lift`` px raises the body (not the wrists), as in a pull-up."""
    kp = np.zeros((17, 3), np.float32)
    xy = {0: (100, 40), 5: (85, 70), 6: (115, 70), 7: (80, 100), 8: (120, 100), 11: (90, 130), 12: (110, 130),
          13: (90, 190), 14: (110, 190), 15: (90, 250), 16: (110, 250)}
    for j, (x, y) in xy.items():
        kp[j] = (x, y, 0.9)
    kp[:, 1] -= lift
    kp[9] = (80, wrist_y, score)
    kp[10] = (120, wrist_y, score)
    return kp


def ruled_out_after(frames: list[np.ndarray | None]) -> tuple[str, ...]:
    gate = KinematicGate(CLASSES)
    for f in frames:
        gate.update(f)
    return gate.ruled_out


def test_arms_at_shoulder_height_rule_out_lifts_that_need_the_bar_overhead_or_low():
    # a bodyweight squat with the arms raised forward: wrists swing between the hips and the shoulders
    squat = [person(130 - 60 * abs(np.sin(i / 10))) for i in range(60)]
    assert set(ruled_out_after(squat)) == {"deadlift", "pullup", "jumping_jacks", "clean_and_jerk"}


def test_each_movement_makes_its_exercises_plausible():
    standing = [person(140)] * 60
    overhead = ruled_out_after(standing + [person(30)])  # wrists 40 px (0.67 torso) above the shoulders
    assert set(overhead) == {"deadlift", "pullup"}  # a pull-up also needs the body to rise
    low = ruled_out_after(standing + [person(185)])  # wrists 5 px above the knees
    assert set(low) == {"pullup", "jumping_jacks"}
    assert ruled_out_after(standing + [person(45)]) == ruled_out_after(standing)  # 0.42 torso: not overhead
    # hands on a bar at y=20 while the body rises by 25 px (0.42 torso) and comes down: a pull-up
    hanging = [person(20, lift=25 * abs(np.sin(i / 12))) for i in range(60)]
    assert set(ruled_out_after(hanging)) == {"deadlift"}
    pressing = [person(70 - 50 * abs(np.sin(i / 12))) for i in range(60)]  # hands move, shoulders do not
    assert set(ruled_out_after(pressing)) == {"deadlift", "pullup"}


def test_no_evidence_rules_nothing_out():
    assert ruled_out_after([person(140)] * (MIN_SEEN - 1)) == ()  # under a second of evidence
    # wrists never seen: only the pull-up is ruled out, by the body that never rose
    assert ruled_out_after([person(140, score=0.1)] * 200) == ("pullup",)
    assert ruled_out_after([None] * 200) == ()  # nobody


def test_evidence_expires_after_the_memory_window():
    frames = [person(30)] + [person(140)] * (EVIDENCE_FRAMES - 1)
    assert "clean_and_jerk" not in ruled_out_after(frames)
    assert "clean_and_jerk" in ruled_out_after(frames + [person(140)])


def test_apply_mask_renormalises_and_never_empties():
    probs = np.array([0.5, 0.3, 0.2], np.float32)
    np.testing.assert_allclose(apply_mask(probs, np.array([1, 0, 1], np.float32)), [0.5 / 0.7, 0, 0.2 / 0.7])
    np.testing.assert_allclose(apply_mask(probs, np.zeros(3, np.float32)), probs)


def test_a_ruled_out_clean_hands_its_probability_to_squat():
    """Without the bar overhead or on the floor, what the network calls a clean is the squat inside it."""
    probs = np.array([0.05, 0.05, 0.05, 0.05, 0.5, 0.3], np.float32)  # CLASSES order, clean_and_jerk 0.5
    mask = np.array([1, 1, 1, 1, 0, 1], np.float32)
    out = apply_mask(probs, mask, CLASSES)
    np.testing.assert_allclose(out, [0.55, 0.05, 0.05, 0.05, 0.0, 0.3], atol=1e-6)
    # (T, C) form, and a ruled-out deadlift is shared by the rest as before
    seq = apply_mask(np.stack([probs, probs]), np.stack([mask, [1, 0, 1, 1, 1, 1]]).astype(np.float32), CLASSES)
    np.testing.assert_allclose(seq[0], out, atol=1e-6)
    np.testing.assert_allclose(seq[1], np.array([0.05, 0, 0.05, 0.05, 0.5, 0.3]) / 0.95, atol=1e-6)
    # no fallback where squat is not a class of the model
    other_model = ("deadlift", "clean_and_jerk", OTHER_LABEL)
    np.testing.assert_allclose(apply_mask(np.array([0.2, 0.5, 0.3], np.float32), np.array([1, 0, 1], np.float32),
                                          other_model), [0.4, 0, 0.6], atol=1e-6)


def test_a_ruled_out_label_is_dropped_at_once_from_the_display():
    smoother = LabelSmoother(alpha=0.3, margin=0.1)
    for _ in range(20):
        assert smoother.update(np.array([0.1, 0.8, 0.1], np.float32))[0] == 1
    # class 1 is ruled out: its EMA is still the highest, but it is not shown any more
    label, conf = smoother.update(np.array([0.3, 0.0, 0.7], np.float32))
    assert label == 2 and conf < 0.5


def test_gate_sequence_matches_the_streaming_gate():
    rng = np.random.default_rng(0)
    frames = [person(float(rng.uniform(20, 200))) if i % 40 < 30 else person(140) for i in range(400)]
    frames[17] = None
    seq = np.stack([np.full((17, 3), np.nan, np.float32) if f is None else f for f in frames])
    gate = KinematicGate(CLASSES)
    streamed = np.stack([gate.update(f) for f in frames])
    np.testing.assert_array_equal(gate_sequence(CLASSES, seq), streamed)


def test_classifier_applies_the_rules_in_streaming_and_batch_alike(tmp_path: Path):
    torch.manual_seed(0)
    ckpt = save_checkpoint(CausalTCN(IN_CHANNELS, len(CLASSES), channels=16, levels=6), CLASSES,
                           {"training": {"note": "random weights"}}, tmp_path / "m.safetensors")
    frames = [person(130 - 60 * abs(np.sin(i / 10))) for i in range(200)]
    clf, plain = StreamingClassifier.load(ckpt), StreamingClassifier.load(ckpt, gate=False)
    out = [clf.push(f) for f in frames]
    raw = [plain.push(f) for f in frames]
    last = out[-1]
    assert set(last.ruled_out) == {"deadlift", "pullup", "jumping_jacks", "clean_and_jerk"}
    blocked = [CLASSES.index(c) for c in last.ruled_out]
    assert np.all(last.probs[blocked] == 0) and last.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert raw[-1].ruled_out == () and np.all(raw[-1].probs[blocked] > 0)
    kept = [i for i in range(len(CLASSES)) if i not in blocked]
    expected = raw[-1].probs.copy()
    expected[CLASSES.index("squat")] += expected[CLASSES.index("clean_and_jerk")]  # the clean's squat fallback
    np.testing.assert_allclose(last.probs[kept], expected[kept] / expected[kept].sum(), atol=1e-5)
    np.testing.assert_allclose(clf.window_probs(), last.probs, atol=1e-5)
    model, meta = load_model(ckpt)
    np.testing.assert_allclose(predict_sequence(model, meta, np.stack(frames)), np.stack([o.probs for o in out]),
                               atol=1e-5)


POSE_TRAINER = SHARED / "pose_trainer"


@pytest.mark.skipif(not POSE_TRAINER.exists(), reason="../shared/data/pose_trainer not present")
def test_shipped_classifier_no_longer_calls_a_real_front_raise_a_deadlift():
    """A real front-raise set (Pose Trainer, evaluation-only data) that the network alone calls a deadlift."""
    from realtime.training.datasets import load_data

    sample = next(s for s in load_data([f"posetrainer={POSE_TRAINER}"]) if s.id.endswith("frontraise_good_1"))
    model, meta = load_model(None)
    classes = list(meta["classes"])
    plain = predict_sequence(model, meta, sample.keypoints, gate=False).mean(0)
    gated = predict_sequence(model, meta, sample.keypoints).mean(0)
    assert classes[int(plain.argmax())] == "deadlift"
    assert classes[int(gated.argmax())] == OTHER_LABEL


def test_display_holds_an_exercise_through_a_pause_in_the_set():
    from realtime.classify.classifier import REST_HOLD_S, label_smoother

    classes = ("squat", "deadlift", "other")
    squat, other = np.array([0.9, 0.05, 0.05]), np.array([0.05, 0.05, 0.9])

    def shown(seconds_by_kind):
        smoother = label_smoother(classes)
        out = []
        for probs, seconds in seconds_by_kind:
            out += [classes[smoother.update(probs)[0]] for _ in range(int(seconds * 30))]
        return out

    # 2 s of squats, a 1 s pause standing (the network says other), squats again: squat throughout
    assert set(shown([(squat, 2.0), (other, 1.0), (squat, 1.0)])) == {"squat"}
    # the set is over: other is shown, REST_HOLD_S (plus the EMA's few steps) after the last squat
    labels = shown([(squat, 2.0), (other, 3.0)])
    first_other = labels.index("other") / 30 - 2.0
    assert REST_HOLD_S <= first_other <= REST_HOLD_S + 0.3 and labels[-1] == "other"
    # a squat label that only flashed up (0.2 s) is not held
    labels = shown([(other, 1.0), (squat, 0.2), (other, 1.0)])
    assert labels.count("squat") < 0.5 * 30
