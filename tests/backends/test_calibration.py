"""INT8 calibration data: frame sampling, batches for TensorRT / torch2trt / ONNX Runtime, static INT8 ONNX."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types

import numpy as np
import pytest
from conftest import shared_file, write_video

from realtime.backends.calibration import (
    CalibrationBatches,
    ensure_int8_onnx,
    keypoint_csv_for,
    keypoints_box,
    load_keypoint_boxes,
    make_entropy_calibrator,
    quantize_onnx_int8,
    refresh_calibration_frames,
)
from realtime.errors import DataError


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 256, 192)).astype(np.float16)


def test_batches_have_fixed_size_wrap_around_and_a_fingerprint():
    data = _crops(10)
    b = CalibrationBatches(data, batch_size=4)
    batches = list(b)
    assert len(b) == 3 and len(batches) == 3 and b.n_samples == 10
    assert all(x.shape == (4, 3, 256, 192) and x.dtype == np.float32 and x.flags.c_contiguous for x in batches)
    np.testing.assert_array_equal(batches[2][2:], data[:2].astype(np.float32))  # wrapped to the start
    other = data.copy()
    other[3, 0, 0, 0] += 1
    assert CalibrationBatches(other).fingerprint() != b.fingerprint()
    assert CalibrationBatches(data.copy(), batch_size=2).fingerprint() == b.fingerprint()  # data, not batching
    assert CalibrationBatches(data, limit=5).n_samples == 5


def test_batches_load_from_calib_dir_and_refuse_empty(tmp_path):
    frames = tmp_path / "calib" / "frames"
    frames.mkdir(parents=True)
    data = _crops(5)
    for i, crop in enumerate(data[:3]):
        np.save(frames / f"calib_{i:04d}.npy", crop)
    np.save(frames / "calib_0003.npy", data[3:])  # an (N, 3, H, W) file works too
    b = CalibrationBatches(tmp_path / "calib", batch_size=2)
    assert b.n_samples == 5
    np.testing.assert_array_equal(b.data, data)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="calibrate"):
        CalibrationBatches(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        CalibrationBatches(tmp_path / "missing")
    with pytest.raises(DataError, match=r"\(N, 3, H, W\)"):
        CalibrationBatches(np.zeros((2, 256, 192), np.float32))


def test_person_images_folder_is_cropped_on_the_fly(tmp_path):
    import cv2

    from realtime.pose.topdown import preprocess

    img = np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    b = CalibrationBatches(tmp_path)
    expected, _ = preprocess(img, np.array([[0, 0, 200, 300]], np.float32))
    assert b.n_samples == 1
    np.testing.assert_allclose(b.data[0].astype(np.float32), expected[0], atol=2e-3)  # stored as float16


def test_torch2trt_dataset_and_ort_reader():
    b = CalibrationBatches(_crops(5), batch_size=2)
    ds = b.torch2trt_dataset(device="cpu")
    assert len(ds) == 5
    item = ds[4]
    assert isinstance(item, list) and len(item) == 1 and tuple(item[0].shape) == (1, 3, 256, 192)
    np.testing.assert_array_equal(item[0].numpy()[0], b.data[4].astype(np.float32))
    with pytest.raises(IndexError):
        ds[5]
    reader = b.ort_reader("pixel_values")
    seen = []
    while (feed := reader.get_next()) is not None:
        seen.append(feed["pixel_values"])
    assert len(seen) == 3 and all(x.shape == (2, 3, 256, 192) for x in seen)
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["pixel_values"], seen[0])


@pytest.fixture
def fake_tensorrt(monkeypatch):
    """Just the calibrator base class of the TensorRT Python API (the real one needs a GPU)."""
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__ = "10.3.0"

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            self.base_initialised = True

    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def test_entropy_calibrator_feeds_every_batch_then_stops_and_caches(tmp_path, fake_tensorrt):
    b = CalibrationBatches(_crops(5), batch_size=2)
    cache = tmp_path / "calib" / "vitpose-b_x_y_trt10.3.0.cache"
    cal = make_entropy_calibrator(b, cache, device="cpu")
    assert isinstance(cal, fake_tensorrt.IInt8EntropyCalibrator2) and cal.base_initialised
    assert cal.get_batch_size() == 2
    assert cal.read_calibration_cache() is None
    for i in range(len(b)):
        ptrs = cal.get_batch(["pixel_values"])
        assert ptrs == [cal.device_buffer.data_ptr()]
        np.testing.assert_array_equal(cal.device_buffer.numpy(), b.batch(i))
    assert cal.get_batch(["pixel_values"]) is None  # end of data
    cal.write_calibration_cache(memoryview(b"TRT-10 calibration table"))
    assert make_entropy_calibrator(b, cache, device="cpu").read_calibration_cache() == b"TRT-10 calibration table"


def test_keypoint_boxes():
    xy = np.array([[10, 20], [30, 60], [np.nan, np.nan], [20, 40], [15, 50]], float)
    box = keypoints_box(xy, margin=0.0)
    np.testing.assert_allclose(box, [10, 20, 30, 60])
    assert keypoints_box(xy[:3]) is None  # too few points to trust


def test_refresh_frames_from_clips_and_images(tmp_path):
    import cv2

    clips = tmp_path / "clips"
    clips.mkdir()
    write_video(clips / "a.mp4", 30, codec="mpeg4", pattern="person")
    write_video(clips / "b.mp4", 12, codec="mpeg4", pattern="person")
    cv2.imwrite(str(clips / "person.jpg"), np.full((200, 100, 3), 128, np.uint8))
    out = tmp_path / "calib" / "frames"
    seen_boxes = []

    def boxes(video, index, image):
        seen_boxes.append((video.name, index))
        return np.array([10, 10, 200, 230], np.float32)

    paths = refresh_calibration_frames([clips], out, count=9, seed=3, box_provider=boxes)
    assert len(paths) == 9
    crops = [np.load(p) for p in paths]
    assert all(c.shape == (3, 256, 192) and c.dtype == np.float16 for c in crops)
    assert all(p.with_suffix(".jpg").is_file() for p in paths)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 9 and manifest["fingerprint"] == CalibrationBatches(out).fingerprint()
    sources = [f["source"] for f in manifest["frames"]]
    assert sources.count("person.jpg") == 1 and sources.count("a.mp4") == 4 and sources.count("b.mp4") == 4
    frames_a = [f["frame"] for f in manifest["frames"] if f["source"] == "a.mp4"]
    assert len(set(frames_a)) == 4 and all(0 <= i < 30 for i in frames_a)
    assert len(seen_boxes) == 9
    first = CalibrationBatches(out).fingerprint()
    refresh_calibration_frames([clips], out, count=9, seed=3, box_provider=boxes)
    assert CalibrationBatches(out).fingerprint() == first  # same seed, same crops
    refresh_calibration_frames([clips], out, count=5, seed=4, box_provider=boxes)
    assert len(list(out.glob("calib_*.npy"))) == 5  # old crops replaced, not mixed in
    with pytest.raises(DataError):
        refresh_calibration_frames([tmp_path / "nothing-here"], out)


def test_refresh_frames_uses_the_clip_keypoints_on_real_data(tmp_path):
    video = shared_file("deadlift_bichraix/videos/good/good005.mp4")
    csv = keypoint_csv_for(video)
    assert csv is not None and csv.name == "good005_joints_new.csv"
    table = load_keypoint_boxes(csv)
    paths = refresh_calibration_frames([video], tmp_path, count=4, seed=0, jitter=0.0)
    manifest = json.loads((tmp_path / "manifest.json").read_text())["frames"]
    assert len(paths) == 4
    for entry in manifest:
        np.testing.assert_allclose(entry["box"], table[entry["frame"]], atol=0.1)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    import torch

    from realtime.pose import vitpose

    torch.manual_seed(0)
    model = vitpose.build_vitpose("s", tiny=True)
    path = vitpose.export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    return model, path


def test_static_int8_onnx_is_quantised_per_channel_and_close_to_fp32(tmp_path, tiny_onnx):
    import onnx
    import onnxruntime as ort

    model, fp32 = tiny_onnx
    b = CalibrationBatches(_crops(8, seed=1), batch_size=4)
    out = quantize_onnx_int8(fp32, tmp_path / "int8.onnx", b)
    graph = onnx.load(str(out)).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: i for i in graph.initializer}
    per_channel = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[1] in inits
                   and len(inits[n.input[1]].dims) == 1 and inits[n.input[1]].dims[0] > 1]
    assert per_channel, "weights should carry one scale per output channel"
    x = b.batch(0)[:3]
    ref = ort.InferenceSession(str(fp32)).run(None, {"pixel_values": x})[0]
    got = ort.InferenceSession(str(out)).run(None, {"pixel_values": x})[0]  # dynamic batch kept
    assert got.shape == ref.shape == (3, 17, 64, 48)
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert rel < 0.1, rel


def _dequantized_inputs(graph, pattern: str) -> int:
    """How many inputs of the nodes whose names contain ``pattern`` come straight from a DequantizeLinear."""
    producers = {o: n.op_type for n in graph.node for o in n.output}
    nodes = [n for n in graph.node if pattern in n.name and n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    assert nodes, f"no node named like {pattern}"
    return sum(producers.get(i) == "DequantizeLinear" for n in nodes for i in n.input)


def test_int8_keeps_attention_matmuls_and_heatmap_head_float_by_default(tmp_path, tiny_onnx):
    import onnx

    _, fp32 = tiny_onnx
    b = CalibrationBatches(_crops(4, seed=2), batch_size=4)
    default = onnx.load(str(quantize_onnx_int8(fp32, tmp_path / "default.onnx", b))).graph
    everything = onnx.load(str(quantize_onnx_int8(fp32, tmp_path / "all.onnx", b, exclude=()))).graph
    for pattern in ("attention/attention/MatMul", "head/conv"):
        assert _dequantized_inputs(default, pattern) == 0, pattern
        assert _dequantized_inputs(everything, pattern) > 0, pattern
    assert _dequantized_inputs(default, "mlp/fc1/MatMul") > 0  # the MLP and Q/K/V projections stay INT8
    assert _dequantized_inputs(default, "attention/query/MatMul") > 0


def test_ensure_int8_onnx_is_cached_by_graph_and_data(tmp_path, tiny_onnx):
    _, fp32 = tiny_onnx
    calib = tmp_path / "calib"
    (calib / "frames").mkdir(parents=True)
    np.save(calib / "frames" / "calib_0000.npy", _crops(4, seed=2))
    engines = tmp_path / "engines"
    first = ensure_int8_onnx(fp32, "s", calib_dir=calib, engines_root=engines, batch_size=2)
    stamp = first.stat().st_mtime_ns
    again = ensure_int8_onnx(fp32, "s", calib_dir=calib, engines_root=engines, batch_size=2)
    assert again == first and again.stat().st_mtime_ns == stamp  # reused
    np.save(calib / "frames" / "calib_0000.npy", _crops(4, seed=5))  # new calibration data -> new model
    third = ensure_int8_onnx(fp32, "s", calib_dir=calib, engines_root=engines, batch_size=2)
    assert third != first and third.is_file()
