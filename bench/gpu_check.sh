#!/usr/bin/env bash
# The one prepared GPU check for a session that is lent an NVIDIA GPU (about 3-4 min on an H100, at most 8).
# Needs: this repo, torch with CUDA, transformers, numpy, opencv. No network, no TensorRT.
#
# What it measures (ViTPose-B with RANDOM weights: speed and numerics only, not accuracy), CUDA PyTorch backend:
#   1. correctness: fp16 vs fp32 heatmaps, CUDA-graph vs eager, GPU crop (TorchCropper) vs OpenCV crop
#   2. fp16 + CUDA graphs: batch-1 latency p50/p95, throughput for batch 1..64, 2-stream throughput, how many
#      live 30-fps streams one GPU sustains with dynamic batching at p95 < 100 ms
#   3. the same in fp16 eager and in fp32 eager (reference), and fp16 with torch.compile at batch 1 and 64
#   4. the CUDA-only unit tests (tests/backends/test_torch_backend.py, which skip here without a GPU)
#   5. with GPU_CHECK_CLIP=video: the whole live pipeline (`run_live.py --bench`) on that clip, BlazePose-full on
#      the CPU vs ViTPose-S/B on the GPU (--precision auto: fp16 there; needs ai-edge-litert for the person detector),
#   6. and with it, `--bench --streams 32,48,64 --workers 24`: that clip as N live cameras through the multi-camera
#      pipeline, the cameras in worker processes around the one ViTPose engine (GPU_CHECK_WORKERS=1: one process)
# Everything lands in $OUT (JSON per run, logs, nvidia-smi, summary.txt).
#
# Run on the device machine:   bash bench/gpu_check.sh
# CPU smoke test (what the tests run): GPU_CHECK_DEVICE=cpu GPU_CHECK_TINY=1 OUT=/tmp/x bash bench/gpu_check.sh
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu_check}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
VARIANT="${GPU_CHECK_VARIANT:-b}"
SECONDS_PER="${GPU_CHECK_SECONDS:-2}"
TRIAL_S="${GPU_CHECK_TRIAL_S:-3}"
BATCHES="${GPU_CHECK_BATCHES:-1,2,4,8,16,32,64}"
TRIALS="${GPU_CHECK_MAX_TRIALS:-8}"     # live-stream search trials per run
LIMIT="${GPU_CHECK_RUN_LIMIT_S:-110}"   # per step; 4 steps stay under 8 min even if every one hits it
EXTRA=()
if [[ "${GPU_CHECK_TINY:-0}" == "1" ]]; then
  EXTRA+=(--tiny)
fi
mkdir -p "$OUT"
: > "$OUT/summary.txt"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"   # the GPU image has python3 only
start=$(date +%s)

{ nvidia-smi || echo "nvidia-smi not available"; } > "$OUT/nvidia-smi.txt" 2>&1

# 1. environment + correctness (small, fast)
timeout "$LIMIT" "$PY" - "$OUT/check.json" "$DEVICE" "$VARIANT" "${GPU_CHECK_TINY:-0}" > "$OUT/check.log" 2>&1 <<'EOF'
import importlib.util, json, sys, time
import numpy as np, torch
out, device, variant, tiny = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
from realtime.pose import topdown
from realtime.pose import vitpose
from realtime.backends.torch_backend import TorchBackend, TorchCropper
from realtime.benchmark.gpu import device_info
report = {"info": device_info(device), "tensorrt_installed": importlib.util.find_spec("tensorrt") is not None,
          "torch2trt_installed": importlib.util.find_spec("torch2trt") is not None, "variant": variant, "tiny": tiny}
torch.manual_seed(0)
model = vitpose.build_vitpose(variant, tiny=tiny)
x = np.random.default_rng(0).standard_normal((8, 3, 256, 192)).astype(np.float32)
ref = TorchBackend(model, "fp32", device).infer(x)
def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))
if device.startswith("cuda"):
    half = TorchBackend(model, "fp16", device)
    graph = TorchBackend(model, "fp16", device, cuda_graphs=True)
    h, g = half.infer(x), graph.infer(x)
    g1 = graph.infer(x[:3])
    report["fp16_vs_fp32_rel_err"] = rel(h, ref)
    report["cudagraph_vs_eager_max_abs"] = float(np.abs(g - h).max())
    report["cudagraph_batch3_vs_eager_max_abs"] = float(np.abs(g1 - h[:3]).max())
    report["cudagraph_name"] = graph.name
    # no allocation per frame once warm
    graph.infer(x[:1]); torch.cuda.synchronize(); before = torch.cuda.memory_allocated()
    for _ in range(20):
        graph.infer(x[:1])
    torch.cuda.synchronize(); report["alloc_growth_bytes_20_calls"] = int(torch.cuda.memory_allocated() - before)
rng = np.random.default_rng(1)
frame = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
boxes = np.array([[300, 100, 600, 700], [-50, 50, 250, 600], [1000, 400, 1400, 800]], np.float32)
cpu_batch, affines = topdown.preprocess(frame, boxes)
gpu_batch = TorchCropper(device).crop(frame, affines).float().cpu().numpy()
report["gpu_crop_vs_opencv_max_abs"] = float(np.abs(gpu_batch - cpu_batch).max())
report["gpu_crop_vs_opencv_mean_abs"] = float(np.abs(gpu_batch - cpu_batch).mean())
json.dump(report, open(out, "w"), indent=1)
print(json.dumps(report, indent=1))
EOF
echo "check: exit $? ($(( $(date +%s) - start )) s)" | tee -a "$OUT/summary.txt"

run() {
  local name=$1; shift
  timeout "$LIMIT" "$PY" -m realtime.benchmark.gpu --variant "$VARIANT" --device "$DEVICE" --seconds "$SECONDS_PER" \
    --stream-trial-s "$TRIAL_S" --max-trials "$TRIALS" "${EXTRA[@]}" "$@" --json "$OUT/$name.json" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? ($(( $(date +%s) - start )) s)" | tee -a "$OUT/summary.txt"
}

# 2./3. speed (GPU_CHECK_SPEED=0 skips them, for a lease that only measures the pipeline steps)
if [[ "${GPU_CHECK_SPEED:-1}" != "1" ]]; then
  echo "speed steps skipped (GPU_CHECK_SPEED=0)" | tee -a "$OUT/summary.txt"
elif [[ "$DEVICE" == "cpu" ]]; then   # smoke test: one run is enough to check the plumbing
  run "vitpose_${VARIANT}_cpu_smoke" --backend torch --precision fp32 --batch-sizes "$BATCHES" --streams 1
else
  run "vitpose_${VARIANT}_fp16_cudagraph" --backend torch --precision fp16 --cuda-graphs --batch-sizes "$BATCHES" --streams 2
  run "vitpose_${VARIANT}_fp16_eager" --backend torch --precision fp16 --batch-sizes "$BATCHES" --streams 2
  if [[ "${GPU_CHECK_FP32:-1}" == "1" ]]; then
    run "vitpose_${VARIANT}_fp32_reference" --backend torch --precision fp32 --batch-sizes 1,8,32 --streams 1
  fi
  if [[ "${GPU_CHECK_COMPILE:-1}" == "1" ]]; then   # torch.compile costs ~10-20 s per batch size: two sizes only
    run "vitpose_${VARIANT}_fp16_compile_cudagraph" --backend torch --precision fp16 --cuda-graphs --compile \
      --batch-sizes 1,64 --streams 1 --max-trials 0
  fi
fi

# 4. the CUDA-only unit tests
if [[ "$DEVICE" != "cpu" ]]; then
  timeout "$LIMIT" "$PY" -m pytest -q -p no:cacheprovider -m "not slow" tests/backends/test_torch_backend.py \
    > "$OUT/pytest_cuda.log" 2>&1
  echo "pytest (CUDA tests): exit $? ($(( $(date +%s) - start )) s); $(tail -n 1 "$OUT/pytest_cuda.log")" \
    | tee -a "$OUT/summary.txt"
fi

# 5. end to end on a real clip: decode once, then pose + classifier + reps + overlay per frame
if [[ -n "${GPU_CHECK_CLIP:-}" && "${GPU_CHECK_E2E:-1}" == "1" ]]; then
  timeout "$LIMIT" "$PY" run_live.py --bench --source "$GPU_CHECK_CLIP" --bench-frames "${GPU_CHECK_CLIP_FRAMES:-198}" \
    --pose-model "${GPU_CHECK_E2E_MODELS:-blazepose-full,vitpose-s,vitpose-b}" --backend torch --weights random \
    --bench-repeats "${GPU_CHECK_REPEATS:-3}" \
    --bench-json "$OUT/e2e.json" > "$OUT/e2e.log" 2>&1
  echo "e2e pipeline bench: exit $? ($(( $(date +%s) - start )) s)" | tee -a "$OUT/summary.txt"
fi
if [[ -n "${GPU_CHECK_CLIP:-}" ]]; then
  # 6. the multi-camera product: N live 30-fps cameras replaying the clip through the real pipeline, ViTPose-B on
  #    the GPU, the cameras in camera worker processes (one process carries ~8: the GIL), no overlay drawn (a camera
  #    nobody watches); the issue's goal is >= 64 cameras; the engine process's CPU says whether it is the limit
  timeout "$LIMIT" "$PY" run_live.py --bench --streams "${GPU_CHECK_STREAMS:-32,48,64}" --source "$GPU_CHECK_CLIP" \
    --bench-frames 150 --stream-seconds "${GPU_CHECK_STREAM_S:-10}" --pose-model vitpose-"$VARIANT" --backend torch \
    --weights random --max-batch 64 --workers "${GPU_CHECK_WORKERS:-24}" --bench-no-overlay \
    --bench-json "$OUT/streams.json" > "$OUT/streams.log" 2>&1
  echo "multi-camera streams bench: exit $? ($(( $(date +%s) - start )) s); $(grep 'most cameras' "$OUT/streams.log")" \
    | tee -a "$OUT/summary.txt"
fi

# compact table for the log
"$PY" - "$OUT" >> "$OUT/summary.txt" 2>&1 <<'EOF'
import json, pathlib, sys
for p in sorted(pathlib.Path(sys.argv[1]).glob("vitpose_*.json")):
    r = json.loads(p.read_text())
    tp = {t["batch"]: t["frames_per_s"] for t in r["throughput"]}
    ls = r.get("live_streams", {"max_streams": "-", "latency_budget_ms": "-", "upper_bound_found": "-"})
    dr = {t["batch"]: t["frames_per_s"] for t in r.get("device_resident", [])}
    print(f"{p.stem}: {r['backend']} on {r['info'].get('gpu') or r['info'].get('cpu')}: batch1 p50 "
          f"{r['batch1']['p50_ms']} ms p95 {r['batch1']['p95_ms']} ms; frames/s by batch {tp}; on-GPU only {dr}; "
          f"multistream {r.get('multistream', {}).get('frames_per_s')}; live 30-fps streams {ls['max_streams']} "
          f"(p95<{ls['latency_budget_ms']} ms, bound found: {ls['upper_bound_found']})")
EOF
echo "total: $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
cat "$OUT/summary.txt"
