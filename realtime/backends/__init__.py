"""Inference backends for the ViTPose network, behind one small Protocol.

A backend runs the network only: (N, 3, 256, 192) float32 normalised crops in, (N, 17, 64, 48) float32
heatmaps out. Cropping and heatmap decoding are shared (``realtime.pose.topdown``). Each backend lives in its
own module and imports its heavy optional packages lazily, so a missing package never breaks the others.
"""

from __future__ import annotations

import importlib
from typing import Protocol, runtime_checkable

import numpy as np

from realtime.errors import BackendUnavailable

BACKEND_NAMES: tuple[str, ...] = ("tensorrt", "torch2trt", "torch", "onnxruntime", "triton")


@runtime_checkable
class PoseBackend(Protocol):
    """The network behind a top-down pose engine."""

    name: str  # e.g. "onnxruntime[cpu,fp32]": what actually runs, for logs and the bench table
    input_hw: tuple[int, int]  # (256, 192)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 normalised crops -> (N, 17, H/4, W/4) float32 heatmaps."""
        ...

    def close(self) -> None: ...


# name -> "module:factory"; the factory takes (model_spec, **options) and returns a PoseBackend.
_FACTORIES: dict[str, str] = {
    "tensorrt": "realtime.backends.tensorrt_backend:create",
    "torch2trt": "realtime.backends.torch2trt_backend:create",
    "torch": "realtime.backends.torch_backend:create",
    "onnxruntime": "realtime.backends.onnx_backend:create",
    "triton": "realtime.backends.triton_backend:create",  # a remote Triton server; never chosen by auto
}


def load_factory(name: str):
    """Import only the chosen backend's module."""
    if name not in _FACTORIES:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of auto, {', '.join(BACKEND_NAMES)}")
    module_name, attr = _FACTORIES[name].split(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)
