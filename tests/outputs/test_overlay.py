"""The overlay draws the skeleton and the HUD where expected, without touching the input frame."""

from __future__ import annotations

import numpy as np
from conftest import FakeEstimator

from realtime.outputs.overlay import draw_overlay
from realtime.types import Frame, FrameResult, PoseResult, Prediction


def _result(image: np.ndarray, pose: PoseResult) -> FrameResult:
    pred = Prediction("squat", 0.9, np.array([0.9, 0.1], np.float32), ("squat", "other"))
    return FrameResult(frame=Frame(image, 0, 0.0), pose=pose, prediction=pred, rep_count=3, exercise="squat",
                       cues=("depth: hip 6 cm above knee",))


def test_overlay_draws_skeleton_and_text_on_a_copy():
    image = np.zeros((720, 1280, 3), np.uint8)
    pose = FakeEstimator().estimate(image)
    out = draw_overlay(image, _result(image, pose), fps=29.7, dropped=3)
    assert image.max() == 0  # input untouched
    # Skeleton pixels around the body's vertical line, HUD text at the top-left.
    body = out[100:650, 600:680]
    assert (body.sum(axis=2) > 0).mean() > 0.05
    assert out[:150, :400].max() > 200
    # Speed/drops line bottom-right.
    assert out[-40:, -300:].max() > 150


def test_overlay_without_person_draws_no_skeleton():
    image = np.zeros((480, 640, 3), np.uint8)
    out = draw_overlay(image, _result(image, PoseResult(keypoints=None)), fps=10.0, dropped=0)
    assert out[200:470, 250:400].max() == 0  # nothing drawn in the middle of the frame
