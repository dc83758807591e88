"""Rolling per-stage timings, rates and counters (bounded: a long run keeps flat memory)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

STAGES: tuple[str, ...] = ("capture", "pose", "classifier", "reps", "draw", "sinks")


@dataclass(frozen=True, slots=True)
class StageStats:
    p50_ms: float
    p95_ms: float
    mean_ms: float
    count: int

    @property
    def fps(self) -> float:
        return 1000.0 / self.mean_ms if self.mean_ms > 0 else float("inf")


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """What the dashboard and the summary line show."""

    stages: dict[str, StageStats]
    end_to_end: StageStats | None  # capture -> sinks done, ms
    fps_out: float  # processed frames per second over the recent window
    frames_read: int
    frames_processed: int
    frames_dropped: int
    buffer_fill: int
    buffer_capacity: int
    label: str | None = None
    confidence: float = 0.0
    reps: int = 0
    status: str = "ok"
    extra: dict[str, object] = field(default_factory=dict)
    frames_skipped: int = 0  # left out by the camera's analysis rate (``--analysis-fps``)


def bottleneck(mean_ms: dict[str, float]) -> str | None:
    """The stage with the largest mean time (the one that limits the frame rate), or None when none has a time."""
    timed = {name: ms for name, ms in mean_ms.items() if ms and ms > 0}
    return max(timed, key=timed.__getitem__) if timed else None


def stage_rate_cell(name: str, mean_ms: float, slowest: str | None) -> str:
    """The "max fps" cell of a stage table: the rate only for the bottleneck stage, "-" for the others (the fps of
    a sub-millisecond stage, e.g. 674286 for the sinks, says nothing about the run)."""
    return f"{1000.0 / mean_ms:.0f}" if name == slowest and mean_ms > 0 else "-"


def summarize(samples_ms: list[float] | np.ndarray) -> StageStats | None:
    if len(samples_ms) == 0:
        return None
    arr = np.asarray(samples_ms, dtype=np.float64)
    return StageStats(
        p50_ms=float(np.percentile(arr, 50)),
        p95_ms=float(np.percentile(arr, 95)),
        mean_ms=float(arr.mean()),
        count=int(arr.size),
    )


class RunStats:
    """Thread-safe rolling windows of stage times (the last ``window`` samples per stage)."""

    def __init__(self, window: int = 600) -> None:
        self._lock = threading.Lock()
        self._stage: dict[str, deque[float]] = {}
        self._e2e: deque[float] = deque(maxlen=window)
        self._ticks: deque[float] = deque(maxlen=120)
        self._window = window
        self._totals: dict[str, float] = {}  # whole-run sums for the summary line
        self._counts: dict[str, int] = {}
        self.frames_processed = 0

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self._stage.setdefault(stage, deque(maxlen=self._window)).append(ms)
            self._totals[stage] = self._totals.get(stage, 0.0) + ms
            self._counts[stage] = self._counts.get(stage, 0) + 1

    def frame_done(self, capture_t: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._e2e.append((now - capture_t) * 1000.0)
            self._ticks.append(now)
            self.frames_processed += 1

    def fps_out(self) -> float:
        with self._lock:
            if len(self._ticks) < 2:
                return 0.0
            span = self._ticks[-1] - self._ticks[0]
            return (len(self._ticks) - 1) / span if span > 0 else 0.0

    def stages(self) -> dict[str, StageStats]:
        with self._lock:
            copies = {name: list(values) for name, values in self._stage.items()}
        return {name: s for name, values in copies.items() if (s := summarize(values)) is not None}

    def end_to_end(self) -> StageStats | None:
        with self._lock:
            values = list(self._e2e)
        return summarize(values)

    def mean_totals_ms(self) -> dict[str, float]:
        """Whole-run mean per stage (not just the rolling window)."""
        with self._lock:
            return {k: self._totals[k] / self._counts[k] for k in self._totals if self._counts[k]}
