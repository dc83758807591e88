#!/usr/bin/env bash
# Makes the separate virtual environment that holds a real NVIDIA Triton Inference Server for the tests and for
# trying --backend triton locally (server side only; the analyzer uses tritonclient[grpc] from the main install).
#   bash scripts/setup_triton.sh        -> .triton-venv/ (or $REALTIME_TRITON_VENV)
# PyPI's nvidia-pytriton wheel ships the tritonserver binary (Python backend only, runs on a CPU-only machine);
# it pins numpy<2, hence its own venv. onnxruntime there runs the ONNX graph inside the server's Python backend.
# Idempotent: a complete venv is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${REALTIME_TRITON_VENV:-.triton-venv}
py=${PYTHON:-python3}
pytriton_pin="nvidia-pytriton==0.7.0"
ort_pin="onnxruntime>=1.17,<1.21"  # last releases built against numpy 1.x that pytriton's numpy<2 pin allows

find_server() {
  # find_spec: locate the package without importing it (importing pytriton takes seconds)
  "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.util, pathlib
spec = importlib.util.find_spec("pytriton")
p = pathlib.Path(list(spec.submodule_search_locations)[0]) / "tritonserver" / "bin" / "tritonserver" if spec else None
print(p if p and p.is_file() else "")
PY
}

if [ -x "$venv/bin/python" ] && [ -n "$(find_server)" ] && "$venv/bin/python" -c "import onnxruntime" 2>/dev/null; then
  echo "Triton server venv ready: $venv ($(find_server))"
  exit 0
fi
echo "installing Triton server venv in $venv (nvidia-pytriton 0.7.0 + onnxruntime, a few hundred MB) ..."
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q "$pytriton_pin" "$ort_pin" "numpy<2"
server=$(find_server)
if [ -z "$server" ]; then
  echo "error: nvidia-pytriton installed but its tritonserver binary was not found in $venv" >&2
  exit 1
fi
echo "Triton server venv ready: $venv ($server)"
