"""INT8 vs FP32 ViTPose on real frames: keypoint agreement, heatmap error and CPU speed, in one run.

    python bench/int8_accuracy.py [--variant s] [--calib-count 128] [--eval-count 64] [--json out/int8.json]
    python bench/int8_accuracy.py --weights out/distill/vitpose-s-distilled --recipes all --json out/int8_distilled.json

Network: ViTPose-S with RANDOM weights (seeded) by default -- no official ViTPose weights can be had on this
machine -- or ``--weights`` (e.g. the BlazePose-distilled stand-in of ``bench/distill_vitpose.py``, whose heatmaps
are peaked like a trained model's). Either way this measures quantisation error, not pose accuracy: INT8 (ONNX
Runtime static QDQ, calibrated on person crops from some clips) is compared with FP32 on person crops from OTHER
clips (deadlift_bichraix ``bad*`` videos with their keypoint-CSV person boxes). ``--recipes`` compares
calibration methods, per-channel on/off and keeping sensitive nodes in float (see ``RECIPES``).
Weak, ambiguous heatmap peaks (random weights) let a tiny change move the argmax far; so the report also gives
(a) the heatmap relative error, (b) PCK between FP32 and FP32 on inputs perturbed by ~1 grey level of noise (how
unstable the argmax is anyway) and (c) PCK on the joints whose FP32 peak is distinct (top half by peak z-score).
Speed: ORT FP32 vs ORT INT8 on this CPU, same session settings, interleaved runs. Clips are read from
``../shared/data`` at run time; nothing from them is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from realtime.backends.calibration import (  # noqa: E402
    CalibrationBatches,
    keypoint_csv_for,
    load_keypoint_boxes,
    quantize_onnx_int8,
    read_frames,
    refresh_calibration_frames,
)
from realtime.backends.onnx_backend import OnnxRuntimeBackend  # noqa: E402
from realtime.pose import topdown, vitpose  # noqa: E402

DATA = Path(os.environ.get("REALTIME_SHARED", REPO.parent / "shared")) / "data"

# name -> quantize_onnx_int8 keyword arguments. Excluded nodes stay float (regex on ONNX node names); "default" is
# quantize_onnx_int8's own default (minmax, per-channel, realtime.backends.calibration.FLOAT_NODES kept float).
_HEAD = r"head/conv"  # final 3x3 conv that draws the heatmaps
_ATTN = r"attention/attention/MatMul"  # activation x activation matmuls: Q.K^T and softmax.V
_FC2 = r"mlp/fc2"  # input is the GELU output: long-tailed
RECIPES: dict[str, dict] = {
    "default": {},
    "default-symmetric": {"symmetric": True},  # the Q/DQ graph TensorRT gets (s8 activations, zero point 0)
    "minmax": {"method": "minmax", "exclude": ()},
    "minmax-symmetric": {"method": "minmax", "exclude": (), "symmetric": True},
    "minmax-per-tensor": {"method": "minmax", "per_channel": False, "exclude": ()},
    "entropy": {"method": "entropy", "exclude": ()},
    "percentile": {"method": "percentile", "exclude": ()},
    "minmax-float-head": {"method": "minmax", "exclude": (_HEAD,)},
    "minmax-float-attn": {"method": "minmax", "exclude": (_ATTN,)},
    "minmax-float-fc2": {"method": "minmax", "exclude": (_FC2,)},
    "percentile-float-head": {"method": "percentile", "exclude": (_HEAD,)},
    "percentile-float-attn-head": {"method": "percentile", "exclude": (_ATTN, _HEAD)},
    "minmax-float-attn-head": {"method": "minmax", "exclude": (_ATTN, _HEAD)},
}


def eval_crops(videos: list[Path], count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Person crops from clips with keypoint CSVs: (crops, affines, box sizes, (clip, frame) ids)."""
    rng = np.random.default_rng(seed)
    per = max(1, -(-count // len(videos)))  # ceil: short clips may give fewer
    crops, affines, sizes, ids = [], [], [], []
    for video in videos:
        boxes = load_keypoint_boxes(keypoint_csv_for(video))
        valid = [i for i, b in enumerate(boxes) if b is not None]
        wanted = set(rng.choice(valid, size=min(per, len(valid)), replace=False).tolist())
        for i, image in read_frames(video, wanted):
            box = boxes[i]
            batch, aff = topdown.preprocess(image, box[None])
            crops.append(batch[0])
            affines.append(aff[0])
            sizes.append(float(max(box[2] - box[0], box[3] - box[1])))
            ids.append((video.name, i))
    return np.stack(crops)[:count], np.stack(affines)[:count], np.array(sizes)[:count], ids[:count]


def run_batched(backend: OnnxRuntimeBackend, crops: np.ndarray, batch: int = 8) -> np.ndarray:
    return np.concatenate([backend.infer(crops[i : i + batch]) for i in range(0, len(crops), batch)])


def pck(a: np.ndarray, b: np.ndarray, sizes: np.ndarray, frac: float = 0.05, mask: np.ndarray | None = None) -> float:
    dist = np.linalg.norm(a[..., :2] - b[..., :2], axis=-1)  # (N, 17)
    ok = dist <= frac * sizes[:, None]
    return float(ok[mask].mean() if mask is not None else ok.mean())


def peak_z(heatmaps: np.ndarray) -> np.ndarray:
    """(N, 17) peak z-score: how far each joint's maximum stands above its map's mean, in standard deviations."""
    flat = heatmaps.reshape(*heatmaps.shape[:2], -1)
    return (flat.max(-1) - flat.mean(-1)) / np.maximum(flat.std(-1), 1e-12)


def speed(fp32: OnnxRuntimeBackend, int8: OnnxRuntimeBackend, crops: np.ndarray, batch: int, reps: int) -> dict:
    x = crops[:batch]
    fp32.infer(x)
    int8.infer(x)
    t32, t8 = [], []
    for _ in range(reps):  # interleaved so that load from other processes hits both alike
        for be, acc in ((fp32, t32), (int8, t8)):
            t = time.perf_counter()
            be.infer(x)
            acc.append((time.perf_counter() - t) * 1000)
    m32, m8 = float(np.median(t32)), float(np.median(t8))
    return {"batch": batch, "reps": reps, "fp32_ms_median": round(m32, 1), "int8_ms_median": round(m8, 1),
            "fp32_ms_min": round(min(t32), 1), "int8_ms_min": round(min(t8), 1),
            "speedup_median": round(m32 / m8, 2), "speedup_min": round(min(t32) / min(t8), 2)}


def evaluate_recipe(name: str, fp32_path: Path, work: Path, batches: CalibrationBatches, crops: np.ndarray,
                    affines: np.ndarray, sizes: np.ndarray, fp32: OnnxRuntimeBackend, h32: np.ndarray,
                    k32: np.ndarray, distinct: np.ndarray, speed_reps: int) -> dict:
    """Quantise with one recipe and compare it with FP32 on the evaluation crops."""
    kwargs = RECIPES[name]
    t = time.time()
    int8_path = quantize_onnx_int8(fp32_path, work / f"{fp32_path.stem.replace('_fp32', '')}_int8_{name}.onnx",
                                   batches, **kwargs)
    quant_s = time.time() - t
    int8 = OnnxRuntimeBackend(int8_path)
    h8 = run_batched(int8, crops)
    k8 = topdown.decode_heatmaps(h8, affines)
    rel = np.linalg.norm((h8 - h32).reshape(len(h32), -1), axis=1) / np.linalg.norm(h32.reshape(len(h32), -1), axis=1)
    out = {
        "recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
        "pck@0.05_int8_vs_fp32": round(pck(k8, k32, sizes), 4),
        "pck@0.05_int8_vs_fp32_distinct_peaks": round(pck(k8, k32, sizes, mask=distinct), 4),
        "pck@0.10_int8_vs_fp32": round(pck(k8, k32, sizes, frac=0.10), 4),
        "heatmap_rel_l2_err_int8": {"mean": round(float(rel.mean()), 4), "p95": round(float(np.percentile(rel, 95)), 4)},
        "heatmap_max_abs_err_over_peak": round(float(np.abs(h8 - h32).max() / np.abs(h32).max()), 4),
        "score_mean_abs_diff": round(float(np.abs(k8[..., 2] - k32[..., 2]).mean()), 4),
        "speed_cpu": [speed(fp32, int8, crops, 1, speed_reps), speed(fp32, int8, crops, 8, max(3, speed_reps // 3))],
        "int8_onnx_mb": round(int8_path.stat().st_size / 1e6, 1),
        "quantisation_s": round(quant_s, 1),
    }
    int8.close()
    print(f"{name}: PCK@5% {out['pck@0.05_int8_vs_fp32']}, rel err {out['heatmap_rel_l2_err_int8']['mean']}, "
          f"speed-up b1 {out['speed_cpu'][0]['speedup_median']} b8 {out['speed_cpu'][1]['speedup_median']}",
          file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    from realtime.logs import add_verbose_argument, setup_logging

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="s", choices=("s", "b", "l", "h"))
    p.add_argument("--weights", default=None,
                   help="ViTPose weights (HF dir, .pth, .safetensors), e.g. out/distill/vitpose-s-distilled; "
                        "default: random weights (torch seed 0)")
    p.add_argument("--calib-count", type=int, default=128)
    p.add_argument("--eval-count", type=int, default=64)
    p.add_argument("--method", default="minmax", choices=("minmax", "entropy", "percentile"),
                   help="calibration method of quantize_onnx_int8's default recipe (ignored with --recipes)")
    p.add_argument("--recipes", default=None,
                   help=f"comma-separated recipes to compare, or 'all': {', '.join(RECIPES)}")
    p.add_argument("--speed-reps", type=int, default=15)
    p.add_argument("--work-dir", default=None, help="where the ONNX files and crops go (default: a temp dir)")
    p.add_argument("--json", default=None)
    add_verbose_argument(p)
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    if a.recipes is None:  # quantize_onnx_int8's defaults with --method
        RECIPES[f"default-{a.method}"] = {"method": a.method}
        recipes = [f"default-{a.method}"]
    else:
        recipes = list(RECIPES) if a.recipes == "all" else a.recipes.split(",")
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        print(f"error: unknown recipe {unknown[0]!r}; choose from {', '.join(RECIPES)}", file=sys.stderr)
        return 2
    deadlift = DATA / "deadlift_bichraix" / "videos"
    reps = DATA / "workouttracker_reps" / "videos"
    if not deadlift.is_dir() or not reps.is_dir():
        print(f"error: real clips not found under {DATA}", file=sys.stderr)
        return 2
    import torch

    t_start = time.time()
    load_before = os.getloadavg()
    work = Path(a.work_dir or tempfile.mkdtemp(prefix="int8-acc-"))
    work.mkdir(parents=True, exist_ok=True)
    if a.weights:
        model = vitpose.load_vitpose_model(a.weights, a.variant)
        network = f"ViTPose-{a.variant.upper()} weights from {a.weights}"
        tag = f"{a.variant}_{vitpose.weights_fingerprint(a.weights)}"
    else:
        torch.manual_seed(0)
        model = vitpose.build_vitpose(a.variant)
        network = f"ViTPose-{a.variant.upper()} with random weights (torch seed 0)"
        tag = f"{a.variant}_random"
    network += ": quantisation error only, not pose accuracy"
    fp32_path = vitpose.export_onnx(model, work / f"vitpose-{tag}_fp32.onnx")

    # Calibrate on the rep-counting clips + the "good" deadlifts; evaluate on the "bad" deadlifts (other clips).
    calib_sources = [reps, deadlift / "good"]
    t = time.time()
    refresh_calibration_frames(calib_sources, work / "calib" / "frames", count=a.calib_count, seed=0)
    calib_s = time.time() - t
    batches = CalibrationBatches(work / "calib", batch_size=8)
    eval_videos = sorted(v for v in (deadlift / "bad").glob("*.mp4") if keypoint_csv_for(v))
    crops, affines, sizes, ids = eval_crops(eval_videos, a.eval_count, seed=1)

    fp32 = OnnxRuntimeBackend(fp32_path)
    h32 = run_batched(fp32, crops)
    noise = np.random.default_rng(2).standard_normal(crops.shape).astype(np.float32) / topdown.STD_RGB.mean()
    hnoise = run_batched(fp32, crops + noise)  # ~1 grey level (0..255) of input noise
    k32, knoise = (topdown.decode_heatmaps(h, affines) for h in (h32, hnoise))
    z = peak_z(h32)
    distinct = z >= np.median(z)
    rel_noise = (np.linalg.norm((hnoise - h32).reshape(len(h32), -1), axis=1)
                 / np.linalg.norm(h32.reshape(len(h32), -1), axis=1))
    results = {name: evaluate_recipe(name, fp32_path, work, batches, crops, affines, sizes, fp32, h32, k32, distinct,
                                     a.speed_reps) for name in recipes}
    report = {
        "network": network,
        "int8": f"ONNX Runtime static QDQ, u8 activations (s8, zero point 0: *-symmetric) / s8 weights, MatMul+Conv+Gemm "
                f"quantised unless excluded, "
                f"calibrated on {batches.n_samples} crops",
        "calibration_clips": [str(s.relative_to(DATA)) for s in calib_sources],
        "eval_clips": sorted({i[0] for i in ids}), "eval_crops": len(crops),
        "pck@0.05_fp32_noise1grey_vs_fp32": round(pck(knoise, k32, sizes), 4),
        "pck@0.05_fp32_noise1grey_vs_fp32_distinct_peaks": round(pck(knoise, k32, sizes, mask=distinct), 4),
        "heatmap_rel_l2_err_fp32_noise1grey": round(float(rel_noise.mean()), 4),
        "fp32_peak_value_median": round(float(np.median(k32[..., 2])), 3),
        "peak_z_median": round(float(np.median(z)), 2),
        "peak_z_p10_p90": [round(float(np.percentile(z, 10)), 2), round(float(np.percentile(z, 90)), 2)],
        "recipes": results,
        "onnx_fp32_mb": round(fp32_path.stat().st_size / 1e6, 1),
        "cpu_threads": fp32.session.get_session_options().intra_op_num_threads,
        "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "seconds": {"calibration_frames": round(calib_s, 1), "total": round(time.time() - t_start, 1)},
    }
    text = json.dumps(report, indent=1)
    print(text)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
