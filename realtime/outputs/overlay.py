"""Draw the analysis onto a frame: skeleton, label, rep count, last rep's values and cues, fps, drops.

Stateless: everything drawn comes from the ``FrameResult`` and the numbers passed in.
Text scales with the frame height so it is readable from a bench a few metres away.
"""

from __future__ import annotations

import cv2
import numpy as np

from realtime.reps.form import rep_headline
from realtime.types import COCO17_SKELETON, FrameResult

LEFT_COLOR = (255, 160, 0)  # BGR: person's left side in blue
RIGHT_COLOR = (0, 140, 255)  # person's right side in orange
CENTER_COLOR = (220, 220, 220)
LEFT_JOINTS = {1, 3, 5, 7, 9, 11, 13, 15}
RIGHT_JOINTS = {2, 4, 6, 8, 10, 12, 14, 16}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _limb_color(a: int, b: int) -> tuple[int, int, int]:
    if a in LEFT_JOINTS and b in LEFT_JOINTS:
        return LEFT_COLOR
    if a in RIGHT_JOINTS and b in RIGHT_JOINTS:
        return RIGHT_COLOR
    return CENTER_COLOR


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, min_score: float = 0.3, thickness: int = 3) -> None:
    """Draw COCO-17 limbs and joints in place; joints below ``min_score`` are left out."""
    ok = (keypoints[:, 2] >= min_score) & np.isfinite(keypoints[:, :2]).all(1)
    # integer pixel tuples once per frame (numpy-scalar round() per point costs more than the drawing)
    pts = [tuple(p) for p in np.rint(np.where(ok[:, None], keypoints[:, :2], 0)).astype(int).tolist()]
    ok = ok.tolist()
    for a, b in COCO17_SKELETON:
        if ok[a] and ok[b]:
            cv2.line(image, pts[a], pts[b], _limb_color(a, b), thickness, cv2.LINE_AA)
    for j in range(len(pts)):
        if not ok[j]:
            continue
        color = LEFT_COLOR if j in LEFT_JOINTS else RIGHT_COLOR if j in RIGHT_JOINTS else CENTER_COLOR
        center = pts[j]
        cv2.circle(image, center, thickness + 2, color, -1, cv2.LINE_AA)
        cv2.circle(image, center, thickness + 2, (0, 0, 0), 1, cv2.LINE_AA)


def _text(image: np.ndarray, text: str, org: tuple[int, int], scale: float, color=(255, 255, 255), weight: int = 2):
    # A drop shadow at the same weight: a thicker outline would change glyph widths (OpenCV 5 maps thickness
    # to font weight), so the two layers would not line up.
    shadow = max(1, int(round(scale * 2)))
    cv2.putText(image, text, (org[0] + shadow, org[1] + shadow), FONT, scale, (0, 0, 0), weight, cv2.LINE_AA)
    cv2.putText(image, text, org, FONT, scale, color, weight, cv2.LINE_AA)


def _panel(image: np.ndarray, x1: int, y1: int, x2: int, y2: int, alpha: float = 0.55) -> None:
    x1, y1 = max(x1, 0), max(y1, 0)
    x2, y2 = min(x2, image.shape[1]), min(y2, image.shape[0])
    if x2 <= x1 or y2 <= y1:
        return
    roi = image[y1:y2, x1:x2]
    roi[:] = cv2.convertScaleAbs(roi, alpha=1 - alpha)  # darken in uint8 (a float round trip costs 4x)


def draw_overlay(
    image: np.ndarray,
    result: FrameResult,
    fps: float,
    dropped: int,
    source_status: str | None = None,
) -> np.ndarray:
    """Return a copy of ``image`` with the analysis drawn on it."""
    out = image.copy()
    h, w = out.shape[:2]
    unit = max(h, w * 0.75) / 720.0  # 1.0 on a 720p frame
    pose = result.pose
    if pose.keypoints is not None:
        draw_skeleton(out, pose.keypoints, thickness=max(2, int(round(3 * unit))))
        if pose.box is not None:
            x1, y1, x2, y2 = (int(v) for v in pose.box)
            cv2.rectangle(out, (x1, y1), (x2, y2), (90, 90, 90), 1, cv2.LINE_AA)

    # Left panel: exercise, confidence, reps.
    big, mid, small = 1.3 * unit, 0.8 * unit, 0.6 * unit
    lines: list[tuple[str, float, tuple[int, int, int]]] = []
    status = source_status or result.status
    if status != "ok":
        lines.append((status.upper(), mid, (0, 200, 255)))
    if result.prediction is not None:
        pred = result.prediction
        lines.append((f"{pred.label.replace('_', ' ')}  {pred.confidence * 100:.0f}%", mid, (255, 255, 255)))
    if result.exercise:
        count = f"{result.rep_count} rep{'' if result.rep_count == 1 else 's'}"
        lines.append((f"{result.exercise.replace('_', ' ')}: {count}", big, (80, 255, 80)))
    if result.last_rep is not None:
        rep = result.last_rep
        said = rep_headline(rep.exercise, rep.measures) or f"{rep.duration_s:.1f} s"
        ok = not rep.faults  # green: the last rep passed every check its camera view allowed
        lines.append((f"rep {rep.index}: {said}{'  no faults' if ok else ''}", small,
                      (120, 255, 120) if ok else (230, 230, 230)))
    for cue in result.cues[:3]:
        lines.append((cue, small, (60, 60, 255)))
    weight = max(1, int(round(2 * unit)))
    heights = [cv2.getTextSize(text, FONT, scale, weight)[0][1] for text, scale, _ in lines]
    steps = [int(h * 1.7) + int(6 * unit) for h in heights]  # line advance from each line's own height
    widths = [cv2.getTextSize(text, FONT, scale, weight)[0][0] for text, scale, _ in lines]
    panel_w = min(w, max(widths, default=0) + int(30 * unit))
    y = int(8 * unit)
    _panel(out, 0, 0, panel_w, y + sum(steps) + int(10 * unit))
    for (text, scale, color), step in zip(lines, steps, strict=True):
        y += step
        _text(out, text, (int(12 * unit), y), scale, color, weight=weight)

    # Bottom-right: speed and drops.
    perf = f"{fps:4.1f} fps  dropped {dropped}"
    (tw, th), _ = cv2.getTextSize(perf, FONT, small, 1)
    _panel(out, w - tw - int(24 * unit), h - th - int(22 * unit), w, h)
    _text(out, perf, (w - tw - int(12 * unit), h - int(12 * unit)), small, (200, 255, 200), weight=1)
    return out
