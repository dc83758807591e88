"""Pose-stage speed on a real 720p clip: BlazePose lite vs full (detector, landmark model, whole stage, end-to-end fps)
next to ViTPose-S/B on ONNX Runtime (random weights: speed only).

End-to-end = decode (PyAV) + pose, one thread after the other, so it is the conservative number: the pipeline
decodes in its own thread. Each measurement is the median over ``--repeats`` passes over the clip. "stage CPU ms" is
the process CPU time per frame: with ``--threads 1`` it is the one-core cost, which other processes on a shared
machine inflate much less than wall time (the load average is printed with the table).

    python bench/pose_speed.py --clip ../shared/data/deadlift_bichraix/videos/good/good008.mp4 --json out/speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_CLIP = REPO.parent / "shared" / "data" / "deadlift_bichraix" / "videos" / "good" / "good008.mp4"


def decode(path: Path, limit: int) -> tuple[list[np.ndarray], float]:
    """Frames as BGR arrays and the decode time per frame (ms)."""
    from realtime.sources.decode import decode_upright

    start = time.perf_counter()
    frames = list(decode_upright(path, limit=limit))
    return frames, (time.perf_counter() - start) * 1e3 / max(len(frames), 1)


def median_ms(fn, frames: list[np.ndarray], repeats: int) -> float:
    """Median over passes of the mean ms per frame of ``fn(frame)``."""
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for frame in frames:
            fn(frame)
        passes.append((time.perf_counter() - start) * 1e3 / len(frames))
    return float(np.median(passes))


def bench_blazepose(variant: str, frames: list[np.ndarray], decode_ms: float, repeats: int, threads: int | None) -> dict:
    from realtime.pose.blazepose import LANDMARK_INPUT, BlazePoseEstimator

    est = BlazePoseEstimator(variant, num_threads=threads)
    for frame in frames[:5]:  # warm-up (XNNPACK packs weights on the first runs)
        est.estimate(frame)
    detector_ms = median_ms(est.detector.detect_people, frames, repeats)
    est.reset()
    est.estimate(frames[0])
    roi = est.roi
    tensor = roi.crop(frames[0], LANDMARK_INPUT)[None, :, :, ::-1].astype(np.float32) / 255.0

    def landmark_only(_frame: np.ndarray) -> None:
        est._interp.set_tensor(est._input, tensor)
        est._interp.invoke()

    landmark_ms = median_ms(landmark_only, frames, repeats)
    stats = {"detected": 0, "present": 0}

    def stage(frame: np.ndarray) -> None:
        result = est.estimate(frame)
        stats["detected"] += result.detected
        stats["present"] += result.present

    passes, cpu = [], []
    for _ in range(repeats):
        est.reset()
        start, start_cpu = time.perf_counter(), time.process_time()
        for frame in frames:
            stage(frame)
        passes.append((time.perf_counter() - start) * 1e3 / len(frames))
        cpu.append((time.process_time() - start_cpu) * 1e3 / len(frames))
    stage_ms = float(np.median(passes))
    est.close()
    n = len(frames) * repeats
    return {"engine": f"blazepose-{variant}", "detector_ms": detector_ms, "model_ms": landmark_ms,
            "stage_ms": stage_ms, "stage_cpu_ms": float(np.median(cpu)), "detector_share": stats["detected"] / n, "found_share": stats["present"] / n,
            "stage_fps": 1e3 / stage_ms, "e2e_fps": 1e3 / (stage_ms + decode_ms)}


def bench_vitpose(variant: str, frames: list[np.ndarray], decode_ms: float, repeats: int) -> dict:
    """Steady-state ViTPose cost per frame: crop + network + decode on a followed box (detector not run)."""
    from realtime.backends import load_factory
    from realtime.pose.detector import BlazePersonDetector
    from realtime.pose.vitpose import build_vitpose
    from realtime.pose.vitpose_estimator import VitPoseEstimator

    model = build_vitpose(variant)
    with tempfile.TemporaryDirectory() as tmp:
        runtime = load_factory("onnxruntime")(model, Path(tmp) / f"vitpose-{variant}.onnx", precision="fp32",
                                              device="cpu", variant=variant)
        est = VitPoseEstimator(runtime, variant)
        people = BlazePersonDetector().detect(frames[0])
        box = people[0][0] if people else np.array([0, 0, frames[0].shape[1], frames[0].shape[0]], np.float32)
        est.estimate_batch([frames[0]], [box])
        model_times = []

        def step(frame: np.ndarray) -> None:
            _, ms = est.estimate_batch([frame], [box])
            model_times.append(ms)

        stage_ms = median_ms(step, frames, repeats)
        name = runtime.name
        est.close()
    return {"engine": f"vitpose-{variant} {name} (random weights)", "detector_ms": None,
            "model_ms": float(np.median(model_times)), "stage_ms": stage_ms, "stage_cpu_ms": None, "detector_share": None,
            "found_share": None, "stage_fps": 1e3 / stage_ms, "e2e_fps": 1e3 / (stage_ms + decode_ms)}


def main(argv: list[str] | None = None) -> int:
    from realtime.logs import add_verbose_argument, setup_logging

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="LiteRT threads (default: all cores, max 4)")
    parser.add_argument("--vitpose", default="s,b", help="ViTPose variants to time ('' = none)")
    parser.add_argument("--json", type=Path, default=None)
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not args.clip.is_file():
        print(f"clip not found: {args.clip} (real clips live in ../shared/data)", file=sys.stderr)
        return 1

    frames, decode_ms = decode(args.clip, args.frames)
    _, decode_ms = decode(args.clip, args.frames)  # second pass: file cached
    h, w = frames[0].shape[:2]
    rows = [bench_blazepose(v, frames, decode_ms, args.repeats, args.threads) for v in ("lite", "full")]
    for variant in filter(None, args.vitpose.split(",")):
        try:
            rows.append(bench_vitpose(variant.strip(), frames, decode_ms, max(1, args.repeats - 2)))
        except Exception as exc:  # ViTPose is another helper's module; report, don't fail the BlazePose numbers
            print(f"vitpose-{variant}: not timed ({type(exc).__name__}: {exc})", file=sys.stderr)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nPose stage on {args.clip.name} ({w}x{h}, {len(frames)} frames), {os.cpu_count()} CPU cores "
          f"({platform.processor() or platform.machine()}), load avg {load:.1f}; decode {decode_ms:.1f} ms/frame\n")
    print("| engine | detector ms | model ms | pose stage ms/frame | stage CPU ms/frame | detector runs | lifter found "
          "| pose fps | decode+pose fps |")
    print("|---|---|---|---|---|---|---|---|---|")

    def fmt(value, spec):
        return "–" if value is None else format(value, spec)

    for r in rows:
        print(f"| {r['engine']} | {fmt(r['detector_ms'], '.1f')} | {r['model_ms']:.1f} | {r['stage_ms']:.1f} | "
              f"{fmt(r['stage_cpu_ms'], '.1f')} | {fmt(r['detector_share'], '.1%')} | {fmt(r['found_share'], '.1%')} | {r['stage_fps']:.0f} | "
              f"{r['e2e_fps']:.0f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"clip": str(args.clip), "size": [w, h], "frames": len(frames),
                                         "decode_ms": decode_ms, "cores": os.cpu_count(), "load_avg": load,
                                         "rows": rows, "command": " ".join(sys.argv)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
