"""Decode a video file with PyAV into upright BGR frames: the one place that applies a phone clip's rotation.

PyAV reports a stream's display matrix as ``frame.rotation``: the angle in degrees by which the stored picture
must be turned **counter-clockwise** to be shown upright (FFmpeg's ``av_display_rotation_get``). A portrait phone
clip stored landscape typically reports -90 (turn 90 degrees clockwise). ``ffmpeg``'s own auto-rotation applies the
same matrix, so its output is the reference the tests compare against.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

_TURN = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


def upright(image: np.ndarray, rotation: float | None) -> np.ndarray:
    """Turn ``image`` by ``rotation`` degrees counter-clockwise (PyAV's ``frame.rotation``), in quarter turns."""
    quarter = int(round((rotation or 0) / 90.0)) % 4
    return cv2.rotate(image, _TURN[quarter]) if quarter else image


def frame_to_bgr(frame: Any) -> np.ndarray:
    """A decoded ``av.VideoFrame`` -> (H, W, 3) uint8 BGR, upright per its display matrix."""
    return upright(frame.to_ndarray(format="bgr24"), getattr(frame, "rotation", 0))


def stream_fps(stream: Any, default: float) -> float:
    """The stream's frame rate (average, guessed, then base rate), or ``default`` when it has none."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else float(default)


def iter_upright(container: Any, stream: Any | None = None) -> Iterator[np.ndarray]:
    """Upright BGR frames of an open container's video stream (the first one by default)."""
    stream = container.streams.video[0] if stream is None else stream
    for frame in container.decode(stream):
        yield frame_to_bgr(frame)


def decode_upright(path: str | Path, *, limit: int | None = None, threads: str | None = "AUTO") -> Iterator[np.ndarray]:
    """Open ``path`` and yield up to ``limit`` upright BGR frames (PyAV errors propagate to the caller)."""
    import av  # deferred: webcam-only use needs no PyAV

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if threads:
            stream.thread_type = threads
        for i, image in enumerate(iter_upright(container, stream)):
            if limit is not None and i >= limit:
                break
            yield image


__all__ = ["decode_upright", "frame_to_bgr", "iter_upright", "stream_fps", "upright"]
