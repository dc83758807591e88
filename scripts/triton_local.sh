#!/usr/bin/env bash
# Starts a local NVIDIA Triton Inference Server on 127.0.0.1 serving ViTPose, for trying --backend triton on one box.
#   bash scripts/triton_local.sh --random-weights                 # a random ViTPose-B: plumbing and speed only
#   bash scripts/triton_local.sh --weights W [--pose-model vitpose-b] [--max-batch 64]
#   bash scripts/triton_local.sh                                  # serve out/triton_repository as exported before
# Then, in another shell: python run_live.py --backend triton --triton-url grpc://127.0.0.1:8001 ...
# Ports (all on 127.0.0.1): gRPC 8001, HTTP 8000, metrics 8002 (--grpc-port/--http-port/--metrics-port);
# --repo DIR picks the model repository (default out/triton_repository).
# The server is PyPI nvidia-pytriton's tritonserver (CPU, Python backend only) from the venv that
# scripts/setup_triton.sh makes (.triton-venv/ or $REALTIME_TRITON_VENV); the model is exported with
# export-triton --format python-onnx (ONNX Runtime inside the server). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_triton.sh
exec "${PYTHON:-python3}" -m realtime.backends.triton_repo serve-local "$@"
