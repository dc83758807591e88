"""BlazePose person detector: anchors, NMS, ROI geometry, black bars, and real frames from ../shared/data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

from realtime.pose.detector import (
    BlazePersonDetector,
    RotatedRoi,
    content_box,
    ssd_anchors,
    weighted_nms,
)


def read_frames(path, indices: set[int]) -> dict[int, np.ndarray]:
    import av

    out = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in indices:
                out[i] = frame.to_ndarray(format="bgr24")
            if i >= max(indices):
                break
    return out


@pytest.fixture(scope="module")
def detector() -> BlazePersonDetector:
    return BlazePersonDetector()


def test_anchors_match_mediapipe_layout():
    anchors = ssd_anchors()
    assert anchors.shape == (2254, 2)
    # stride 8: 28×28 cells, 2 anchors per cell, first centre at half a cell
    assert np.allclose(anchors[0], [0.5 / 28, 0.5 / 28]) and np.allclose(anchors[1], anchors[0])
    assert np.allclose(anchors[2], [1.5 / 28, 0.5 / 28])
    # the three stride-32 layers share one 7×7 map with 6 anchors per cell
    assert np.allclose(anchors[-6:], [6.5 / 7, 6.5 / 7])
    assert np.allclose(anchors[1568 + 392], [0.5 / 7, 0.5 / 7])


def test_weighted_nms_merges_overlaps_and_keeps_separate_people():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.6, 0.8], np.float32)
    extra = np.array([[0.0], [10.0], [5.0]], np.float32)
    out = weighted_nms(boxes, scores, extra, 0.3)
    assert len(out) == 2
    box, ex, score = out[0]
    assert score == pytest.approx(0.9)
    assert box[0] == pytest.approx(0.6 / 1.5)  # score-weighted mean of x1 = 0 and 1
    assert ex[0] == pytest.approx(6.0 / 1.5)
    assert out[1][2] == pytest.approx(0.8) and np.allclose(out[1][0], boxes[2])


def test_roi_from_alignment_rotation_and_round_trip():
    upright = RotatedRoi.from_alignment(np.array([100.0, 200.0]), np.array([100.0, 100.0]))
    assert upright.rotation == pytest.approx(0.0)
    assert upright.size == pytest.approx(2 * 100 * 1.25)
    # a body lying with the head to the right: the crop's "up" must point to the right in the frame
    lying = RotatedRoi.from_alignment(np.array([100.0, 200.0]), np.array([180.0, 200.0]))
    assert lying.rotation == pytest.approx(math.pi / 2)
    top_centre = lying.to_frame(np.array([[128.0, 0.0]]), 256)[0]
    assert top_centre[0] > 100 + 0.9 * lying.size / 2 and abs(top_centre[1] - 200) < 1e-3
    # crop pixels of a synthetic image land where to_frame says
    image = np.zeros((400, 400, 3), np.uint8)
    image[150:160, 250:260] = 255
    roi = RotatedRoi(220.0, 180.0, 200.0, 0.7)
    crop = roi.crop(image, 256, border=0)
    ys, xs = np.nonzero(crop[:, :, 0] > 128)
    centre = roi.to_frame(np.array([[xs.mean() + 0.5, ys.mean() + 0.5]]), 256)[0]
    assert np.allclose(centre, [255, 155], atol=1.5)


def test_content_box_finds_black_bars():
    image = np.zeros((720, 1280, 3), np.uint8)
    image[:, 432:856] = 90
    x0, y0, x1, y1 = content_box(image)
    assert 416 <= x0 <= 432 and 856 <= x1 <= 872 and (y0, y1) == (0, 720)
    assert content_box(np.full((720, 1280, 3), 90, np.uint8)) == (0, 0, 1280, 720)
    assert content_box(np.zeros((50, 60, 3), np.uint8)) == (0, 0, 60, 50)


def test_blank_and_odd_sized_frames_find_nobody(detector):
    assert detector.detect(np.zeros((720, 1280, 3), np.uint8)) == []
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert detector.detect(np.full((31, 17, 3), 200, np.uint8)) == []
    with pytest.raises(ValueError):
        detector.detect(np.zeros((10, 10), np.uint8))


def test_real_deadlift_frame_box_holds_the_reference_keypoints(detector):
    video = shared_file("deadlift_bichraix/videos/good/good001.mp4")
    ref = pd.read_csv(shared_file("deadlift_bichraix/keypoints_coco17/good001_joints_new.csv"))
    ref = ref.iloc[:, 1:].to_numpy(float).reshape(-1, 17, 2)
    inside = total = 0
    for i, frame in read_frames(video, {0, 40, 80}).items():
        people = detector.detect_people(frame)
        assert people, f"nobody found in frame {i}"
        best = people[0]
        assert best.score > 0.5 and best.keypoints.shape == (4, 2)
        valid = ~np.isnan(ref[i]).any(1)
        x1, y1, x2, y2 = best.box
        xy = ref[i, valid]
        inside += int(((xy[:, 0] >= x1) & (xy[:, 0] <= x2) & (xy[:, 1] >= y1) & (xy[:, 1] <= y2)).sum())
        total += int(valid.sum())
    assert inside / total >= 0.9


def test_two_people_side_by_side_are_both_found(detector):
    frame = read_frames(shared_file("workouttracker_reps/videos/squats/squat_24.mp4"), {30})[30]
    w = frame.shape[1]
    found = detector.detect(np.hstack([frame, frame]))
    assert len(found) == 2
    centres = sorted((b[0] + b[2]) / 2 for b, _ in found)
    assert centres[0] < w < centres[1]
