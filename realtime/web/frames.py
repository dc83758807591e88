"""Overlay frames from the analyzer process to the web process through shared memory.

One buffer per camera, sized for a frame whose longer side is ``max_side`` pixels. The web process says, per camera,
how large a frame its viewers need now (0: nobody watches); the analyzer downscales each frame it shows straight into
the camera's buffer to that size (one resize, no extra copy, no pickling); the web process copies it out. A sequence number per buffer (odd while a write is
under way) tells a reader whether the copy it took is whole.
"""

from __future__ import annotations

import ctypes
import multiprocessing.context
import time

import cv2
import numpy as np

_SEQ, _HEIGHT, _WIDTH, _WANTED = range(4)


def fit_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(height, width) of a ``height`` x ``width`` frame once its longer side is at most ``side``."""
    longer = max(height, width)
    if longer <= side:
        return height, width
    return max(1, min(side, round(height * side / longer))), max(1, min(side, round(width * side / longer)))


def shrink(image: np.ndarray, side: int, out: np.ndarray | None = None) -> np.ndarray:
    """``image`` with its longer side at most ``side`` (into ``out`` when given, which must have that size):
    bilinear below a factor of 2 (INTER_AREA is several times slower there and looks the same), area above."""
    h, w = image.shape[:2]
    th, tw = fit_size(h, w, side)
    if (th, tw) == (h, w):
        if out is None:
            return image
        np.copyto(out, image)
        return out
    method = cv2.INTER_LINEAR if max(h, w) < 2 * max(th, tw) else cv2.INTER_AREA
    return cv2.resize(image, (tw, th), dst=out, interpolation=method)


class FramePacer:
    """At most ``fps`` frames per second per key, on a steady beat (a late frame does not push the next one back,
    unless it is more than one period late)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._due: dict[str, float] = {}  # one writer per key (its camera's thread)

    def due(self, key: str) -> bool:
        """Whether a frame for ``key`` would be taken now."""
        return time.monotonic() >= self._due.get(key, 0.0)

    def take(self, key: str) -> bool:
        """Take a frame for ``key`` if one is due (and book the next), else False."""
        now = time.monotonic()
        due = self._due.get(key, 0.0)
        if now < due:
            return False
        self._due[key] = (now if now - due > self.period else due) + self.period
        return True


class FrameSlots:
    """Shared frame buffers of ``cameras`` cameras; picklable into a child process when it is started."""

    def __init__(self, cameras: int, max_side: int, ctx: multiprocessing.context.BaseContext) -> None:
        if cameras < 1 or max_side < 16:
            raise ValueError("need at least one camera and max_side >= 16")
        self.cameras = int(cameras)
        self.max_side = int(max_side)
        self._slot_bytes = self.max_side * self.max_side * 3
        self._raw = ctx.RawArray(ctypes.c_uint8, self.cameras * self._slot_bytes)
        self._raw_head = ctx.RawArray(ctypes.c_int64, self.cameras * 4)
        self._views()

    def _views(self) -> None:
        self._pixels = np.frombuffer(self._raw, dtype=np.uint8).reshape(self.cameras, self._slot_bytes)
        self._head = np.frombuffer(self._raw_head, dtype=np.int64).reshape(self.cameras, 4)

    def __getstate__(self) -> dict:
        return {"cameras": self.cameras, "max_side": self.max_side, "_slot_bytes": self._slot_bytes,
                "_raw": self._raw, "_raw_head": self._raw_head}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._views()

    # ------------------------------------------------------------------ the analyzer's side
    def wanted_side(self, camera: int) -> int:
        """Longer side (pixels) of the frames ``camera``'s viewers need now; 0: nobody watches (set by the web
        process)."""
        return int(self._head[camera, _WANTED])

    def write(self, camera: int, image_bgr: np.ndarray, side: int | None = None) -> int:
        """Downscale ``image_bgr`` (H x W x 3 uint8) into the camera's buffer, longer side at most ``side`` (default
        and at most ``max_side``); returns the buffer's new sequence number. One writer per camera."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 image, got {image_bgr.shape} {image_bgr.dtype}")
        side = self.max_side if side is None else max(1, min(side, self.max_side))
        th, tw = fit_size(*image_bgr.shape[:2], side)
        head = self._head[camera]
        head[_SEQ] += 1  # odd: a reader that overlaps this write must drop its copy
        shrink(image_bgr, side, out=self._pixels[camera, : th * tw * 3].reshape(th, tw, 3))
        head[_HEIGHT], head[_WIDTH] = th, tw
        head[_SEQ] += 1
        return int(head[_SEQ])

    # ------------------------------------------------------------------ the web process's side
    def set_wanted_side(self, camera: int, side: int) -> None:
        self._head[camera, _WANTED] = side

    def sequence(self, camera: int) -> int:
        return int(self._head[camera, _SEQ])

    def read(self, camera: int) -> tuple[int, np.ndarray] | None:
        """(sequence number, a copy of the latest frame), or None when there is none yet or a write overlapped."""
        head = self._head[camera]
        seq = int(head[_SEQ])
        if seq == 0 or seq % 2:
            return None
        h, w = int(head[_HEIGHT]), int(head[_WIDTH])
        if not (0 < h <= self.max_side and 0 < w <= self.max_side):
            return None
        image = self._pixels[camera, : h * w * 3].reshape(h, w, 3).copy()
        if int(head[_SEQ]) != seq:
            return None
        return seq, image
