#!/usr/bin/env bash
# Installs everything the analyzer needs on a fresh Debian/Ubuntu machine (as root, or with sudo).
#   bash scripts/setup.sh         runtime
#   bash scripts/setup.sh --dev   runtime + test tools + what the tests need (Xvfb, a GStreamer RTSP server,
#                                 PostgreSQL, Chromium for the browser tests, a Triton server in .triton-venv/)
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
# One line per step on stderr, so that a quiet install that takes minutes still says what it is doing.
step() { echo "setup: $*" >&2; }

apt_pkgs="ffmpeg libgl1 libglib2.0-0 libsm6 libice6 libx11-6 libxext6 libxcb1 libfontconfig1"
if [ "$dev" = 1 ]; then
  # Xvfb + a screenshot tool for the on-screen window test; GStreamer's RTSP server (driven from Debian's
  # python3-gi) for the RTSP reconnect tests; a C compiler for the TensorRT API stubs (scripts/tensorrt_api_stubs.sh).
  apt_pkgs="$apt_pkgs gcc libc6-dev xvfb python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 \
    gstreamer1.0-plugins-base \
    gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav"
  # A real PostgreSQL for the store tests (started by the tests on 127.0.0.1 in a throwaway folder) and Debian's
  # Chromium for the browser tests (Playwright drives it; its own browser download is not used).
  apt_pkgs="$apt_pkgs postgresql chromium"
fi
if command -v apt-get >/dev/null; then
  missing=""
  for p in $apt_pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "${missing// /}" ]; then
    export DEBIAN_FRONTEND=noninteractive
    step "apt-get update (package lists)"
    $SUDO apt-get update -qq
    step "apt-get install:${missing}"
    $SUDO apt-get install -y -qq --no-install-recommends $apt_pkgs >/dev/null
  else
    step "apt packages already installed ($(echo $apt_pkgs | wc -w) packages)"
  fi
else
  step "no apt-get: install these system packages yourself: $apt_pkgs"
fi

py=${PYTHON:-python3}
# torch first and pinned: this version's CPU wheel is what a plain 'torch' requirement then accepts
# (a bare 'pip install torch' would pull a multi-GB CUDA build).
step "pip install torch==2.13.0 (CPU wheel) with $py"
$py -m pip install -q "torch==2.13.0"
if [ "$dev" = 1 ]; then
  step "pip install -e .[dev] (the analyzer, its dependencies from pyproject.toml, test tools incl. tritonclient, psycopg, playwright)"
  $py -m pip install -q -e ".[dev]"
  # Triton Inference Server (PyPI's nvidia-pytriton ships a real tritonserver) in a venv of its own: it pins numpy<2.
  step "Triton server venv (scripts/setup_triton.sh, for the Triton tests)"
  bash scripts/setup_triton.sh || echo "warning: Triton venv not made; the Triton server tests will skip" >&2
  # The real TensorRT Python bindings over stub libraries, for tests/backends/test_tensorrt_real_api.py (no GPU needed).
  # Optional: without them that test skips and says how to get them.
  step "TensorRT Python bindings over stub libraries (scripts/tensorrt_api_stubs.sh, for the TensorRT API test)"
  PYTHON=$py bash scripts/tensorrt_api_stubs.sh || echo "warning: TensorRT API stubs not prepared; tests/backends/test_tensorrt_real_api.py will skip" >&2
else
  step "pip install -e . (the analyzer and its dependencies from pyproject.toml)"
  $py -m pip install -q -e .
fi
echo "setup done"
