"""One pose network shared by many cameras: a batcher for networks that batch, a fair gate for those that cannot.

Each camera's analysis thread has at most one request in flight (it waits for its result), so serving requests
oldest-first gives every camera its turn: no camera can starve another.

- ``Batcher`` gathers the person crops that are ready from all cameras and runs them as one batch: the first crop
  waits at most ``max_wait_ms`` for others, and not at all once every camera that is running has a crop queued.
  It records every batch size and network time (``BatchStats``).
- ``FairGate`` serialises a model that cannot batch or run on two threads at once (LiteRT interpreters) in
  first-come, first-served order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


class FairGate:
    """A first-come, first-served lock (``threading.Lock`` makes no such promise)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self.waits = 0  # acquisitions that had to wait for another camera (for the dashboard/tests)

    def __enter__(self) -> FairGate:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            if ticket != self._serving:
                self.waits += 1
            while ticket != self._serving:
                self._cond.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


class FairPool:
    """Several interchangeable copies of a model that cannot batch (one LiteRT interpreter per core): each call takes
    whichever copy is free, callers served first come, first served."""

    def __init__(self, items: list) -> None:
        if not items:
            raise ValueError("FairPool needs at least one item")
        self.items = list(items)
        self._free: deque = deque(items)
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    @contextlib.contextmanager
    def take(self):
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving or not self._free:
                self._cond.wait()
            item = self._free.popleft()
            self._serving += 1
            self._cond.notify_all()
        try:
            yield item
        finally:
            with self._cond:
                self._free.append(item)
                self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What the shared engine did: how many batches, how large, how long the network took."""

    batches: int
    crops: int
    mean_batch: float
    max_batch: int
    network_p50_ms: float
    network_p95_ms: float
    queue_wait_p95_ms: float
    recent_sizes: tuple[int, ...]


class _Request:
    __slots__ = ("crops", "t_enqueued", "done", "result", "error")

    def __init__(self, crops: np.ndarray) -> None:
        self.crops = crops
        self.t_enqueued = time.perf_counter()
        self.done = threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class BatcherClosed(RuntimeError):
    """The shared engine was shut down while a camera waited for it."""


class Batcher:
    """Runs a ``PoseBackend`` on crops from many threads, batched; ``infer`` has the backend's signature."""

    def __init__(self, backend, max_batch: int = 16, max_wait_ms: float = 4.0, history: int = 4096) -> None:
        self.backend = backend
        self.name = backend.name
        self.input_hw = getattr(backend, "input_hw", None)
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max(0.0, float(max_wait_ms)) / 1000.0
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._clients = 0  # cameras currently running: once all have a crop queued there is no one to wait for
        self._sizes: deque[int] = deque(maxlen=history)
        self._network_ms: deque[float] = deque(maxlen=history)
        self._queue_ms: deque[float] = deque(maxlen=history)
        self._batches = 0
        self._crops = 0
        self._thread = threading.Thread(target=self._run, name="pose-batcher", daemon=True)
        self._thread.start()

    # -- cameras -----------------------------------------------------------------------------------------------
    def attach(self) -> None:
        """A camera starts sending crops."""
        with self._cond:
            self._clients += 1

    def detach(self) -> None:
        """A camera stopped (its source ended or failed): the batcher no longer waits for it."""
        with self._cond:
            self._clients = max(0, self._clients - 1)
            self._cond.notify_all()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) crops of one camera -> their (N, 17, h, w) heatmaps, computed in a shared batch."""
        request = _Request(np.ascontiguousarray(batch, dtype=np.float32))
        with self._cond:
            if self._closed:
                raise BatcherClosed("the pose engine is shut down")
            self._queue.append(request)
            self._cond.notify_all()
        while not request.done.wait(0.5):
            if self._closed:
                raise BatcherClosed("the pose engine is shut down")
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    # -- the batching thread -----------------------------------------------------------------------------------
    def _take_batch(self) -> list[_Request] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait(0.5)
            if self._closed:
                return None
            first = self._queue.popleft()
            batch, size = [first], len(first.crops)
            deadline = first.t_enqueued + self.max_wait_s
            while size < self.max_batch:
                if self._queue:
                    if size + len(self._queue[0].crops) > self.max_batch:
                        break
                    request = self._queue.popleft()
                    batch.append(request)
                    size += len(request.crops)
                    continue
                if len(batch) >= self._clients:  # everyone running is in this batch already
                    break
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                if self._closed:
                    break
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                break
            started = time.perf_counter()
            try:
                crops = batch[0].crops if len(batch) == 1 else np.concatenate([r.crops for r in batch])
                maps = self.backend.infer(crops)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting camera, which decides
                for request in batch:
                    request.error = exc
                    request.done.set()
                continue
            done = time.perf_counter()
            offset = 0
            for request in batch:
                n = len(request.crops)
                request.result = maps[offset:offset + n]
                offset += n
                request.done.set()
            with self._cond:
                self._batches += 1
                self._crops += offset
                self._sizes.append(offset)
                self._network_ms.append((done - started) * 1000.0)
                self._queue_ms.extend((started - r.t_enqueued) * 1000.0 for r in batch)
        with self._cond:  # wake anyone still queued
            pending = list(self._queue)
            self._queue.clear()
        for request in pending:
            request.error = BatcherClosed("the pose engine is shut down")
            request.done.set()

    def stats(self) -> BatchStats:
        with self._cond:
            sizes = list(self._sizes)
            net = np.asarray(self._network_ms, np.float64)
            wait = np.asarray(self._queue_ms, np.float64)
            batches, crops = self._batches, self._crops
        return BatchStats(
            batches=batches,
            crops=crops,
            mean_batch=crops / batches if batches else 0.0,
            max_batch=max(sizes, default=0),
            network_p50_ms=float(np.percentile(net, 50)) if net.size else 0.0,
            network_p95_ms=float(np.percentile(net, 95)) if net.size else 0.0,
            queue_wait_p95_ms=float(np.percentile(wait, 95)) if wait.size else 0.0,
            recent_sizes=tuple(sizes[-64:]),
        )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
        self.backend.close()
