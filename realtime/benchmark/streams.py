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


def run_streams(settings: RunSettings, clips: list[list[np.ndarray]], n: int, seconds: float,
                batch_server=None) -> dict[str, Any]:
    """N live cameras for ``seconds`` (after a warm-up); one row of the table."""
    import psutil

    from realtime.app import build_stages, create_engine
    from realtime.outputs.sinks import EventLogSink
    from realtime.pipeline import Analyzer, CameraPipeline, MultiPipeline
    from realtime.sources.synthetic import SyntheticSource

    cams = tuple(CameraSettings(name=f"cam{i}", source=f"bench:{i}") for i in range(n))
    settings = dataclasses.replace(settings, cameras=cams)
    engine = create_engine(settings, n)
    proc = psutil.Process()
    tmp = tempfile.TemporaryDirectory(prefix="bench-streams-")
    pipelines, events = [], []
    try:
        for i, cam in enumerate(cams):
            frames = clips[i % len(clips)]
            shift = (i * 37) % len(frames)  # cameras are not in step: different moments of the clip
            frames = frames[shift:] + frames[:shift]
            source = SyntheticSource(frames, fps=TARGET_FPS, live=True, loop=True, duration_s=WARMUP_S + seconds,
                                     source_id=cam.name)
            estimator = engine.estimator(cam.pick)
            if settings.weights == "random":
                estimator = _FollowFirstBox(estimator)
            stages = (estimator, *build_stages(settings, cam, TARGET_FPS))
            sink = EventLogSink(Path(tmp.name) / f"{cam.name}.jsonl")
            events.append(sink)
            pipelines.append(CameraPipeline(source, Analyzer(*stages), name=cam.name, events=sink, draw=True,
                                            on_start=engine.attach, on_stop=engine.detach))
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
        span = end["t"] - warm["t"]
        fps = [(end["processed"][i] - warm["processed"][i]) / span for i in range(n)]
        read = sum(end["read"]) - sum(warm["read"])
        dropped = sum(end["dropped"]) - sum(warm["dropped"])
        e2e = [p.stats.end_to_end() for p in pipelines]
        p50 = float(np.median([s.p50_ms for s in e2e if s])) if any(e2e) else float("nan")
        p95 = max((s.p95_ms for s in e2e if s), default=float("nan"))
        batches = end["batches"] - warm["batches"]
        crops = end["crops"] - warm["crops"]
        host = {name: float(np.median([p.stats.mean_totals_ms().get(name, 0.0) for p in pipelines]))
                for name in ("pose", "classifier", "reps", "draw", "sinks")}
        row = {
            "streams": n,
            "engine": engine.name,
            "seconds": round(span, 1),
            "fps_per_camera": round(float(np.mean(fps)), 2),
            "min_fps": round(float(min(fps)), 2),
            "drop_rate": round(dropped / read, 4) if read else 0.0,
            "e2e_p50_ms": round(p50, 1),
            "e2e_p95_ms": round(p95, 1),
            "mean_batch": round(crops / batches, 2) if batches else None,
            "cpu_cores_used": round((end["cpu"] - warm["cpu"]) / span, 2),
            "rss_mb": round(max(rss, default=proc.memory_info().rss / 2**20), 1),
            # Memory after the warm-up vs at the end: a long run (--stream-seconds 600) shows whether it grows.
            "rss_growth": round(rss[-1] / marks["rss_warm"] - 1.0, 4) if rss and "rss_warm" in marks else None,
            "host_ms_per_frame": {k: round(v, 2) for k, v in host.items()},
        }
        if batch_server is not None and end.get("server_batch") is not None:
            row["server_mean_batch"] = end["server_batch"]
        row["holds"] = holds(row)
        return row
    finally:
        for sink in events:
            sink.close()
        tmp.cleanup()
        engine.close()


def _counters(pipelines, proc, engine, batch_server) -> dict[str, Any]:
    stats = [p.source.stats() for p in pipelines]
    times = proc.cpu_times()
    batch = engine.batch_stats()
    out = {
        "t": time.monotonic(),
        "processed": [p.stats.frames_processed for p in pipelines],
        "read": [s.frames_read for s in stats],
        "dropped": [s.frames_dropped for s in stats],
        "cpu": times.user + times.system,
        "batches": batch.batches if batch else 0,
        "crops": batch.crops if batch else 0,
    }
    if batch_server is not None:
        out["server_batch"] = batch_server()
    return out


def _zero_counters(n: int) -> dict[str, Any]:
    return {"t": time.monotonic(), "processed": [0] * n, "read": [0] * n, "dropped": [0] * n, "cpu": 0.0,
            "batches": 0, "crops": 0}


def sweep(settings: RunSettings, clips: list[list[np.ndarray]], counts: list[int], seconds: float,
          batch_server=None) -> dict[str, Any]:
    rows = []
    for n in counts:
        rows.append(run_streams(settings, clips, n, seconds, batch_server))
    held = [r["streams"] for r in rows if r["holds"]]
    return {"rows": rows, "max_streams_holding": max(held) if held else 0,
            "criteria": f">= {0.97 * TARGET_FPS:.1f} fps per camera, p95 < {MAX_P95_MS:.0f} ms, drops < "
                        f"{MAX_DROP:.0%}"}


def print_streams(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 160)
    table = Table(title=f"live 30-fps cameras through the multi-camera pipeline ({report['criteria']})")
    for col in ("cameras", "engine", "fps/camera (min)", "drops", "e2e p50/p95 ms", "mean batch", "CPU cores",
                "RSS MB", "holds"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for r in report["rows"]:
        table.add_row(str(r["streams"]), r["engine"], f"{r['fps_per_camera']:.1f} ({r['min_fps']:.1f})",
                      f"{r['drop_rate']:.1%}", f"{r['e2e_p50_ms']:.0f} / {r['e2e_p95_ms']:.0f}",
                      "-" if r["mean_batch"] is None else f"{r['mean_batch']:.2f}", f"{r['cpu_cores_used']:.2f}",
                      f"{r['rss_mb']:.0f}", "yes" if r["holds"] else "no")
    console.print(table)
    console.print(f"most cameras holding 30 fps: {report['max_streams_holding']}")
