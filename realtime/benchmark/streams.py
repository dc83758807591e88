"""``--bench --streams N``: how many live 30-fps cameras one analyzer carries, through the real multi-camera pipeline.

Real clips are decoded once and replayed as N live cameras (each its own capture thread, latest-frame ring buffer,
analysis and output threads, overlay drawn, events log written), all sharing one pose engine, exactly as
``run_live.py --cameras`` runs them. Per N it reports the sustained fps per camera, the drop rate, end-to-end
latency, the shared engine's mean batch size, CPU and memory; the largest N that holds 30 fps with p95 < 150 ms and
< 1 % drops is the answer.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from realtime.settings import CameraSettings, RunSettings

TARGET_FPS = 30.0
MAX_P95_MS = 150.0
MAX_DROP = 0.01
WARMUP_S = 3.0


class _FollowFirstBox:
    """``--weights random`` only: keep following the first person box the detector found.

    Random weights give noise keypoints, so the tracker would lose the person and re-run the (CPU, shared) person
    detector on every frame, a load real weights do not cause: they keep the track from frame to frame. Following
    the first box gives every frame one crop through the network, as a tracked lifter does.
    """

    def __init__(self, estimator) -> None:
        self.estimator = estimator
        self.name = estimator.name
        self.estimator.min_mean_score = 0.0  # noise keypoints count as a person: the stages after the pose run too
        self._box = None

    def estimate(self, image):
        tracker = self.estimator.tracker
        if self._box is not None:
            tracker.follow(self._box)
            tracker._box = self._box  # noqa: SLF001 - a benchmark stand-in for the track real weights keep
        result = self.estimator.estimate(image)
        if self._box is None and result.box is not None:
            self._box = result.box
        return result

    def reset(self) -> None:
        self.estimator.reset()

    def close(self) -> None:
        self.estimator.close()


def holds(row: dict[str, Any]) -> bool:
    """The camera count holds when every camera keeps ~30 fps, p95 latency < 150 ms and drops < 1 %."""
    return (row["min_fps"] >= 0.97 * TARGET_FPS and row["e2e_p95_ms"] < MAX_P95_MS
            and row["drop_rate"] < MAX_DROP)


def _camera_pipelines(settings: RunSettings, cams, clips: list[list[np.ndarray]], indices: list[int],
                      seconds: float, events_dir: Path, estimator_for, draw: bool = True):
    """The bench's cameras ``indices``: a looping live source each (clip ``i`` mod clips, shifted so cameras are
    not in step), the real stages, an events log; ``estimator_for(camera) -> (estimator, on_start, on_stop)``."""
    from realtime.app import build_stages
    from realtime.outputs.sinks import EventLogSink
    from realtime.pipeline import Analyzer, CameraPipeline
    from realtime.sources.synthetic import SyntheticSource

    pipelines, events = [], []
    for i in indices:
        cam = cams[i]
        frames = clips[i % len(clips)]
        shift = (i * 37) % len(frames)  # cameras are not in step: different moments of the clip
        frames = frames[shift:] + frames[:shift]
        source = SyntheticSource(frames, fps=TARGET_FPS, live=True, loop=True, duration_s=WARMUP_S + seconds,
                                 source_id=cam.name)
        estimator, on_start, on_stop = estimator_for(cam)
        if settings.weights == "random":
            estimator = _FollowFirstBox(estimator)
        stages = (estimator, *build_stages(settings, cam, TARGET_FPS))
        sink = EventLogSink(events_dir / f"{cam.name}.jsonl")
        events.append(sink)
        pipelines.append(CameraPipeline(source, Analyzer(*stages), name=cam.name, events=sink, draw=draw,
                                        on_start=on_start, on_stop=on_stop))
    return pipelines, events


def _camera_figures(pipelines) -> dict[str, Any]:
    """What each camera did so far (counters are cumulative; a row is the difference of two of these)."""
    stats = [p.source.stats() for p in pipelines]
    e2e = [p.stats.end_to_end() for p in pipelines]
    return {
        "processed": [p.stats.frames_processed for p in pipelines],
        "read": [s.frames_read for s in stats],
        "dropped": [s.frames_dropped for s in stats],
        "e2e": [(s.p50_ms, s.p95_ms) if s else None for s in e2e],
        "host": [p.stats.mean_totals_ms() for p in pipelines],
    }


def _row(n: int, engine_name: str, span: float, warm: dict[str, Any], end: dict[str, Any],
         rss_mb: float, rss_growth: float | None) -> dict[str, Any]:
    fps = [(end["processed"][i] - warm["processed"][i]) / span for i in range(n)]
    read = sum(end["read"]) - sum(warm["read"])
    dropped = sum(end["dropped"]) - sum(warm["dropped"])
    e2e = [s for s in end["e2e"] if s]
    p50 = float(np.median([s[0] for s in e2e])) if e2e else float("nan")
    p95 = max((s[1] for s in e2e), default=float("nan"))
    batches = end["batches"] - warm["batches"]
    crops = end["crops"] - warm["crops"]
    host = {name: float(np.median([h.get(name, 0.0) for h in end["host"]]))
            for name in ("pose", "classifier", "reps", "draw", "sinks")}
    row = {
        "streams": n,
        "engine": engine_name,
        "seconds": round(span, 1),
        "fps_per_camera": round(float(np.mean(fps)), 2),
        "min_fps": round(float(min(fps)), 2),
        "drop_rate": round(dropped / read, 4) if read else 0.0,
        "e2e_p50_ms": round(p50, 1),
        "e2e_p95_ms": round(p95, 1),
        "mean_batch": round(crops / batches, 2) if batches else None,
        "cpu_cores_used": round((end["cpu"] - warm["cpu"]) / span, 2),
        "rss_mb": round(rss_mb, 1),
        # Memory after the warm-up vs at the end: a long run (--stream-seconds 600) shows whether it grows.
        "rss_growth": round(rss_growth, 4) if rss_growth is not None else None,
        "host_ms_per_frame": {k: round(v, 2) for k, v in host.items()},
    }
    if end.get("server_batch") is not None:
        row["server_mean_batch"] = end["server_batch"]
    row["holds"] = holds(row)
    return row


def run_streams(settings: RunSettings, clips: list[list[np.ndarray]], n: int, seconds: float,
                batch_server=None, workers: int = 1, draw: bool = True) -> dict[str, Any]:
    """N live cameras for ``seconds`` (after a warm-up); one row of the table. ``workers`` > 1: the cameras run in
    that many worker processes around the one engine (``run_streams_in_workers``)."""
    if workers > 1:
        return run_streams_in_workers(settings, clips, n, seconds, workers, batch_server, draw)
    import psutil

    from realtime.app import create_engine
    from realtime.pipeline import MultiPipeline

    cams = tuple(CameraSettings(name=f"cam{i}", source=f"bench:{i}") for i in range(n))
    settings = dataclasses.replace(settings, cameras=cams)
    engine = create_engine(settings, n)
    proc = psutil.Process()
    tmp = tempfile.TemporaryDirectory(prefix="bench-streams-")
    events = []
    try:
        pipelines, events = _camera_pipelines(
            settings, cams, clips, list(range(n)), seconds, Path(tmp.name),
            lambda cam: (engine.estimator(cam.pick), engine.attach, engine.detach), draw)
        marks: dict[str, Any] = {}
        rss: list[float] = []

        def sample() -> None:
            start = time.monotonic()
            while not done.wait(0.5):
                rss.append(proc.memory_info().rss / 2**20)
                if "warm" not in marks and time.monotonic() - start >= WARMUP_S:
                    marks["warm"] = _counters(pipelines, proc, engine, batch_server)
                    marks["rss_warm"] = rss[-1]

        done = threading.Event()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        runner = MultiPipeline(pipelines, engine=engine)
        runner.run()
        done.set()
        sampler.join()
        end = _counters(pipelines, proc, engine, batch_server)
        warm = marks.get("warm") or _zero_counters(n)
        growth = rss[-1] / marks["rss_warm"] - 1.0 if rss and "rss_warm" in marks else None
        row = _row(n, engine.name, end["t"] - warm["t"], warm, end,
                   max(rss, default=proc.memory_info().rss / 2**20), growth)
        row["overlay"] = draw
        return row
    finally:
        for sink in events:
            sink.close()
        tmp.cleanup()
        engine.close()


# ------------------------------------------------------------------------------- cameras in worker processes
def _share_clips(ctx, clips: list[list[np.ndarray]]) -> list[tuple[object, tuple[int, ...]]]:
    """Each clip once in shared memory, for every worker to map (a 150-frame 720p clip is 415 MB)."""
    shared = []
    for frames in clips:
        stack = np.stack(frames)
        raw = ctx.RawArray("B", stack.nbytes)
        np.frombuffer(raw, np.uint8).reshape(stack.shape)[:] = stack
        shared.append((raw, stack.shape))
    return shared


def _worker_clips(shared) -> list[list[np.ndarray]]:
    clips = []
    for raw, shape in shared:
        array = np.frombuffer(raw, np.uint8).reshape(shape)
        clips.append([array[i] for i in range(shape[0])])
    return clips


def _process_figures(proc) -> dict[str, float]:
    times = proc.cpu_times()
    return {"cpu": times.user + times.system, "rss": proc.memory_info().rss / 2**20}


def _streams_worker(worker: int, workers: int, settings: RunSettings, n: int, indices: list[int], shared_clips,
                    slots, seconds: float, go, results, draw: bool) -> None:
    """One camera worker process: its cameras' whole pipelines, pose through ``slots`` (None: its own engine), as
    ``realtime.workers`` runs them; reports its figures after the warm-up and at the end."""
    import psutil

    from realtime.logs import setup_logging

    setup_logging(0)
    try:
        from realtime.workers import share_cores, worker_engine

        share_cores(workers)
        from realtime.app import create_engine
        from realtime.pipeline import MultiPipeline

        cams = tuple(CameraSettings(name=f"cam{i}", source=f"bench:{i}") for i in range(n))
        clips = _worker_clips(shared_clips)
        engine = worker_engine(dataclasses.replace(settings, cameras=tuple(cams[i] for i in indices)), slots,
                               create_engine)

        def estimator_for(cam):
            return engine.estimator(cam.pick), engine.attach, engine.detach

        tmp = tempfile.TemporaryDirectory(prefix=f"bench-streams-w{worker}-")
        pipelines, events = _camera_pipelines(settings, cams, clips, indices, seconds, Path(tmp.name),
                                              estimator_for, draw)
        proc = psutil.Process()
        results.put(("ready", worker, None))
        while not go.value:  # a polled flag (see realtime.workers): every worker starts its cameras together
            time.sleep(0.005)
        done = threading.Event()

        def sample() -> None:
            if not done.wait(WARMUP_S):
                results.put(("warm", worker, {**_camera_figures(pipelines), **_process_figures(proc)}))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        MultiPipeline(pipelines).run()
        done.set()
        results.put(("end", worker, {**_camera_figures(pipelines), **_process_figures(proc)}))
        for sink in events:
            sink.close()
        engine.close()
        tmp.cleanup()
    except BaseException as exc:  # noqa: BLE001 - the parent reports it as one line
        results.put(("error", worker, f"{type(exc).__name__}: {exc}"))


def run_streams_in_workers(settings: RunSettings, clips: list[list[np.ndarray]], n: int, seconds: float,
                           workers: int, batch_server=None, draw: bool = True) -> dict[str, Any]:
    """N live cameras split over ``workers`` spawned processes; ViTPose stays here, batched for all of them."""
    import multiprocessing as mp
    import queue as queue_mod

    import psutil

    from realtime.app import create_engine
    from realtime.errors import RealtimeError
    from realtime.pose.remote import EngineHost
    from realtime.workers import host_slots, split_cameras

    workers = max(1, min(workers, n))
    ctx = mp.get_context("spawn")
    cams = tuple(CameraSettings(name=f"cam{i}", source=f"bench:{i}") for i in range(n))
    engine = create_engine(dataclasses.replace(settings, cameras=cams), n)
    host = None
    if engine.batcher is not None:  # ViTPose in this process: one batched network for every worker's cameras
        host = EngineHost(engine.batcher, n, engine.batcher.input_hw or (256, 192))
    shared_clips = _share_clips(ctx, clips)
    results = ctx.Queue()
    go = ctx.RawValue("b", 0)
    groups = split_cameras(n, workers)
    procs = []
    proc = psutil.Process()
    try:
        for w, indices in enumerate(groups):
            slots = None if host is None else host_slots(engine, host, indices)
            p = ctx.Process(target=_streams_worker, name=f"camera-worker-{w}", daemon=True,
                            args=(w, workers, settings, n, indices, shared_clips, slots, seconds, go, results, draw))
            p.start()
            procs.append(p)
        got: dict[str, dict[int, Any]] = {"ready": {}, "warm": {}, "end": {}}

        def collect(kind: str, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while len(got[kind]) < workers:
                try:
                    what, worker, payload = results.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue_mod.Empty:
                    if time.monotonic() > deadline:
                        raise RealtimeError(f"--workers: camera workers did not report '{kind}' in time") from None
                    continue
                if what == "error":
                    raise RealtimeError(f"camera worker {worker}: {payload}")
                got[what][worker] = payload

        collect("ready", 300.0)
        go.value = 1
        collect("warm", WARMUP_S + 60.0)
        warm_t = time.monotonic()
        warm_main = {**_process_figures(proc), **_engine_counts(engine, batch_server)}
        collect("end", WARMUP_S + seconds + 120.0)
        end_t = time.monotonic()
        end_main = {**_process_figures(proc), **_engine_counts(engine, batch_server)}
        warm = _merge([got["warm"][w] for w in range(workers)], groups, n, warm_main)
        end = _merge([got["end"][w] for w in range(workers)], groups, n, end_main)
        row = _row(n, engine.name, end_t - warm_t, warm, end, end["rss"],
                   end["rss"] / warm["rss"] - 1.0 if warm["rss"] else None)
        row["workers"] = workers
        row["overlay"] = draw
        # The analyzer's own process (the network, the gathering of every worker's crops): is it the limit?
        row["engine_process_cores"] = round((end_main["cpu"] - warm_main["cpu"]) / (end_t - warm_t), 2)
        return row
    finally:
        go.value = 1
        for p in procs:
            p.join(timeout=10.0)
            if p.is_alive():
                p.kill()
        if host is not None:
            host.close()
        engine.close()


def _engine_counts(engine, batch_server) -> dict[str, Any]:
    batch = engine.batch_stats()
    out = {"batches": batch.batches if batch else 0, "crops": batch.crops if batch else 0}
    if batch_server is not None:
        out["server_batch"] = batch_server()
    return out


def _merge(parts: list[dict[str, Any]], groups: list[list[int]], n: int, main: dict[str, Any]) -> dict[str, Any]:
    """The workers' per-camera figures back in camera order; CPU and memory summed with this process's."""
    merged: dict[str, Any] = {key: [None] * n for key in ("processed", "read", "dropped", "e2e", "host")}
    for part, indices in zip(parts, groups, strict=True):
        for key in merged:
            for j, i in enumerate(indices):
                merged[key][i] = part[key][j]
    merged["cpu"] = main["cpu"] + sum(p["cpu"] for p in parts)
    merged["rss"] = main["rss"] + sum(p["rss"] for p in parts)
    merged.update({k: v for k, v in main.items() if k not in ("cpu", "rss")})
    return merged


def _counters(pipelines, proc, engine, batch_server) -> dict[str, Any]:
    times = proc.cpu_times()
    return {"t": time.monotonic(), **_camera_figures(pipelines), "cpu": times.user + times.system,
            **_engine_counts(engine, batch_server)}


def _zero_counters(n: int) -> dict[str, Any]:
    return {"t": time.monotonic(), "processed": [0] * n, "read": [0] * n, "dropped": [0] * n, "e2e": [None] * n,
            "host": [{}] * n, "cpu": 0.0, "batches": 0, "crops": 0}


def sweep(settings: RunSettings, clips: list[list[np.ndarray]], counts: list[int], seconds: float,
          batch_server=None, workers: int = 1, draw: bool = True) -> dict[str, Any]:
    rows = []
    for n in counts:
        rows.append(run_streams(settings, clips, n, seconds, batch_server, workers, draw))
    held = [r["streams"] for r in rows if r["holds"]]
    return {"rows": rows, "max_streams_holding": max(held) if held else 0,
            "criteria": f">= {0.97 * TARGET_FPS:.1f} fps per camera, p95 < {MAX_P95_MS:.0f} ms, drops < "
                        f"{MAX_DROP:.0%}"}


def print_streams(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 160)
    overlay = "" if report["rows"] and report["rows"][0].get("overlay", True) else ", no overlay drawn"
    table = Table(title=f"live 30-fps cameras through the multi-camera pipeline ({report['criteria']}{overlay})")
    for col in ("cameras", "workers", "engine", "fps/camera (min)", "drops", "e2e p50/p95 ms", "mean batch", "CPU cores",
                "RSS MB", "holds"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for r in report["rows"]:
        table.add_row(str(r["streams"]), str(r.get("workers", 1)), r["engine"], f"{r['fps_per_camera']:.1f} ({r['min_fps']:.1f})",
                      f"{r['drop_rate']:.1%}", f"{r['e2e_p50_ms']:.0f} / {r['e2e_p95_ms']:.0f}",
                      "-" if r["mean_batch"] is None else f"{r['mean_batch']:.2f}", f"{r['cpu_cores_used']:.2f}" + (f" ({r['engine_process_cores']:.2f} engine process)"
                                                           if "engine_process_cores" in r else ""),
                      f"{r['rss_mb']:.0f}", "yes" if r["holds"] else "no")
    console.print(table)
    console.print(f"most cameras holding 30 fps: {report['max_streams_holding']}")
