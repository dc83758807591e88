"""PyTorch backend (CPU here, CUDA parts skip without a GPU), GPU-style cropping, and the GPU benchmark on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import time

import numpy as np
import pytest
import torch
from conftest import REPO

from realtime.backends import PoseBackend, load_factory
from realtime.backends.torch_backend import (
    HeatmapNet,
    MultiStreamRunner,
    TorchBackend,
    TorchCropper,
    bucket_for,
)
from realtime.benchmark.gpu import main as bench_main
from realtime.benchmark.gpu import max_streams, run_gpu_bench, simulate_streams
from realtime.errors import BackendUnavailable
from realtime.pose import topdown, vitpose

cuda = pytest.mark.gpu  # skipped without CUDA (tests/conftest.py)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return vitpose.build_vitpose("s", tiny=True)


@pytest.fixture(scope="module")
def crops():
    return np.random.default_rng(0).standard_normal((5, 3, 256, 192)).astype(np.float32)


def test_cpu_fp32_matches_the_model(tiny, crops):
    be = load_factory("torch")(tiny, None, "fp32", "cpu")
    assert isinstance(be, PoseBackend)
    assert be.name == "torch[cpu,fp32]" and be.input_hw == (256, 192)
    ref = vitpose.heatmaps(tiny, crops).numpy()
    for n in (1, 3, 5):
        out = be.infer(crops[:n])
        assert out.shape == (n, 17, 64, 48) and out.dtype == np.float32
        np.testing.assert_allclose(out, ref[:n], rtol=1e-5, atol=1e-6)
    assert be.infer(crops[:0]).shape == (0, 17, 64, 48)
    with pytest.raises(ValueError):
        be.infer(crops[:, :, :128])
    be.close()


def test_factory_turns_cuda_graphs_on_only_where_they_exist(tiny, caplog):
    be = load_factory("torch")(tiny, None, "fp32", "cpu")
    assert not be.cuda_graphs and "cudagraph" not in be.name
    assert "CUDA graphs need" not in caplog.text  # the default is no request, so no warning on the CPU
    assert not load_factory("torch")(tiny, None, "fp32", "cpu", cuda_graphs=False).cuda_graphs


def test_channels_last_head_changes_layout_not_results(crops):
    torch.manual_seed(0)
    model = vitpose.build_vitpose("s", tiny=True).eval()
    x = torch.from_numpy(crops[:2])
    with torch.inference_mode():
        ref = HeatmapNet(model)(x)
        net = HeatmapNet(model, channels_last_head=True)
        HeatmapNet(model, channels_last_head=True)  # a second wrapper must not stack a second hook
        out = net(x)
    assert len(model.head._forward_pre_hooks) == 1
    assert out.is_contiguous(memory_format=torch.channels_last) and not ref.is_contiguous(
        memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_bucket_padding_does_not_change_results(tiny, crops):
    be = TorchBackend(tiny, "fp32", "cpu", max_batch=4)
    be.compiled = True  # exercise the fixed-shape (bucket) path without paying for torch.compile
    ref = vitpose.heatmaps(tiny, crops).numpy()
    np.testing.assert_allclose(be.infer(crops[:3]), ref[:3], rtol=1e-5, atol=1e-6)  # padded to 4
    np.testing.assert_allclose(be.infer(crops), ref, rtol=1e-5, atol=1e-6)  # 5 > max_batch
    assert [bucket_for(n, 64) for n in (1, 2, 3, 5, 9, 33, 64, 65)] == [1, 2, 4, 8, 16, 64, 64, 64]


def test_unsupported_settings_raise_one_line_errors(tiny):
    for precision, device, match in (("fp16", "cpu", "CUDA GPU"), ("int8", "cpu", "onnxruntime"),
                                     ("bf8", "cpu", "precision")):
        with pytest.raises(BackendUnavailable, match=match) as err:
            TorchBackend(tiny, precision, device)
        assert "\n" not in str(err.value)
    with pytest.raises(BackendUnavailable, match="weights"):
        load_factory("torch")(None, None, "fp32", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="no CUDA GPU"):
            TorchBackend(tiny, "fp32", "cuda")


def test_multistream_runner_matches_single_calls(tiny, crops):
    runner = MultiStreamRunner(tiny, "fp32", "cpu", streams=2)
    outs = runner.infer_many([crops[:2], crops[2:5], crops[:1]])
    ref = vitpose.heatmaps(tiny, crops).numpy()
    np.testing.assert_allclose(outs[0], ref[:2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[1], ref[2:5], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[2], ref[:1], rtol=1e-5, atol=1e-6)
    assert runner.name.endswith("x2streams")


def _frame() -> np.ndarray:
    rng = np.random.default_rng(3)
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[:] = rng.integers(0, 255, (1, 640, 3), dtype=np.uint8)  # vertical stripes: interpolation shows
    frame[100:300, 200:320] = rng.integers(0, 255, (200, 120, 3), dtype=np.uint8)
    return frame


def test_device_crops_match_opencv_preprocessing():
    frame = _frame()
    boxes = np.array([[200, 100, 320, 300], [-40, -30, 150, 200], [500, 250, 700, 420], [0, 0, 640, 360]], np.float32)
    ref, affines = topdown.preprocess(frame, boxes)
    cropper = TorchCropper("cpu")
    np.testing.assert_array_equal(cropper.affines(boxes), affines)
    out = torch.zeros((8, 3, 256, 192))
    got = cropper.crop(frame, affines, out=out)
    assert got.data_ptr() == out.data_ptr()  # written into the given (backend input) buffer
    diff = np.abs(got.numpy() - ref)
    # OpenCV interpolates in 1/32-px fixed point: differences stay far below one grey level (1/58 here).
    assert diff.max() < 0.02 and diff.mean() < 0.003, (diff.max(), diff.mean())
    assert np.all(out[4:].numpy() == 0)


def test_infer_frame_crops_on_the_device(tiny):
    frame = _frame()
    boxes = np.array([[200, 100, 320, 300], [500, 250, 700, 420]], np.float32)
    be = TorchBackend(tiny, "fp32", "cpu")
    crops, affines = topdown.preprocess(frame, boxes)
    maps, got_affines = be.infer_frame(frame, boxes)
    np.testing.assert_array_equal(got_affines, affines)
    np.testing.assert_array_equal(maps, be.infer(crops))
    empty, aff = be.infer_frame(frame, np.zeros((0, 4), np.float32))
    assert empty.shape == (0, 17, 64, 48) and aff.shape == (0, 2, 3)


def test_simulated_streams_keep_up_or_fall_behind():
    crops = np.zeros((8, 1), np.float32)

    def fast(batch):  # 2 ms + 0.5 ms per crop: plenty for 10 sources
        time.sleep(0.002 + 0.0005 * len(batch))

    ok = simulate_streams(fast, crops, n_sources=10, seconds=0.6, max_batch=8)
    assert ok["backlog"] < 10 and ok["p95_ms"] < 60 and ok["processed"] >= ok["frames"] - 10
    assert ok["sources"] == 10 and ok["frames"] > 150

    def slow(batch):  # 20 ms per crop and no batching gain: 50 crops/s < 120 needed
        time.sleep(0.02 * len(batch))

    bad = simulate_streams(slow, crops, n_sources=4, seconds=0.6, max_batch=8)
    assert bad["backlog"] > 10 and bad["p95_ms"] > 100


def test_max_streams_search_brackets_the_capacity():
    crops = np.zeros((16, 1), np.float32)

    def infer(batch):  # fixed 10 ms per batch of up to 16: ~1600 crops/s, so latency-bound, not rate-bound
        time.sleep(0.010)

    res = max_streams(infer, crops, max_batch=16, est_fps=600, latency_ms=50, trial_s=0.4, max_trials=6)
    assert res["max_streams"] >= 5 and len(res["trials"]) <= 6
    assert all(t["p95_ms"] < 50 for t in res["trials"] if t["sources"] <= res["max_streams"] and t["ok"])


def test_gpu_bench_skips_the_stream_search_with_zero_trials():
    report = run_gpu_bench("s", "torch", "fp32", batch_sizes=(1,), streams=1, seconds=0.05, device="cpu", tiny=True,
                           max_trials=0, preprocess_check=False)
    assert "live_streams" not in report and report["throughput"][0]["batch"] == 1


def test_gpu_bench_runs_on_the_cpu_with_tiny_settings():
    report = run_gpu_bench("s", "torch", "fp32", batch_sizes=(1, 2), streams=2, seconds=0.1, device="cpu",
                           tiny=True, stream_trial_s=0.3, max_trials=2, preprocess_check=True)
    assert report["backend"] == "torch[cpu,fp32]" and report["device"] == "cpu"
    assert report["batch1"]["n"] >= 3 and report["batch1"]["p50_ms"] > 0
    assert [t["batch"] for t in report["throughput"]] == [1, 2]
    assert all(t["frames_per_s"] > 0 for t in report["throughput"])
    assert isinstance(report["live_streams"]["max_streams"], int) and report["live_streams"]["trials"]
    assert "cpu" in report["info"] and "random" in report["weights"]
    assert "device_resident" not in report  # GPU only
    assert set(report["preprocess"]) == {"1_people", "8_people"}
    json.dumps(report)  # JSON-able


def test_gpu_bench_accepts_the_onnxruntime_backend():
    report = run_gpu_bench("s", "onnxruntime", "fp32", batch_sizes=(1,), streams=1, seconds=0.05, device="cpu",
                           tiny=True, stream_trial_s=0.2, max_trials=1, preprocess_check=False)
    assert report["backend"].startswith("onnxruntime[cpu,fp32]") and report["throughput"][0]["frames_per_s"] > 0


def test_bench_cli_writes_json(tmp_path):
    out = tmp_path / "r.json"
    assert bench_main(["--variant", "s", "--backend", "torch", "--precision", "fp32", "--device", "cpu", "--tiny",
                       "--batch-sizes", "1", "--seconds", "0.05", "--stream-trial-s", "0.2", "--max-trials", "1",
                       "--json", str(out)]) == 0
    assert json.loads(out.read_text())["throughput"][0]["batch"] == 1


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu_check.sh")]).returncode == 0


@pytest.mark.slow
def test_gpu_check_script_cpu_smoke(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), GPU_CHECK_DEVICE="cpu", GPU_CHECK_TINY="1", GPU_CHECK_SECONDS="0.05",
               GPU_CHECK_TRIAL_S="0.2", GPU_CHECK_BATCHES="1,2", GPU_CHECK_MAX_TRIALS="1")
    res = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    check = json.loads((tmp_path / "check.json").read_text())
    assert check["gpu_crop_vs_opencv_max_abs"] < 0.02
    runs = sorted(p.name for p in tmp_path.glob("vitpose_*.json"))
    assert runs == ["vitpose_b_cpu_smoke.json"], runs
    assert json.loads((tmp_path / runs[0]).read_text())["throughput"][1]["batch"] == 2
    assert "exit 0" in (tmp_path / "summary.txt").read_text()


# ------------------------------------------------------------------------------------------- CUDA only


@cuda
def test_cuda_fp16_and_graphs_match_fp32(tiny, crops):
    ref = TorchBackend(tiny, "fp32", "cuda").infer(crops)
    half = TorchBackend(tiny, "fp16", "cuda", max_batch=8)
    graph = TorchBackend(tiny, "fp16", "cuda", max_batch=8, cuda_graphs=True)
    assert half.name == "torch[cuda,fp16]" and graph.name == "torch[cuda,fp16,cudagraph]"
    h = half.infer(crops)
    rel = np.linalg.norm(h - ref) / np.linalg.norm(ref)
    assert rel < 1e-2
    for n in (1, 3, 5):
        np.testing.assert_allclose(graph.infer(crops[:n]), h[:n], atol=1e-3)


@cuda
def test_cuda_factory_uses_graphs_by_default(tiny, crops):
    be = load_factory("torch")(tiny, None, "fp16", "cuda", max_batch=8)
    assert be.name == "torch[cuda,fp16,cudagraph]"
    eager = load_factory("torch")(tiny, None, "fp16", "cuda", max_batch=8, cuda_graphs=False)
    np.testing.assert_allclose(be.infer(crops[:1]), eager.infer(crops[:1]), atol=1e-3)


@cuda
def test_cuda_infer_allocates_nothing_per_frame(tiny, crops):
    be = TorchBackend(tiny, "fp16", "cuda", max_batch=8, cuda_graphs=True)
    be.infer(crops[:2])
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for _ in range(10):
        be.infer(crops[:2])
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before


@cuda
def test_cuda_infer_frame_matches_cpu_preprocessing(tiny):
    frame = _frame()
    boxes = np.array([[200, 100, 320, 300], [-40, -30, 150, 200]], np.float32)
    be = TorchBackend(tiny, "fp32", "cuda", max_batch=4)
    crops, _ = topdown.preprocess(frame, boxes)
    maps, _ = be.infer_frame(frame, boxes)
    ref = be.infer(crops)
    assert np.abs(maps - ref).max() < 1e-2 * np.abs(ref).max()


@cuda
def test_cuda_crops_match_opencv():
    frame = _frame()
    boxes = np.array([[200, 100, 320, 300], [-40, -30, 150, 200]], np.float32)
    ref, affines = topdown.preprocess(frame, boxes)
    got = TorchCropper("cuda").crop(frame, affines).cpu().numpy()
    assert np.abs(got - ref).max() < 0.02
