"""``run_live.py --bench``: per-stage and end-to-end speed, several engines compared in one run.

For each pose engine (every ``--pose-model`` x ``--backend`` in the comma lists) on the same frames:
1. the pose engine alone (the baseline),
2. the whole pipeline (capture thread, analysis thread, overlay, sinks thread) on the same frames, file-like
   (no drops), giving end-to-end fps and the pipeline's overhead over the engine alone;
   1 and 2 alternate ``--bench-repeats`` times and the overhead is the median of the per-repeat ratios,
3. optionally (``--soak S``) a live 30-fps source for S seconds sampling memory (RSS) and latency.
Ratios between engines are reported against the first one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from realtime.errors import RealtimeError
from realtime.stats import RunStats, summarize

log = logging.getLogger(__name__)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def load_frames(source: str | None, count: int) -> tuple[list[np.ndarray], float, str]:
    """Decode up to ``count`` frames of ``source`` into memory, or make synthetic 720p frames."""
    from realtime.sources.synthetic import synthetic_frames

    if source is None:
        return synthetic_frames(min(count, 120)), 30.0, "synthetic 1280x720 (no person)"
    if Path(source).is_file() and not _has_pyav():
        return _decode_file_with_opencv(source, count)
    from realtime.sources.capture import Capture

    frames: list[np.ndarray] = []
    cap = Capture(source)
    cap.open()
    cap.start()
    try:
        while len(frames) < count:
            frame = cap.get(timeout=1.0)
            if frame is None:
                if cap.ended:
                    break
                continue
            frames.append(frame.image)
    finally:
        cap.stop()
    if not frames:
        raise RealtimeError(f"no frames could be read from {cap.source_id}")
    h, w = frames[0].shape[:2]
    return frames, cap.fps, f"{cap.source_id} ({w}x{h}, {len(frames)} frames)"


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _decode_file_with_opencv(path: str, count: int) -> tuple[list[np.ndarray], float, str]:
    """The bench needs decoded frames only, so a machine without PyAV (a bare GPU box) can still bench a file."""
    import cv2

    cap = cv2.VideoCapture(path)
    frames: list[np.ndarray] = []
    while len(frames) < count:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    cap.release()
    if not frames:
        raise RealtimeError(f"no frames could be read from {path}")
    h, w = frames[0].shape[:2]
    return frames, fps, f"{Path(path).name} ({w}x{h}, {len(frames)} frames, OpenCV: no PyAV here)"


def bench_engine(args: argparse.Namespace, pose_model: str, backend: str, frames: list[np.ndarray],
                 fps: float) -> dict[str, Any]:
    from realtime.app import build_components
    from realtime.pipeline import Analyzer, Pipeline
    from realtime.settings import settings_from_args
    from realtime.sources.synthetic import SyntheticSource

    estimator, reason, classifier, reps, smoother = build_components(settings_from_args(args), pose_model, backend,
                                                                     fps)
    for image in frames[:5]:  # warm-up (allocations, lazy init, caches)
        estimator.estimate(image)

    # The engine alone (the baseline) and the whole pipeline on the same frames (no drops, overlay drawn as the
    # screen/video would), alternated ``--bench-repeats`` times so that a noisy neighbour on a shared machine
    # hits both sides; the overhead reported is the median of the per-repeat ratios.
    repeats = max(1, args.bench_repeats)
    pose_ms: list[float] = []
    overheads: list[float] = []
    e2e_rates: list[float] = []
    for _ in range(repeats):
        estimator.reset()
        one: list[float] = []
        for image in frames:
            t = time.perf_counter()
            estimator.estimate(image)
            one.append((time.perf_counter() - t) * 1000)
        pose_ms += one
        for part in (estimator, classifier, reps, smoother):
            if part is not None:
                part.reset()
        stats = RunStats(window=len(frames) + 1)  # the stage table is from the last repeat
        analyzer = Analyzer(estimator, classifier, reps, smoother, stats)
        outcome = Pipeline(SyntheticSource(frames, fps=fps, live=False, loop=False), analyzer, draw=True).run()
        rate = outcome.frames_processed / outcome.duration_s if outcome.duration_s > 0 else 0.0
        e2e_rates.append(rate)
        if rate > 0:
            overheads.append((1000.0 / float(np.mean(one))) / rate - 1.0)
    pose_only = summarize(pose_ms)
    engine_fps = 1000.0 / pose_only.mean_ms
    e2e_fps = float(np.median(e2e_rates))
    result: dict[str, Any] = {
        "pose_model": pose_model,
        "backend": backend,
        "engine": estimator.name,
        "reason": reason,
        "frames": len(frames),
        "repeats": repeats,
        "pose_only_ms": {"p50": pose_only.p50_ms, "p95": pose_only.p95_ms, "mean": pose_only.mean_ms},
        "pose_only_fps": engine_fps,
        "stages_ms": {k: {"p50": s.p50_ms, "p95": s.p95_ms, "mean": s.mean_ms} for k, s in stats.stages().items()},
        "end_to_end_latency_ms": {"p50": e.p50_ms, "p95": e.p95_ms} if (e := stats.end_to_end()) else None,
        "end_to_end_fps": e2e_fps,
        "pipeline_overhead": float(np.median(overheads)) if overheads else None,
        "pipeline_overhead_per_repeat": overheads,
        "dropped": outcome.frames_dropped,
    }
    if args.soak:
        result["soak"] = soak(estimator, classifier, reps, smoother, frames, args.soak)
    estimator.close()
    return result


def soak(estimator, classifier, reps, smoother, frames: list[np.ndarray], seconds: float,
         sample_every_s: float = 5.0) -> dict[str, Any]:
    """A live 30-fps source for ``seconds``: RSS and latency sampled over time (bounded memory check)."""
    import tempfile
    import threading

    import psutil

    from realtime.outputs.sinks import EventLogSink
    from realtime.pipeline import Analyzer, Pipeline
    from realtime.sources.synthetic import SyntheticSource

    proc = psutil.Process()
    stats = RunStats()
    analyzer = Analyzer(estimator, classifier, reps, smoother, stats)
    source = SyntheticSource(frames, fps=30.0, live=True, loop=True, duration_s=seconds)
    events_dir = tempfile.TemporaryDirectory(prefix="soak-")
    events = EventLogSink(Path(events_dir.name) / "events.jsonl")  # the per-frame log, as a wall camera runs
    pipeline = Pipeline(source, analyzer, events=events, draw=True)
    samples: list[dict[str, float]] = []
    done = threading.Event()

    def sampler() -> None:
        t0 = time.monotonic()
        while not done.wait(sample_every_s):
            e2e = stats.end_to_end()
            src = source.stats()
            samples.append({
                "t": round(time.monotonic() - t0, 1),
                "rss_mb": proc.memory_info().rss / 2**20,
                "latency_p95_ms": e2e.p95_ms if e2e else float("nan"),
                "fps_out": stats.fps_out(),
                "buffer_fill": src.buffer_fill,
                "dropped": src.frames_dropped,
            })

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    outcome = pipeline.run()
    done.set()
    thread.join()
    events.close()
    events_mb = events.path.stat().st_size / 2**20
    events_dir.cleanup()
    warm = [s for s in samples if s["t"] >= min(60.0, seconds / 4)] or samples
    rss_growth = (warm[-1]["rss_mb"] / warm[0]["rss_mb"] - 1.0) if len(warm) >= 2 else 0.0
    return {
        "seconds": seconds,
        "frames_read": outcome.frames_read,
        "frames_processed": outcome.frames_processed,
        "frames_dropped": outcome.frames_dropped,
        "max_buffer_fill": max((s["buffer_fill"] for s in samples), default=0),
        "rss_mb_after_warmup": warm[0]["rss_mb"] if warm else None,
        "rss_mb_end": samples[-1]["rss_mb"] if samples else None,
        "rss_growth_after_warmup": rss_growth,
        "events_log_mb": events_mb,
        "samples": samples,
    }


def _overhead_cell(run: dict[str, Any]) -> str:
    """Median overhead, with the range over the repeats when there are several."""
    if run["pipeline_overhead"] is None:
        return "-"
    cell = f"{run['pipeline_overhead'] * 100:+.1f}%"
    each = run.get("pipeline_overhead_per_repeat") or []
    if len(each) > 1:
        cell += f" ({min(each) * 100:+.0f}…{max(each) * 100:+.0f})"
    return cell


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from realtime.stats import bottleneck, stage_rate_cell

    console = Console(width=None if Console().is_terminal else 160)
    console.print(f"[bold]bench[/] on {report['machine']['cpu']} ({report['machine']['cores']} cores), "
                  f"frames: {report['frames']}")
    runs = report["runs"]
    base = runs[0]["end_to_end_fps"] if runs else 0
    table = Table(title="per engine")
    for col in ("engine", "pose p50 ms", "pose p95 ms", "pose fps", "pipeline fps", "overhead", "e2e p95 ms",
                "vs first"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for r in runs:
        e2e = r["end_to_end_latency_ms"] or {"p95": float("nan")}
        table.add_row(
            r["engine"], f"{r['pose_only_ms']['p50']:.1f}", f"{r['pose_only_ms']['p95']:.1f}",
            f"{r['pose_only_fps']:.1f}", f"{r['end_to_end_fps']:.1f}",
            _overhead_cell(r),
            f"{e2e['p95']:.0f}", f"{r['end_to_end_fps'] / base:.2f}x" if base else "-",
        )
    console.print(table)
    for r in runs:
        stages = Table(title=f"stages: {r['engine']} (pipeline run)")
        for col in ("stage", "p50 ms", "p95 ms", "max fps"):
            stages.add_column(col, justify="left" if col == "stage" else "right")
        slowest = bottleneck({name: s["mean"] for name, s in r["stages_ms"].items()})
        for name, s in r["stages_ms"].items():
            stages.add_row(name, f"{s['p50']:.2f}", f"{s['p95']:.2f}", stage_rate_cell(name, s["mean"], slowest))
        console.print(stages)
        if "soak" in r:
            s = r["soak"]
            console.print(f"soak {s['seconds']:.0f}s: processed {s['frames_processed']}, dropped "
                          f"{s['frames_dropped']}, max buffer fill {s['max_buffer_fill']}, RSS "
                          f"{s['rss_mb_after_warmup']:.0f} -> {s['rss_mb_end']:.0f} MB "
                          f"({s['rss_growth_after_warmup'] * 100:+.1f}% after warm-up)")


def run_bench(args: argparse.Namespace) -> int:
    from realtime.pose import validate_pose_options

    validate_pose_options(args.pose_model, args.backend, args.precision, args.weights, allow_lists=True)
    sources = args.source or [None]
    if args.streams:
        return run_streams_bench(args, sources)
    frames, fps, described = load_frames(sources[0], args.bench_frames)
    models = [m.strip() for m in args.pose_model.split(",")]
    backends = [b.strip() for b in args.backend.split(",")]
    runs = [bench_engine(args, m, b, frames, fps) for m in models for b in backends]
    report = {"machine": machine_info(), "frames": described, "runs": runs}
    print_table(report)
    _write_json(args.bench_json, report)
    return 0


def _write_json(path: str | None, report: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2, default=float))


def run_streams_bench(args: argparse.Namespace, sources: list[str | None]) -> int:
    """``--bench --streams N[,N...]``: every given --source clip is replayed as live cameras (round robin)."""
    from realtime.benchmark.streams import print_streams, sweep
    from realtime.settings import settings_from_args

    try:
        counts = sorted({int(x) for x in str(args.streams).split(",")})
    except ValueError:
        raise RealtimeError(f"--streams {args.streams!r}: give camera counts such as 1,2,4") from None
    if not counts or counts[0] < 1:
        raise RealtimeError("--streams: camera counts must be 1 or more")
    if args.workers < 1:
        raise RealtimeError(f"--workers {args.workers}: give 1 or more processes")
    clips, described = [], []
    for source in sources:
        frames, _fps, text = load_frames(source, args.bench_frames)
        clips.append(frames)
        described.append(text)
    settings = settings_from_args(_without_sources(args))
    batch_server = None
    if args.backend == "triton":
        from realtime.backends.triton_backend import server_batch_counts, server_batch_stats

        url = args.triton_url or "grpc://127.0.0.1:8001"
        model = args.triton_model or f"vitpose_{args.pose_model.split('-')[-1]}"
        start = server_batch_counts(url, model)
        batch_server = lambda: server_batch_stats(url, model, since=start)  # noqa: E731
    report = {"machine": machine_info(), "frames": described, "streams": sweep(settings, clips, counts,
                                                                               args.stream_seconds, batch_server,
                                                                               settings.workers,
                                                                               not args.bench_no_overlay)}
    print_streams(report["streams"])
    _write_json(args.bench_json, report)
    return 0


def _without_sources(args: argparse.Namespace) -> argparse.Namespace:
    copy = argparse.Namespace(**vars(args))
    copy.source, copy.cameras = None, None
    return copy
