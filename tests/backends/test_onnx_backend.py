"""ONNX Runtime backend (realtime.backends.onnx_backend) on tiny random ViTPose exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from realtime.backends import PoseBackend, load_factory
from realtime.backends.onnx_backend import cpu_cores, create
from realtime.errors import BackendUnavailable, DataError, WeightsError
from realtime.pose import vitpose
from realtime.pose.topdown import HEATMAP_HW, INPUT_HW


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return vitpose.build_vitpose("b", tiny=True)


@pytest.fixture(scope="module")
def exported(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vitpose.export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, *INPUT_HW), dtype=np.float32)


def test_backend_runs_the_export_like_torch(model: torch.nn.Module, exported: Path) -> None:
    backend = load_factory("onnxruntime")(model, exported, precision="fp32", device=None)
    assert isinstance(backend, PoseBackend)
    assert backend.name == "onnxruntime[cpu,fp32]" and backend.input_hw == INPUT_HW
    assert backend.session.get_session_options().intra_op_num_threads == cpu_cores()
    for n in (1, 4):
        x = crops(n, seed=n)
        out = backend.infer(x)
        assert out.shape == (n, 17, *HEATMAP_HW) and out.dtype == np.float32
        np.testing.assert_allclose(out, vitpose.heatmaps(model, torch.from_numpy(x)).numpy(), atol=1e-4)
    backend.close()


def test_missing_file_is_exported_from_the_model(model: torch.nn.Module, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "vitpose-b_fp32_op17_x.onnx"
    backend = create(model, target, unused_option=True)  # unknown keyword options are ignored by contract
    assert target.is_file()
    x = crops(2)
    np.testing.assert_allclose(backend.infer(x), vitpose.heatmaps(model, torch.from_numpy(x)).numpy(), atol=1e-4)
    scratch = create(model, None)  # no cache location: exported to a scratch file
    np.testing.assert_allclose(scratch.infer(x), backend.infer(x), atol=1e-6)


def test_static_batch_export_runs_crop_by_crop(model: torch.nn.Module, tmp_path: Path) -> None:
    path = vitpose.export_onnx(model, tmp_path / "b1.onnx", dynamic_batch=False)
    backend = create(None, path)
    x = crops(3)
    np.testing.assert_allclose(backend.infer(x), vitpose.heatmaps(model, torch.from_numpy(x)).numpy(), atol=1e-4)


def test_int8_model_is_labelled_and_checked(model: torch.nn.Module, exported: Path, tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8 = tmp_path / "tiny_int8.onnx"
    quantize_dynamic(str(exported), str(int8), weight_type=QuantType.QInt8)
    backend = create(None, int8, precision="int8")
    assert backend.name == "onnxruntime[cpu,int8]"
    x = crops(2)
    out, ref = backend.infer(x), vitpose.heatmaps(model, torch.from_numpy(x)).numpy()
    assert out.shape == ref.shape and np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9
    assert create(None, int8).name == "onnxruntime[cpu,int8]"  # the file decides what runs; the name says so
    with pytest.raises(DataError, match="calibrate"):  # an FP32 graph needs calibration crops to become INT8
        create(None, exported, precision="int8", calib_dir=tmp_path / "no-crops", variant="s")
    with pytest.raises(BackendUnavailable, match="fp16"):
        create(None, exported, precision="fp16")


def test_fp32_graph_is_quantised_with_calibration_crops(model: torch.nn.Module, exported: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALTIME_ENGINES_DIR", str(tmp_path / "engines"))
    calib = tmp_path / "crops"
    calib.mkdir()
    for i, x in enumerate(crops(16)):
        np.save(calib / f"calib_{i:04d}.npy", x.astype(np.float16))
    backend = create(None, exported, precision="int8", calib_dir=calib, variant="s")
    assert backend.name == "onnxruntime[cpu,int8]"
    x = crops(2)
    out, ref = backend.infer(x), vitpose.heatmaps(model, torch.from_numpy(x)).numpy()
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9
    assert list((tmp_path / "engines").glob("*int8*.onnx"))  # cached for the next run


def test_bad_onnx_files_raise_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        create(None, tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x01garbage" * 50)
    with pytest.raises(WeightsError, match="cannot load") as error:
        create(None, garbage)
    assert "\n" not in str(error.value)
    from onnx import TensorProto, helper, save_model

    other = tmp_path / "identity.onnx"  # a valid ONNX model, just not a ViTPose one
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])])
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(other))
    with pytest.raises(WeightsError, match="not a ViTPose 256x192 export"):
        create(None, other)
    with pytest.raises(WeightsError, match="needs ViTPose weights"):
        create(None, None)


def test_cuda_request_without_cuda_provider(exported: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendUnavailable, match="CUDA"):
        create(None, exported, device="cuda")
    assert create(None, exported, device="cpu").name == "onnxruntime[cpu,fp32]"
