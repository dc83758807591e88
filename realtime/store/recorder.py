"""Per-camera set bookkeeping: a set closes when the exercise changes or after a rest without reps."""

from __future__ import annotations

import threading

from realtime.store.store import Store


class SetRecorder:
    """Records one camera's reps into ``store``; ``on_rep`` may run on the analyzer thread, ``tick`` on another."""

    def __init__(self, store: Store, camera: str, *, host: str, rest_s: float = 60.0) -> None:
        if rest_s <= 0:
            raise ValueError("rest_s must be > 0")
        self.store = store
        self.camera = camera
        self.host = host
        self.rest_s = float(rest_s)
        self.set_id: int | None = None
        self.exercise: str | None = None
        self.last_rep_t: float | None = None
        self._lock = threading.Lock()

    def on_rep(self, rep: dict, wall_t: float) -> int:
        """Commit ``rep`` (closing the open set first when the exercise changed or the rest ran out); returns set id."""
        exercise = str(rep.get("exercise") or "unknown")
        with self._lock:
            if self.set_id is not None and (
                exercise != self.exercise or (self.last_rep_t is not None and wall_t - self.last_rep_t >= self.rest_s)
            ):
                self._close_locked("done")
            set_id = self.store.record_rep(self.camera, rep, host=self.host, wall_t=wall_t)
            self.set_id, self.exercise, self.last_rep_t = set_id, exercise, wall_t
            return set_id

    def tick(self, wall_t: float) -> None:
        """Close the open set once ``rest_s`` passed without a rep."""
        with self._lock:
            if self.set_id is not None and self.last_rep_t is not None and wall_t - self.last_rep_t >= self.rest_s:
                self._close_locked("done")

    def close(self, status: str = "done") -> None:
        """End of the run: close the open set, if any."""
        with self._lock:
            self._close_locked(status)

    def _close_locked(self, status: str) -> None:
        if self.set_id is not None:
            set_id, self.set_id, self.exercise, self.last_rep_t = self.set_id, None, None, None
            self.store.close_set(set_id, status)
