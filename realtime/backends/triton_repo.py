"""``run_live.py export-triton``: ViTPose as a standard NVIDIA Triton Inference Server model repository.

Writes ``OUT/<name>/config.pbtxt`` + ``OUT/<name>/1/<model file>`` + ``OUT/README.md`` for one of three formats:

- ``onnx``: ``platform: "onnxruntime_onnx"``, ``1/model.onnx`` (the graph the other backends export), for Triton's
  ONNX Runtime backend (official container, GPU or CPU);
- ``tensorrt``: ``platform: "tensorrt_plan"``, ``1/model.plan``. A TensorRT plan only runs on the GPU model and
  TensorRT version it was built with, so it must be built by ``build-engine`` on the serving GPU with the
  container's TensorRT (or passed with ``--plan``). Where TensorRT cannot run (as on the CPU-only dev machines)
  only the config and the build instructions are written, and the output says so;
- ``python-onnx``: ``backend: "python"``, ``1/model.py`` (``realtime/backends/triton_python_model.py``) +
  ``1/model.onnx``: ONNX Runtime inside the server's Python backend, for servers that have no ONNX Runtime backend
  such as the ``tritonserver`` of PyPI's ``nvidia-pytriton`` (``scripts/setup_triton.sh``; tests, local trials).

Input/output names, dims and data types are read from the ONNX file, every config is built as Triton's own
``ModelConfig`` protobuf (``tritonclient.grpc.model_config_pb2``) and parsed back after writing. Precisions: fp32;
fp16 converts the graph to half precision for ``onnx``/``python-onnx`` (inputs and outputs become FP16; meant for
GPUs, slower on a CPU) and is a build flag for ``tensorrt``; int8 reuses ONNX Runtime's static INT8 quantisation
calibrated on ``calib/`` (``realtime.backends.calibration.ensure_int8_onnx``; FP32 inputs/outputs), and for
``tensorrt`` it is a build flag too.

``python -m realtime.backends.triton_repo serve-local`` (what ``scripts/triton_local.sh`` runs) starts that PyPI
``tritonserver`` on 127.0.0.1; :func:`local_server_command` gives the same command to the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from realtime.errors import EXIT_BAD_INPUT, BackendUnavailable, RealtimeError, WeightsError

log = logging.getLogger(__name__)

FORMATS = ("onnx", "tensorrt", "python-onnx")
PRECISIONS = ("fp32", "fp16", "int8")
VARIANTS = ("vitpose-s", "vitpose-b", "vitpose-l", "vitpose-h")
DEFAULT_MAX_BATCH = 64
DEFAULT_QUEUE_DELAY_US = 2000
TRITON_CONTAINER = "nvcr.io/nvidia/tritonserver:<yy.mm>-py3"
TESTED_SERVER = "Triton server 2.51.0 (the tritonserver in nvidia-pytriton 0.7.0; NVIDIA released 2.51 as container 24.10)"
VENV_ENV = "REALTIME_TRITON_VENV"
_MODEL_FILES = ("model.onnx", "model.onnx.data", "model.plan", "model.py")
_ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16"}  # onnx.TensorProto.FLOAT, FLOAT16


@dataclass(frozen=True)
class TensorSpec:
    """One model input/output as Triton sees it: per-item dims (no batch dim) and a ``TYPE_*`` data type."""

    name: str
    data_type: str
    dims: tuple[int, ...]


def default_model_name(pose_model: str = "vitpose-b") -> str:
    """``vitpose-b`` -> ``vitpose_b`` (Triton model names are directory names)."""
    return pose_model.replace("-", "_")


def onnx_io(path: Path) -> tuple[TensorSpec, TensorSpec]:
    """(input, output) of a ViTPose ONNX export, read from the file; WeightsError if it is not one."""
    import onnx

    from realtime.pose.topdown import HEATMAP_HW, INPUT_HW
    from realtime.types import NUM_JOINTS

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable ONNX file ({' '.join(str(exc).split())[:160]})") from None
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise WeightsError(f"{path}: a ViTPose export has 1 input and 1 output, this one {len(inputs)} and "
                           f"{len(graph.output)}")
    specs = []
    for value, want in ((inputs[0], (3, *INPUT_HW)), (graph.output[0], (NUM_JOINTS, *HEATMAP_HW))):
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        data_type = _ONNX_TO_TRITON.get(tensor.elem_type)
        if len(dims) != 4 or tuple(dims[1:]) != want or data_type is None:
            raise WeightsError(f"{path}: {value.name} is {dims} (ONNX type {tensor.elem_type}); a ViTPose 256x192 "
                               f"export has float [N, {', '.join(map(str, want))}]")
        if dims[0] != -1:
            raise WeightsError(f"{path}: fixed batch of {dims[0]}; Triton batching needs the dynamic-batch export "
                               f"(realtime.pose.vitpose.export_onnx, as build-engine writes it)")
        specs.append(TensorSpec(value.name, data_type, tuple(dims[1:])))
    return specs[0], specs[1]


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Powers of two from 4 up to ``max_batch`` (the batcher ships a batch early when it reaches one)."""
    sizes = [size for size in (4, 8, 16, 32, 64, 128) if size < max_batch]
    return [*sizes, max_batch] if max_batch > 1 else []


def build_config(name: str, fmt: str, inp: TensorSpec, out: TensorSpec, *, max_batch: int = DEFAULT_MAX_BATCH,
                 preferred: list[int] | None = None, queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                 instances: int = 1, kind: str | None = None, intra_op_threads: int = 0):
    """The ``model_config_pb2.ModelConfig`` for one ViTPose model in Triton format ``fmt``."""
    from tritonclient.grpc import model_config_pb2 as pb

    if fmt not in FORMATS:
        raise RealtimeError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if max_batch < 1:
        raise RealtimeError("--max-batch must be at least 1")
    if instances < 1:
        raise RealtimeError("--instances must be at least 1")
    config = pb.ModelConfig(name=name, max_batch_size=max_batch)
    if fmt == "onnx":
        config.platform = "onnxruntime_onnx"
    elif fmt == "tensorrt":
        config.platform = "tensorrt_plan"
    else:
        config.backend = "python"
        config.parameters["onnx_file"].string_value = "model.onnx"
        config.parameters["intra_op_threads"].string_value = str(int(intra_op_threads))
    for spec, field in ((inp, config.input), (out, config.output)):
        field.add(name=spec.name, data_type=pb.DataType.Value(spec.data_type), dims=list(spec.dims))
    sizes = preferred_batch_sizes(max_batch) if preferred is None else sorted(set(preferred))
    if any(size < 1 or size > max_batch for size in sizes):
        raise RealtimeError(f"preferred batch sizes {sizes} must lie in 1..--max-batch ({max_batch})")
    config.dynamic_batching.preferred_batch_size.extend(sizes)
    config.dynamic_batching.max_queue_delay_microseconds = int(queue_delay_us)
    kind = kind or ("cpu" if fmt == "python-onnx" else "gpu")
    config.instance_group.add(count=instances, kind=pb.ModelInstanceGroup.Kind.Value(f"KIND_{kind.upper()}"))
    return config


def write_config(path: Path, config) -> Path:
    """Write ``config`` as protobuf text and parse it back (a typo or an unknown field fails here, not in Triton)."""
    from google.protobuf import text_format

    text = text_format.MessageToString(config)
    parsed = parse_config_text(text)
    if parsed != config:  # pragma: no cover - text format round trip is exact
        raise RealtimeError(f"{path}: config.pbtxt does not round-trip")
    path.write_text(text)
    return path


def parse_config_text(text: str):
    """A ``config.pbtxt`` text -> ``model_config_pb2.ModelConfig`` (raises ``text_format.ParseError``)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    return text_format.Parse(text, pb.ModelConfig())


def _place_onnx(source: Path, target: Path) -> None:
    """Copy an ONNX file to ``target``, rewriting the external-data location (ViTPose-H) to the new name."""
    import onnx

    proto = onnx.load(str(source), load_external_data=False)
    external = any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)
    if not external:
        shutil.copyfile(source, target)
        return
    proto = onnx.load(str(source), load_external_data=True)
    onnx.save_model(proto, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=target.name + ".data")


def _fp16_onnx(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=False)
    onnx.save(model, str(target))


def export_model_repository(out: Path, onnx_path: Path, *, fmt: str = "onnx", name: str = "vitpose_b",
                            precision: str = "fp32", max_batch: int = DEFAULT_MAX_BATCH,
                            preferred: list[int] | None = None, queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                            instances: int = 1, kind: str | None = None, intra_op_threads: int = 0,
                            plan: Path | None = None, variant: str = "b", calib_dir: Path | None = None,
                            engines_dir: Path | None = None, rebuild: bool = False) -> Path:
    """Write model ``name`` of ``onnx_path`` (the dynamic-batch ViTPose export) into repository ``out``.

    Returns the model directory ``out/name``. Re-running replaces that model's files; other models in ``out``
    are left alone. For ``tensorrt`` the plan is ``plan`` when given, else built here with ``build-engine``'s
    code when TensorRT and a GPU are present, else not written (the README and the log say how to build it).
    """
    if precision not in PRECISIONS:
        raise RealtimeError(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if fmt not in FORMATS:
        raise RealtimeError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    onnx_path = Path(onnx_path)
    inp, outp = onnx_io(onnx_path)
    out = Path(out)
    model_dir = out / name
    version = model_dir / "1"
    version.mkdir(parents=True, exist_ok=True)
    for stale in _MODEL_FILES:
        (version / stale).unlink(missing_ok=True)
    plan_note = None
    if fmt == "tensorrt":
        plan_note = _place_plan(onnx_path, version / "model.plan", plan, variant, precision, max_batch,
                                calib_dir, engines_dir, rebuild)
    else:
        graph = onnx_path
        if precision == "int8":
            from realtime.backends.calibration import ensure_int8_onnx

            graph = ensure_int8_onnx(onnx_path, variant, calib_dir=calib_dir, engines_root=engines_dir,
                                     rebuild=rebuild)
        if precision == "fp16":
            _fp16_onnx(graph, version / "model.onnx")
        else:
            _place_onnx(graph, version / "model.onnx")
        inp, outp = onnx_io(version / "model.onnx")
        if fmt == "python-onnx":
            shutil.copyfile(Path(__file__).with_name("triton_python_model.py"), version / "model.py")
    config = build_config(name, fmt, inp, outp, max_batch=max_batch, preferred=preferred,
                          queue_delay_us=queue_delay_us, instances=instances, kind=kind,
                          intra_op_threads=intra_op_threads)
    write_config(model_dir / "config.pbtxt", config)
    if plan_note:
        log.warning("%s", plan_note)
    _write_readme(out, name, fmt, precision, max_batch, plan_note)
    log.info("wrote Triton model %s (%s, %s) to %s", name, fmt, precision, model_dir)
    return model_dir


def _place_plan(onnx_path: Path, target: Path, plan: Path | None, variant: str, precision: str, max_batch: int,
                calib_dir: Path | None, engines_dir: Path | None, rebuild: bool) -> str | None:
    """Put a TensorRT plan at ``target``; None when done, else the one-line reason it was not written."""
    if plan is not None:
        if not Path(plan).is_file():
            raise RealtimeError(f"--plan {plan} does not exist")
        shutil.copyfile(plan, target)
        return None
    from realtime.backends.select import unavailable_reason

    problem = unavailable_reason("tensorrt")
    if problem:
        return (f"model.plan NOT written: TensorRT cannot run here ({problem}). Build it on the serving GPU with "
                f"the TensorRT version of the Triton container and rerun with --plan, see README.md")
    from realtime.backends.engine_cache import tensorrt_version
    from realtime.backends.tensorrt_backend import ensure_engine

    engine = ensure_engine(onnx_path, variant, precision, max_batch, calib_dir=calib_dir, engines_root=engines_dir,
                           rebuild=rebuild)
    shutil.copyfile(engine, target)
    log.warning("model.plan was built with TensorRT %s on this GPU: serve it only from a Triton container with the "
                "same TensorRT version on the same GPU model", tensorrt_version())
    return None


def _write_readme(out: Path, name: str, fmt: str, precision: str, max_batch: int, plan_note: str | None) -> None:
    served = {"onnx": "Triton's ONNX Runtime backend (`platform: \"onnxruntime_onnx\"`)",
              "tensorrt": "Triton's TensorRT backend (`platform: \"tensorrt_plan\"`)",
              "python-onnx": "Triton's Python backend running ONNX Runtime (`backend: \"python\"`, 1/model.py); "
                             "the server's Python needs numpy and onnxruntime"}[fmt]
    plan_steps = ""
    if fmt == "tensorrt":
        plan_steps = f"""
## Building `{name}/1/model.plan` (TensorRT)

A TensorRT plan runs only on the GPU model and the TensorRT version it was built with. Build it on the serving
GPU, inside (or with the same TensorRT as) the Triton container you will run, e.g.

    python run_live.py build-engine --pose-model vitpose-{name.rsplit('_', 1)[-1]} --weights W --precision {precision} \\
        --max-batch {max_batch}
    python run_live.py export-triton --format tensorrt --plan engines/<the engine it printed> ... --out DIR

or with `trtexec --onnx=model.onnx --saveEngine=model.plan --minShapes=pixel_values:1x3x256x192 \\
--optShapes=pixel_values:{max(1, max_batch // 2)}x3x256x192 --maxShapes=pixel_values:{max_batch}x3x256x192` (add `--fp16`).
"""
        if plan_note:
            plan_steps += f"\n**{plan_note}**\n"
    if fmt == "python-onnx":
        plan_steps = """
## Python backend needs ONNX Runtime in the server

The official container's Python has no onnxruntime: on it prefer `--format onnx` (its own ONNX Runtime backend), or
build an image `FROM` it with `pip install onnxruntime-gpu` (then `instance_group` kind GPU runs ONNX Runtime on CUDA).
"""
    text = f"""# Triton model repository: ViTPose

Written by `run_live.py export-triton` (format `{fmt}`, precision `{precision}`, max batch {max_batch}).
Model `{name}` is served by {served}; `config.pbtxt` holds its inputs/outputs, dynamic batching and instances.

## Start the official Triton container on it (GPU server)

    docker run --rm --gpus all -p8000:8000 -p8001:8001 -p8002:8002 \\
        -v $PWD/{out.resolve().name}:/models {TRITON_CONTAINER} \\
        tritonserver --model-repository=/models

Pick `<yy.mm>` from NVIDIA's Triton release notes; the client here was tested against {TESTED_SERVER}.
gRPC (what the analyzer uses) is on 8001, HTTP on 8000, Prometheus metrics on 8002.
Then on each analyzer host: `python run_live.py --backend triton --triton-url grpc://SERVER:8001
--triton-model {name} ...`. Check readiness with `curl -s SERVER:8000/v2/models/{name}/ready -o /dev/null -w '%{{http_code}}'`.
{plan_steps}
## Without Docker (CPU, for trying it)

`scripts/triton_local.sh` starts the `tritonserver` of PyPI's `nvidia-pytriton` on 127.0.0.1; that build has only
the Python backend, so it serves `--format python-onnx` repositories.
"""
    (out / "README.md").write_text(text)


# ------------------------------------------------------------------------------------------------ CLI


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export-triton", help="write ViTPose as an NVIDIA Triton Inference Server model repository",
        description="Export ViTPose to a Triton model repository (config.pbtxt + 1/model.onnx|model.plan|model.py) "
                    "with dynamic batching, and a README saying how to start the Triton container on it.",
    )
    _add_model_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="model repository folder (created)")
    p.add_argument("--format", choices=FORMATS, default="onnx",
                   help="onnx (Triton's ONNX Runtime backend), tensorrt (plan built on the serving GPU) or "
                        "python-onnx (ONNX Runtime in Triton's Python backend; CPU-only PyPI tritonserver)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--model-name", default=None, help="Triton model name (default vitpose_<size>, e.g. vitpose_b)")
    p.add_argument("--instances", type=int, default=1, help="model instances per device (instance_group count)")
    p.add_argument("--instance-kind", choices=("gpu", "cpu"), default=None,
                   help="instance_group kind (default gpu, cpu for python-onnx)")
    p.add_argument("--queue-delay-us", type=int, default=DEFAULT_QUEUE_DELAY_US,
                   help="dynamic batching max_queue_delay_microseconds (default %(default)s)")
    p.add_argument("--plan", default=None, metavar="FILE", help="--format tensorrt: a TensorRT engine built on the "
                                                                "serving GPU (build-engine) to copy as model.plan")
    p.add_argument("--calib-dir", default=None, metavar="DIR", help="INT8 calibration crops (default calib/)")
    p.add_argument("--engines-dir", default=None, metavar="DIR", help="ONNX/engine cache folder (default engines/)")
    p.add_argument("--rebuild", action="store_true", help="rebuild cached INT8/TensorRT files")
    p.set_defaults(func=run)
    return p


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pose-model", choices=VARIANTS, default="vitpose-b")
    p.add_argument("--weights", default=None, help="ViTPose weights (HF dir/id, mmpose .pth) or an exported .onnx")
    p.add_argument("--random-weights", action="store_true",
                   help="randomly initialised weights (toolchain tests and speed measurements only)")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, metavar="N",
                   help="max_batch_size of the Triton model (default %(default)s)")


@contextmanager
def _onnx_for(args: argparse.Namespace) -> Iterator[Path]:
    """The dynamic-batch ONNX export for --weights/--random-weights, via build-engine's loading/export code.

    Real weights go through the engines/ cache (exported once per weights); random ones to a scratch folder that
    is removed afterwards (each run draws new weights, so caching them would only fill engines/).
    """
    from realtime.backends.build_engine import export_for, load_model

    if not args.weights and not args.random_weights:
        raise RealtimeError("export-triton needs --weights PATH (ViTPose weights or an .onnx), or --random-weights "
                            "for trials")
    model, onnx_path, weights_id = load_model(args)
    if args.random_weights:
        from realtime.pose.vitpose import export_onnx

        with tempfile.TemporaryDirectory(prefix="vitpose-triton-") as tmp:
            yield export_onnx(model, Path(tmp) / "model.onnx")
        return
    engines = Path(args.engines_dir) if getattr(args, "engines_dir", None) else None
    yield export_for(model, onnx_path, weights_id, args.pose_model.split("-", 1)[1], engines)


def run(args: argparse.Namespace) -> int:
    if args.max_batch < 1:
        raise RealtimeError("--max-batch must be at least 1")
    if args.format == "python-onnx" and args.precision == "fp16":
        log.warning("fp16 on the Python backend's ONNX Runtime is only worth it with onnxruntime-gpu in the server")
    name = args.model_name or default_model_name(args.pose_model)
    with _onnx_for(args) as onnx_path:
        model_dir = export_model_repository(
            Path(args.out), onnx_path, fmt=args.format, name=name, precision=args.precision,
            max_batch=args.max_batch, queue_delay_us=args.queue_delay_us, instances=args.instances,
            kind=args.instance_kind, plan=Path(args.plan) if args.plan else None,
            variant=args.pose_model.split("-", 1)[1], calib_dir=Path(args.calib_dir) if args.calib_dir else None,
            engines_dir=Path(args.engines_dir) if args.engines_dir else None, rebuild=args.rebuild)
    files = ", ".join(sorted(p.name for p in (model_dir / "1").iterdir()))
    print(f"Triton model repository: {args.out} (model {name}: config.pbtxt, 1/{{{files}}}; see README.md)")
    if args.format == "tensorrt" and not (model_dir / "1" / "model.plan").is_file():
        print("note: model.plan NOT written: TensorRT cannot run on this machine; build it on the serving GPU "
              "(README.md says how) and rerun with --plan")
    return 0


# ------------------------------------------------------------------------------- local tritonserver (PyPI)


@dataclass(frozen=True)
class LocalServer:
    """Where the PyPI ``tritonserver`` of a ``scripts/setup_triton.sh`` venv lives and how to run it."""

    venv: Path
    binary: Path
    backends: Path  # a --backend-directory holding python/ (libtriton_python.so + the stub for this Python)
    env: dict[str, str]


def default_venv() -> Path:
    """$REALTIME_TRITON_VENV, else ``.triton-venv/`` in the source checkout."""
    env = os.environ.get(VENV_ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / ".triton-venv"


def find_local_server(venv: Path | None = None) -> LocalServer:
    """Locate the venv's ``tritonserver``; BackendUnavailable (one line, with the fix) when it is not installed."""
    venv = Path(venv) if venv else default_venv()
    python = venv / "bin" / "python"
    hint = "run: bash scripts/setup_triton.sh"
    if not python.is_file():
        raise BackendUnavailable(f"no Triton server venv at {venv}; {hint}")
    # find_spec locates the package without importing it (importing pytriton takes seconds).
    probe = ("import importlib.util, json, sys, sysconfig; spec = importlib.util.find_spec('pytriton'); "
             "print(json.dumps({'root': list(spec.submodule_search_locations)[0], "
             "'libdir': sysconfig.get_config_var('LIBDIR'), 'version': '%d.%d' % sys.version_info[:2]}))")
    try:
        found = json.loads(subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True,
                                          timeout=60).stdout)
    except (subprocess.SubprocessError, OSError, ValueError):
        raise BackendUnavailable(f"{venv} has no working nvidia-pytriton; {hint}") from None
    root = Path(found["root"])
    binary = root / "tritonserver" / "bin" / "tritonserver"
    stub = root / "tritonserver" / "python_backend_stubs" / found["version"] / "triton_python_backend_stub"
    backend_lib = root / "tritonserver" / "backends" / "python"
    if not binary.is_file() or not stub.is_file():
        raise BackendUnavailable(f"{venv}: nvidia-pytriton has no tritonserver/stub for Python {found['version']}; "
                                 f"{hint}")
    # The Python backend expects its stub beside libtriton_python.so (pytriton copies them into a workspace on
    # every start; here one folder inside the venv, refreshed when the wheel changes).
    backends = venv / "tritonserver-backends"
    python_dir = backends / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for source in (*backend_lib.iterdir(), stub):
        target = python_dir / source.name
        if source.is_file() and (not target.is_file() or target.stat().st_size != source.stat().st_size
                                 or target.stat().st_mtime < source.stat().st_mtime):
            shutil.copy2(source, target)
    env = dict(os.environ)
    # The stub links libpython3.X.so: take the venv interpreter's own (another build of 3.X found first fails
    # with "'_thread.RLock' object has no attribute '_recursion_count'"); the copied stub no longer finds the
    # wheel's bundled libraries through its relative rpath.
    libs = [found["libdir"] or "", str(root.parent / "nvidia_pytriton.libs")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p] + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])  # the stub's Python = the venv's
    return LocalServer(venv, binary, backends, env)


def local_server_command(repository: Path, *, grpc_port: int = 8001, http_port: int = 8000,
                         metrics_port: int = 8002, host: str = "127.0.0.1",
                         venv: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv, env) that start the venv's ``tritonserver`` on ``repository``, every port bound to ``host``."""
    server = find_local_server(venv)
    argv = [str(server.binary), f"--model-repository={Path(repository).resolve()}",
            f"--backend-directory={server.backends}",
            f"--grpc-address={host}", f"--grpc-port={grpc_port}",
            f"--http-address={host}", f"--http-port={http_port}",
            f"--metrics-address={host}", f"--metrics-port={metrics_port}",
            "--allow-gpu-metrics=false", "--disable-auto-complete-config", "--strict-readiness=true", "--exit-timeout-secs=5", "--log-verbose=0"]
    return argv, server.env


def _serve_local(args: argparse.Namespace) -> int:
    repo = Path(args.repo)
    name = args.model_name or default_model_name(args.pose_model)
    if args.weights or args.random_weights:
        args.engines_dir = None
        with _onnx_for(args) as onnx_path:
            export_model_repository(repo, onnx_path, fmt="python-onnx", name=name, max_batch=args.max_batch,
                                    variant=args.pose_model.split("-", 1)[1])
    elif not (repo / name / "config.pbtxt").is_file():
        raise RealtimeError(f"no Triton model {name} in {repo}: pass --weights W (or --random-weights to try it) "
                            f"to export one, or --repo DIR of an existing python-onnx repository")
    argv, env = local_server_command(repo, grpc_port=args.grpc_port, http_port=args.http_port,
                                     metrics_port=args.metrics_port, host=args.host, venv=args.venv)
    print(f"starting Triton on {args.host}: gRPC {args.grpc_port} (--triton-url grpc://{args.host}:{args.grpc_port} "
          f"--triton-model {name}), HTTP {args.http_port}, metrics http://{args.host}:{args.metrics_port}/metrics",
          flush=True)
    os.execve(argv[0], argv, env)
    return 1  # pragma: no cover - execve does not return


def main(argv: list[str] | None = None) -> int:
    """``python -m realtime.backends.triton_repo export-triton ...`` / ``serve-local ...`` (no run_live.py needed)."""
    parser = argparse.ArgumentParser(prog="python -m realtime.backends.triton_repo")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    serve = sub.add_parser("serve-local", help="start the PyPI tritonserver (scripts/setup_triton.sh) on 127.0.0.1")
    _add_model_args(serve)
    serve.add_argument("--repo", default="out/triton_repository", help="model repository (default %(default)s)")
    serve.add_argument("--model-name", default=None)
    serve.add_argument("--host", default="127.0.0.1", help="address every port binds to (default %(default)s)")
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument("--venv", default=None, help=f"server venv (default ${VENV_ENV} or .triton-venv/)")
    serve.set_defaults(func=_serve_local)
    args = parser.parse_args(argv)
    from realtime.logs import setup_logging

    setup_logging(1)  # the one logging set-up of every command, at info level: the server's start is worth seeing
    try:
        return args.func(args)
    except RealtimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    raise SystemExit(main())
