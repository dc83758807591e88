"""Overlay frames from the analyzer process to the web process through shared memory.

One buffer per camera, sized for a frame whose longer side is ``max_side`` pixels. The web process says, per camera,
how large a frame its viewers need now (0: nobody watches); the analyzer downscales each frame it shows straight into
the camera's buffer to that size (one resize, no extra copy, no pickling); the web process copies it out. A sequence number per buffer (odd while a write is
under way) tells a reader whether the copy it took is whole.
"""

from __future__ import annotations

import ctypes
import multiprocessing.context

import cv2
import numpy as np

_SEQ, _HEIGHT, _WIDTH, _WANTED = range(4)


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

    def shown_size(self, height: int, width: int, side: int | None = None) -> tuple[int, int]:
        """(height, width) of a ``height`` x ``width`` frame once its longer side is at most ``side`` (at most
        ``max_side``)."""
        side = self.max_side if side is None else max(1, min(side, self.max_side))
        longer = max(height, width)
        if longer <= side:
            return height, width
        scale = side / longer
        return max(1, min(side, round(height * scale))), max(1, min(side, round(width * scale)))

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
        h, w = image_bgr.shape[:2]
        th, tw = self.shown_size(h, w, side)
        head = self._head[camera]
        head[_SEQ] += 1  # odd: a reader that overlaps this write must drop its copy
        target = self._pixels[camera, : th * tw * 3].reshape(th, tw, 3)
        if (th, tw) == (h, w):
            np.copyto(target, image_bgr)
        else:
            # bilinear below a factor of 2 (area is several times slower there and looks the same), area above
            method = cv2.INTER_LINEAR if max(h, w) < 2 * max(th, tw) else cv2.INTER_AREA
            cv2.resize(image_bgr, (tw, th), dst=target, interpolation=method)
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
