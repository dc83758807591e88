"""Pose-network speed on one device: batch-1 latency, batched throughput, and how many live 30-fps streams one
GPU sustains with dynamic batching.

``python -m realtime.benchmark.gpu --variant b --backend torch --precision fp16 --cuda-graphs --json out.json``

Streams: N simulated sources each deliver a person crop every 1/30 s (phases spread over the frame period); a
dynamic batcher takes up to ``max_batch`` waiting crops whenever the network is free (or on every ``tick_s``) and
runs them as one batch. A frame's latency is arrival -> heatmaps on the host; frames still queued when a trial
ends count with their age so far. The answer is the largest N whose p95 latency stays under ``latency_ms``.
Works on the CPU too (small settings), which is how the tests exercise it.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FPS = 30.0


def _percentiles(ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(ms, np.float64)
    if a.size == 0:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "mean_ms": float("nan"), "n": 0}
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p95_ms": round(float(np.percentile(a, 95)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": int(a.size)}


def _timed(fn: Callable[[], object], seconds: float, min_iters: int = 3, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < min_iters or time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return times


def device_info(device: str) -> dict:
    """GPU name, driver, CUDA, torch versions (or the CPU) for the report."""
    import torch

    info: dict = {"torch": torch.__version__, "python": platform.python_version()}
    if device.startswith("cuda") and torch.cuda.is_available():
        idx = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(idx)
        info.update(gpu=torch.cuda.get_device_name(idx), compute_capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            info["driver"] = out.stdout.strip().splitlines()[idx] if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError, IndexError):
            info["driver"] = None
    else:
        cpu = platform.processor() or ""
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        info.update(cpu=cpu, threads=torch.get_num_threads())
    return info


def simulate_streams(infer: Callable[[np.ndarray], np.ndarray], crops: np.ndarray, n_sources: int,
                     seconds: float, max_batch: int, tick_s: float = 0.0, fps: float = FPS) -> dict:
    """Run ``n_sources`` simulated 30-fps sources through a dynamic batcher for ``seconds``; latency stats."""
    period = 1.0 / fps
    phases = np.arange(n_sources) * period / max(n_sources, 1)
    arrivals = np.sort((np.arange(int(seconds * fps) + 1)[:, None] * period + phases[None, :]).ravel())
    arrivals = arrivals[arrivals < seconds]
    queue: deque[float] = deque()
    latencies: list[float] = []
    batch_sizes: list[int] = []
    nxt = 0
    t0 = time.perf_counter()
    while True:
        now = time.perf_counter() - t0
        while nxt < len(arrivals) and arrivals[nxt] <= now:
            queue.append(float(arrivals[nxt]))
            nxt += 1
        if now >= seconds:
            break
        if not queue:
            wait = (arrivals[nxt] if nxt < len(arrivals) else seconds) - now
            time.sleep(max(0.0, min(wait, seconds - now)))
            continue
        if tick_s > 0:  # batch only on tick boundaries
            next_tick = np.ceil(now / tick_s) * tick_s
            if next_tick - now > 1e-4:
                time.sleep(next_tick - now)
                continue
        n = min(len(queue), max_batch)
        taken = [queue.popleft() for _ in range(n)]
        infer(crops[:n])
        done = time.perf_counter() - t0
        latencies += [(done - a) * 1000.0 for a in taken]
        batch_sizes.append(n)
    end = time.perf_counter() - t0
    backlog = len(queue) + (len(arrivals) - nxt)
    latencies += [(end - a) * 1000.0 for a in queue]  # still waiting: at least this old
    stats = _percentiles(latencies)
    stats.update(sources=n_sources, frames=len(arrivals), processed=len(arrivals) - backlog, backlog=backlog,
                 mean_batch=round(float(np.mean(batch_sizes)), 2) if batch_sizes else 0.0,
                 processed_fps=round((len(arrivals) - backlog) / seconds, 1))
    return stats


def max_streams(infer: Callable[[np.ndarray], np.ndarray], crops: np.ndarray, max_batch: int, est_fps: float,
                latency_ms: float = 100.0, trial_s: float = 3.0, max_trials: int = 8, tick_s: float = 0.0) -> dict:
    """Largest N sources with p95 latency < ``latency_ms`` (search seeded by the measured throughput)."""
    trials: list[dict] = []

    def ok(n: int) -> bool:
        r = simulate_streams(infer, crops, n, trial_s, max_batch, tick_s)
        r["ok"] = bool(r["p95_ms"] < latency_ms)
        trials.append(r)
        log.info("%d streams: p95 %.1f ms, backlog %d -> %s", n, r["p95_ms"], r["backlog"], r["ok"])
        return r["ok"]

    guess = max(1, int(est_fps / FPS * 0.7))
    good, bad = 0, None
    n = guess
    while len(trials) < max_trials:
        if ok(n):
            good = n
            if bad is None:
                n = max(n + 1, int(n * 1.5))
                continue
        else:
            bad = n
            if n == 1:
                break
        if bad is not None:
            if bad - good <= 1:
                break
            n = (good + bad) // 2 if good else max(1, bad // 2)
    # upper_bound_found False: every trial passed, so max_streams is a lower bound (raise max_trials).
    return {"max_streams": good, "latency_budget_ms": latency_ms, "upper_bound_found": bad is not None,
            "trials": trials}


def build_backend(variant: str, backend: str, precision: str, device: str | None, max_batch: int,
                  cuda_graphs: bool = False, tiny: bool = False, weights: str | None = None, compile: bool = False):
    """The model (random weights unless ``weights``) behind the requested backend."""
    from realtime.backends import load_factory
    from realtime.pose import vitpose

    model = vitpose.load_vitpose_model(weights, variant=variant) if weights else vitpose.build_vitpose(variant, tiny=tiny)
    factory = load_factory(backend)
    options: dict = {}
    if backend in ("torch", "tensorrt", "torch2trt"):  # the ONNX Runtime factory takes the four common arguments only
        options["max_batch"] = max_batch
    if backend == "torch":
        options.update(cuda_graphs=cuda_graphs, compile=compile)
    return model, factory(model, None, precision, device, **options)


def run_gpu_bench(
    variant: str = "b",
    backend: str = "torch",
    precision: str = "fp16",
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    streams: int = 2,
    seconds: float = 2.0,
    device: str | None = None,
    cuda_graphs: bool = False,
    tiny: bool = False,
    weights: str | None = None,
    latency_ms: float = 100.0,
    stream_trial_s: float = 3.0,
    max_trials: int = 8,
    preprocess_check: bool = True,
    compile: bool = False,
) -> dict:
    """Measure one backend; returns a JSON-able dict (see module docstring)."""
    import torch

    from realtime.backends.torch_backend import resolve_device

    dev = str(resolve_device(device))
    max_batch = max(batch_sizes)
    t = time.perf_counter()
    model, be = build_backend(variant, backend, precision, dev, max_batch, cuda_graphs, tiny, weights, compile)
    setup_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    h, w = be.input_hw
    crops = rng.standard_normal((max_batch, 3, h, w)).astype(np.float32)
    report: dict = {
        "variant": f"vitpose-{variant}" + ("-tiny" if tiny else ""),
        "weights": weights or "random (speed only; no trained ViTPose weights are available here)",
        "backend": be.name, "precision": precision, "device": dev, "setup_s": round(setup_s, 2),
        "info": device_info(dev),
    }
    # batch-1 latency: host crops in, host heatmaps out
    report["batch1"] = _percentiles(_timed(lambda: be.infer(crops[:1]), seconds))
    through = []
    for b in batch_sizes:
        ms = _timed(lambda b=b: be.infer(crops[:b]), seconds)
        p = _percentiles(ms)
        through.append({"batch": b, **p, "frames_per_s": round(b * 1000.0 / p["mean_ms"], 1)})
    report["throughput"] = through
    if dev.startswith("cuda") and hasattr(be, "infer_device"):
        # The network alone: crops already on the GPU, heatmaps left there (no host copies); the gap to
        # ``throughput`` is what staging float32 crops/heatmaps through host memory costs.
        resident = []
        for b in batch_sizes:
            def step(b=b) -> None:
                be.infer_device(b)
                be.stream.synchronize()

            p = _percentiles(_timed(step, min(seconds, 1.0)))
            resident.append({"batch": b, **p, "frames_per_s": round(b * 1000.0 / p["mean_ms"], 1)})
        report["device_resident"] = resident
    best = max(through, key=lambda r: r["frames_per_s"])
    report["best_frames_per_s"] = best["frames_per_s"]
    report["best_batch"] = best["batch"]

    if streams > 1 and dev.startswith("cuda") and backend == "torch":
        from realtime.backends.torch_backend import MultiStreamRunner

        runner = MultiStreamRunner(model, precision, dev, streams=streams, max_batch=max_batch,
                                   cuda_graphs=cuda_graphs)
        b = best["batch"]
        group = [crops[:b]] * streams
        ms = _timed(lambda: runner.infer_many(group), seconds)
        report["multistream"] = {"streams": streams, "batch": b, **_percentiles(ms),
                                 "frames_per_s": round(b * streams * 1000.0 / float(np.mean(ms)), 1)}
        runner.close()

    if max_trials > 0:
        report["live_streams"] = max_streams(be.infer, crops, max_batch, best["frames_per_s"], latency_ms,
                                             stream_trial_s, max_trials)
    if preprocess_check:
        report["preprocess"] = _preprocess_bench(dev, seconds=min(seconds, 1.0))
    be.close()
    if dev.startswith("cuda"):
        report["info"]["max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return report


def _preprocess_bench(device: str, seconds: float, people: Sequence[int] = (1, 8)) -> dict:
    """Top-down crop + normalise of a 1080p frame: OpenCV on the CPU vs ``TorchCropper`` on ``device``."""
    import torch

    from realtime.backends.torch_backend import TorchCropper
    from realtime.pose import topdown

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    cropper = TorchCropper(device)
    out: dict = {}
    for n in people:
        boxes = np.array([[100 + 150 * i, 200, 400 + 150 * i, 900] for i in range(n)], np.float32)
        cpu = _percentiles(_timed(lambda boxes=boxes: topdown.preprocess(frame, boxes), seconds))
        affines = cropper.affines(boxes)

        def dev_crop(affines=affines) -> None:
            cropper.crop(frame, affines)
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        dev = _percentiles(_timed(dev_crop, seconds))
        out[f"{n}_people"] = {"opencv_cpu_ms": cpu["p50_ms"], f"torch_{device.split(':')[0]}_ms": dev["p50_ms"]}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from realtime.logs import add_verbose_argument, setup_logging

    p = argparse.ArgumentParser(prog="python -m realtime.benchmark.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="b", choices=("s", "b", "l", "h"))
    p.add_argument("--backend", default="torch", choices=("torch", "tensorrt", "torch2trt", "onnxruntime"))
    p.add_argument("--precision", default="fp16", choices=("fp32", "fp16", "int8"))
    p.add_argument("--device", default=None)
    p.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    p.add_argument("--streams", type=int, default=2, help="CUDA streams for the multi-stream measurement")
    p.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    p.add_argument("--stream-trial-s", type=float, default=3.0)
    p.add_argument("--max-trials", type=int, default=8, help="live-stream search trials (0: skip the search)")
    p.add_argument("--latency-ms", type=float, default=100.0)
    p.add_argument("--cuda-graphs", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (torch backend)")
    p.add_argument("--tiny", action="store_true", help="tiny random ViTPose (tests)")
    p.add_argument("--weights", default=None)
    p.add_argument("--json", default=None, metavar="FILE")
    add_verbose_argument(p)
    a = p.parse_args(argv)
    setup_logging(1 + a.verbose)  # progress is logged at INFO: shown by default here; -v adds debug
    report = run_gpu_bench(a.variant, a.backend, a.precision, tuple(int(b) for b in a.batch_sizes.split(",")),
                           a.streams, a.seconds, a.device, a.cuda_graphs, a.tiny, a.weights, a.latency_ms,
                           a.stream_trial_s, a.max_trials, compile=a.compile)
    text = json.dumps(report, indent=1)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
