"""Person detector: MediaPipe's BlazePose detector (bundled .tflite), decoded as in MediaPipe's public graph.

The model sees the frame letterboxed to 224×224 (RGB in [-1, 1]) and scores 2254 SSD anchors; each anchor carries a
face box and 4 alignment keypoints (hip centre, a point that encodes full-body size and rotation, shoulder centre,
an upper-body size point). We keep every person above ``min_score`` after weighted NMS, derive a full-body box from
the first two keypoints, and expose the rotated region of interest that the BlazePose landmark model expects.

Settings follow ``mediapipe/modules/pose_detection/pose_detection_cpu.pbtxt`` and
``mediapipe/modules/pose_landmark/pose_detection_to_roi.pbtxt`` (SsdAnchorsCalculator, TensorsToDetections,
weighted NonMaxSuppression, AlignmentPointsRects + RectTransformation ×1.25 square_long).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from realtime.errors import BackendUnavailable, WeightsError

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "blazepose"
DETECTOR_INPUT = 224
ROI_SCALE = 1.25  # margin MediaPipe adds around the alignment circle (RectTransformationCalculator)


def default_threads() -> int:
    """Interpreter threads: all cores, at most 4 (XNNPACK gains little beyond that for these small models)."""
    return max(1, min(4, os.cpu_count() or 1))


@contextlib.contextmanager
def _native_stderr_silenced():
    """Point file descriptor 2 at /dev/null for the duration (native libraries bypass Python's sys.stderr)."""
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (embedded use): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_interpreter(path: Path, num_threads: int | None = None):
    """A ready ``ai_edge_litert`` interpreter (XNNPACK on the CPU) for a bundled .tflite file."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise BackendUnavailable("BlazePose needs the TFLite runtime; run `pip install ai-edge-litert`") from exc
    if not path.is_file():
        raise WeightsError(f"bundled BlazePose model {path.name} is missing from {path.parent}; reinstall the package")
    try:
        with _native_stderr_silenced():  # the runtime prints "INFO: Created ... XNNPACK delegate" from C++
            interpreter = Interpreter(model_path=str(path), num_threads=num_threads or default_threads())
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise WeightsError(f"cannot load {path} ({exc}); reinstall the package to restore the bundled model") from exc
    return interpreter


def ssd_anchors(
    input_size: int = DETECTOR_INPUT,
    strides: tuple[int, ...] = (8, 16, 32, 32, 32),
    offset: float = 0.5,
) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1] for MediaPipe's SsdAnchorsCalculator with ``fixed_anchor_size``.

    One aspect ratio (1.0) plus the interpolated-scale anchor gives 2 anchors per cell and layer; consecutive
    layers with the same stride share one feature map, so 28²·2 + 14²·2 + 7²·2·3 = 2254 for the pose detector.
    """
    centres: list[np.ndarray] = []
    layer = 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        per_cell = 2 * (same - layer)
        side = math.ceil(input_size / strides[layer])
        ys, xs = np.meshgrid((np.arange(side) + offset) / side, (np.arange(side) + offset) / side, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], 1)
        centres.append(np.repeat(cells, per_cell, axis=0))
        layer = same
    return np.concatenate(centres).astype(np.float32)


@dataclass(frozen=True, slots=True)
class RotatedRoi:
    """Square crop region in frame pixels: centre, side length and rotation (radians, clockwise on screen)."""

    cx: float
    cy: float
    size: float
    rotation: float

    @classmethod
    def from_alignment(cls, centre: np.ndarray, scale_point: np.ndarray, scale: float = ROI_SCALE) -> RotatedRoi:
        """MediaPipe's AlignmentPointsRects: side = 2·|scale_point − centre|·scale, rotated so the body is upright."""
        dx, dy = float(scale_point[0] - centre[0]), float(scale_point[1] - centre[1])
        size = 2.0 * math.hypot(dx, dy) * scale
        # target angle 90°: a scale point straight above the centre means no rotation
        rotation = _normalize_radians(math.pi / 2 - math.atan2(-dy, dx))
        return cls(float(centre[0]), float(centre[1]), size, rotation)

    def turned(self) -> RotatedRoi:
        """The same square, the other way up."""
        return RotatedRoi(self.cx, self.cy, self.size, _normalize_radians(self.rotation + math.pi))

    def crop_to_frame(self, out_size: int) -> np.ndarray:
        """2×3 affine matrix mapping crop pixels (0..out_size) to frame pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        k = self.size / out_size
        a = np.array([[c * k, -s * k], [s * k, c * k]], np.float64)
        t = np.array([self.cx, self.cy]) - a @ np.array([out_size / 2, out_size / 2])
        return np.hstack([a, t[:, None]])

    def crop(self, image: np.ndarray, out_size: int, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
        """The ROI resampled to ``out_size``² (same channel order as ``image``)."""
        return cv2.warpAffine(
            image, self.crop_to_frame(out_size), (out_size, out_size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border,
        )

    def to_frame(self, points: np.ndarray, out_size: int) -> np.ndarray:
        """(N, 2) crop pixels -> (N, 2) frame pixels."""
        m = self.crop_to_frame(out_size)
        return points @ m[:, :2].T + m[:, 2]

    def box(self) -> np.ndarray:
        """Axis-aligned (4,) xyxy box that contains the rotated square."""
        half = 0.5 * self.size * (abs(math.cos(self.rotation)) + abs(math.sin(self.rotation)))
        return np.array([self.cx - half, self.cy - half, self.cx + half, self.cy + half], np.float32)


def _normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


@dataclass(frozen=True, slots=True)
class PersonDetection:
    """One detected person, frame pixels."""

    box: np.ndarray  # (4,) float32 xyxy full-body box (from the alignment circle, clipped to the frame)
    score: float
    face_box: np.ndarray  # (4,) float32 xyxy, what the SSD box itself encodes
    keypoints: np.ndarray  # (4, 2) float32: hip centre, full-body size/rotation point, shoulder centre, upper-body point

    def roi(self, scale: float = ROI_SCALE) -> RotatedRoi:
        """Landmark-model crop for this person (hip centre + full-body point, ×1.25 square)."""
        return RotatedRoi.from_alignment(self.keypoints[0], self.keypoints[1], scale)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, extra: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED non-max suppression.

    Each cluster (boxes with IoU > threshold with the best remaining one) is replaced by the score-weighted mean of
    its boxes and ``extra`` values, keeping the best score. Returns (box, extra, score) per cluster, best first.
    """
    order = np.argsort(-scores)
    boxes, scores, extra = boxes[order], scores[order], extra[order]
    remaining = np.arange(len(scores))
    out = []
    while len(remaining):
        best = remaining[0]
        overlap = _iou(boxes[best], boxes[remaining])
        members = remaining[overlap > iou_threshold]
        members = members if len(members) else np.array([best])
        w = scores[members][:, None]
        out.append(((boxes[members] * w).sum(0) / w.sum(), (extra[members] * w).sum(0) / w.sum(), float(scores[best])))
        remaining = remaining[overlap <= iou_threshold]
        remaining = remaining[remaining != best]
    return out


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


class BlazePersonDetector:
    """All people in a frame (any size/aspect): full-body boxes, scores and BlazePose alignment keypoints."""

    def __init__(
        self,
        min_score: float = 0.5,
        nms_iou: float = 0.3,
        num_threads: int | None = None,
        model_path: str | Path | None = None,
        max_people: int = 10,
        crop_bars: bool = True,
    ) -> None:
        self.min_score = min_score
        self.crop_bars = crop_bars
        self.nms_iou = nms_iou
        self.max_people = max_people
        self._interp = load_interpreter(Path(model_path) if model_path else MODEL_DIR / "pose_detection.tflite",
                                        num_threads)
        self._input = self._interp.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self._interp.get_output_details()}
        self._raw_out, self._score_out = outputs["Identity"], outputs["Identity_1"]
        self._anchors = ssd_anchors()
        self.last_ms = 0.0  # model + decoding time of the last call

    def detect(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """BGR image -> [(full-body box xyxy float32 (4,), score)], best score first (PersonDetector Protocol)."""
        return [(d.box, d.score) for d in self.detect_people(image)]

    def detect_people(self, image: np.ndarray) -> list[PersonDetection]:
        """BGR image -> every person above ``min_score`` after NMS, best score first.

        With ``crop_bars`` the detector first looks at the frame without its black bars (more pixels per person); when
        that finds nobody it looks at the whole frame too (seen on real clips: a person mostly hidden behind a plate
        is sometimes found only at the smaller scale).
        """
        t0 = time.perf_counter()
        h, w = image.shape[:2]
        region = content_box(image) if self.crop_bars else (0, 0, w, h)
        people = self._run(image, region)
        if not people and region != (0, 0, w, h):
            people = self._run(image, (0, 0, w, h))
        self.last_ms = (time.perf_counter() - t0) * 1e3
        return people

    def _run(self, image: np.ndarray, region: tuple[int, int, int, int]) -> list[PersonDetection]:
        x0, y0, x1, y1 = region
        tensor, scale, pad_x, pad_y = self._letterbox(image[y0:y1, x0:x1])
        offset = np.array([pad_x - x0 * scale, pad_y - y0 * scale], np.float32)  # letterbox -> whole-frame pixels
        self._interp.set_tensor(self._input, tensor)
        self._interp.invoke()
        raw = self._interp.get_tensor(self._raw_out)[0]
        logits = np.clip(self._interp.get_tensor(self._score_out)[0, :, 0].astype(np.float64), -100.0, 100.0)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = np.flatnonzero(scores >= self.min_score)
        if not len(keep):
            return []
        anchors, raw = self._anchors[keep], raw[keep] / DETECTOR_INPUT  # x/y/w/h and keypoints, anchor units
        cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
        bw, bh = raw[:, 2], raw[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        kps = raw[:, 4:12].reshape(-1, 4, 2) + anchors[:, None, :]
        height, width = image.shape[:2]
        people = []
        for box, kp, score in weighted_nms(boxes, scores[keep], kps.reshape(-1, 8), self.nms_iou)[: self.max_people]:
            face = ((box.reshape(2, 2) * DETECTOR_INPUT - offset) / scale).ravel().astype(np.float32)
            kp_px = ((kp.reshape(4, 2) * DETECTOR_INPUT - offset) / scale).astype(np.float32)
            people.append(PersonDetection(_body_box(kp_px, width, height), score, face, kp_px))
        return people

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """Fit the frame into 224×224 keeping its aspect (zero border, as MediaPipe), RGB in [-1, 1]."""
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 2 or image.shape[1] < 2:
            raise ValueError(f"expected an (H, W, 3) BGR image, got shape {image.shape}")
        h, w = image.shape[:2]
        scale = DETECTOR_INPUT / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        pad_x, pad_y = (DETECTOR_INPUT - nw) // 2, (DETECTOR_INPUT - nh) // 2
        canvas = np.zeros((DETECTOR_INPUT, DETECTOR_INPUT, 3), np.uint8)
        canvas[pad_y:pad_y + nh, pad_x:pad_x + nw] = resized
        # zero border in uint8 becomes -1 after scaling, as MediaPipe's BORDER_ZERO letterbox in [-1, 1]
        tensor = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).astype(np.float32) * (2.0 / 255.0) - 1.0
        # scale actually applied per axis (rounding) folded into one factor: error < 0.5 px in 224
        return tensor[None], scale, float(pad_x), float(pad_y)

    def close(self) -> None:
        self._interp = None


def content_box(image: np.ndarray, threshold: int = 16, step: int = 8) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the frame without black bars (a portrait clip inside a landscape frame, or the reverse).

    Social-media clips often carry wide black bars; cutting them before the 224×224 resize gives the person up to
    twice the detector pixels. Sampled every ``step`` px, so it costs well under a millisecond.
    """
    h, w = image.shape[:2]
    small = image[::step, ::step].max(axis=2)
    cols = np.flatnonzero(small.max(axis=0) > threshold)
    rows = np.flatnonzero(small.max(axis=1) > threshold)
    if len(cols) == 0 or len(rows) == 0:
        return 0, 0, w, h
    # widen by one sample step: the sampled grid can miss the first/last content pixels
    x0, x1 = max(0, (cols[0] - 1) * step), min(w, (cols[-1] + 2) * step)
    y0, y1 = max(0, (rows[0] - 1) * step), min(h, (rows[-1] + 2) * step)
    if (x1 - x0) * (y1 - y0) > 0.9 * w * h:
        return 0, 0, w, h  # no real bars: keep the whole frame
    return int(x0), int(y0), int(x1), int(y1)


def _body_box(kp: np.ndarray, width: int, height: int) -> np.ndarray:
    """Full-body box: the alignment circle (hip centre, radius = distance to the size point), clipped to the frame."""
    r = float(np.hypot(*(kp[1] - kp[0])))
    cx, cy = float(kp[0, 0]), float(kp[0, 1])
    box = np.array([cx - r, cy - r, cx + r, cy + r], np.float32)
    return np.clip(box, 0, [width, height, width, height]).astype(np.float32)
