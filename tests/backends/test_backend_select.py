"""--backend auto / explicit backends with and without the optional GPU packages (find_spec + CUDA patched)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from realtime.backends import BACKEND_NAMES, select
from realtime.errors import BackendUnavailable


@pytest.fixture
def env(monkeypatch):
    """env(installed={...}, gpu=bool): pretend exactly these optional packages are installed."""
    real_find_spec = importlib.util.find_spec

    def configure(installed: set[str], gpu: bool) -> None:
        optional = {"tensorrt", "torch2trt", "onnxruntime"}

        def find_spec(name, *args, **kwargs):
            if name in optional:
                return real_find_spec("json") if name in installed else None  # any spec object will do
            return real_find_spec(name, *args, **kwargs)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)

    return configure


@pytest.mark.parametrize(
    ("installed", "gpu", "expected"),
    [
        ({"tensorrt", "torch2trt", "onnxruntime"}, True, "tensorrt"),
        ({"tensorrt", "onnxruntime"}, True, "tensorrt"),
        ({"torch2trt", "onnxruntime"}, True, "torch"),  # torch2trt without TensorRT cannot run
        ({"onnxruntime"}, True, "torch"),
        (set(), True, "torch"),
        ({"tensorrt", "torch2trt", "onnxruntime"}, False, "onnxruntime"),  # TensorRT without a GPU is useless
        ({"onnxruntime"}, False, "onnxruntime"),
        (set(), False, "torch"),
    ],
)
def test_auto_order(env, installed, gpu, expected):
    env(installed, gpu)
    name, reason = select.choose_backend("auto")
    assert name == expected
    assert reason and "\n" not in reason


@pytest.mark.parametrize(
    ("requested", "installed", "gpu", "message"),
    [
        ("tensorrt", set(), True, "pip install 'realtime-gym[tensorrt]'"),
        ("tensorrt", {"tensorrt"}, False, "NVIDIA GPU"),
        ("torch2trt", {"tensorrt"}, True, "git clone https://github.com/NVIDIA-AI-IOT/torch2trt"),
        ("torch2trt", {"torch2trt"}, True, "TensorRT is not installed"),
        ("torch2trt", {"torch2trt", "tensorrt"}, False, "NVIDIA GPU"),
        ("onnxruntime", set(), False, "pip install onnxruntime"),
        ("openvino", {"onnxruntime"}, False, "unknown backend"),
    ],
)
def test_unavailable_requests_raise_one_line_hints(env, requested, installed, gpu, message):
    env(installed, gpu)
    with pytest.raises(BackendUnavailable) as err:
        select.choose_backend(requested)
    text = str(err.value)
    assert message in text and "\n" not in text


@pytest.mark.parametrize(
    ("requested", "installed", "gpu", "where"),
    [
        ("tensorrt", {"tensorrt"}, True, "CUDA"),
        ("torch2trt", {"torch2trt", "tensorrt"}, True, "CUDA"),
        ("torch", set(), True, "CUDA"),
        ("torch", set(), False, "CPU"),
        ("onnxruntime", {"onnxruntime"}, True, "CPU"),
    ],
)
def test_available_requests_are_honoured(env, requested, installed, gpu, where):
    env(installed, gpu)
    assert select.choose_backend(requested) == (requested, f"--backend {requested} ({where})")
    assert select.choose_backend(requested.upper())[0] == requested


def test_backend_status_lists_every_backend(env):
    env({"onnxruntime"}, False)
    status = select.backend_status()
    assert set(status) == set(BACKEND_NAMES)
    assert status["onnxruntime"] is None and status["torch"] is None
    assert "pip install" in status["tensorrt"] and "git clone" in status["torch2trt"]


def test_choosing_and_importing_gpu_backends_never_imports_tensorrt():
    """Fresh interpreter: choose, import the TensorRT/torch2trt modules; tensorrt must not be imported."""
    code = (
        "import sys\n"
        "from realtime.backends.select import choose_backend, backend_status\n"
        "choose_backend('auto'); backend_status()\n"
        "import realtime.backends.tensorrt_backend, realtime.backends.torch2trt_backend, realtime.backends.build_engine\n"
        "import realtime.backends.calibration, realtime.backends.engine_cache, realtime.benchmark.gpu\n"
        "print(sorted(m for m in ('tensorrt', 'torch2trt', 'pycuda', 'cuda') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(__import__("conftest").REPO))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("backend", "gpu", "expected"),
    [("tensorrt", True, "fp16"), ("torch2trt", True, "fp16"), ("torch", True, "fp16"), ("torch", False, "fp32"),
     ("onnxruntime", True, "fp32"), ("onnxruntime", False, "fp32")],
)
def test_auto_precision_is_half_on_the_gpu_only(env, backend, gpu, expected):
    env({"onnxruntime"}, gpu)
    assert select.resolve_precision("auto", backend) == expected
    assert select.resolve_precision("int8", backend) == "int8"  # an explicit choice is kept
