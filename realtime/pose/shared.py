"""The pose engine of an analyzer: the models loaded once, one ``PoseEstimator`` per camera over them.

Per camera: the followed person, the crop for the next frame (tracking state). Shared: the person detector and
the landmark / ViTPose network, behind a ``Batcher`` (networks that batch) or a ``FairGate`` (LiteRT).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from realtime.pose.batching import Batcher, BatchStats, FairGate


class GatedDetector:
    """A person detector shared by several cameras' trackers, one call at a time, first come first served."""

    def __init__(self, detector, gate: FairGate) -> None:
        self.detector = detector
        self.gate = gate

    def detect(self, image):
        with self.gate:
            return self.detector.detect(image)

    def close(self) -> None:
        self.detector.close()


class SharedPoseEngine:
    """``estimator(pick)`` hands each camera its own estimator; ``close()`` frees the shared models once."""

    def __init__(self, name: str, reason: str, make: Callable[[str | int], object], *,
                 batcher: Batcher | None = None, closers: tuple[Callable[[], None], ...] = ()) -> None:
        self.name = name
        self.reason = reason
        self.batcher = batcher
        self._make = make
        self._closers = closers
        self._lock = threading.Lock()
        self._closed = False

    def estimator(self, pick: str | int = "largest"):
        return self._make(pick)

    def attach(self) -> None:
        """A camera starts: the batcher counts it, so it never waits for a camera that is not running."""
        if self.batcher is not None:
            self.batcher.attach()

    def detach(self) -> None:
        if self.batcher is not None:
            self.batcher.detach()

    def batch_stats(self) -> BatchStats | None:
        return self.batcher.stats() if self.batcher is not None else None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for close in self._closers:
            close()
