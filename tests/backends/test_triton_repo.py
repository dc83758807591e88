"""export-triton (realtime.backends.triton_repo): every written config.pbtxt parsed back with Triton's own schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from triton_server import make_tiny
from tritonclient.grpc import model_config_pb2 as pb

from realtime.backends import triton_repo
from realtime.errors import RealtimeError, WeightsError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return make_tiny(tmp_path_factory.mktemp("tiny"))


def parse(model_dir: Path) -> pb.ModelConfig:
    """config.pbtxt -> ModelConfig exactly as Triton reads it (unknown fields/typos raise ParseError)."""
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), pb.ModelConfig())


def check_io(config: pb.ModelConfig, dtype: int = pb.TYPE_FP32) -> None:
    (inp,), (out,) = config.input, config.output
    assert (inp.name, list(inp.dims), inp.data_type) == ("pixel_values", [3, 256, 192], dtype)
    assert (out.name, list(out.dims), out.data_type) == ("heatmaps", [17, 64, 48], dtype)


@pytest.mark.parametrize(("fmt", "platform", "backend", "files", "kind"), [
    ("onnx", "onnxruntime_onnx", "", ["model.onnx"], pb.ModelInstanceGroup.KIND_GPU),
    ("python-onnx", "", "python", ["model.onnx", "model.py"], pb.ModelInstanceGroup.KIND_CPU),
    ("tensorrt", "tensorrt_plan", "", [], pb.ModelInstanceGroup.KIND_GPU),  # no TensorRT here: config only
])
def test_every_format_writes_a_valid_triton_config(tiny, tmp_path, fmt, platform, backend, files, kind):
    out = tmp_path / "model_repository"
    model_dir = triton_repo.export_model_repository(out, tiny.onnx, fmt=fmt, name="vitpose_b", max_batch=32,
                                                    queue_delay_us=1500, instances=2)
    config = parse(model_dir)
    assert (config.name, config.platform, config.backend, config.max_batch_size) == ("vitpose_b", platform,
                                                                                      backend, 32)
    check_io(config)
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8, 16, 32]
    assert config.dynamic_batching.max_queue_delay_microseconds == 1500
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, kind)]
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == files
    readme = (out / "README.md").read_text()
    assert "docker run --rm --gpus all -p8000:8000 -p8001:8001" in readme
    assert "-v $PWD/model_repository:/models nvcr.io/nvidia/tritonserver:" in readme
    assert "--model-repository=/models" in readme
    if fmt == "tensorrt":
        assert "model.plan NOT written" in readme and "trtexec" in readme
    if fmt == "python-onnx":
        assert config.parameters["onnx_file"].string_value == "model.onnx"
        assert (model_dir / "1" / "model.py").read_text() == \
            Path(triton_repo.__file__).with_name("triton_python_model.py").read_text()
    if files:  # the ONNX graph is copied unchanged
        assert (model_dir / "1" / "model.onnx").read_bytes() == tiny.onnx.read_bytes()


def test_tensorrt_plan_given_is_copied(tiny, tmp_path):
    plan = tmp_path / "built-on-the-gpu.engine"
    plan.write_bytes(b"serialized engine")
    model_dir = triton_repo.export_model_repository(tmp_path / "repo", tiny.onnx, fmt="tensorrt", plan=plan)
    assert (model_dir / "1" / "model.plan").read_bytes() == b"serialized engine"
    assert "NOT written" not in (tmp_path / "repo" / "README.md").read_text()
    with pytest.raises(RealtimeError, match="does not exist"):
        triton_repo.export_model_repository(tmp_path / "repo", tiny.onnx, fmt="tensorrt", plan=tmp_path / "no")


def test_fp16_converts_the_graph_and_declares_fp16_io(tiny, tmp_path):
    import onnxruntime as ort

    model_dir = triton_repo.export_model_repository(tmp_path / "repo", tiny.onnx, fmt="onnx", precision="fp16")
    check_io(parse(model_dir), pb.TYPE_FP16)
    x = np.random.default_rng(0).standard_normal((2, 3, 256, 192)).astype(np.float32)
    ref = ort.InferenceSession(str(tiny.onnx)).run(None, {"pixel_values": x})[0]
    half = ort.InferenceSession(str(model_dir / "1" / "model.onnx")).run(None, {"pixel_values": x.astype(np.float16)})
    assert half[0].dtype == np.float16
    np.testing.assert_allclose(half[0].astype(np.float32), ref, atol=2e-2 * float(np.abs(ref).max()))


def test_int8_reuses_the_calibrated_onnx_runtime_quantisation(tiny, tmp_path):
    frames = tmp_path / "calib" / "frames"
    frames.mkdir(parents=True)
    np.save(frames / "calib_0000.npy", np.random.default_rng(1).standard_normal((4, 3, 256, 192)).astype(np.float16))
    model_dir = triton_repo.export_model_repository(tmp_path / "repo", tiny.onnx, fmt="python-onnx",
                                                    precision="int8", calib_dir=tmp_path / "calib",
                                                    engines_dir=tmp_path / "engines")
    check_io(parse(model_dir))  # QDQ graph: float inputs/outputs
    import onnx

    ops = {node.op_type for node in onnx.load(str(model_dir / "1" / "model.onnx")).graph.node}
    assert "QuantizeLinear" in ops
    (tmp_path / "empty").mkdir()
    with pytest.raises(RealtimeError, match="calibrate") as err:  # no crops: one line naming the fix
        triton_repo.export_model_repository(tmp_path / "repo2", tiny.onnx, precision="int8",
                                            calib_dir=tmp_path / "empty", engines_dir=tmp_path / "engines")
    assert "\n" not in str(err.value)


def test_rerun_replaces_the_model_files(tiny, tmp_path):
    out = tmp_path / "repo"
    triton_repo.export_model_repository(out, tiny.onnx, fmt="python-onnx", name="m")
    model_dir = triton_repo.export_model_repository(out, tiny.onnx, fmt="onnx", name="m", max_batch=1)
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == ["model.onnx"]
    config = parse(model_dir)
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 1
    assert list(config.dynamic_batching.preferred_batch_size) == []


def test_graphs_that_are_not_vitpose_exports_are_refused(tiny, tmp_path):
    from realtime.pose import vitpose

    static = vitpose.export_onnx(tiny.model, tmp_path / "static.onnx", dynamic_batch=False)
    with pytest.raises(WeightsError, match="fixed batch of 1"):
        triton_repo.export_model_repository(tmp_path / "repo", static)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a graph")
    with pytest.raises(WeightsError, match="not a readable ONNX file"):
        triton_repo.onnx_io(junk)


def test_bad_settings_are_one_line_errors(tiny, tmp_path):
    inp, out = triton_repo.onnx_io(tiny.onnx)
    with pytest.raises(RealtimeError, match="--max-batch"):
        triton_repo.build_config("m", "onnx", inp, out, max_batch=0)
    with pytest.raises(RealtimeError, match="preferred batch sizes"):
        triton_repo.build_config("m", "onnx", inp, out, max_batch=8, preferred=[16])
    with pytest.raises(RealtimeError, match="unknown --format"):
        triton_repo.export_model_repository(tmp_path / "r", tiny.onnx, fmt="openvino")
    with pytest.raises(text_format.ParseError):
        triton_repo.parse_config_text('name: "m"\nmax_batch_sise: 4\n')  # Triton would refuse this file too


def test_cli_exports_from_an_onnx_file(tiny, tmp_path, capsys):
    out = tmp_path / "model_repository"
    code = triton_repo.main(["export-triton", "--weights", str(tiny.onnx), "--out", str(out), "--format",
                             "python-onnx", "--max-batch", "8", "--pose-model", "vitpose-s"])
    assert code == 0
    assert "model vitpose_s" in capsys.readouterr().out
    config = parse(out / "vitpose_s")
    assert config.name == "vitpose_s" and config.max_batch_size == 8 and config.backend == "python"
    code = triton_repo.main(["export-triton", "--out", str(out)])
    assert code == 2 and capsys.readouterr().err.startswith("error: export-triton needs --weights")
    code = triton_repo.main(["export-triton", "--weights", str(tiny.onnx), "--out", str(out), "--format",
                             "tensorrt"])
    assert code == 0 and "model.plan NOT written" in capsys.readouterr().out


def test_serve_local_without_a_model_is_a_one_line_error(tmp_path, capsys):
    assert triton_repo.main(["serve-local", "--repo", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no Triton model vitpose_b") and err.count("\n") == 1


def test_local_server_command_binds_loopback_and_links_the_venv_libpython(tmp_path):
    import json
    import subprocess

    from triton_server import require_server_venv

    require_server_venv()
    argv, env = triton_repo.local_server_command(tmp_path, grpc_port=1, http_port=2, metrics_port=3)
    assert Path(argv[0]).name == "tritonserver" and Path(argv[0]).is_file()
    for flag in ("--grpc-address=127.0.0.1", "--http-address=127.0.0.1", "--metrics-address=127.0.0.1",
                 "--grpc-port=1", "--http-port=2", "--metrics-port=3", f"--model-repository={tmp_path.resolve()}"):
        assert flag in argv
    backends = Path(next(a for a in argv if a.startswith("--backend-directory=")).split("=", 1)[1])
    assert {"libtriton_python.so", "triton_python_backend_stub"} <= {p.name for p in (backends / "python").iterdir()}
    venv = triton_repo.default_venv()
    libdir = json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", "import json, sysconfig; "
                                        "print(json.dumps(sysconfig.get_config_var('LIBDIR')))"],
                                       capture_output=True, text=True, check=True).stdout)
    assert env["LD_LIBRARY_PATH"].split(":")[0] == libdir  # the stub must find this interpreter's libpython first
    assert env["PATH"].split(":")[0] == str(venv / "bin")
