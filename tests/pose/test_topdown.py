"""Top-down crop geometry and heatmap decoding (realtime.pose.topdown) on synthetic data with known answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.pose.topdown import (
    HEATMAP_HW,
    INPUT_HW,
    box_to_center_scale,
    crop_affine,
    decode_heatmaps,
    preprocess,
)

BOXES = np.array([[100.5, 50.2, 300.7, 420.9], [10.0, 20.0, 410.0, 120.0], [-40.0, 300.0, 90.0, 470.0]], np.float32)


def gaussian_maps(xy: np.ndarray, sigma: float = 2.0, peak: float = 0.9) -> np.ndarray:
    """(N, K, 2) heatmap-pixel centres -> (N, K, 64, 48) float32 Gaussian heatmaps."""
    h, w = HEATMAP_HW
    yy, xx = np.mgrid[0:h, 0:w]
    d2 = (xx - xy[..., 0, None, None]) ** 2 + (yy - xy[..., 1, None, None]) ** 2
    return (peak * np.exp(-d2 / (2 * sigma**2))).astype(np.float32)


def expected_frame_xy(xy_hm: np.ndarray, affines: np.ndarray) -> np.ndarray:
    """Reference mapping written independently of decode_heatmaps: heatmap px -> crop px (UDP) -> frame px."""
    (in_h, in_w), (h, w) = INPUT_HW, HEATMAP_HW
    crop = xy_hm * [(in_w - 1) / (w - 1), (in_h - 1) / (h - 1)]
    out = np.empty_like(crop)
    for i, affine in enumerate(affines):
        full = np.vstack([affine, [0, 0, 1]])
        homogeneous = np.c_[crop[i], np.ones(len(crop[i]))]
        out[i] = (np.linalg.inv(full) @ homogeneous.T).T[:, :2]
    return out


def heatmap_px_size(box: np.ndarray) -> float:
    """Frame pixels per heatmap pixel for a box (horizontal; the crop keeps the aspect, so both agree)."""
    return float(box_to_center_scale(box)[1][0]) / (HEATMAP_HW[1] - 1)


def test_box_to_center_scale_keeps_aspect_and_pads() -> None:
    wide = box_to_center_scale(np.array([0, 0, 300, 100]))
    tall = box_to_center_scale(np.array([10, 20, 60, 420]))
    np.testing.assert_allclose(wide[0], [150, 50])
    np.testing.assert_allclose(wide[1], [300 * 1.25, 400 * 1.25])  # height grown to 300 / 0.75
    np.testing.assert_allclose(tall[1], [300 * 1.25, 400 * 1.25])  # width grown to 400 * 0.75
    for _, scale in (wide, tall):
        assert scale[0] / scale[1] == pytest.approx(INPUT_HW[1] / INPUT_HW[0])


def test_crop_affine_maps_region_corners_to_pixel_centres() -> None:
    center, scale = np.array([200.0, 150.0]), np.array([120.0, 160.0])
    affine = crop_affine(center, scale)
    corners = np.array([[140.0, 70.0], [260.0, 230.0], [200.0, 150.0]])
    mapped = corners @ affine[:, :2].T + affine[:, 2]
    np.testing.assert_allclose(mapped, [[0, 0], [INPUT_HW[1] - 1, INPUT_HW[0] - 1],
                                        [(INPUT_HW[1] - 1) / 2, (INPUT_HW[0] - 1) / 2]], atol=1e-9)
    back = mapped @ cv2.invertAffineTransform(affine)[:, :2].T + cv2.invertAffineTransform(affine)[:, 2]
    np.testing.assert_allclose(back, corners, atol=1e-9)


def test_preprocess_puts_a_frame_spot_where_the_affine_says() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    spot = np.array([181.0, 233.0])
    cv2.circle(image, (int(spot[0]), int(spot[1])), 6, (255, 255, 255), -1)
    batch, affines = preprocess(image, BOXES[:1])
    assert batch.shape == (1, 3, *INPUT_HW) and batch.dtype == np.float32
    assert affines.shape == (1, 2, 3)
    weight = batch[0, 0] - batch[0, 0].min()  # R channel; normalisation is affine so the centroid is unchanged
    yy, xx = np.mgrid[0:INPUT_HW[0], 0:INPUT_HW[1]]
    centroid = np.array([(xx * weight).sum(), (yy * weight).sum()]) / weight.sum()
    np.testing.assert_allclose(centroid, spot @ affines[0, :, :2].T + affines[0, :, 2], atol=0.3)


def test_preprocess_normalises_like_imagenet_rgb() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    image[:] = (10, 128, 250)  # BGR
    batch, _ = preprocess(image, np.array([[0, 0, 60, 60]], np.float32))  # crop spans x -7.5..67.5, y -20..80
    centre = batch[0, :, INPUT_HW[0] // 2, INPUT_HW[1] // 2]
    np.testing.assert_allclose(centre, [(250 - 123.675) / 58.395, (128 - 116.28) / 57.12, (10 - 103.53) / 57.375],
                               atol=1e-5)
    outside = batch[0, :, 0, 0]  # the padded crop reaches past the frame: black there, as in mmpose
    np.testing.assert_allclose(outside, [-123.675 / 58.395, -116.28 / 57.12, -103.53 / 57.375], atol=1e-5)


def test_preprocess_matches_the_hugging_face_vitpose_processor() -> None:
    processing = pytest.importorskip("transformers.models.vitpose.image_processing_pil_vitpose")
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    ours, affines = preprocess(image, BOXES)
    xywh = [[[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in BOXES]]
    theirs = processing.VitPoseImageProcessorPil()(images=[image[..., ::-1].copy()], boxes=xywh,
                                                    return_tensors="np")["pixel_values"]
    assert theirs.shape == ours.shape
    # Compare where the crop samples the frame's interior: at the frame's edge scipy and OpenCV interpolate
    # towards the black border differently (the boxes reach past the frame on purpose).
    yy, xx = np.mgrid[0:INPUT_HW[0], 0:INPUT_HW[1]]
    for ours_i, theirs_i, affine in zip(ours, theirs, affines, strict=True):
        inverse = cv2.invertAffineTransform(affine)
        fx = inverse[0, 0] * xx + inverse[0, 1] * yy + inverse[0, 2]
        fy = inverse[1, 0] * xx + inverse[1, 1] * yy + inverse[1, 2]
        inside = (fx >= 1) & (fx <= image.shape[1] - 2) & (fy >= 1) & (fy <= image.shape[0] - 2)
        assert inside.mean() > 0.3
        diff = np.abs(ours_i - theirs_i)[:, inside]
        assert diff.mean() < 1e-4 and diff.max() < 0.05  # bilinear rounding only (one grey level is 0.017)


@pytest.mark.parametrize("border", [False, True])
def test_decode_recovers_subpixel_gaussian_peaks(border: bool) -> None:
    rng = np.random.default_rng(7 + border)
    h, w = HEATMAP_HW
    low, high = ([0.0, 0.0], [w - 1.0, h - 1.0]) if border else ([6.0, 6.0], [w - 7.0, h - 7.0])
    xy = rng.uniform(low, high, (len(BOXES), 17, 2))
    if border:  # force peaks onto and next to every edge
        xy[:, :4, 0] = [0.0, 0.4, 1.3, w - 1.2]
        xy[:, 4:8, 1] = [0.2, 1.7, h - 1.0, h - 2.4]
    affines = np.stack([crop_affine(*box_to_center_scale(b)) for b in BOXES])
    keypoints = decode_heatmaps(gaussian_maps(xy), affines)
    assert keypoints.shape == (len(BOXES), 17, 3) and keypoints.dtype == np.float32
    err_hm = np.linalg.norm(keypoints[..., :2] - expected_frame_xy(xy, affines), axis=-1)
    err_hm /= np.array([heatmap_px_size(b) for b in BOXES])[:, None]
    assert err_hm.max() < 0.5  # the requirement; DARK on a clean Gaussian is far better:
    assert err_hm.mean() < 0.02
    np.testing.assert_allclose(keypoints[..., 2], 0.9, atol=0.1)


def test_decode_beats_integer_argmax_on_noisy_maps() -> None:
    rng = np.random.default_rng(3)
    xy = rng.uniform([6, 6], [41, 57], (len(BOXES), 17, 2))
    maps = gaussian_maps(xy) + rng.normal(0, 0.02, (len(BOXES), 17, *HEATMAP_HW)).astype(np.float32)
    affines = np.stack([crop_affine(*box_to_center_scale(b)) for b in BOXES])
    truth = expected_frame_xy(xy, affines)
    px = np.array([heatmap_px_size(b) for b in BOXES])[:, None]
    err_dark = np.linalg.norm(decode_heatmaps(maps, affines)[..., :2] - truth, axis=-1) / px
    err_argmax = np.linalg.norm(decode_heatmaps(maps, affines, kernel=1)[..., :2] - truth, axis=-1) / px
    flat = maps.reshape(len(BOXES), 17, -1).argmax(-1)
    integer = np.stack([flat % HEATMAP_HW[1], flat // HEATMAP_HW[1]], -1).astype(float)
    err_int = np.linalg.norm(expected_frame_xy(integer, affines) - truth, axis=-1) / px
    assert err_dark.max() < 0.5
    assert err_dark.mean() < 0.5 * err_int.mean()
    assert np.isfinite(err_argmax).all()


def test_decode_scores_are_clipped_peaks() -> None:
    xy = np.full((1, 17, 2), 20.0)
    maps = gaussian_maps(xy, peak=1.7)
    maps[0, 3] = -0.2  # no positive response at all
    maps[0, 4] *= 0.4 / 1.7
    keypoints = decode_heatmaps(maps, crop_affine(*box_to_center_scale(BOXES[0]))[None])
    assert keypoints[0, 0, 2] == 1.0
    assert keypoints[0, 3, 2] == 0.0
    assert keypoints[0, 4, 2] == pytest.approx(0.4, abs=1e-6)
    assert np.isfinite(keypoints).all()


def test_decode_of_a_flat_map_stays_at_the_integer_peak() -> None:
    maps = np.full((1, 17, *HEATMAP_HW), 0.5, np.float32)
    affine = crop_affine(*box_to_center_scale(BOXES[0]))
    keypoints = decode_heatmaps(maps, affine[None])
    np.testing.assert_allclose(keypoints[0, :, :2], expected_frame_xy(np.zeros((1, 17, 2)), affine[None])[0],
                               atol=1e-3)


def test_decode_agrees_with_the_hugging_face_vitpose_post_processing() -> None:
    processing = pytest.importorskip("transformers.models.vitpose.image_processing_pil_vitpose")
    rng = np.random.default_rng(11)
    xy = rng.uniform([6, 6], [41, 57], (len(BOXES), 17, 2))
    maps = gaussian_maps(xy)
    affines = np.stack([crop_affine(*box_to_center_scale(b)) for b in BOXES])
    ours = decode_heatmaps(maps, affines)
    centers, scales = zip(*(processing.box_to_center_and_scale([b[0], b[1], b[2] - b[0], b[3] - b[1]],
                                                               INPUT_HW[1], INPUT_HW[0]) for b in BOXES), strict=True)
    theirs, scores = processing.VitPoseImageProcessorPil().keypoints_from_heatmaps(
        maps.copy(), np.stack(centers), np.stack(scales))
    px = np.array([heatmap_px_size(b) for b in BOXES])[:, None]
    assert (np.linalg.norm(ours[..., :2] - theirs, axis=-1) / px).max() < 0.05
    np.testing.assert_allclose(ours[..., 2], scores[..., 0], atol=1e-6)
