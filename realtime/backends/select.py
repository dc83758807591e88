"""``--backend auto``: pick the fastest backend that is installed and usable here, and say why."""

from __future__ import annotations

import importlib.util


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def cuda_available() -> bool:
    if not _has("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def choose_backend(requested: str = "auto") -> tuple[str, str]:
    """Return (backend name, one-line reason). Order: TensorRT > torch2trt > CUDA torch > ONNX Runtime > torch CPU."""
    if requested != "auto":
        return requested, f"--backend {requested}"
    gpu = cuda_available()
    if gpu and _has("tensorrt"):
        return "tensorrt", "CUDA GPU and TensorRT are present"
    if gpu and _has("torch2trt"):
        return "torch2trt", "CUDA GPU and torch2trt are present (no TensorRT Python package)"
    if gpu:
        return "torch", "CUDA GPU present, TensorRT/torch2trt not installed: CUDA PyTorch"
    if _has("onnxruntime"):
        return "onnxruntime", "no CUDA GPU: ONNX Runtime on the CPU"
    return "torch", "no CUDA GPU and no onnxruntime: PyTorch on the CPU"
