"""ONNX Runtime backend: the exported ViTPose graph on the CPU (or the CUDA execution provider when present).

Factory contract, shared by every backend module (``realtime.backends.load_factory(name)`` returns ``create``)::

    create(model: torch.nn.Module | None, onnx_path: Path | None, precision: str = "fp32",
           device: str | None = None, **options) -> PoseBackend

- ``model``: the loaded ``VitPoseForPoseEstimation`` (eval, float32, CPU), or None when the user gave an ``.onnx``.
- ``onnx_path``: where the ONNX export is or should be cached (``realtime.pose.vitpose.onnx_cache_path``), or the user's
  ``.onnx``. A backend that needs ONNX and finds the file missing exports it with
  ``realtime.pose.vitpose.export_onnx(model, onnx_path)``; backends that run the torch model may ignore it.
- ``precision``: "fp32" | "fp16" | "int8"; a backend that cannot honour it raises ``BackendUnavailable``.
- ``device``: None = the backend's best device, else e.g. "cpu" / "cuda" / "cuda:0".
- ``**options``: extra keywords (``variant``, ``rebuild``, ``max_batch``, ...); each factory ignores those it
  does not use, so the caller can pass the same ones to every backend.
- The returned object has ``name`` (what really runs, e.g. "onnxruntime[cpu,fp32]"), ``input_hw`` = (256, 192),
  ``infer((N, 3, 256, 192) float32) -> (N, 17, 64, 48) float32`` and ``close()``.
Missing packages/hardware raise ``BackendUnavailable``; missing/corrupt weights raise ``WeightsError`` (one line each).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from realtime.errors import BackendUnavailable, WeightsError
from realtime.pose.topdown import INPUT_HW

log = logging.getLogger(__name__)

# Operators that only appear in quantized graphs (QDQ or QOperator format, static or dynamic).
_QUANT_OPS = frozenset({"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
                        "ConvInteger", "MatMulIntegerToFloat"})


def cpu_cores() -> int:
    """Physical cores this process may use (ONNX Runtime's intra-op thread count)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or usable
    except ImportError:
        physical = usable
    return max(1, min(usable, physical))


def _is_quantized(path: Path) -> bool:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type in _QUANT_OPS for node in graph.node)


class OnnxRuntimeBackend:
    """An ``onnxruntime.InferenceSession`` over a ViTPose ONNX file (``PoseBackend``)."""

    input_hw: tuple[int, int] = INPUT_HW

    def __init__(self, onnx_path: Path, device: str | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        want_cuda = device is None or device.startswith("cuda")
        if device is not None and device.startswith("cuda") and "CUDAExecutionProvider" not in available:
            raise BackendUnavailable("onnxruntime has no CUDA execution provider here; install onnxruntime-gpu "
                                     "or use --backend onnxruntime on the CPU")
        use_cuda = want_cuda and "CUDAExecutionProvider" in available
        if use_cuda:
            device_id = int(device.split(":")[1]) if device and ":" in device else 0
            providers: list = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_cores()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
        except Exception as exc:  # InvalidProtobuf, missing external data, unsupported ops, ...
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise WeightsError(f"{onnx_path}: ONNX Runtime cannot load it ({first[:200]})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = list(inputs[0].shape)
        if len(inputs) != 1 or len(outputs) != 1 or len(shape) != 4 or shape[1:] != [3, *INPUT_HW]:
            raise WeightsError(f"{onnx_path}: not a ViTPose 256x192 export (input {inputs[0].name} {shape}, "
                               f"{len(outputs)} outputs)")
        self._input = inputs[0].name
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.precision = "int8" if _is_quantized(onnx_path) else "fp32"
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"
        self.name = f"onnxruntime[{self.device},{self.precision}]"
        self.path = Path(onnx_path)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, np.float32)
        if self._fixed_batch is None or len(batch) == self._fixed_batch:
            return self.session.run(None, {self._input: batch})[0]
        # A static-batch export (e.g. a user's batch-1 file): run it crop by crop.
        step = self._fixed_batch
        if len(batch) % step:
            raise ValueError(f"{self.path.name} has a fixed batch of {step}; got {len(batch)} crops")
        return np.concatenate([self.session.run(None, {self._input: batch[i:i + step]})[0]
                               for i in range(0, len(batch), step)])

    def close(self) -> None:
        self.session = None


def create(model=None, onnx_path: Path | None = None, precision: str = "fp32", device: str | None = None,
           **_options: object) -> OnnxRuntimeBackend:
    """ONNX Runtime backend on ``onnx_path``, exported from ``model`` first when the file is not there yet.

    Runs the graph it is given: an fp32 export, or an already-quantized INT8 ``.onnx`` (its ``name`` then says
    int8 whatever ``precision`` asked). ``precision="int8"`` on an FP32 graph quantises it with the calibration
    crops in ``calib/`` (``realtime.backends.calibration.ensure_int8_onnx``, cached); fp16 is not offered here.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise BackendUnavailable("onnxruntime is not installed: pip install onnxruntime") from None
    if precision not in ("fp32", "int8"):
        raise BackendUnavailable(f"--precision {precision} is not available on ONNX Runtime; use fp32 (or an INT8 "
                                 f".onnx), or --backend tensorrt/torch on a GPU for fp16")
    if onnx_path is None and model is None:
        raise WeightsError("the onnxruntime backend needs ViTPose weights or an .onnx file (--weights)")
    if onnx_path is None:
        onnx_path = _scratch_path()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        if model is None:
            raise WeightsError(f"ONNX file not found: {onnx_path}")
        from realtime.pose.vitpose import export_onnx

        log.info("exporting ViTPose to ONNX (first use of these weights): %s", onnx_path)
        export_onnx(model, onnx_path)
    else:
        log.info("using cached ONNX export %s", onnx_path)
    backend = OnnxRuntimeBackend(onnx_path, device=device)
    if precision == "int8" and backend.precision != "int8":
        # Quantise the FP32 graph with the calib/ crops (static INT8, QDQ), cached in engines/.
        from realtime.backends.calibration import ensure_int8_onnx

        backend.close()
        variant = str(_options.get("variant") or "x")
        int8_path = ensure_int8_onnx(onnx_path, variant, calib_dir=_options.get("calib_dir"),  # type: ignore[arg-type]
                                     rebuild=bool(_options.get("rebuild", False)))
        backend = OnnxRuntimeBackend(int8_path, device=device)
    if backend.precision != precision:
        log.warning("%s is an %s model; running it as such (asked for %s)", onnx_path.name, backend.precision,
                    precision)
    return backend


def _scratch_path() -> Path:
    """Export target for a model with no weights file to key a cache on (random-weight benchmarks)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix="vitpose-onnx-")) / "model.onnx"
