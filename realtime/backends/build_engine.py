"""``run_live.py build-engine`` and ``run_live.py calibrate``.

build-engine: ViTPose -> ONNX (the same dynamic-batch graph the ONNX Runtime backend runs) -> a cached engine:
- ``--target tensorrt`` (default): TensorRT engine, FP32/FP16/INT8 (needs TensorRT and an NVIDIA GPU);
- ``--target torch2trt``: torch2trt-converted module (needs torch2trt, TensorRT, GPU);
- ``--target onnxruntime``: works on the CPU; ``--precision int8`` writes the static-INT8 QDQ ``.onnx``
  (calibrated on ``calib/frames``), fp32 just exports the ONNX graph.
calibrate: samples person crops from clips into ``calib/frames`` (git-ignored; never commit them).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from realtime.errors import BackendUnavailable, RealtimeError

log = logging.getLogger(__name__)

TARGETS = ("tensorrt", "torch2trt", "onnxruntime")
VARIANTS = ("vitpose-s", "vitpose-b", "vitpose-l", "vitpose-h")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "build-engine", help="compile ViTPose to a cached TensorRT/torch2trt engine or an INT8 ONNX",
        description="Export ViTPose to ONNX and compile it; engines are cached under engines/ "
                    "($REALTIME_ENGINES_DIR) and rebuilt automatically when weights/GPU/TensorRT change.",
    )
    p.add_argument("--pose-model", choices=VARIANTS, default="vitpose-b")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    p.add_argument("--max-batch", type=int, default=32, metavar="N", help="largest batch the engine accepts")
    p.add_argument("--target", choices=TARGETS, default="tensorrt",
                   help="tensorrt (GPU), torch2trt (GPU) or onnxruntime (CPU INT8 QDQ model)")
    p.add_argument("--weights", default=None, help="ViTPose weights (HF dir/id, mmpose .pth) or an exported .onnx")
    p.add_argument("--random-weights", action="store_true",
                   help="use randomly initialised weights (toolchain tests and speed measurements only)")
    p.add_argument("--calib-dir", default=None, metavar="DIR",
                   help="INT8 calibration crops (calib dir, folder of .npy crops or person images); default calib/")
    p.add_argument("--engines-dir", default=None, metavar="DIR", help="cache folder (default engines/)")
    p.add_argument("--rebuild", action="store_true", help="rebuild even when a matching engine is cached")
    p.set_defaults(func=run)
    return p


def add_calib_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "calibrate", help="sample INT8 calibration crops from video clips / person images",
        description="Sample varied person crops (same top-down preprocessing as the pose engine) into "
                    "CALIB_DIR/frames. They come from your clips: they are git-ignored and must not be committed.",
    )
    p.add_argument("--source", action="append", required=True, metavar="PATH",
                   help="video file or folder of clips/images (repeatable), e.g. ../shared/data/deadlift_bichraix/videos")
    p.add_argument("--calib-dir", default=None, metavar="DIR", help="default calib/ ($REALTIME_CALIB_DIR)")
    p.add_argument("--count", type=int, default=256, help="number of crops (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_calibrate)
    return p


def _variant(pose_model: str) -> str:
    return pose_model.split("-", 1)[1]


def load_model(args: argparse.Namespace):
    """(torch module or None, onnx path or None, weights id for the ONNX cache name) for the requested network."""
    from realtime.backends.engine_cache import weights_hash
    from realtime.pose import vitpose

    variant = _variant(args.pose_model)
    if args.random_weights and args.weights:
        raise RealtimeError("--random-weights and --weights exclude each other; pass one")
    if args.random_weights:
        model = vitpose.build_vitpose(variant)
        return model, None, weights_hash(model=model)
    if not args.weights:
        raise RealtimeError("build-engine needs --weights PATH (ViTPose weights or .onnx), or --random-weights for tests")
    if str(args.weights).lower().endswith(".onnx"):
        path = Path(args.weights)
        if not path.is_file():
            raise RealtimeError(f"--weights {path} does not exist")
        return None, path, str(path)
    model = vitpose.load_vitpose_model(args.weights, variant=variant)
    # Same export location as the live run (vitpose.create_vitpose_estimator), so the engine built here is the one
    # it finds later.
    return model, None, vitpose.resolve_weights(args.weights)


def export_for(model, onnx_path: Path | None, weights_id: str, variant: str, engines: Path | None = None) -> Path:
    """The dynamic-batch ONNX graph (opset 17), exported once per weights (engines are keyed on its content)."""
    if onnx_path is not None:
        return onnx_path
    from realtime.pose import vitpose

    path = Path(vitpose.onnx_cache_path(weights_id, variant))
    if engines is not None:
        path = engines / path.name
    if not path.is_file():
        vitpose.export_onnx(model, path, opset=17, dynamic_batch=True)
    return path


def run(args: argparse.Namespace) -> int:
    from realtime.backends.select import unavailable_reason

    if args.max_batch < 1:
        raise RealtimeError("--max-batch must be at least 1")
    variant = _variant(args.pose_model)
    engines = Path(args.engines_dir) if args.engines_dir else None
    calib = Path(args.calib_dir) if args.calib_dir else None
    # Fail on a missing runtime before spending minutes loading/exporting the model.
    if args.target in ("tensorrt", "torch2trt"):
        problem = unavailable_reason(args.target)
        if problem:
            raise BackendUnavailable(problem)
    elif args.precision == "fp16":
        raise RealtimeError("--target onnxruntime builds fp32 or int8 (CPU); fp16 needs --target tensorrt on a GPU")

    model, onnx_path, wid = load_model(args)
    if args.target == "torch2trt":
        if model is None:
            raise RealtimeError("--target torch2trt converts the PyTorch model; pass weights, not an .onnx")
        from realtime.backends import torch2trt_backend

        backend = torch2trt_backend.create(model, None, args.precision, None, max_batch=args.max_batch,
                                           calib_dir=calib, engines_dir=engines, rebuild=args.rebuild, variant=variant)
        print(f"torch2trt engine ready: {backend.name}")
        backend.close()
        return 0
    onnx = export_for(model, onnx_path, wid, variant, engines)
    if args.target == "onnxruntime":
        if args.precision == "fp32":
            print(f"ONNX graph (fp32, dynamic batch): {onnx}")
            return 0
        from realtime.backends.calibration import ensure_int8_onnx

        path = ensure_int8_onnx(onnx, variant, calib_dir=calib, engines_root=engines, rebuild=args.rebuild)
        print(f"ONNX Runtime INT8 model: {path}")
        return 0
    from realtime.backends.tensorrt_backend import ensure_engine

    path = ensure_engine(onnx, variant, args.precision, args.max_batch, calib_dir=calib, engines_root=engines,
                         rebuild=args.rebuild)
    print(f"TensorRT engine: {path}")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from realtime.backends.calibration import default_calib_dir, frames_dir, refresh_calibration_frames

    out = frames_dir(Path(args.calib_dir) if args.calib_dir else default_calib_dir())
    paths = refresh_calibration_frames([Path(s) for s in args.source], out, count=args.count, seed=args.seed)
    print(f"wrote {len(paths)} calibration crops to {out}")
    return 0
