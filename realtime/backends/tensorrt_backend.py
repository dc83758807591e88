"""TensorRT backend (TensorRT 10 API): ONNX -> cached engine (FP32/FP16/INT8) -> zero-allocation async runner.

Build: ``trt.OnnxParser`` on the same dynamic-batch ONNX graph the ONNX Runtime backend runs, one optimisation
profile for batch 1..max_batch, FP16 / INT8 builder flags, INT8 scales either from ``IInt8EntropyCalibrator2``
on the calibration crops (cache in ``calib/``) or from a Q/DQ ONNX (explicit quantisation, TensorRT >= 11), and
``build_serialized_network``. Engines are cached by ``realtime.backends.engine_cache`` (a mismatched engine is rebuilt).

Run: the engine is deserialised once; device input/output buffers (torch CUDA tensors) and pinned host buffers
are allocated once for max_batch, their addresses bound once with ``set_tensor_address``; each call copies in,
``execute_async_v3`` on the backend's CUDA stream, copies out, synchronises. ``infer_frame`` optionally does the
top-down crop/normalise on the GPU (``TorchCropper``) straight into the input buffer.

Only imported when the tensorrt backend is chosen; ``tensorrt`` itself is imported inside functions.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from realtime.errors import BackendUnavailable, RealtimeError, WeightsError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'realtime-gym[tensorrt]' on a machine with an NVIDIA GPU"
DEFAULT_MAX_BATCH = 32
WORKSPACE_GIB = 4.0


def require_tensorrt() -> None:
    """Raise a one-line BackendUnavailable unless TensorRT and a CUDA GPU are usable here."""
    if importlib.util.find_spec("tensorrt") is None:
        raise BackendUnavailable(f"TensorRT is not installed: {INSTALL_HINT}")
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("TensorRT needs a CUDA GPU, and PyTorch sees none; use --backend onnxruntime")


def _trt_logger():
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


def has_implicit_int8() -> bool:
    """TensorRT < 11 still calibrates INT8 with an IInt8Calibrator; 11 only takes Q/DQ (explicit) networks."""
    import tensorrt as trt

    return hasattr(trt, "IInt8EntropyCalibrator2")


def build_serialized_engine(
    onnx_path: Path,
    precision: str = "fp16",
    max_batch: int = DEFAULT_MAX_BATCH,
    opt_batch: int | None = None,
    calibrator=None,
    workspace_gib: float = WORKSPACE_GIB,
) -> bytes:
    """Parse ``onnx_path`` and build a serialised engine for batch 1..max_batch.

    ``precision``: fp32 | fp16 | int8. For int8 pass ``calibrator`` (an IInt8Calibrator, implicit quantisation)
    or an ONNX with Q/DQ nodes (explicit quantisation; then ``calibrator`` is None). INT8 also enables FP16 so the
    layers TensorRT keeps out of INT8 (LayerNorm, Softmax, GELU) run in half, not single, precision.
    """
    import tensorrt as trt

    logger = _trt_logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: every network is explicit-batch; the old flag is gone
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendUnavailable(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise BackendUnavailable(f"{onnx_path.name}: expected 1 input and 1 output, got "
                                 f"{network.num_inputs}/{network.num_outputs}")
    inp = network.get_input(0)
    chw = tuple(inp.shape)[1:]
    if any(d < 0 for d in chw):
        raise BackendUnavailable(f"{onnx_path.name}: only the batch axis may be dynamic, input is {tuple(inp.shape)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    opt = opt_batch or max(1, min(max_batch, 8))
    profile.set_shape(inp.name, (1, *chw), (opt, *chw), (max_batch, *chw))
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if calibrator is not None:
            config.int8_calibrator = calibrator
            config.set_calibration_profile(profile)  # calibration runs at this profile's opt shape
    elif precision != "fp16" and precision != "fp32":
        raise ValueError(f"precision must be fp32, fp16 or int8, not {precision!r}")
    log.warning("building a TensorRT %s engine for batch 1..%d from %s (this takes minutes, once)",
                precision, max_batch, onnx_path.name)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendUnavailable("TensorRT failed to build the engine (see its log above); try --precision fp16")
    return bytes(serialized)


def engine_key(onnx_path: Path, variant: str, precision: str, max_batch: int, calib_hash: str = "",
               weights_id: str | None = None):
    """The cache key of an engine for ``onnx_path`` on this GPU with this TensorRT."""
    from realtime.backends.engine_cache import EngineKey, gpu_compute_capability, onnx_fingerprint, tensorrt_version

    return EngineKey(
        variant=variant,
        weights_hash=weights_id or onnx_fingerprint(Path(onnx_path)),
        precision=precision,
        max_batch=int(max_batch),
        compute_capability=gpu_compute_capability(),
        runtime_version=tensorrt_version(),
        calib_hash=calib_hash if precision == "int8" else "",
        target="tensorrt",
    )


def ensure_engine(
    onnx_path: Path,
    variant: str,
    precision: str = "fp16",
    max_batch: int = DEFAULT_MAX_BATCH,
    calib_dir: Path | None = None,
    engines_root: Path | None = None,
    rebuild: bool = False,
    weights_id: str | None = None,
) -> Path:
    """The cached engine for these settings, built (and INT8-calibrated) when missing, stale or ``rebuild``."""
    from realtime.backends.calibration import (
        CalibrationBatches,
        default_calib_dir,
        ensure_int8_onnx,
        make_entropy_calibrator,
        trt_calibration_cache_path,
    )
    from realtime.backends.engine_cache import EngineCache, tensorrt_version

    require_tensorrt()
    onnx_path = Path(onnx_path)
    if precision not in ("fp32", "fp16", "int8"):
        raise BackendUnavailable(f"unknown --precision {precision!r}; choose fp32, fp16 or int8")
    calib_hash = ""
    build_from = onnx_path
    calibrator = None
    calib_root: Path | None = None
    batches = None
    if precision == "int8":
        calib_root = Path(calib_dir) if calib_dir else default_calib_dir()
        batches = CalibrationBatches(calib_root, batch_size=8)
        calib_hash = batches.fingerprint()
    key = engine_key(onnx_path, variant, precision, max_batch, calib_hash, weights_id)

    def build(tmp: Path) -> None:
        nonlocal build_from, calibrator
        if precision == "int8":
            if has_implicit_int8():
                cache = trt_calibration_cache_path(calib_root, variant, key.weights_hash, calib_hash,
                                                   tensorrt_version())
                calibrator = make_entropy_calibrator(batches, cache)
            else:  # TensorRT 11+: explicit quantisation from a symmetric Q/DQ graph calibrated on the same crops
                build_from = ensure_int8_onnx(onnx_path, variant, calib_dir=calib_root, engines_root=engines_root,
                                              symmetric=True)
        tmp.write_bytes(build_serialized_engine(build_from, precision, max_batch, calibrator=calibrator))

    path, _ = EngineCache(engines_root).get_or_build(key, build, rebuild=rebuild)
    return path


def _torch_dtype(trt_dtype):
    import tensorrt as trt
    import torch

    pairs = (("float32", torch.float32), ("float16", torch.float16), ("bfloat16", torch.bfloat16),
             ("int8", torch.int8), ("int32", torch.int32), ("int64", torch.int64), ("bool", torch.bool))
    for trt_name, torch_dtype in pairs:
        if hasattr(trt, trt_name) and getattr(trt, trt_name) == trt_dtype:
            return torch_dtype
    raise BackendUnavailable(f"engine uses an unsupported I/O data type {trt_dtype}")


class TensorRTRunner:
    """Executes one deserialised engine (1 input, 1 output, dynamic batch) with buffers allocated once."""

    def __init__(self, engine, device: str | None = None, max_batch: int | None = None, name: str = "tensorrt") -> None:
        import tensorrt as trt
        import torch

        self.engine = engine
        self.device = torch.device(device or "cuda")
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendUnavailable("TensorRT could not create an execution context (out of GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendUnavailable(f"engine has {len(inputs)} inputs / {len(outputs)} outputs, expected 1 / 1")
        self.input_name, self.output_name = inputs[0], outputs[0]
        _, _, max_shape = engine.get_tensor_profile_shape(self.input_name, 0)
        self.max_batch = int(max_shape[0]) if max_batch is None else min(int(max_batch), int(max_shape[0]))
        chw = tuple(int(d) for d in engine.get_tensor_shape(self.input_name))[1:]
        self.input_hw = chw[1:]
        # Output dims may be symbolic in the engine (the exporter leaves the heatmap size to shape inference):
        # ask the context for the concrete shape at the largest batch instead.
        if not self.context.set_input_shape(self.input_name, (self.max_batch, *chw)):
            raise BackendUnavailable(f"engine rejects batch {self.max_batch} of {chw}")
        out_rest = tuple(int(d) for d in self.context.get_tensor_shape(self.output_name))[1:]
        if any(d < 0 for d in out_rest):
            raise BackendUnavailable(f"engine output {self.output_name} has unresolved dims {out_rest}")
        self.in_dtype = _torch_dtype(engine.get_tensor_dtype(self.input_name))
        self.out_dtype = _torch_dtype(engine.get_tensor_dtype(self.output_name))

        self.stream = torch.cuda.Stream(self.device)
        self.dev_in = torch.empty((self.max_batch, *chw), dtype=self.in_dtype, device=self.device)
        self.dev_out = torch.empty((self.max_batch, *out_rest), dtype=self.out_dtype, device=self.device)
        self.host_in = torch.empty((self.max_batch, *chw), dtype=torch.float32).pin_memory()
        self.host_out = torch.empty((self.max_batch, *out_rest), dtype=torch.float32).pin_memory()
        # Contiguous buffers: a batch of n uses their first n rows, so the addresses never change.
        self.context.set_tensor_address(self.input_name, self.dev_in.data_ptr())
        self.context.set_tensor_address(self.output_name, self.dev_out.data_ptr())
        self._bound_n = self.max_batch
        self.name = name

    def _set_batch(self, n: int) -> None:
        if n != self._bound_n:
            if not self.context.set_input_shape(self.input_name, (n, *self.dev_in.shape[1:])):
                raise ValueError(f"batch {n} is outside the engine's profile 1..{self.max_batch}")
            self._bound_n = n

    def execute(self, n: int):
        """Run the first n rows of ``dev_in`` on the stream; returns the (n, ...) device output view (async)."""
        self._set_batch(n)
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return self.dev_out[:n]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        batch = np.asarray(batch, dtype=np.float32)
        n = len(batch)
        if n == 0:
            return np.zeros((0, *self.host_out.shape[1:]), np.float32)
        if n > self.max_batch:
            return np.concatenate([self.infer(batch[i : i + self.max_batch]) for i in range(0, n, self.max_batch)])
        self.host_in.numpy()[:n] = batch
        with torch.cuda.stream(self.stream):
            self.dev_in[:n].copy_(self.host_in[:n], non_blocking=True)
            out = self.execute(n)
            self.host_out[:n].copy_(out, non_blocking=True)
        self.stream.synchronize()
        return self.host_out[:n].numpy().copy()

    def close(self) -> None:
        self.context = None
        self.engine = None


class TensorRTBackend:
    """PoseBackend over a cached TensorRT engine."""

    def __init__(self, engine_path: Path, precision: str, device: str | None = None, max_batch: int | None = None,
                 label: str = "tensorrt") -> None:
        import tensorrt as trt

        runtime = trt.Runtime(_trt_logger())
        engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if engine is None:
            raise BackendUnavailable(f"TensorRT could not load {Path(engine_path).name}; rebuild it with --rebuild")
        self._runtime = runtime  # the runtime must outlive the engine
        self.runner = TensorRTRunner(engine, device=device, max_batch=max_batch)
        self.engine_path = Path(engine_path)
        self.precision = precision
        self.input_hw = tuple(self.runner.input_hw)
        self.max_batch = self.runner.max_batch
        self.name = f"{label}[cuda,{precision},b{self.max_batch}]"
        self._cropper = None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.runner.infer(batch)

    def infer_frame(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GPU preprocessing: frame uploaded once, every box cropped/normalised on the device into the engine's
        input buffer. Returns (heatmaps (N, 17, 64, 48), affines (N, 2, 3)) for ``topdown.decode_heatmaps``."""
        import torch

        from realtime.backends.torch_backend import TorchCropper

        if self._cropper is None:
            self._cropper = TorchCropper(self.runner.device, self.input_hw)
        affines = self._cropper.affines(boxes)
        n = len(affines)
        if n == 0:
            return np.zeros((0, *self.runner.host_out.shape[1:]), np.float32), affines
        if n > self.max_batch:
            raise ValueError(f"{n} people in one frame is more than the engine's max batch {self.max_batch}")
        r = self.runner
        with torch.cuda.stream(r.stream):
            self._cropper.crop(image, affines, out=r.dev_in)
            out = r.execute(n)
            r.host_out[:n].copy_(out, non_blocking=True)
        r.stream.synchronize()
        return r.host_out[:n].numpy().copy(), affines

    def close(self) -> None:
        self.runner.close()
        self._runtime = None


def _onnx_for(model, onnx_path: Path | None, variant: str | None) -> tuple[Path, str]:
    """The ONNX file to build from: the given one, exported there first when missing (the ORT backend's exporter
    and cache), or a cache path keyed on the module's weights."""
    from realtime.backends.engine_cache import weights_hash
    from realtime.pose import vitpose

    if model is None and onnx_path is None:
        raise BackendUnavailable("--backend tensorrt needs ViTPose weights or an exported .onnx file")
    if variant is None:
        if model is not None:
            variant = vitpose.variant_of(model)
        else:
            try:
                variant = vitpose.guess_variant(str(onnx_path))
            except RealtimeError:
                variant = None
    variant = variant or "custom"
    path = Path(onnx_path) if onnx_path is not None else vitpose.onnx_cache_path(weights_hash(model=model), variant)
    if not path.is_file():
        if model is None:
            raise WeightsError(f"ONNX file not found: {path}")
        vitpose.export_onnx(model, path, opset=17, dynamic_batch=True)
    return path, variant


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
    **_: object,
) -> TensorRTBackend:
    """Backend factory (see ``realtime.backends``): build or reuse the engine, then load it."""
    require_tensorrt()
    if device not in (None, "", "auto") and not str(device).startswith("cuda"):
        raise BackendUnavailable(f"--backend tensorrt runs on CUDA devices only, not {device!r}")
    onnx, variant = _onnx_for(model, onnx_path, variant)
    engine = ensure_engine(onnx, variant, precision, max_batch, calib_dir=calib_dir, engines_root=engines_dir,
                           rebuild=rebuild)
    return TensorRTBackend(engine, precision, device=None if device in (None, "", "auto") else device)
