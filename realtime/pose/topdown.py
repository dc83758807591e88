"""Top-down crop and heatmap decoding shared by every ViTPose backend (numpy + OpenCV only).

Geometry follows ViTPose's own test pipeline, which uses UDP ("unbiased data processing", Huang et al. CVPR 2020):
the padded person box ``[c - s/2, c + s/2]`` maps onto the input pixel centres ``[0, W_in - 1]``, and heatmap pixel
``j`` sits on input pixel ``j * (W_in - 1) / (W_hm - 1)``. Heatmap peaks are refined with DARK (Zhang et al. CVPR 2020:
Gaussian modulation, then one Newton/Taylor step on the log-heatmap), as ViTPose's ``post_dark_udp`` does.
"""

from __future__ import annotations

import cv2
import numpy as np

INPUT_HW: tuple[int, int] = (256, 192)
HEATMAP_HW: tuple[int, int] = (64, 48)
# ImageNet statistics on the 0..255 scale, RGB order (what ViTPose was trained with).
MEAN_RGB = np.array([123.675, 116.28, 103.53], np.float32)
STD_RGB = np.array([58.395, 57.12, 57.375], np.float32)
DARK_KERNEL = 11  # ViTPose test config: modulate_kernel=11


def box_to_center_scale(
    box_xyxy: np.ndarray, aspect: float = INPUT_HW[1] / INPUT_HW[0], padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Person box (x1, y1, x2, y2) px -> (center (2,), scale (2,) = crop width, height px) at the input aspect.

    The short side is grown to the model's width/height ratio, then both sides by ``padding`` (mmpose's 1.25).
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box_xyxy, np.float64)[:4])
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    center = np.array([(x1 + x2) * 0.5, (y1 + y2) * 0.5], np.float32)
    return center, np.array([w * padding, h * padding], np.float32)


def crop_affine(center: np.ndarray, scale: np.ndarray, out_hw: tuple[int, int] = INPUT_HW) -> np.ndarray:
    """2x3 matrix taking frame pixels to crop pixels: region ``center ± scale/2`` -> ``[0, W-1] x [0, H-1]`` (UDP)."""
    out_h, out_w = out_hw
    sx = (out_w - 1.0) / float(scale[0])
    sy = (out_h - 1.0) / float(scale[1])
    return np.array(
        [[sx, 0.0, sx * (0.5 * float(scale[0]) - float(center[0]))],
         [0.0, sy, sy * (0.5 * float(scale[1]) - float(center[1]))]],
        np.float64,
    )


def preprocess(image_bgr: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop each person box to the model input.

    Returns (batch (N, 3, 256, 192) float32, ImageNet-normalised RGB; affines (N, 2, 3) float64 frame -> crop px).
    Pixels outside the frame are black, as in mmpose.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    out_h, out_w = INPUT_HW
    batch = np.empty((len(boxes), 3, out_h, out_w), np.float32)
    affines = np.empty((len(boxes), 2, 3), np.float64)
    for i, box in enumerate(boxes):
        center, scale = box_to_center_scale(box)
        affines[i] = crop_affine(center, scale)
        crop = cv2.warpAffine(image_bgr, affines[i], (out_w, out_h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        rgb = (crop[..., ::-1].astype(np.float32) - MEAN_RGB) / STD_RGB
        batch[i] = rgb.transpose(2, 0, 1)
    return batch, affines


def _dark_refine(heatmaps: np.ndarray, peaks: np.ndarray, kernel: int) -> np.ndarray:
    """DARK: one Newton step on the Gaussian-blurred log-heatmap from the integer peak -> (M, 2) sub-pixel x, y.

    ``heatmaps`` is (M, H, W), ``peaks`` (M, 2) integer x, y. The 3x3 derivative stencil is centred on the peak,
    moved one pixel inward at the map's edge (a log-Gaussian is quadratic, so the Newton step is still exact), and
    maps are not blurred where the blur would reach past the edge (it would pull the peak). The result stays
    within 1 px of the integer peak: a larger step means the quadratic model does not hold (flat/multi-modal map).
    """
    m, h, w = heatmaps.shape
    radius = kernel // 2
    centre = np.clip(peaks, 1, [w - 2, h - 2])
    margin = np.minimum(centre, [w - 1, h - 1] - centre).min(1)
    blurred = np.stack([cv2.GaussianBlur(hm, (kernel, kernel), 0) for hm in heatmaps]) if kernel > 1 else heatmaps
    logs = np.log(np.clip(np.where((margin > radius)[:, None, None], blurred, heatmaps), 1e-3, 50.0))
    idx, x, y = np.arange(m), centre[:, 0], centre[:, 1]

    def at(dx: int, dy: int) -> np.ndarray:
        return logs[idx, y + dy, x + dx].astype(np.float64)

    c = at(0, 0)
    grad = np.stack([0.5 * (at(1, 0) - at(-1, 0)), 0.5 * (at(0, 1) - at(0, -1))], -1)
    hxx = at(1, 0) - 2 * c + at(-1, 0)
    hyy = at(0, 1) - 2 * c + at(0, -1)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    hess = np.stack([np.stack([hxx, hxy], -1), np.stack([hxy, hyy], -1)], -2)  # (M, 2, 2)
    ok = np.abs(hxx * hyy - hxy * hxy) > 1e-12
    refined = peaks.astype(np.float64)
    if ok.any():
        refined[ok] = centre[ok] - np.linalg.solve(hess[ok], grad[ok][..., None])[..., 0]
    return np.clip(refined, peaks - 1.0, peaks + 1.0)


def decode_heatmaps(heatmaps: np.ndarray, affines: np.ndarray, kernel: int = DARK_KERNEL) -> np.ndarray:
    """(N, 17, 64, 48) heatmaps + (N, 2, 3) crop affines -> (N, 17, 3) float32 keypoints: x, y frame px, score.

    Argmax peak, DARK sub-pixel refinement, heatmap px -> crop px (UDP scaling) -> frame px with the inverse
    affine. The score is the raw peak value clipped to [0, 1].
    """
    heatmaps = np.asarray(heatmaps, np.float32)
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n * k, h * w)
    arg = flat.argmax(1)
    scores = np.clip(flat[np.arange(n * k), arg], 0.0, 1.0)
    peaks = np.stack([arg % w, arg // w], -1)
    xy = _dark_refine(heatmaps.reshape(n * k, h, w), peaks, kernel)
    in_h, in_w = INPUT_HW
    xy = xy * np.array([(in_w - 1.0) / (w - 1.0), (in_h - 1.0) / (h - 1.0)])  # heatmap px -> crop px (UDP)
    xy = xy.reshape(n, k, 2)
    out = np.empty((n, k, 3), np.float32)
    for i in range(n):
        inverse = cv2.invertAffineTransform(np.asarray(affines[i], np.float64))
        out[i, :, :2] = xy[i] @ inverse[:, :2].T + inverse[:, 2]
    out[..., 2] = scores.reshape(n, k)
    return out
