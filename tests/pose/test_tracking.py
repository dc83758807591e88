"""Lifter choice and following (PersonTracker) with a scripted detector; the real detector is in test_detector."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.errors import RealtimeError
from realtime.pose.tracking import PersonTracker, choose_by_pick, create_tracker, match_cost, parse_pick

SHAPE = (720, 1280, 3)
IMAGE = np.zeros(SHAPE, np.uint8)
LIFTER = np.array([500, 100, 800, 700], np.float32)  # centre x 650
SPOTTER = np.array([900, 50, 1250, 710], np.float32)  # bigger, to the right


class ScriptedDetector:
    """Returns the next scripted list of (box, score) per call and counts calls."""

    def __init__(self, script: list[list[tuple[np.ndarray, float]]]) -> None:
        self.script = list(script)
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        self.calls += 1
        return self.script.pop(0) if self.script else []


def pose_in(box: np.ndarray, score: float = 0.9) -> np.ndarray:
    """A 17-joint pose spread over the inner part of ``box``."""
    x1, y1, x2, y2 = box
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0] = np.linspace(x1 + 0.25 * (x2 - x1), x2 - 0.25 * (x2 - x1), 17)
    kp[:, 1] = np.linspace(y1 + 0.15 * (y2 - y1), y2 - 0.15 * (y2 - y1), 17)
    kp[:, 2] = score
    return kp


def test_parse_pick():
    assert parse_pick("largest") == "largest"
    assert parse_pick(" Center ") == "center"
    assert parse_pick("2") == 2 and parse_pick(1) == 1
    for bad in ("biggest", "-1", -1, 1.5, True, ""):
        with pytest.raises(RealtimeError, match="--pick"):
            parse_pick(bad)


def test_choose_by_pick_rules():
    boxes = [np.array([0, 0, 100, 200]), np.array([600, 200, 700, 500]), np.array([1000, 0, 1280, 720])]
    scores = [0.9, 0.9, 0.9]
    assert choose_by_pick(boxes, scores, SHAPE, "largest") == 2
    assert choose_by_pick(boxes, scores, SHAPE, "center") == 1
    assert choose_by_pick(boxes, scores, SHAPE, "left") == 0
    assert choose_by_pick(boxes, scores, SHAPE, "right") == 2
    assert choose_by_pick(boxes[::-1], scores, SHAPE, 0) == 2  # index counts from the left
    assert choose_by_pick(boxes, scores, SHAPE, 7) == 2  # beyond the last: the rightmost


def test_match_cost_prefers_the_same_place_and_size():
    assert match_cost(LIFTER, LIFTER) == pytest.approx(0.0)
    assert match_cost(LIFTER + 30, LIFTER) < 0.2
    assert match_cost(SPOTTER, LIFTER) > 0.5


def test_detects_once_then_follows_keypoints():
    det = ScriptedDetector([[(LIFTER, 0.9)]])
    tracker = PersonTracker(det)
    box, detected = tracker.next_box(IMAGE)
    assert detected and np.allclose(box, LIFTER)
    for _ in range(10):
        tracker.update(pose_in(LIFTER))
        box, detected = tracker.next_box(IMAGE)
        assert not detected
    assert det.calls == 1 and tracker.track_id == 1
    assert box[0] < 650 < box[2] and box[1] < 400 < box[3]


def test_confidence_collapse_triggers_one_redetection():
    det = ScriptedDetector([[(LIFTER, 0.9)], [(LIFTER + 10, 0.9)]])
    tracker = PersonTracker(det)
    tracker.next_box(IMAGE)
    tracker.update(pose_in(LIFTER))
    tracker.update(pose_in(LIFTER, score=0.05))  # collapse
    box, detected = tracker.next_box(IMAGE)
    assert detected and np.allclose(box, LIFTER + 10)
    assert tracker.track_id == 1  # same lifter


def test_redetection_sticks_with_the_lifter_not_the_bigger_spotter():
    det = ScriptedDetector([
        [(LIFTER, 0.9)],  # start: only the lifter
        [(SPOTTER, 0.95), (LIFTER + 20, 0.7)],  # after a loss: both, spotter bigger and more confident
    ])
    tracker = PersonTracker(det, pick="largest")
    tracker.next_box(IMAGE)
    tracker.update(pose_in(LIFTER))
    tracker.update(None)  # lost
    box, detected = tracker.next_box(IMAGE)
    assert detected and np.allclose(box, np.clip(LIFTER + 20, 0, [1280, 720, 1280, 720]))
    # without history the same detections would give the spotter (the pick rule)
    fresh = PersonTracker(ScriptedDetector([[(SPOTTER, 0.95), (LIFTER + 20, 0.7)]]), pick="largest")
    assert np.allclose(fresh.next_box(IMAGE)[0], np.clip(SPOTTER, 0, [1280, 720, 1280, 720]))


def test_only_a_passer_by_in_view_is_no_person_until_forgotten():
    script = [[(LIFTER, 0.9)]] + [[(SPOTTER, 0.9)]] * 5
    tracker = PersonTracker(ScriptedDetector(script), forget_after=3)
    tracker.next_box(IMAGE)
    tracker.update(pose_in(LIFTER))
    tracker.update(None)
    results = []
    for _ in range(5):
        box, detected = tracker.next_box(IMAGE)
        results.append(box is not None)
        if box is not None:
            tracker.update(pose_in(box))
    # three detector runs without the lifter are "no person", then the spotter becomes the new lifter
    assert results == [False, False, False, True, True]
    assert tracker.track_id == 2


def test_nobody_gives_none_and_reset_forgets():
    tracker = PersonTracker(ScriptedDetector([[], [(SPOTTER, 0.9)]]))
    assert tracker.next_box(IMAGE) == (None, True)
    tracker.reset()
    box, detected = tracker.next_box(IMAGE)
    assert detected and box is not None


def test_without_detector_the_whole_frame_is_the_box():
    box, detected = PersonTracker(None).next_box(IMAGE)
    assert not detected and np.allclose(box, [0, 0, 1280, 720])


def test_create_tracker_uses_the_bundled_detector():
    tracker = create_tracker("center")
    assert tracker.pick == "center"
    assert tracker.next_box(IMAGE) == (None, True)  # black frame: nobody
    with pytest.raises(RealtimeError):
        create_tracker("tallest")
