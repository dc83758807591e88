"""``--backend auto``: pick the fastest backend that is installed and usable here, and say why.

Order: TensorRT > torch2trt > CUDA PyTorch > ONNX Runtime (CPU) > PyTorch (CPU); torch2trt needs TensorRT, so
``auto`` never gets past TensorRT to it (ask for it by name); ``triton`` (a remote Triton Inference Server) is never
chosen by ``auto`` either. Only package metadata
(``importlib.util.find_spec``) and ``torch.cuda.is_available()`` are consulted, so choosing never imports
TensorRT. An explicitly requested backend that cannot run here raises BackendUnavailable with a one-line
install hint.
"""

from __future__ import annotations

import importlib.util

from realtime.backends import BACKEND_NAMES
from realtime.errors import BackendUnavailable

TENSORRT_HINT = "TensorRT is not installed: pip install 'realtime-gym[tensorrt]' on a machine with an NVIDIA GPU"
TORCH2TRT_HINT = ("torch2trt is not installed: git clone https://github.com/NVIDIA-AI-IOT/torch2trt && "
                  "pip install ./torch2trt (needs TensorRT and an NVIDIA GPU)")
ONNXRUNTIME_HINT = "onnxruntime is not installed: pip install onnxruntime"
TRITON_HINT = "tritonclient is not installed: pip install 'tritonclient[grpc]'"
NO_GPU = "needs an NVIDIA GPU with CUDA, and PyTorch sees none; use --backend onnxruntime on the CPU"


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken/partial install counts as missing
        return False


def cuda_available() -> bool:
    if not _has("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def unavailable_reason(name: str, gpu: bool | None = None) -> str | None:
    """None when backend ``name`` can run here, else a one-line reason with the fix."""
    if name not in BACKEND_NAMES:
        return f"unknown backend {name!r}; choose one of auto, {', '.join(BACKEND_NAMES)}"
    gpu = cuda_available() if gpu is None else gpu
    if name == "tensorrt":
        if not _has("tensorrt"):
            return TENSORRT_HINT
        return None if gpu else f"--backend tensorrt {NO_GPU}"
    if name == "torch2trt":
        if not _has("torch2trt"):
            return TORCH2TRT_HINT
        if not _has("tensorrt"):
            return TENSORRT_HINT
        return None if gpu else f"--backend torch2trt {NO_GPU}"
    if name == "onnxruntime":
        return None if _has("onnxruntime") else ONNXRUNTIME_HINT
    if name == "triton":
        return None if _has("tritonclient") and _has("grpc") else TRITON_HINT
    return None if _has("torch") else "PyTorch is not installed: see https://pytorch.org/get-started/locally/"


def backend_status() -> dict[str, str | None]:
    """Every backend -> None (usable here) or why not; for ``--bench`` tables and diagnostics."""
    gpu = cuda_available()
    return {name: unavailable_reason(name, gpu) for name in BACKEND_NAMES}


def choose_backend(requested: str = "auto") -> tuple[str, str]:
    """Return (backend name, one-line reason). Raises BackendUnavailable when the requested one cannot run here."""
    requested = (requested or "auto").strip().lower()
    if requested != "auto":
        problem = unavailable_reason(requested)
        if problem:
            raise BackendUnavailable(problem)
        where = "CUDA" if requested in ("tensorrt", "torch2trt") or (requested == "torch" and cuda_available()) \
            else "Triton server" if requested == "triton" else "CPU"
        return requested, f"--backend {requested} ({where})"
    gpu = cuda_available()
    if gpu and _has("tensorrt"):
        return "tensorrt", "CUDA GPU and TensorRT are present"
    # torch2trt runs on TensorRT too, so whenever it could run the TensorRT backend can: it is only ever chosen
    # explicitly (--backend torch2trt).
    if gpu:
        return "torch", "CUDA GPU present, TensorRT/torch2trt not installed: CUDA PyTorch"
    if _has("onnxruntime"):
        return "onnxruntime", "no CUDA GPU: ONNX Runtime on the CPU"
    return "torch", "no CUDA GPU and no onnxruntime: PyTorch on the CPU"


def resolve_precision(precision: str, backend: str) -> str:
    """``auto``: fp16 where the network runs on a CUDA GPU (TensorRT, torch2trt, CUDA PyTorch), fp32 on a CPU.

    fp16 is what a GPU is fast at (ViTPose-B batch 1 on an H200: 0.9 ms vs 7.8 ms in fp32, heatmaps within 0.13 %);
    on a CPU half precision is slower than fp32. An explicit precision is returned unchanged.
    """
    if precision != "auto":
        return precision
    on_gpu = backend in ("tensorrt", "torch2trt") or (backend == "torch" and cuda_available())
    return "fp16" if on_gpu else "fp32"
