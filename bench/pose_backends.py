"""ViTPose network latency on the CPU: PyTorch eager vs ONNX Runtime fp32, same process, same inputs.

Real-size ViTPose-S/-B with random weights (latency does not depend on the values), batch 1, 256x192 crops.
Iterations alternate between the backends so that load from other processes hits both alike. Reported per
variant and backend: p50/p95/mean ms per frame (network only) and the PyTorch/backend p50 ratio (>1 = faster
than PyTorch). The shared crop + decode cost (``realtime.pose.topdown`` on a 1280x720 frame) is reported once.

    python bench/pose_backends.py                        # S and B, 20 timed iterations each
    python bench/pose_backends.py --variants b --iters 50 --threads 1 --json > out/pose_backends.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from realtime.backends.onnx_backend import cpu_cores  # noqa: E402
from realtime.pose import topdown, vitpose  # noqa: E402


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "mean_ms": float(a.mean())}


def bench_variant(variant: str, iters: int, warmup: int, workdir: Path, threads: int) -> list[dict]:
    import torch

    from realtime.backends.onnx_backend import OnnxRuntimeBackend

    model = vitpose.build_vitpose(variant)
    started = time.perf_counter()
    path = vitpose.export_onnx(model, workdir / f"vitpose-{variant}.onnx")
    export_s = time.perf_counter() - started
    ort = OnnxRuntimeBackend(path, device="cpu", threads=threads)
    x = np.random.default_rng(0).standard_normal((1, 3, *topdown.INPUT_HW), dtype=np.float32)
    xt = torch.from_numpy(x)
    runners = {"torch": lambda: vitpose.heatmaps(model, xt), ort.name: lambda: ort.infer(x)}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(warmup + iters):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) * 1000.0)
    ort.close()
    torch_p50 = stats(times["torch"])["p50_ms"]
    rows = []
    for name, ms in times.items():
        row = {"variant": variant, "backend": "torch[cpu,fp32,eager]" if name == "torch" else name, **stats(ms)}
        row["speedup_vs_torch"] = torch_p50 / row["p50_ms"]
        rows.append(row)
    rows[1]["export_s"] = export_s
    return rows


def bench_topdown(iters: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    box = np.array([[400, 80, 800, 700]], np.float32)
    maps = rng.random((1, 17, *topdown.HEATMAP_HW), dtype=np.float32)
    pre, post = [], []
    for _ in range(iters):
        t0 = time.perf_counter()
        _, affines = topdown.preprocess(frame, box)
        t1 = time.perf_counter()
        topdown.decode_heatmaps(maps, affines)
        t2 = time.perf_counter()
        pre.append((t1 - t0) * 1000.0)
        post.append((t2 - t1) * 1000.0)
    return {"preprocess_p50_ms": float(np.median(pre)), "decode_p50_ms": float(np.median(post))}


def main(argv: list[str] | None = None) -> int:
    from realtime.logs import add_verbose_argument, setup_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="s,b", help="comma-separated ViTPose sizes (s,b,l,h)")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per backend")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="threads for both (default: physical cores)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    import onnxruntime
    import torch

    threads = args.threads or cpu_cores()
    torch.set_num_threads(threads)  # same thread count as ONNX Runtime's intra-op pool
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="pose-bench-") as tmp:
        for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
            rows += bench_variant(variant, args.iters, args.warmup, Path(tmp), threads)
    report = {
        "cpu": platform.processor() or platform.machine(), "threads": threads, "batch": 1,
        "input_hw": list(topdown.INPUT_HW), "iters": args.iters, "warmup": args.warmup,
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "results": rows,
        "topdown": bench_topdown(max(args.iters, 20)),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"ViTPose network, batch 1, 256x192, {threads} threads, {args.iters} iterations (+{args.warmup} warm-up)")
    print(f"{'variant':8} {'backend':26} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'vs torch':>9}")
    for r in rows:
        print(f"{'ViTPose-' + r['variant'].upper():8} {r['backend']:26} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
              f"{r['mean_ms']:8.1f} {r['speedup_vs_torch']:8.2f}x")
    td = report["topdown"]
    print(f"crop (1280x720 frame) {td['preprocess_p50_ms']:.2f} ms, DARK decode {td['decode_p50_ms']:.2f} ms (p50)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
