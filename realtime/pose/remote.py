"""One pose network for cameras in several processes: the analyzer's process hosts it, camera workers call it.

Per-camera Python work (tracking, classifier steps, rep counters, drawing) times dozens of cameras exceeds what
one interpreter can do under the GIL (measured: ViTPose-B on an H200, one process, 8 cameras at 17 fps each and
16 cameras at 2.5 fps; docs/benchmarks.md). So camera worker processes run that work, and the one network stays
in the analyzer's process behind its ``Batcher``, as Frigate runs detection for many camera processes.

Per camera there is one ``EngineSlot``: a shared-memory buffer for one crop in and its heatmaps out (``RawArray``,
which multiprocessing places in /dev/shm or, when that is small, in a temporary file) and a ``Pipe`` for the
small messages. The camera's ``RemoteBackend`` (in the worker) writes the crop and sends ``("infer", n)``; the
``EngineHost`` (in the analyzer) gathers the crops waiting in every slot into one batch, runs the network on it,
writes each camera's heatmaps back and answers with their shape. Each camera has one request in flight.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

KEYPOINTS = 17
HEATMAP_STRIDE = 4  # ViTPose's heatmaps are a quarter of its input in each direction


class RemoteEngineError(RuntimeError):
    """The analyzer's pose engine failed a request or is gone."""


@dataclass
class EngineSlot:
    """One camera's channel to the shared network; picklable to a spawned worker (at its start)."""

    name: str
    conn: object  # multiprocessing Connection (the worker's end)
    crops: object  # RawArray('f') holding up to ``capacity`` crops
    maps: object  # RawArray('f') holding their heatmaps
    input_hw: tuple[int, int]
    capacity: int


class RemoteBackend:
    """A ``PoseBackend`` in a camera worker: ``infer`` runs on the analyzer's shared network, batched there."""

    def __init__(self, slot: EngineSlot) -> None:
        self.slot = slot
        self.name = slot.name
        self.input_hw = slot.input_hw
        h, w = slot.input_hw
        self._crops = np.frombuffer(slot.crops, np.float32).reshape(slot.capacity, 3, h, w)
        self._maps = np.frombuffer(slot.maps, np.float32).reshape(
            slot.capacity, KEYPOINTS, h // HEATMAP_STRIDE, w // HEATMAP_STRIDE)
        self._lock = threading.Lock()  # one request in flight per slot

    def _call(self, message: tuple) -> tuple:
        try:
            self.slot.conn.send(message)
            reply = self.slot.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            raise RemoteEngineError("the analyzer's pose engine is gone") from exc
        if reply[0] == "error":
            raise RemoteEngineError(reply[1])
        return reply

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 crops -> (N, 17, H/4, W/4) heatmaps, ``capacity`` crops per round trip."""
        out = []
        with self._lock:
            for start in range(0, len(batch), self.slot.capacity):
                part = batch[start:start + self.slot.capacity]
                n = len(part)
                self._crops[:n] = part
                _, shape = self._call(("infer", n))
                out.append(self._maps[:n].reshape(-1)[:int(np.prod(shape))].reshape(shape).copy())
        return out[0] if len(out) == 1 else np.concatenate(out)

    def attach(self) -> None:
        """The camera starts: the batcher counts it (it waits for a crop from every running camera)."""
        with self._lock:
            self._call(("attach",))

    def detach(self) -> None:
        with self._lock:
            try:
                self._call(("detach",))
            except RemoteEngineError:
                pass  # the engine has gone first: nothing to detach from

    def close(self) -> None:
        try:
            self.slot.conn.close()
        except OSError:
            pass


class EngineHost:
    """In the analyzer's process: gathers the crops of every worker's cameras into batches for ``network``.

    Two threads: the gathering thread waits on every camera's pipe at once (``multiprocessing.connection.wait``),
    a few microseconds of Python per request rather than a thread per camera fighting for the GIL; the running
    thread copies a batch into one preallocated buffer, runs the network, writes each camera's heatmaps back and
    answers. While a batch runs, the next one gathers, so it grows with the load. A batch starts once the running
    thread is free and every running camera has a crop waiting, or the oldest crop has waited ``max_wait_ms``, or
    ``max_batch`` crops wait. ``network`` is the engine's ``Batcher`` (it records the batch sizes and network times
    for the dashboard and /metrics; a gathered batch is one request to it) or a bare backend.
    """

    def __init__(self, network, slots: int, input_hw: tuple[int, int] = (256, 192), capacity: int = 1,
                 max_batch: int | None = None, max_wait_ms: float | None = None) -> None:
        self.network = network
        self.input_hw = tuple(input_hw)
        self.max_batch = int(max_batch or getattr(network, "max_batch", 16))
        wait_s = getattr(network, "max_wait_s", 0.004) if max_wait_ms is None else max_wait_ms / 1000.0
        self.max_wait_s = max(0.0, float(wait_s))
        h, w = self.input_hw
        ctx = mp.get_context("spawn")
        self.slots: list[EngineSlot] = []
        self._host_conns = []
        self._crops: list[np.ndarray] = []
        self._maps: list[np.ndarray] = []
        for _ in range(slots):
            here, there = ctx.Pipe(duplex=True)
            crops = ctx.RawArray("f", capacity * 3 * h * w)
            maps = ctx.RawArray("f", capacity * KEYPOINTS * (h // HEATMAP_STRIDE) * (w // HEATMAP_STRIDE))
            self.slots.append(EngineSlot(network.name, there, crops, maps, (h, w), capacity))
            self._host_conns.append(here)
            self._crops.append(np.frombuffer(crops, np.float32).reshape(capacity, 3, h, w))
            self._maps.append(np.frombuffer(maps, np.float32))
        # One batch buffer, filled in place: a fresh array per batch (tens of MB) costs page faults every time.
        self._batch = np.empty((max(self.max_batch, capacity), 3, h, w), np.float32)
        self._wake_here, self._wake_there = ctx.Pipe(duplex=False)  # wakes the gathering: a batch ran, or close()
        self._wake_lock = threading.Lock()
        self._attached: set[int] = set()
        self._closing = False
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._running = threading.Event()  # set while a batch is with the running thread
        self._threads = [threading.Thread(target=self._gather, name="engine-gather", daemon=True),
                         threading.Thread(target=self._run_batches, name="engine-run", daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def attached(self) -> int:
        """Cameras running now (a batch waits for a crop from each, at most ``max_wait_ms``)."""
        return len(self._attached)

    def _wake(self) -> None:
        with self._wake_lock:
            try:
                self._wake_there.send_bytes(b"")
            except OSError:
                pass

    def _gather(self) -> None:
        from multiprocessing.connection import wait

        index = {id(conn): i for i, conn in enumerate(self._host_conns)}
        open_conns = list(self._host_conns)
        pending: list[tuple[int, int, float]] = []  # (slot, crops, when it came), oldest first
        while not self._closing:
            timeout = 0.5
            if pending and not self._running.is_set():
                timeout = max(0.0, pending[0][2] + self.max_wait_s - time.perf_counter())
            for conn in wait([*open_conns, self._wake_here], timeout):
                if conn is self._wake_here:
                    conn.recv_bytes()
                    continue
                i = index[id(conn)]
                try:
                    message = conn.recv()
                except (EOFError, OSError):  # the worker has gone: never wait for its camera again
                    open_conns.remove(conn)
                    self._attached.discard(i)
                    continue
                kind = message[0]
                if kind == "infer":
                    pending.append((i, int(message[1]), time.perf_counter()))
                    continue
                if kind == "attach":
                    self._attached.add(i)
                elif kind == "detach":
                    self._attached.discard(i)
                self._reply(conn, ("ok",) if kind in ("attach", "detach") else ("error", f"unknown {kind!r}"))
            if pending and not self._running.is_set() and self._batch_due(pending):
                take, size = 0, 0
                while take < len(pending) and (take == 0 or size + pending[take][1] <= self.max_batch):
                    size += pending[take][1]
                    take += 1
                self._running.set()
                self._todo.put(pending[:take])
                pending = pending[take:]
        self._todo.put(None)

    def _batch_due(self, pending: list[tuple[int, int, float]]) -> bool:
        return (len(pending) >= len(self._attached) or sum(n for _, n, _ in pending) >= self.max_batch
                or time.perf_counter() >= pending[0][2] + self.max_wait_s)

    def _run_batches(self) -> None:
        while (batch := self._todo.get()) is not None:
            try:
                self._run_batch(batch)
            finally:
                self._running.clear()
                self._wake()

    def _run_batch(self, batch: list[tuple[int, int, float]]) -> None:
        size = sum(n for _, n, _ in batch)
        buffer = self._batch if size <= len(self._batch) else np.empty((size, *self._batch.shape[1:]), np.float32)
        offset = 0
        for i, n, _ in batch:
            buffer[offset:offset + n] = self._crops[i][:n]
            offset += n
        try:
            maps = self.network.infer(buffer[:size])
        except Exception as exc:  # noqa: BLE001 - each camera decides; the engine keeps serving the others
            for i, _, _ in batch:
                self._reply(self._host_conns[i], ("error", f"pose engine: {exc}"))
            return
        offset = 0
        for i, n, _ in batch:
            part = maps[offset:offset + n]
            offset += n
            self._maps[i][:part.size] = part.reshape(-1)
            self._reply(self._host_conns[i], ("ok", part.shape))

    @staticmethod
    def _reply(conn, message: tuple) -> None:
        try:
            conn.send(message)
        except (OSError, BrokenPipeError):
            pass  # the worker has gone; its pipe's EOF removes it

    def close(self) -> None:
        """Stop serving (the network itself belongs to the caller)."""
        self._closing = True
        self._wake()
        for thread in self._threads:
            thread.join(timeout=5.0)
        for conn in (*self._host_conns, self._wake_here, self._wake_there, *(s.conn for s in self.slots)):
            try:
                conn.close()
            except OSError:
                pass


class RemotePoseEngine:
    """A camera worker's stand-in for ``SharedPoseEngine``: one slot per camera, the network in the analyzer."""

    def __init__(self, slots: list[EngineSlot], name: str, reason: str, variant: str) -> None:
        from realtime.pose.batching import FairGate
        from realtime.pose.detector import BlazePersonDetector
        from realtime.pose.shared import GatedDetector

        self.name = name
        self.reason = reason
        self.batcher = None  # the batcher is the analyzer's; its figures are published there
        self._variant = variant
        self._backends = [RemoteBackend(slot) for slot in slots]
        self._free = list(self._backends)
        self._attached: list[RemoteBackend] = []
        self._lock = threading.Lock()
        # The person detector runs here, on this worker's CPU: detection spreads over the workers.
        self._detector = GatedDetector(BlazePersonDetector(), FairGate())

    def estimator(self, pick: str | int = "largest"):
        from realtime.pose.vitpose_estimator import VitPoseEstimator

        with self._lock:
            if not self._free:
                raise RemoteEngineError("more cameras than engine slots in this worker")
            backend = self._free.pop(0)
        estimator = VitPoseEstimator(backend, self._variant, pick=pick, detector=self._detector, owns_backend=False)
        estimator.name = self.name
        return estimator

    def attach(self) -> None:
        """A camera starts: counted by the analyzer's batcher through a slot of this worker."""
        with self._lock:
            backend = self._backends[len(self._attached)]
            self._attached.append(backend)
        backend.attach()

    def detach(self) -> None:
        with self._lock:
            if not self._attached:
                return
            backend = self._attached.pop()
        backend.detach()

    def batch_stats(self):
        return None

    def close(self) -> None:
        self._detector.close()
        for backend in self._backends:
            backend.close()
