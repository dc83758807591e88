"""A camera's analysis rate: keep at most ``fps`` frames a second, evenly spaced, and skip the rest early.

A 30 fps camera on a small box does not need every frame analysed: the classifier runs on its own 30 Hz time base
(``realtime.classify.ticks``) and keeps its accuracy down to 5 fps, and the rep counter works on frame times. What
a cap buys is CPU: a skipped frame is never converted to BGR, tracked, classified or drawn, so a box with several
cameras keeps headroom for the others and for the web view instead of converting frames the analysis then drops.
Frigate's ``detect: fps`` is the same idea.

Frames are judged by their own time (media time for files, capture time for live feeds), so a file analysed
faster than real time keeps the same frames as the same file paced like a camera.
"""

from __future__ import annotations

import math

# Slot k covers [k - PHASE, k + 1 - PHASE) / fps. 0.25 rather than 0: a frame due exactly on a slot boundary
# (every 3rd frame of 30 fps at 10 fps) must not be lost to floating-point noise in its timestamp.
PHASE = 0.25
# What a user may set (--analysis-fps, analysis_fps): from one frame every 2 s to more than any camera delivers.
ANALYSIS_FPS_RANGE = (0.5, 240.0)


class AnalysisRate:
    """``keep(t)``: whether the frame at time ``t`` (seconds) is analysed under a cap of ``fps`` frames a second."""

    def __init__(self, fps: float) -> None:
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"analysis rate must be a positive number of frames per second, got {fps!r}")
        self.fps = float(fps)
        self.reset()

    def reset(self) -> None:
        self._t0: float | None = None
        self._slot = -1  # the last slot that kept a frame

    def keep(self, t: float) -> bool:
        """True for the first frame in each 1/fps slot; a clock that jumps back (a restarted file) starts anew."""
        if self._t0 is None or t < self._t0 + (self._slot - 1) / self.fps:
            self._t0, self._slot = t, 0
            return True
        slot = math.floor((t - self._t0) * self.fps + PHASE)
        if slot <= self._slot:
            return False
        self._slot = slot
        return True


def delivered_fps(source_fps: float, cap: float | None) -> float:
    """Frames a second a capped source delivers on average: the lower of its own rate and the cap."""
    return min(source_fps, cap) if cap else source_fps


__all__ = ["ANALYSIS_FPS_RANGE", "AnalysisRate", "delivered_fps"]
