"""The classifier's time base: frames of any rate onto the fixed rate the model was trained at (30 Hz).

The TCN judges the shape of the last 150 *model steps* of movement, and it was trained at 30 steps per second. A
60 fps phone video fed frame by frame looks like a squat in slow motion, and a pose engine that keeps up with only
5 frames a second (ViTPose-B on a CPU drops the rest of a live feed) looks like one at 6× speed: both cost real
accuracy (Penn Action test split, the shipped pair of networks: 95.4 % at 30 fps, 92.1 % at 60 fps, 91.7 % at
5 fps; on this time base 95.4 / 95.4 / 95.2 %; ``bench/frame_rates.py``). ``TickClock`` therefore turns each
frame's timestamp into the number of 30 Hz steps it stands for: 0 (a 60 fps frame between two steps: skipped),
1 (30 fps) or more (the frame is held for the steps that passed since the previous one). Holding was measured
against interpolating between the previous and the current frame (also causal): holding kept 0.3–0.8 points more
on Penn at 10 and 5 fps.
"""

from __future__ import annotations

import math

import numpy as np

MODEL_RATE = 30.0  # steps per second the shipped classifier was trained at (training resamples every clip to it)
# Step k covers [k - PHASE, k + 1 - PHASE) / rate: 0.4 rather than 0.5 so that a 60 fps frame never falls exactly
# on a boundary, where floating-point noise would alternate between skipping even and odd frames.
PHASE = 0.4
MAX_HOLD_S = 1.0  # a longer gap (stalled feed) is held for 1 s, not replayed step by step


class TickClock:
    """Frame timestamps (seconds, any origin) -> how many model steps each frame stands for."""

    def __init__(self, rate: float = MODEL_RATE, max_hold_s: float = MAX_HOLD_S) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = float(rate)
        self.max_steps = max(1, int(round(max_hold_s * self.rate)))
        self.reset()

    def reset(self) -> None:
        self._t0: float | None = None
        self._step = -1  # index of the last step handed out

    def steps(self, t: float) -> int:
        """Steps the frame at time ``t`` stands for (the first frame: 1). A clock that jumps back (a restarted
        file or stream) starts again from that frame."""
        if not math.isfinite(t):
            raise ValueError(f"frame time must be finite, got {t}")
        if self._t0 is None or t < self._t0 + (self._step - 1) / self.rate:
            self._t0, self._step = t, 0
            return 1
        step = math.floor((t - self._t0) * self.rate + PHASE)
        n = step - self._step
        if n <= 0:
            return 0
        self._step = step
        return min(n, self.max_steps)


def step_counts(n_frames: int, fps: float, rate: float = MODEL_RATE) -> np.ndarray:
    """(n_frames,) steps per frame of a clip at a constant ``fps`` — what ``TickClock`` gives a file live."""
    clock = TickClock(rate)
    return np.array([clock.steps(i / fps) for i in range(n_frames)], dtype=np.int64)
