"""One upright convention for every decode path: a phone clip with a display rotation, decoded by capture, by
``train``'s extraction, by INT8 calibration and by the helper itself, must look as FFmpeg's auto-rotation shows it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import ffmpeg_upright, white_corner, write_video

from realtime.backends.calibration import read_frames
from realtime.sources.capture import Capture
from realtime.sources.decode import decode_upright, upright
from realtime.training.train import iter_video

W, H = 96, 64


def _capture_first(path: Path) -> np.ndarray:
    with Capture(path) as cap:
        cap.start()
        frame = None
        while frame is None and not cap.ended:
            frame = cap.get(0.5)
    assert frame is not None
    return frame.image


PATHS = {
    "helper": lambda p: next(decode_upright(p)),
    "capture": _capture_first,
    "extract": lambda p: next(iter_video(p))[0],
    "calibration": lambda p: dict(read_frames(p, {0}))[0],
}


@pytest.fixture(scope="module", params=[90, 180, 270])
def phone_clip(request, tmp_path_factory) -> tuple[Path, np.ndarray]:
    path = write_video(tmp_path_factory.mktemp("rot") / f"rot{request.param}.mp4", 4, (W, H), codec="mpeg4",
                       pattern="corner", rotate=request.param)
    return path, ffmpeg_upright(path)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_every_decode_path_is_upright_like_ffmpeg(phone_clip, name):
    path, reference = phone_clip
    image = PATHS[name](path)
    assert image.shape == reference.shape
    assert white_corner(image) == white_corner(reference)
    assert np.abs(image.astype(int) - reference.astype(int)).mean() < 8.0


def test_upright_turns_counter_clockwise_by_quarters():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = 255  # top-left
    assert upright(img, 0) is img
    assert upright(img, 90)[2, 0].all()  # counter-clockwise: top-left goes to bottom-left
    assert upright(img, -90)[0, 1].all() and upright(img, 270)[0, 1].all()  # clockwise: to top-right
    assert upright(img, 180)[1, 2].all() and upright(img, None) is img


def test_unrotated_clip_is_untouched(tmp_path):
    path = write_video(tmp_path / "plain.mp4", 2, (W, H), codec="mpeg4", pattern="corner")
    image = next(decode_upright(path))
    assert image.shape == (H, W, 3) and white_corner(image) == (False, False)
