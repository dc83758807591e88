"""TensorRT / torch2trt code paths without a GPU.

What can be checked here: the ONNX graph TensorRT parses (with ONNX Runtime), the Q/DQ rules of TensorRT's explicit
INT8, the builder call sequence and engine caching against a stand-in ``tensorrt`` module that follows the
TensorRT 10 Python API, the one-line errors when TensorRT is missing, and the build-engine/calibrate commands.
Tests at the end use the real TensorRT and a CUDA GPU and skip without them.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from realtime.backends import build_engine, calibration, engine_cache, tensorrt_backend, torch2trt_backend
from realtime.backends.calibration import CalibrationBatches, quantize_onnx_int8
from realtime.backends.engine_cache import sidecar_path
from realtime.errors import BackendUnavailable, RealtimeError
from realtime.pose import vitpose

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
real_gpu_trt = pytest.mark.skipif(not (HAS_TRT and torch.cuda.is_available()), reason="needs TensorRT and a CUDA GPU")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return vitpose.build_vitpose("s", tiny=True)


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model, tmp_path_factory):
    # The exact call tensorrt_backend._onnx_for and build_engine.export_for make.
    return vitpose.export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", opset=17, dynamic_batch=True)


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 256, 192)).astype(np.float16)


@pytest.fixture
def calib_dir(tmp_path):
    d = tmp_path / "calib"
    (d / "frames").mkdir(parents=True)
    np.save(d / "frames" / "calib_0000.npy", _crops(6))
    return d


# ------------------------------------------------------------------------------------------ ONNX graph


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_onnx_graph_tensorrt_parses(tiny_model, tiny_onnx):
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(model)
    assert {o.domain: o.version for o in model.opset_import}.get("", None) == 17
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "pixel_values" and out.name == "heatmaps"
    in_dims, out_dims = _dims(inp), _dims(out)
    assert isinstance(in_dims[0], str) and in_dims[1:] == [3, 256, 192]  # dynamic batch only
    assert isinstance(out_dims[0], str) and out_dims[1] == 17  # H/W are checked on the real outputs below
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}  # standard ops only: no ORT contrib ops
    ops = {n.op_type for n in model.graph.node}
    assert "LayerNormalization" in ops  # opset-17 LayerNorm: TensorRT keeps it accurate in FP16
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    x = _crops(4, seed=1).astype(np.float32)
    ref = vitpose.heatmaps(tiny_model, x).numpy()
    for n in (1, 4):
        got = session.run(["heatmaps"], {"pixel_values": x[:n]})[0]
        assert got.shape == (n, 17, 64, 48)
        np.testing.assert_allclose(got, ref[:n], rtol=1e-4, atol=1e-5)


def test_onnx_output_declares_static_heatmap_size(tiny_onnx):
    import onnx

    (out,) = onnx.load(str(tiny_onnx)).graph.output
    assert _dims(out)[1:] == [17, 64, 48]


def test_symmetric_qdq_graph_meets_tensorrt_explicit_int8_rules(tiny_onnx, tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    out = quantize_onnx_int8(tiny_onnx, tmp_path / "sym.onnx", CalibrationBatches(_crops(8), batch_size=4),
                             symmetric=True)
    model = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q_nodes = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert q_nodes
    for node in q_nodes:
        zero_point = inits[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name  # TensorRT: int8, zero point 0
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    x = _crops(2, seed=3).astype(np.float32)
    assert ort.InferenceSession(str(out)).run(None, {"pixel_values": x})[0].shape == (2, 17, 64, 48)


# ------------------------------------------------------------------------- stand-in TensorRT 10 module


class FakeTRT:
    """Records what the code asks of the TensorRT 10 Python API (names and parameter names as in TensorRT 10;
    tests/backends/test_tensorrt_real_api.py checks them against the real bindings)."""

    def __init__(self, version: str = "10.3.0", implicit_int8: bool = True, parse_ok: bool = True,
                 build_ok: bool = True) -> None:
        self.calls: list = []
        self.mod = mod = types.ModuleType("tensorrt")
        mod.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        mod.__version__ = version
        rec = self.calls

        class Logger:
            WARNING = "warning"

            def __init__(self, min_severity=None) -> None:
                self.level = min_severity

        class MemoryPoolType:
            WORKSPACE = "workspace"

        class BuilderFlag:
            FP16, INT8 = "FP16", "INT8"

        class Input:
            def __init__(self, shape) -> None:
                self.name, self.shape = "pixel_values", shape

        class Network:
            num_inputs = num_outputs = 1

            def __init__(self, flags) -> None:
                self.flags, self.shape = flags, (-1, 3, 256, 192)

            def get_input(self, index):
                return Input(self.shape)

        class OnnxParser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger) -> None:
                self.network = network

            def parse_from_file(self, model: str) -> bool:
                import onnx

                rec.append(("parse", model))
                onnx.checker.check_model(onnx.load(model))
                return parse_ok

            def get_error(self, index):
                return "In node 7 (Foo): UNSUPPORTED_NODE"

        class Profile:
            def __init__(self) -> None:
                self.shapes = {}

            def set_shape(self, input, min, opt, max) -> None:  # noqa: A002 - TensorRT's argument names
                self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

        class Config:
            def __init__(self) -> None:
                self.flags, self.pools, self.profiles = set(), {}, []
                self.int8_calibrator = None
                self.calibration_profile = None

            def set_memory_pool_limit(self, pool, pool_size) -> None:
                self.pools[pool] = pool_size

            def set_flag(self, flag) -> None:
                self.flags.add(flag)

            def add_optimization_profile(self, profile) -> int:
                self.profiles.append(profile)
                return len(self.profiles) - 1

            def set_calibration_profile(self, profile) -> None:
                self.calibration_profile = profile

        class Builder:
            def __init__(self, logger) -> None:
                self.logger = logger

            def create_network(self, flags):
                rec.append(("create_network", flags))
                return Network(flags)

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                calib = config.int8_calibrator
                batches = 0
                if calib is not None and calib.read_calibration_cache() is None:
                    while calib.get_batch(["pixel_values"]) is not None:
                        batches += 1
                    calib.write_calibration_cache(b"calibration table")
                rec.append(("build", sorted(config.flags), [p.shapes for p in config.profiles], config.pools,
                            calib is not None, config.calibration_profile is not None, batches))
                if not build_ok:
                    return None
                return memoryview(json.dumps({"flags": sorted(config.flags)}).encode())

        for cls in (Logger, MemoryPoolType, BuilderFlag, Builder, OnnxParser):
            setattr(mod, cls.__name__, cls)
        if implicit_int8:
            class IInt8EntropyCalibrator2:
                def __init__(self) -> None:
                    pass

            mod.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    def builds(self) -> list:
        return [c for c in self.calls if c[0] == "build"]


@pytest.fixture
def fake_trt(monkeypatch):
    """install(**options) -> FakeTRT, importable as ``tensorrt``; CUDA reported present (sm_90)."""

    def install(**options) -> FakeTRT:
        fake = FakeTRT(**options)
        monkeypatch.setitem(sys.modules, "tensorrt", fake.mod)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(engine_cache, "gpu_compute_capability", lambda device=0: "90")
        real = calibration.make_entropy_calibrator
        monkeypatch.setattr(calibration, "make_entropy_calibrator",
                            lambda batches, cache, device="cuda": real(batches, cache, device="cpu"))
        return fake

    return install


@pytest.mark.parametrize(("precision", "flags"), [("fp32", []), ("fp16", ["FP16"]), ("int8", ["FP16", "INT8"])])
def test_builder_settings(fake_trt, tiny_onnx, precision, flags):
    fake = fake_trt()
    calib = types.SimpleNamespace(read_calibration_cache=lambda: b"cached") if precision == "int8" else None
    blob = tensorrt_backend.build_serialized_engine(tiny_onnx, precision, max_batch=16, opt_batch=4, calibrator=calib,
                                                    workspace_gib=2)
    assert json.loads(blob) == {"flags": flags}
    assert ("create_network", 0) in fake.calls  # TensorRT 10: explicit batch is implied, no flag
    (_, got_flags, profiles, pools, has_calib, has_calib_profile, _), = fake.builds()
    assert got_flags == flags
    assert profiles == [{"pixel_values": ((1, 3, 256, 192), (4, 3, 256, 192), (16, 3, 256, 192))}]
    assert pools == {"workspace": 2 << 30}
    assert has_calib == has_calib_profile == (precision == "int8")


def test_builder_failures_are_one_line_errors(fake_trt, tiny_onnx):
    fake_trt(parse_ok=False)
    with pytest.raises(BackendUnavailable, match="UNSUPPORTED_NODE") as err:
        tensorrt_backend.build_serialized_engine(tiny_onnx, "fp16")
    assert "\n" not in str(err.value)
    fake_trt(build_ok=False)
    with pytest.raises(BackendUnavailable, match="failed to build"):
        tensorrt_backend.build_serialized_engine(tiny_onnx, "fp16")


def test_engine_is_cached_and_rebuilt_on_any_mismatch(fake_trt, tiny_onnx, tmp_path):
    fake = fake_trt()
    engines = tmp_path / "engines"
    first = tensorrt_backend.ensure_engine(tiny_onnx, "s", "fp16", 8, engines_root=engines)
    assert first.parent == engines and first.name.startswith("vitpose-s_fp16_b8_sm90_trt10.3.0_")
    assert tensorrt_backend.ensure_engine(tiny_onnx, "s", "fp16", 8, engines_root=engines) == first
    assert len(fake.builds()) == 1  # second call: cache hit
    meta = json.loads(sidecar_path(first).read_text())
    meta["key"]["runtime_version"] = "10.0.1"  # an engine from another TensorRT under this name
    sidecar_path(first).write_text(json.dumps(meta))
    assert tensorrt_backend.ensure_engine(tiny_onnx, "s", "fp16", 8, engines_root=engines) == first
    assert len(fake.builds()) == 2  # rebuilt, not used
    upgraded = fake_trt(version="10.4.0")
    newer = tensorrt_backend.ensure_engine(tiny_onnx, "s", "fp16", 8, engines_root=engines)
    assert newer != first and "_trt10.4.0_" in newer.name and len(upgraded.builds()) == 1
    other_batch = tensorrt_backend.ensure_engine(tiny_onnx, "s", "fp16", 16, engines_root=engines)
    assert other_batch not in (first, newer)


def test_int8_engine_calibrates_once_with_the_crops(fake_trt, tiny_onnx, tmp_path, calib_dir):
    fake = fake_trt()
    engines = tmp_path / "engines"
    path = tensorrt_backend.ensure_engine(tiny_onnx, "s", "int8", 8, calib_dir=calib_dir, engines_root=engines)
    (build,) = fake.builds()
    assert build[1] == ["FP16", "INT8"] and build[4] and build[5]
    assert build[6] == len(CalibrationBatches(calib_dir, batch_size=8))  # every calibration batch was fed
    caches = list(calib_dir.glob("vitpose-s_*_trt10.3.0.cache"))
    assert len(caches) == 1 and caches[0].read_bytes() == b"calibration table"
    fp = CalibrationBatches(calib_dir).fingerprint()
    assert fp in caches[0].name and json.loads(sidecar_path(path).read_text())["key"]["calib_hash"] == fp
    tensorrt_backend.ensure_engine(tiny_onnx, "s", "int8", 8, calib_dir=calib_dir, engines_root=engines, rebuild=True)
    assert fake.builds()[-1][6] == 0  # rebuilt from the calibration cache, no batches needed
    np.save(calib_dir / "frames" / "calib_0000.npy", _crops(6, seed=9))  # new crops -> new engine
    assert tensorrt_backend.ensure_engine(tiny_onnx, "s", "int8", 8, calib_dir=calib_dir,
                                          engines_root=engines) != path


def test_int8_without_implicit_calibration_builds_from_qdq_onnx(fake_trt, tiny_onnx, tmp_path, calib_dir):
    import onnx

    fake = fake_trt(version="11.0.0", implicit_int8=False)
    tensorrt_backend.ensure_engine(tiny_onnx, "s", "int8", 4, calib_dir=calib_dir, engines_root=tmp_path / "e")
    parsed = [Path(c[1]) for c in fake.calls if c[0] == "parse"]
    assert len(parsed) == 1 and parsed[0] != tiny_onnx
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(parsed[0])).graph.node)
    assert not fake.builds()[0][4]  # no calibrator: scales come from the Q/DQ graph


# ------------------------------------------------------------------------------- missing packages


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_without_tensorrt_every_entry_point_says_how_to_install(tiny_model, tmp_path):
    for call in (lambda: tensorrt_backend.create(tiny_model, None, "fp16"),
                 lambda: tensorrt_backend.ensure_engine(tmp_path / "x.onnx", "b")):
        with pytest.raises(BackendUnavailable) as err:
            call()
        assert str(err.value) == ("TensorRT is not installed: pip install 'realtime-gym[tensorrt]' on a machine "
                                  "with an NVIDIA GPU")
    with pytest.raises(BackendUnavailable, match="git clone https://github.com/NVIDIA-AI-IOT/torch2trt"):
        torch2trt_backend.create(tiny_model, None, "fp16")


def test_torch2trt_conversion_arguments():
    kw = torch2trt_backend.conversion_kwargs("int8", 32, calib_dataset=["x"], use_onnx=True)
    assert kw["fp16_mode"] and kw["int8_mode"] and kw["max_batch_size"] == 32
    assert kw["int8_calib_dataset"] == ["x"] and kw["onnx_opset"] == 17 and kw["use_onnx"]
    kw = torch2trt_backend.conversion_kwargs("fp16", 8, use_onnx=False)
    assert kw["fp16_mode"] and not kw["int8_mode"] and "int8_calib_dataset" not in kw and "onnx_opset" not in kw
    with pytest.raises(ValueError):
        torch2trt_backend.conversion_kwargs("int8", 8)
    with pytest.raises(BackendUnavailable):
        torch2trt_backend.conversion_kwargs("int4", 8)


# ------------------------------------------------------------------------------ build-engine / calibrate


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    build_engine.add_parser(sub)
    build_engine.add_calib_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_build_engine_without_tensorrt_fails_fast_in_one_line():
    with pytest.raises(BackendUnavailable) as err:
        _cli(["build-engine", "--pose-model", "vitpose-b", "--precision", "fp16", "--max-batch", "16"])
    assert str(err.value) == "TensorRT is not installed: pip install 'realtime-gym[tensorrt]' on a machine with an NVIDIA GPU"


def test_build_engine_bad_input(tmp_path):
    with pytest.raises(RealtimeError, match="fp16 needs --target tensorrt"):
        _cli(["build-engine", "--target", "onnxruntime", "--precision", "fp16"])
    with pytest.raises(RealtimeError, match="needs --weights"):
        _cli(["build-engine", "--target", "onnxruntime", "--precision", "int8"])
    with pytest.raises(RealtimeError, match="does not exist"):
        _cli(["build-engine", "--target", "onnxruntime", "--precision", "int8", "--weights", str(tmp_path / "x.onnx")])
    with pytest.raises(RealtimeError, match="at least 1"):
        _cli(["build-engine", "--target", "onnxruntime", "--max-batch", "0"])


def test_build_engine_onnxruntime_int8_on_the_cpu(monkeypatch, tmp_path, calib_dir, capsys):
    import onnx

    real_build = vitpose.build_vitpose

    def seeded_tiny(variant, tiny=False):
        torch.manual_seed(0)  # the same "random weights" on every call
        return real_build(variant, tiny=True)

    monkeypatch.setattr(vitpose, "build_vitpose", seeded_tiny)
    monkeypatch.setenv("REALTIME_ENGINES_DIR", str(tmp_path / "engines"))
    argv = ["build-engine", "--target", "onnxruntime", "--precision", "int8", "--pose-model", "vitpose-s",
            "--random-weights", "--calib-dir", str(calib_dir)]
    assert _cli(argv) == 0
    out = Path(capsys.readouterr().out.strip().split(": ", 1)[1])
    assert out.parent == tmp_path / "engines" and out.name.startswith("vitpose-s_int8_cpu_ort")
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)
    stamp = out.stat().st_mtime_ns
    assert _cli(argv) == 0
    assert Path(capsys.readouterr().out.strip().split(": ", 1)[1]) == out
    assert out.stat().st_mtime_ns == stamp  # same weights, graph and crops: reused, not rebuilt


def test_build_engine_tensorrt_path_with_stand_in(fake_trt, monkeypatch, tmp_path, capsys):
    fake = fake_trt()
    real_build = vitpose.build_vitpose

    def seeded_tiny(variant, tiny=False):
        torch.manual_seed(0)
        return real_build(variant, tiny=True)

    monkeypatch.setattr(vitpose, "build_vitpose", seeded_tiny)
    monkeypatch.setenv("REALTIME_ENGINES_DIR", str(tmp_path / "engines"))
    argv = ["build-engine", "--pose-model", "vitpose-s", "--precision", "fp16", "--max-batch", "4", "--random-weights"]
    assert _cli(argv) == 0
    engine = Path(capsys.readouterr().out.strip().split(": ", 1)[1])
    assert engine.parent == tmp_path / "engines" and engine.name.startswith("vitpose-s_fp16_b4_sm90_trt10.3.0_")
    onnx_files = list((tmp_path / "engines").glob("vitpose-s_fp32_op17_*.onnx"))
    assert len(onnx_files) == 1 and [Path(c[1]) for c in fake.calls if c[0] == "parse"] == onnx_files
    assert _cli(argv) == 0 and len(fake.builds()) == 1  # cached
    assert _cli(argv + ["--rebuild"]) == 0 and len(fake.builds()) == 2


def test_calibrate_command(tmp_path, capsys):
    from conftest import write_video  # here: tests/backends/test_tensorrt_real_api.py imports this module alone

    clip = write_video(tmp_path / "c.mp4", 10, (160, 120), codec="mpeg4", step=20)
    calib = tmp_path / "calib"
    assert _cli(["calibrate", "--source", str(clip), "--calib-dir", str(calib), "--count", "3"]) == 0
    assert len(list((calib / "frames").glob("calib_*.npy"))) == 3
    assert "wrote 3 calibration crops" in capsys.readouterr().out


# ------------------------------------------------------------------------------- real TensorRT + GPU


@pytest.mark.gpu
@real_gpu_trt
def test_real_fp16_engine_matches_pytorch(tiny_model, tiny_onnx, tmp_path):
    be = tensorrt_backend.create(None, tiny_onnx, "fp16", max_batch=8, engines_dir=tmp_path)
    x = _crops(5, seed=4).astype(np.float32)
    ref = vitpose.heatmaps(tiny_model, x).numpy()
    got = be.infer(x)
    assert got.shape == ref.shape and np.linalg.norm(got - ref) / np.linalg.norm(ref) < 2e-2
    assert be.name == "tensorrt[cuda,fp16,b8]"
    from realtime.pose import topdown

    frame = np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    boxes = np.array([[100, 50, 300, 350], [400, 0, 600, 300]], np.float32)
    crops, affines = topdown.preprocess(frame, boxes)
    maps, aff = be.infer_frame(frame, boxes)
    np.testing.assert_array_equal(aff, affines)
    assert np.linalg.norm(maps - be.infer(crops)) / np.linalg.norm(maps) < 2e-2
    be.close()


@pytest.mark.gpu
@real_gpu_trt
def test_real_int8_engine_builds_with_calibration(tiny_onnx, tmp_path, calib_dir):
    be = tensorrt_backend.create(None, tiny_onnx, "int8", max_batch=4, engines_dir=tmp_path, calib_dir=calib_dir)
    assert be.infer(_crops(3).astype(np.float32)).shape == (3, 17, 64, 48)
    be.close()
