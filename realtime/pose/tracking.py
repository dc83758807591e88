"""Who the lifter is and where: choose one person once, then follow them; detect only when tracking is lost.

One concept for both pose engines:
- top-down engines (ViTPose) call ``next_box(image)`` before and ``update(keypoints)`` after each frame; the tracker
  runs its detector on the first frame and whenever the pose confidence collapsed, otherwise it follows the box
  around the previous keypoints;
- BlazePose follows its own rotated ROI from landmarks and only asks ``select(detections, shape)`` which detection
  is the lifter, then reports the box it follows with ``follow(box)`` or ``lose()``.

Choosing: the first time (or after the lifter has been gone for ``forget_after`` detector runs) ``pick`` decides:
``largest`` (box area × score), ``center`` (nearest the frame centre), ``left``/``right`` or a person index
counted from the left. Afterwards a re-detection keeps the detection nearest the last known box (centre distance in
box sizes plus a size-change penalty) within ``gate``, so a spotter or a passer-by is not taken over; when nobody is
inside the gate the frame is "no person".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from realtime.errors import RealtimeError

log = logging.getLogger(__name__)

PICKS: tuple[str, ...] = ("largest", "center", "left", "right")


class PersonDetector(Protocol):
    """Finds people in a frame."""

    def detect(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """BGR image -> list of (box xyxy float32 px, score)."""
        ...


def parse_pick(pick: str | int) -> str | int:
    """Validate ``--pick``: one of PICKS or a non-negative person index (0 = leftmost)."""
    if isinstance(pick, (int, np.integer)) and not isinstance(pick, bool) and pick >= 0:
        return int(pick)
    if isinstance(pick, str):
        text = pick.strip().lower()
        if text in PICKS:
            return text
        if text.isdigit():
            return int(text)
    raise RealtimeError(f"unknown --pick {pick!r}; use largest, center, left, right or a person index (0 = leftmost)")


def box_from_keypoints(keypoints: np.ndarray, min_score: float = 0.3, margin: float = 0.25) -> np.ndarray | None:
    """Box around the confident keypoints, grown by ``margin`` of its size on every side."""
    good = keypoints[:, 2] >= min_score
    if good.sum() < 4:
        return None
    xy = keypoints[good, :2]
    x1, y1 = xy.min(0)
    x2, y2 = xy.max(0)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    return np.array([x1 - margin * w, y1 - margin * h, x2 + margin * w, y2 + margin * h], np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two xyxy boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match_cost(box: np.ndarray, reference: np.ndarray) -> float:
    """How unlike the reference box a candidate is: centre distance in reference sizes + |log size ratio| / 2.

    Centre distance rather than IoU alone because the detector's boxes (alignment circle) and the followed boxes
    (around keypoints) differ in shape; both are centred on the body.
    """
    ref_size = max(float(max(reference[2] - reference[0], reference[3] - reference[1])), 1.0)
    size = max(float(max(box[2] - box[0], box[3] - box[1])), 1.0)
    dx = 0.5 * float(box[0] + box[2] - reference[0] - reference[2])
    dy = 0.5 * float(box[1] + box[3] - reference[1] - reference[3])
    return math.hypot(dx, dy) / ref_size + 0.5 * abs(math.log(size / ref_size))


def choose_by_pick(boxes: Sequence[np.ndarray], scores: Sequence[float], shape: tuple[int, ...], pick: str | int) -> int:
    """Index of the lifter among ``boxes`` (non-empty) by the ``pick`` rule."""
    h, w = shape[:2]
    centres = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in boxes], np.float64)
    areas = np.array([(b[2] - b[0]) * (b[3] - b[1]) for b in boxes], np.float64)
    if pick == "largest":
        return int(np.argmax(areas * np.asarray(scores, np.float64)))
    if pick == "center":
        dist = np.hypot(centres[:, 0] - w / 2, centres[:, 1] - h / 2) / max(h, w)
        # near-ties (people side by side at the centre) go to the larger person
        return int(np.argmin(dist - 0.05 * areas / max(areas.max(), 1.0)))
    if pick == "left":
        return int(np.argmin(centres[:, 0]))
    if pick == "right":
        return int(np.argmax(centres[:, 0]))
    order = np.argsort(centres[:, 0], kind="stable")
    if pick >= len(order):
        log.debug("pick index %d but only %d people in view; taking the rightmost", pick, len(order))
    return int(order[min(int(pick), len(order) - 1)])


class PersonTracker:
    """Chooses the lifter once and follows them; see the module docstring."""

    def __init__(
        self,
        detector: PersonDetector | None = None,
        pick: str | int = "largest",
        min_mean_score: float = 0.3,
        smoothing: float = 0.5,
        margin: float = 0.25,
        gate: float = 0.5,
        forget_after: int = 60,
    ) -> None:
        self.detector = detector
        self.pick = parse_pick(pick)
        self.min_mean_score = min_mean_score
        self.smoothing = smoothing
        self.margin = margin
        self.gate = gate
        self.forget_after = forget_after  # detector runs without the lifter before a new one may be chosen
        self._box: np.ndarray | None = None  # box being followed (None: run the detector on the next frame)
        self._last: np.ndarray | None = None  # last box where the lifter was seen, kept while lost for gating
        self._misses = 0
        self._track_id = 0

    @property
    def track_id(self) -> int:
        """Increments each time a new lifter is chosen (0 before the first)."""
        return self._track_id

    @property
    def last_box(self) -> np.ndarray | None:
        """Where the lifter was last seen (also while lost), xyxy px."""
        return None if self._last is None else self._last.copy()

    @property
    def tracking(self) -> bool:
        """True while a box is being followed (no detector needed on the next frame)."""
        return self._box is not None

    def reset(self) -> None:
        """Forget the lifter entirely (new source, reconnect)."""
        self._box = None
        self._last = None
        self._misses = 0

    # -- selection (shared with BlazePose) -------------------------------------------------------------------------
    def select(self, detections: Sequence[tuple[np.ndarray, float]], shape: tuple[int, ...]) -> int | None:
        """Index of the lifter among this frame's detections, or None ("no person" / only other people in view).

        Nothing is committed here: the engine calls ``follow`` once its pose confirms the person, so a detection the
        pose model rejects (a barbell plate, a poster) never becomes the reference for later re-detections.
        """
        self._misses += 1  # a detector run means the lifter is not being followed right now
        if self._last is not None and self._misses > self.forget_after:
            log.info("lifter not seen for %d detector runs; choosing again (--pick %s)", self._misses - 1, self.pick)
            self._last = None
        if not detections:
            return None
        boxes = [np.asarray(d[0], np.float32) for d in detections]
        if self._last is None:
            return choose_by_pick(boxes, [float(d[1]) for d in detections], shape, self.pick)
        costs = [match_cost(b, self._last) for b in boxes]
        index = int(np.argmin(costs))
        return index if costs[index] <= self.gate else None

    def follow(self, box: np.ndarray) -> None:
        """The engine found the lifter at ``box`` (xyxy px) in this frame."""
        if self._last is None:
            self._track_id += 1  # a new lifter was chosen
        self._last = np.asarray(box, np.float32).copy()
        self._misses = 0

    def lose(self) -> None:
        """Tracking lost in this frame: detect on the next one, keep the last box for gating."""
        self._box = None

    # -- top-down engines ------------------------------------------------------------------------------------------
    def next_box(self, image: np.ndarray) -> tuple[np.ndarray | None, bool]:
        """Box to crop for this frame and whether the detector ran; (None, True) = nobody (or only others) found."""
        if self._box is not None:
            return self._clip(self._box, image.shape), False
        h, w = image.shape[:2]
        if self.detector is None:
            return np.array([0, 0, w, h], np.float32), False
        found = self.detector.detect(image)
        index = self.select(found, image.shape)
        if index is None:
            return None, True
        return self._clip(np.asarray(found[index][0], np.float32), image.shape), True

    def update(self, keypoints: np.ndarray | None) -> None:
        """Derive the next frame's box from this frame's keypoints (or mark tracking lost when they are unreliable)."""
        if keypoints is None or float(keypoints[:, 2].mean()) < self.min_mean_score:
            self.lose()
            return
        box = box_from_keypoints(keypoints, margin=self.margin)
        if box is None:
            self.lose()
            return
        self._box = box if self._box is None else self.smoothing * self._box + (1 - self.smoothing) * box
        self.follow(self._box)

    @staticmethod
    def _clip(box: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        h, w = shape[:2]
        return np.array([max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h)], np.float32)


def create_tracker(pick: str | int = "largest", detector: PersonDetector | None = None) -> PersonTracker:
    """The tracker used by top-down engines: the bundled BlazePose person detector (or a shared ``detector``, one
    per analyzer for all its cameras) + lifter following."""
    pick = parse_pick(pick)  # fail on a bad --pick before loading the model
    if detector is None:
        from realtime.pose.detector import BlazePersonDetector

        detector = BlazePersonDetector()
    return PersonTracker(detector=detector, pick=pick)
