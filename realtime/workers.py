"""``--workers W``: a multi-camera run's cameras in W worker processes around one pose engine.

Per-camera Python work (tracking, crops, heatmap decoding, classifier steps, rep counters, drawing) is about 10 ms
of CPU per frame: one interpreter, bound by the GIL, carries ~8 cameras at 30 fps however many cores and however
fast the GPU (ViTPose-B on an H200: 8 cameras ran at 13-17 fps in one process; docs/benchmarks.md). So, as Frigate
runs its cameras, each worker process runs its share of the cameras whole (source, ring buffer, tracker,
classifier, reps, form, outputs) and the analyzer's process keeps what must be one: the ViTPose network behind its
batcher (``realtime.pose.remote.EngineHost``), which batches the crops of every worker's cameras.

Engines that do not batch in the analyzer run in each worker: BlazePose (LiteRT on the CPU, one interpreter pair
per camera core) and Triton clients (the server batches). Each worker writes its cameras' outputs (events folder,
videos, reports, database rows through its own connection) and sends its cameras' snapshots for the terminal
dashboard; the analyzer prints the one summary and the exit code. There is no window: watch with ``serve``.
Ctrl-C / SIGTERM reach the analyzer, which asks every worker to stop and waits for their outputs to be finalised.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from realtime.errors import RealtimeError
from realtime.settings import RunSettings

log = logging.getLogger("realtime")

STOP_GRACE_S = 30.0  # after a stop, how long the workers may take to finalise their videos and logs
ABORT_GRACE_S = 2.0  # after a second Ctrl-C: the same 2 s a camera thread gets, then the workers are killed


def hosts_network(settings: RunSettings) -> bool:
    """Whether the pose network runs in the analyzer's process for the workers (ViTPose, except on Triton)."""
    from realtime.pose import resolve_pose_model

    pose_model, _, _ = resolve_pose_model(settings.pose_model, settings.weights, settings.backend)
    return pose_model.startswith("vitpose") and settings.backend != "triton"


def split_cameras(count: int, workers: int) -> list[list[int]]:
    """Camera indices per worker, round robin (neighbouring cameras of a list land in different workers)."""
    workers = max(1, min(workers, count))
    return [list(range(w, count, workers)) for w in range(workers)]


def run_in_workers(settings: RunSettings, stop: threading.Event, listeners_for: Callable[[str], tuple] | None,
                   on_engine: Callable[[Any], None] | None, *, create_engine: Callable, run_cameras: Callable
                   ) -> tuple[dict[str, dict], bool, bool]:
    """Run ``settings.cameras`` in ``settings.workers`` processes; returns what ``run_cameras`` returns.

    ``create_engine`` and ``run_cameras`` are ``realtime.app``'s (passed in: app imports this module); the workers
    get them too, pickled by reference."""
    groups = split_cameras(len(settings.cameras), settings.workers)
    if not settings.headless:
        log.warning("--workers: no window (each worker process has only its own cameras); watch them with "
                    "`run_live.py serve`")
    dashboard = None
    if settings.dashboard and sys.stderr.isatty():
        from realtime.outputs.dashboard import Dashboard

        dashboard = Dashboard(f"{len(settings.cameras)} cameras in {len(groups)} worker processes")
    engine = host = None
    if hosts_network(settings):
        from realtime.pose.remote import EngineHost

        engine = create_engine(settings, len(settings.cameras))
        log.info("pose: %s (%s), shared by %d camera worker processes", engine.name, engine.reason, len(groups))
        if on_engine is not None:
            on_engine(engine)
        host = EngineHost(engine.batcher, len(settings.cameras), engine.batcher.input_hw or (256, 192))
    ctx = mp.get_context("spawn")  # no fork of a process that holds model and CUDA threads
    results = ctx.Queue()
    # A flag the workers poll, not an Event: notifying a multiprocessing Condition blocks for good once a process
    # that waited on it has exited, which every worker whose files ended does.
    stop_all = ctx.RawValue("b", 0)
    procs: list[Any] = []
    try:
        for w, indices in enumerate(groups):
            share = dataclasses.replace(settings, cameras=tuple(settings.cameras[i] for i in indices),
                                        headless=True, dashboard=False, in_worker=True, workers=1)
            slots = None if host is None else host_slots(engine, host, indices)
            proc = ctx.Process(target=_worker_main, name=f"camera-worker-{w}", daemon=True,
                               args=(w, share, slots, listeners_for, stop_all, results, os.getpid(),
                                     logging.getLogger("realtime").getEffectiveLevel(), len(groups),
                                     create_engine, run_cameras, dashboard is not None))
            proc.start()
            procs.append(proc)
        if dashboard is not None:
            with dashboard:
                done = _wait(procs, groups, settings, results, stop, stop_all, _Board(dashboard, engine))
        else:
            done = _wait(procs, groups, settings, results, stop, stop_all)
    except BaseException:
        grace = ABORT_GRACE_S  # a second Ctrl-C (or a failure here): out now, as one process would be
        raise
    else:
        grace = STOP_GRACE_S
    finally:
        stop_all.value = 1
        deadline = time.monotonic() + grace
        for proc in procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("camera worker %s did not stop; killing it", proc.name)
                proc.kill()
                proc.join(5.0)
        if host is not None:
            host.close()
        if engine is not None:
            engine.close()
    summaries: dict[str, dict] = {}
    bad_input = failure = False
    for w in range(len(groups)):
        part, bad, failed = done[w]
        summaries.update(part)
        bad_input, failure = bad_input or bad, failure or failed
    order = [c.name for c in settings.cameras]
    return {name: summaries[name] for name in order if name in summaries}, bad_input, failure


class _Board:
    """The terminal dashboard in the analyzer: a row per camera from the snapshots the workers send."""

    def __init__(self, dashboard, engine) -> None:
        self.dashboard = dashboard
        self.engine = engine
        self.latest: dict[int, list] = {}

    def show(self, force: bool = False) -> None:
        snapshots = [snap for w in sorted(self.latest) for snap in self.latest[w]]
        stats = self.engine.batch_stats() if self.engine is not None else None
        note = None if self.engine is not None else "pose engine: one in each worker process (no batching)"
        self.dashboard.update_many(snapshots, stats, time.monotonic(), force=force, engine_note=note)


def _wait(procs, groups, settings: RunSettings, results, stop: threading.Event, stop_all,
          board: _Board | None = None) -> dict[int, tuple]:
    """Collect every worker's result; a worker that died without one fails its cameras (the others run on)."""
    done: dict[int, tuple] = {}
    stop_asked = None
    while len(done) < len(procs):
        if board is not None:
            board.show()
        if stop.is_set() and not stop_all.value:
            stop_all.value = 1
            stop_asked = time.monotonic()
        try:
            kind, w, payload = results.get(timeout=0.2)
        except queue.Empty:
            for w, proc in enumerate(procs):
                if w not in done and not proc.is_alive() and proc.exitcode is not None:
                    time.sleep(0.2)  # its last message may still be in the pipe
                    if _drain(results, done, groups, settings, board):
                        continue
                    if w not in done:
                        done[w] = _lost(groups[w], settings, f"camera worker exited (code {proc.exitcode})")
            if stop_asked is not None and time.monotonic() - stop_asked > STOP_GRACE_S + 10:
                for w in range(len(procs)):
                    done.setdefault(w, _lost(groups[w], settings, "camera worker did not stop in time"))
            continue
        _take(kind, w, payload, done, groups, settings, board)
    if board is not None:
        board.show(force=True)
    return done


def _drain(results, done: dict, groups, settings: RunSettings, board: _Board | None) -> bool:
    took = False
    while True:
        try:
            kind, w, payload = results.get_nowait()
        except queue.Empty:
            return took
        _take(kind, w, payload, done, groups, settings, board)
        took = True


def _take(kind: str, w: int, payload, done: dict, groups, settings: RunSettings, board: _Board | None = None
          ) -> None:
    if kind == "snapshots":
        if board is not None:
            board.latest[w] = payload
    elif kind == "done":
        done[w] = payload
    elif kind == "error":
        log.error("camera worker %d: %s", w, payload)
        done[w] = _lost(groups[w], settings, payload, bad_input=payload.startswith("bad input: "))


def _lost(indices: list[int], settings: RunSettings, error: str, bad_input: bool = False) -> tuple:
    """Summaries for cameras whose worker gave no result: each carries the error."""
    error = error.removeprefix("bad input: ")
    summaries = {settings.cameras[i].name: {"camera": settings.cameras[i].name, "error": error,
                                            "frames_processed": 0, "stopped_by": "error"} for i in indices}
    return summaries, bad_input, not bad_input


# ----------------------------------------------------------------------------------------- in the worker
def _worker_main(worker: int, settings: RunSettings, slots, listeners_for, stop_all, results, parent_pid: int,
                 log_level: int, workers: int, create_engine: Callable, run_cameras: Callable,
                 send_snapshots: bool = False) -> None:
    """One camera worker: its cameras through ``app.run_cameras``, pose through the analyzer's engine slots."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the analyzer decides
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logging.basicConfig(level=log_level, format=f"%(levelname)s worker{worker}: %(message)s")
    logging.getLogger("realtime").setLevel(log_level)
    share_cores(workers)

    def watch() -> None:  # the analyzer asked for a stop, or it is gone (killed): finalise and end
        while not stop.wait(0.25):
            if stop_all.value or os.getppid() != parent_pid:
                stop.set()

    threading.Thread(target=watch, name="worker-stop", daemon=True).start()
    engine = None
    try:
        engine = worker_engine(settings, slots, create_engine)
        opened = getattr(listeners_for, "open", None)
        if opened is not None:
            opened()
        reporting = threading.Event()

        def report(runner) -> None:  # the analyzer's dashboard: this worker's rows, four times a second
            def send() -> None:
                while not reporting.wait(0.25):
                    results.put(("snapshots", worker, runner.snapshots()))

            threading.Thread(target=send, name="worker-snapshots", daemon=True).start()

        try:
            outcome = run_cameras(settings, engine, stop, listeners_for, report if send_snapshots else None)
        finally:
            reporting.set()
            closing = getattr(listeners_for, "close", None)
            if closing is not None:
                closing("done")
        results.put(("done", worker, outcome))
    except RealtimeError as exc:
        results.put(("error", worker, f"bad input: {exc}"))
    except BaseException as exc:  # noqa: BLE001 - reported by the analyzer as this worker's cameras' error
        log.exception("camera worker %d failed", worker)
        results.put(("error", worker, f"{type(exc).__name__}: {exc}"))
    finally:
        if engine is not None:
            engine.close()
        results.close()
        results.join_thread()


def host_slots(engine, host, indices: list[int]) -> tuple:
    """What a worker needs of the analyzer's engine for its cameras ``indices`` (picklable): name, reason, slots."""
    return engine.name, engine.reason, [host.slots[i] for i in indices]


def worker_engine(settings: RunSettings, slots: tuple | None, create_engine: Callable):
    """A worker's pose engine: the analyzer's network through ``slots`` (``host_slots``), or, for an engine that
    does not batch in the analyzer (BlazePose, Triton), one of its own for ``settings.cameras``."""
    if slots is None:
        return create_engine(settings, len(settings.cameras))
    from realtime.pose.remote import RemotePoseEngine

    name, reason, engine_slots = slots
    variant = name.split("/", 1)[0].split("-", 1)[1]  # 'vitpose-b/torch[...]' -> 'b'
    return RemotePoseEngine(engine_slots, name, reason, variant)


def share_cores(workers: int) -> None:
    """In a worker: the classifier (PyTorch) and OpenCV get this worker's share of the cores, not a pool each
    (W workers x a pool of every core each is many times more threads than cores)."""
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    try:
        import cv2
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
