"""Bundled BlazePose (Google MediaPipe, Apache-2.0) as a PoseEstimator: runs on any CPU, no downloads.

Per frame: if the lifter was found in the previous frame, crop the rotated ROI predicted from that frame's
auxiliary landmarks (MediaPipe's pose_landmarks_to_roi: hip centre + size point, ×1.25 square); otherwise run the
person detector, let the shared ``PersonTracker`` choose the lifter (``pick``, then the one nearest the last known
position) and crop that detection's ROI. The landmark model reads the crop as 256×256 RGB in [0, 1] and returns
39 landmarks in crop pixels (33 body + 6 auxiliary) with visibility/presence logits, a pose-presence score and
64×64 heatmaps; landmarks are refined on the heatmaps (7×7 weighted mean, as MediaPipe) and mapped back to the
frame. When the presence score drops (or the ROI collapses) the detector runs again, in the same frame.

Keypoints are the 17 COCO joints taken from the 33 BlazePose landmarks; score = visibility × presence, capped at
0.1 for joints more than a quarter torso length outside the frame.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from realtime.errors import RealtimeError
from realtime.pose.batching import FairGate, FairPool
from realtime.pose.detector import MODEL_DIR, BlazePersonDetector, RotatedRoi, load_interpreter
from realtime.pose.tracking import PersonTracker
from realtime.types import PoseResult

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("lite", "full")
LANDMARK_INPUT = 256
# BlazePose 33 -> COCO-17 (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles)
BLAZEPOSE_TO_COCO = np.array([0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28])
AUX_CENTRE, AUX_SCALE = 33, 34  # auxiliary landmarks that define the next frame's ROI
_REFINED = np.concatenate([BLAZEPOSE_TO_COCO, [AUX_CENTRE, AUX_SCALE]])
OUTSIDE_SCORE = 0.1  # score cap for joints placed well outside the frame
HEAD_DOWN = math.radians(120)  # detector crops turned further are also tried the other way up (see _track)
MIN_SPREAD = 0.25  # a turned read must span this share of its crop to be taken (see _spread)
# How far beyond the frame edge (in torso lengths) a joint may lie and keep its score: hands planted at the bottom
# edge in a push-up are found a few pixels outside and are right, legs cut off at the knees are guesses. Capping at
# the edge itself hid push-up_1's wrists from the rep counter (0 of 2 reps; with this margin 2 of 2).
OUTSIDE_MARGIN = 0.25
MIN_ROI_PX = 16.0  # a ROI smaller than this is a collapsed track, not a person
MAX_ROI_FRAMES = 3.0  # nor is one larger than 3 frame sizes


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def refine_from_heatmap(
    xy: np.ndarray, heatmap: np.ndarray, channels: np.ndarray, kernel: int = 7, min_confidence: float = 0.5
) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmap on selected landmarks.

    ``xy`` (K, 2) normalised crop coordinates of landmarks ``channels``; ``heatmap`` (h, w, 39) logits. Each point
    moves to the sigmoid-weighted mean cell of the ``kernel``² window around it when the window's peak is at least
    ``min_confidence``; points outside the heatmap stay as they are.
    """
    hm_h, hm_w = heatmap.shape[:2]
    out = xy.copy()
    cols = np.trunc(xy[:, 0] * hm_w).astype(int)  # C++ int cast, as MediaPipe
    rows = np.trunc(xy[:, 1] * hm_h).astype(int)
    half = (kernel - 1) // 2
    for k, (col, row, ch) in enumerate(zip(cols, rows, channels, strict=True)):
        if col < 0 or col >= hm_w or row < 0 or row >= hm_h:
            continue
        r0, r1, c0, c1 = max(0, row - half), min(hm_h, row + half + 1), max(0, col - half), min(hm_w, col + half + 1)
        conf = _sigmoid(heatmap[r0:r1, c0:c1, ch].astype(np.float64))
        total = conf.sum()
        if conf.max() >= min_confidence and total > 0:
            out[k, 0] = (conf.sum(0) @ np.arange(c0, c1)) / total / hm_w
            out[k, 1] = (conf.sum(1) @ np.arange(r0, r1)) / total / hm_h
    return out


class BlazePoseModels:
    """The detector and landmark interpreters, loaded once per analyzer and shared by all its cameras.

    LiteRT interpreters hold their tensors and cannot run two inputs at once, so every call goes through one
    first-come, first-served gate: cameras take turns in the order they asked.
    """

    def __init__(self, variant: str = "full", num_threads: int | None = None) -> None:
        if variant not in VARIANTS:
            raise RealtimeError(f"unknown BlazePose variant {variant!r}; use blazepose-lite or blazepose-full")
        self.variant = variant
        self.gate = FairGate()
        self.detector = BlazePersonDetector(num_threads=num_threads)
        self._interp = load_interpreter(MODEL_DIR / f"pose_landmark_{variant}.tflite", num_threads)
        self._input = self._interp.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self._interp.get_output_details()}
        self._out_landmarks, self._out_flag, self._out_heatmap = (
            outputs["Identity"], outputs["Identity_1"], outputs["Identity_3"],
        )

    def detect_people(self, image: np.ndarray):
        with self.gate:
            return self.detector.detect_people(image)

    def landmarks(self, tensor: np.ndarray, heatmap: bool) -> tuple[float, np.ndarray, np.ndarray | None]:
        """(1, 256, 256, 3) RGB [0, 1] crop -> (pose-present score, raw (39, 5) landmarks, heatmaps or None)."""
        with self.gate:
            self._interp.set_tensor(self._input, tensor)
            self._interp.invoke()
            flag = float(self._interp.get_tensor(self._out_flag).ravel()[0])
            raw = self._interp.get_tensor(self._out_landmarks).reshape(39, 5).copy()
            maps = self._interp.get_tensor(self._out_heatmap)[0].copy() if heatmap else None
        return flag, raw, maps

    def close(self) -> None:
        self._interp = None
        self.detector.close()


class BlazePosePool:
    """Several copies of ``BlazePoseModels`` (one per core, each with fewer interpreter threads): with several cameras
    two interpreters on two cores beat one interpreter on two threads, which leaves a core idle between its calls.
    Same interface as ``BlazePoseModels``; each call takes whichever copy is free, first come, first served."""

    def __init__(self, variant: str = "full", copies: int = 2, num_threads: int | None = None) -> None:
        self.variant = variant
        self.copies = [BlazePoseModels(variant, num_threads) for _ in range(max(1, copies))]
        self.pool = FairPool(self.copies)

    @property
    def detector(self) -> BlazePersonDetector:
        return self.copies[0].detector

    def detect_people(self, image: np.ndarray):
        with self.pool.take() as models:
            return models.detect_people(image)

    def landmarks(self, tensor: np.ndarray, heatmap: bool) -> tuple[float, np.ndarray, np.ndarray | None]:
        with self.pool.take() as models:
            return models.landmarks(tensor, heatmap)

    def close(self) -> None:
        for models in self.copies:
            models.close()


class BlazePoseEstimator:
    """The lifter's COCO-17 pose from MediaPipe BlazePose (lite or full) on the CPU via LiteRT/XNNPACK.

    Each camera has its own estimator (the followed person, the crop for the next frame); ``models`` may be shared.
    """

    def __init__(
        self,
        variant: str = "full",
        pick: str | int = "largest",
        num_threads: int | None = None,
        min_presence: float = 0.5,
        refine: bool = True,
        models: BlazePoseModels | BlazePosePool | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise RealtimeError(f"unknown BlazePose variant {variant!r}; use blazepose-lite or blazepose-full")
        self.name = f"blazepose-{variant}"
        self.variant = variant
        self.min_presence = min_presence
        self.refine = refine
        self.tracker = PersonTracker(detector=None, pick=pick)
        self._owns_models = models is None
        self.models = models if models is not None else BlazePoseModels(variant, num_threads)
        self._roi: RotatedRoi | None = None
        self.landmarks: np.ndarray | None = None  # (39, 4) x, y px, visibility, presence of the last found pose
        self.timing: dict[str, float] = {}  # detector_ms / landmark_ms of the last frame (for the benchmark)

    def reset(self) -> None:
        self._roi = None
        self.landmarks = None
        self.tracker.reset()

    def close(self) -> None:
        if self._owns_models:
            self.models.close()

    @property
    def detector(self) -> BlazePersonDetector:
        return self.models.detector

    @property
    def roi(self) -> RotatedRoi | None:
        """The crop the next frame will use (None: the detector runs)."""
        return self._roi

    def estimate(self, image: np.ndarray) -> PoseResult:
        """(H, W, 3) uint8 BGR -> the lifter's pose; keypoints None when nobody (or only other people) is in view."""
        if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3
                or min(image.shape[:2]) < 2):
            raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {getattr(image, 'shape', type(image))} "
                             f"{getattr(image, 'dtype', '')}")
        t0 = time.perf_counter()
        self.timing = {"detector_ms": 0.0, "landmark_ms": 0.0}
        found = self._track(image, self._roi) if self._roi is not None else None
        detected = found is None
        if found is None:
            found = self._detect_and_track(image)
        infer_ms = (time.perf_counter() - t0) * 1e3
        if found is None:
            self._roi = None
            self.landmarks = None
            self.tracker.lose()
            return PoseResult(None, None, infer_ms, detected, self.tracker.track_id)
        landmarks, next_roi = found
        self.landmarks = landmarks
        self._roi = next_roi
        keypoints = np.empty((17, 3), np.float32)
        keypoints[:, :2] = landmarks[BLAZEPOSE_TO_COCO, :2]
        keypoints[:, 2] = landmarks[BLAZEPOSE_TO_COCO, 2] * landmarks[BLAZEPOSE_TO_COCO, 3]
        cap_outside(keypoints, image.shape)
        self.tracker.follow(next_roi_box(landmarks, image.shape))
        return PoseResult(keypoints, person_box(landmarks, image.shape), infer_ms, detected, self.tracker.track_id)

    # -- internals ---------------------------------------------------------------------------------------------
    def _detect_and_track(self, image: np.ndarray) -> tuple[np.ndarray, RotatedRoi] | None:
        t0 = time.perf_counter()
        people = self.models.detect_people(image)
        self.timing["detector_ms"] = (time.perf_counter() - t0) * 1e3
        index = self.tracker.select([(p.box, p.score) for p in people], image.shape)
        if index is None:
            return None
        return self._track(image, people[index].roi(), detected=True)

    def _track(self, image: np.ndarray, roi: RotatedRoi, detected: bool = False
               ) -> tuple[np.ndarray, RotatedRoi] | None:
        """Landmarks inside ``roi`` and the ROI they predict for the next frame, or None when the pose is gone.

        A ``detected`` crop (from the detector, not from the last frame's pose) that would show the body head-down
        is also tried the other way up, and the read that shows more of a body inside the frame is kept: with the
        head out of the frame the detector can take the legs for arms and the whole body for upside down (squat_24
        starts like that), while a push-up filmed from the front really does put the head below the hips. Once
        chosen, the orientation is followed from frame to frame without a second model run.
        """
        if not MIN_ROI_PX <= roi.size <= MAX_ROI_FRAMES * max(image.shape[:2]):
            return None
        found = self._landmarks(image, roi)
        if detected and abs(roi.rotation) > HEAD_DOWN:
            other = self._landmarks(image, roi.turned())
            if other is not None and _spread(other[1]) >= MIN_SPREAD * roi.size and (
                    found is None or _seen_in_frame(other[1], image.shape) > _seen_in_frame(found[1], image.shape)):
                found = other
        return None if found is None else found[1:]

    def _landmarks(self, image: np.ndarray, roi: RotatedRoi) -> tuple[float, np.ndarray, RotatedRoi] | None:
        """(presence score, landmarks, next ROI) from the landmark model on ``roi``; None below ``min_presence``."""
        t0 = time.perf_counter()
        crop = roi.crop(image, LANDMARK_INPUT)
        tensor = crop[None, :, :, ::-1].astype(np.float32) * (1.0 / 255.0)  # BGR -> RGB in [0, 1]
        flag, raw, heatmap = self.models.landmarks(tensor, self.refine)
        self.timing["landmark_ms"] += (time.perf_counter() - t0) * 1e3
        if flag < self.min_presence:
            return None
        xy = raw[:, :2].astype(np.float64) / LANDMARK_INPUT
        if heatmap is not None:
            xy[_REFINED] = refine_from_heatmap(xy[_REFINED], heatmap, _REFINED)
        landmarks = np.empty((39, 4), np.float32)
        landmarks[:, :2] = roi.to_frame(xy * LANDMARK_INPUT, LANDMARK_INPUT)
        landmarks[:, 2] = _sigmoid(raw[:, 3])
        landmarks[:, 3] = _sigmoid(raw[:, 4])
        next_roi = RotatedRoi.from_alignment(landmarks[AUX_CENTRE, :2], landmarks[AUX_SCALE, :2])
        if not MIN_ROI_PX <= next_roi.size <= MAX_ROI_FRAMES * max(image.shape[:2]):
            return None  # collapsed or exploded: not a person any more
        return flag, landmarks, next_roi


def _spread(landmarks: np.ndarray) -> float:
    """Extent (px) of a read's COCO joints: a real body spans a good part of its crop; a read whose joints all sit
    on one spot is the model seeing a pose in clutter (a plate, a bench) and must not become the tracked lifter."""
    joints = landmarks[BLAZEPOSE_TO_COCO, :2]
    return float(np.ptp(joints, axis=0).max())


def _outside(xy: np.ndarray, shape: tuple[int, ...], margin: float = 0.0) -> np.ndarray:
    """(N,) mask of the (N, 2+) points lying more than ``margin`` px outside a frame of ``shape``."""
    h, w = shape[:2]
    x, y = xy[:, 0], xy[:, 1]
    return (x < -margin) | (x >= w + margin) | (y < -margin) | (y >= h + margin)


def _seen_in_frame(landmarks: np.ndarray, shape: tuple[int, ...]) -> float:
    """How much of a body a read shows: the summed scores of its COCO joints that lie inside the frame."""
    joints = landmarks[BLAZEPOSE_TO_COCO]
    inside = ~_outside(joints, shape)
    return float((joints[inside, 2] * joints[inside, 3]).sum())


def cap_outside(keypoints: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Cap (in place) the score of (17, 3) keypoints lying more than ``OUTSIDE_MARGIN`` torso lengths outside a frame
    of ``shape``: the crop replicates the frame border, so joints far beyond it are guesses the model may still score
    high."""
    m = OUTSIDE_MARGIN * float(np.hypot(*(keypoints[[5, 6], :2].mean(0) - keypoints[[11, 12], :2].mean(0))))
    outside = _outside(keypoints, shape, m)
    keypoints[outside, 2] = np.minimum(keypoints[outside, 2], OUTSIDE_SCORE)
    return keypoints


def person_box(landmarks: np.ndarray, shape: tuple[int, ...], min_score: float = 0.5, margin: float = 0.1) -> np.ndarray:
    """Box around the present body landmarks (33), grown by ``margin``, clipped to the frame."""
    body = landmarks[:33]
    good = body[:, 3] >= min_score
    xy = body[good, :2] if good.sum() >= 4 else body[:, :2]
    (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    h, w = shape[:2]
    return np.clip(np.array([x1 - mx, y1 - my, x2 + mx, y2 + my], np.float32), 0, [w, h, w, h]).astype(np.float32)


def next_roi_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The alignment-circle box of the auxiliary landmarks: the same construction as the detector's person box,
    so the tracker compares like with like when it re-detects."""
    centre, point = landmarks[AUX_CENTRE, :2], landmarks[AUX_SCALE, :2]
    r = float(np.hypot(*(point - centre)))
    h, w = shape[:2]
    box = np.array([centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r], np.float32)
    return np.clip(box, 0, [w, h, w, h]).astype(np.float32)
