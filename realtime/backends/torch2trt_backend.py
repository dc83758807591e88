"""torch2trt backend: convert the PyTorch ViTPose with NVIDIA's torch2trt (FP16/INT8, same calibration crops as
the TensorRT backend), cache the converted module, run its engine with the TensorRT backend's zero-allocation
runner.

torch2trt is not on PyPI: ``git clone https://github.com/NVIDIA-AI-IOT/torch2trt && cd torch2trt && pip install .``
(it needs TensorRT and a CUDA GPU). Its ``use_onnx=True`` route (default here when ``onnx_graphsurgeon`` is
installed) exports through ONNX and TensorRT's parser, which covers every ViTPose op; without it torch2trt's own
layer converters are used. The converted module is saved as torch2trt's state dict (engine bytes + names) and
loaded with ``torch.load(weights_only=True)``: no pickled code.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from realtime.errors import BackendUnavailable

log = logging.getLogger(__name__)

INSTALL_HINT = ("torch2trt is not installed: git clone https://github.com/NVIDIA-AI-IOT/torch2trt && "
                "pip install ./torch2trt (needs TensorRT and an NVIDIA GPU)")
DEFAULT_MAX_BATCH = 32


def require_torch2trt() -> None:
    if importlib.util.find_spec("torch2trt") is None:
        raise BackendUnavailable(INSTALL_HINT)
    if importlib.util.find_spec("tensorrt") is None:
        raise BackendUnavailable("torch2trt needs TensorRT: pip install 'realtime-gym[tensorrt]' on an NVIDIA GPU machine")
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("torch2trt needs a CUDA GPU, and PyTorch sees none; use --backend onnxruntime")


def conversion_kwargs(precision: str, max_batch: int, calib_dataset=None, use_onnx: bool | None = None,
                      calib_algorithm=None) -> dict:
    """Keyword arguments for ``torch2trt.torch2trt`` (current master API: dynamic batch via max_batch_size).

    Checked against NVIDIA-AI-IOT/torch2trt master 4e820ae (torch2trt/torch2trt.py); torch2trt also takes
    ``**kwargs``, so a misspelt name would be ignored silently (tests/backends/test_tensorrt_real_api.py checks the names).
    ``calib_algorithm``: a ``trt.CalibrationAlgoType`` for INT8 (see :func:`convert`).
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise BackendUnavailable(f"unknown --precision {precision!r}; choose fp32, fp16 or int8")
    if use_onnx is None:
        use_onnx = importlib.util.find_spec("onnx_graphsurgeon") is not None
    kwargs: dict = {
        "fp16_mode": precision in ("fp16", "int8"),  # INT8 layers fall back to FP16, not FP32
        "int8_mode": precision == "int8",
        "max_batch_size": int(max_batch),
        "max_workspace_size": 1 << 32,  # torch2trt master only applies it for TensorRT < 10 (10: all free memory)
        "use_onnx": bool(use_onnx),
        "input_names": ["pixel_values"],
        "output_names": ["heatmaps"],
    }
    if use_onnx:
        kwargs["onnx_opset"] = 17
    if precision == "int8":
        if calib_dataset is None:
            raise ValueError("INT8 conversion needs the calibration dataset")
        kwargs["int8_calib_dataset"] = calib_dataset
        if calib_algorithm is not None:
            kwargs["int8_calib_algorithm"] = calib_algorithm
    return kwargs


@contextlib.contextmanager
def torchscript_onnx_export() -> Iterator[None]:
    """Within the block, ``torch.onnx.export`` defaults to ``dynamo=False`` (the TorchScript exporter).

    torch2trt's ``use_onnx=True`` path calls ``torch.onnx.export(module, inputs, BytesIO, dynamic_axes=...,
    opset_version=...)`` without ``dynamo=``; since PyTorch 2.9 that means the dynamo exporter, which needs
    ``onnxscript`` (not one of our dependencies: without it the call fails with ModuleNotFoundError) and
    handles ``dynamic_axes`` differently.
    The TorchScript exporter is the one ``vitpose.export_onnx`` uses, known to export ViTPose for TensorRT.
    """
    import torch.onnx

    real = torch.onnx.export
    if "dynamo" not in inspect.signature(real).parameters:  # older PyTorch: TorchScript is the only exporter
        yield
        return

    def export(*args, **kwargs):
        kwargs.setdefault("dynamo", False)
        return real(*args, **kwargs)

    torch.onnx.export = export
    try:
        yield
    finally:
        torch.onnx.export = real


def convert(model, path: Path, precision: str, max_batch: int, calib_dir: Path | None = None,
            use_onnx: bool | None = None) -> None:
    """Convert ``model`` with torch2trt and save the TRTModule state dict to ``path``."""
    import tensorrt as trt
    import torch
    from torch2trt import torch2trt

    from realtime.backends.calibration import CalibrationBatches, default_calib_dir
    from realtime.backends.torch_backend import HeatmapNet
    from realtime.pose.topdown import INPUT_HW

    net = HeatmapNet(model).eval().cuda()
    h, w = INPUT_HW
    example = torch.zeros((1, 3, h, w), device="cuda")
    dataset = None
    if precision == "int8":
        dataset = CalibrationBatches(calib_dir or default_calib_dir()).torch2trt_dataset("cuda")
    log.warning("converting ViTPose with torch2trt (%s, batch 1..%d); this takes minutes, once", precision, max_batch)
    # Entropy calibration v2, as the TensorRT backend's calibrator: torch2trt's default picks v1 on TensorRT >= 10
    # because it compares version strings ("10.x" >= "5.1" is False in torch2trt/dataset_calibrator.py).
    kwargs = conversion_kwargs(precision, max_batch, dataset, use_onnx,
                               calib_algorithm=trt.CalibrationAlgoType.ENTROPY_CALIBRATION_2)
    with torch.no_grad(), torchscript_onnx_export():
        module = torch2trt(net, [example], **kwargs)
    torch.save(module.state_dict(), path)


def load_engine(path: Path):
    """Deserialise the engine stored in a saved TRTModule state dict (no pickled code is executed)."""
    import tensorrt as trt
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    blob = state.get("engine")
    if blob is None:
        raise BackendUnavailable(f"{path.name} is not a torch2trt module; rebuild it with --rebuild")
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(bytes(blob))
    if engine is None:
        raise BackendUnavailable(f"TensorRT could not load {path.name}; rebuild it with --rebuild")
    return runtime, engine


class Torch2TRTBackend:
    """PoseBackend over a torch2trt-converted ViTPose, executed with preallocated buffers."""

    def __init__(self, path: Path, precision: str, device: str | None = None) -> None:
        from realtime.backends.tensorrt_backend import TensorRTRunner

        self._runtime, engine = load_engine(Path(path))
        self.runner = TensorRTRunner(engine, device=device)
        self.input_hw = tuple(self.runner.input_hw)
        self.max_batch = self.runner.max_batch
        self.name = f"torch2trt[cuda,{precision},b{self.max_batch}]"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.runner.infer(batch)

    def close(self) -> None:
        self.runner.close()
        self._runtime = None


def create(
    model=None,
    onnx_path: Path | None = None,
    precision: str = "fp16",
    device: str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    calib_dir: Path | None = None,
    engines_dir: Path | None = None,
    rebuild: bool = False,
    variant: str | None = None,
    use_onnx: bool | None = None,
    **_: object,
) -> Torch2TRTBackend:
    """Backend factory (see ``realtime.backends``): convert once (cached by engine key), then load."""
    require_torch2trt()
    if model is None:
        raise BackendUnavailable("--backend torch2trt converts the PyTorch model; pass ViTPose weights, not an .onnx")
    from realtime.backends.calibration import CalibrationBatches, default_calib_dir
    from realtime.backends.engine_cache import (
        EngineCache,
        EngineKey,
        gpu_compute_capability,
        tensorrt_version,
        weights_hash,
    )
    from realtime.pose import vitpose

    calib_hash = ""
    if precision == "int8":
        calib_hash = CalibrationBatches(calib_dir or default_calib_dir()).fingerprint()
    key = EngineKey(
        variant=variant or vitpose.variant_of(model) or "custom",
        weights_hash=weights_hash(model=model), precision=precision, max_batch=int(max_batch),
        compute_capability=gpu_compute_capability(), runtime_version=tensorrt_version(), calib_hash=calib_hash,
        target="torch2trt",
    )
    path, _ = EngineCache(engines_dir).get_or_build(
        key, lambda tmp: convert(model, tmp, precision, max_batch, calib_dir, use_onnx), rebuild=rebuild,
    )
    return Torch2TRTBackend(path, precision, device=None if device in (None, "", "auto") else device)
