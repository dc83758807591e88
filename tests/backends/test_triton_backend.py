"""--backend triton against a real Triton Inference Server on 127.0.0.1 (tests/backends/triton_server.py)."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import shared_file
from triton_server import (
    MAX_BATCH,
    MODEL,
    WRONG_MODEL,
    TritonServer,
    free_port,
    make_tiny,
    require_server_venv,
    start_session_server,
    write_repository,
)

from realtime.backends import PoseBackend, load_factory
from realtime.backends import triton_backend as tb
from realtime.backends.onnx_backend import OnnxRuntimeBackend
from realtime.errors import BackendUnavailable, PoseServerUnavailable, RealtimeError
from realtime.pose.topdown import decode_heatmaps, preprocess


@pytest.fixture(scope="module")
def triton_tiny(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("triton-onnx"))


@pytest.fixture(scope="module")
def triton_repository(triton_tiny, tmp_path_factory):
    return write_repository(tmp_path_factory.mktemp("triton-repo") / "model_repository", triton_tiny.onnx)


@pytest.fixture(scope="module")
def triton_server(triton_repository, tmp_path_factory):
    """One real server for the module, killed at the end."""
    with start_session_server(triton_repository, tmp_path_factory.mktemp("triton-log") / "server.log") as server:
        yield server

def crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 256, 192), dtype=np.float32)


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.fixture(scope="module")
def reference(triton_tiny):
    backend = OnnxRuntimeBackend(triton_tiny.onnx, device="cpu", threads=1)
    yield backend
    backend.close()


# --------------------------------------------------------------------------------------------- no server


def test_url_forms_and_credentials_stay_out_of_the_display():
    plain = tb.parse_triton_url("grpc://10.0.0.5:8001")
    assert (plain.address, plain.display, plain.ssl, plain.headers) == ("10.0.0.5:8001", "grpc://10.0.0.5:8001",
                                                                        False, {})
    assert tb.parse_triton_url("triton.local").address == "triton.local:8001"  # scheme and port are optional
    assert tb.parse_triton_url("grpcs://[::1]:443").display == "grpcs://[::1]:443"
    basic = tb.parse_triton_url("grpc://alice:s%40cret@host:9001")
    assert basic.display == "grpc://host:9001" and basic.headers["authorization"].startswith("Basic ")
    import base64

    assert base64.b64decode(basic.headers["authorization"][6:]) == b"alice:s@cret"
    bearer = tb.parse_triton_url("grpc://host:8001?token=t0ken")
    assert bearer.headers == {"authorization": "Bearer t0ken"} and "t0ken" not in bearer.display
    for bad, message in (("http://user:pw@host:8000", "talks gRPC"), ("rtsp://host", "unknown scheme"),
                         ("grpc://host:port", "expected grpc://HOST:PORT")):
        with pytest.raises(RealtimeError, match=message) as err:
            tb.parse_triton_url(bad)
        assert "pw@" not in str(err.value) and "\n" not in str(err.value)


def test_unreachable_server_at_start_is_a_one_line_error(caplog):
    caplog.set_level(logging.DEBUG)
    url = f"grpc://bob:hunter2@127.0.0.1:{free_port()}?token=zz9"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as err:
        load_factory("triton")(None, None, triton_url=url, triton_timeout_s=2)
    text = str(err.value)
    assert "unreachable" in text and "scripts/triton_local.sh" in text and "\n" not in text
    assert time.monotonic() - started < 5
    for secret in ("hunter2", "zz9", "bob"):
        assert secret not in text and secret not in caplog.text


# ---------------------------------------------------------------------------------------------- with server


def test_heatmaps_through_triton_equal_onnxruntime(triton_server, reference):
    backend = load_factory("triton")(None, None, triton_url=triton_server.url, triton_model=MODEL,
                                     triton_timeout_s=10, precision="fp32", unused_option=1)
    assert isinstance(backend, PoseBackend)
    assert backend.name == f"triton[{MODEL}@{triton_server.url},fp32]" and backend.input_hw == (256, 192)
    assert backend.max_batch == MAX_BATCH
    for n in (1, 5, MAX_BATCH + 4):  # the last one is split into two requests
        x = crops(n, seed=n)
        out = backend.infer(x)
        assert out.shape == (n, 17, 64, 48) and out.dtype == np.float32
        np.testing.assert_allclose(out, reference.infer(x), rtol=0, atol=1e-5)
    assert backend.infer(crops(0)).shape == (0, 17, 64, 48)
    with pytest.raises(ValueError, match="256, 192"):
        backend.infer(np.zeros((1, 3, 224, 224), np.float32))
    assert backend.outage is None
    backend.close()
    print(f"triton server ready {triton_server.start_seconds:.2f} s after start")


def test_real_clip_keypoints_through_triton_equal_onnxruntime(triton_server, reference):
    import cv2

    clip = shared_file("workouttracker_reps/videos/squats/squat_24.mp4")
    cap = cv2.VideoCapture(str(clip))
    frames = [cap.read()[1] for _ in range(3)]
    cap.release()
    assert all(f is not None for f in frames)
    backend = tb.create(None, None, triton_url=triton_server.url)
    for frame in frames:
        h, w = frame.shape[:2]
        batch, affines = preprocess(frame, np.array([[0, 0, w, h], [w * 0.25, h * 0.1, w * 0.75, h * 0.95]]))
        ours = decode_heatmaps(backend.infer(batch), affines)
        ref = decode_heatmaps(reference.infer(batch), affines)
        np.testing.assert_allclose(ours, ref, atol=1e-2)  # px; the server runs another ORT build
    backend.close()


def test_shared_memory_gives_the_same_heatmaps_and_cleans_up(triton_server, reference):
    backend = tb.create(None, None, triton_url=triton_server.url, triton_shm=True)
    assert backend.name.endswith(",shm]")
    for n in (2, 3, MAX_BATCH + 1):  # regions grow with the batch; chunks use offsets into one region
        x = crops(n, seed=10 + n)
        np.testing.assert_allclose(backend.infer(x), reference.infer(x), rtol=0, atol=1e-5)
    with ThreadPoolExecutor(3) as pool:  # one region pair per calling thread
        xs = [crops(2, seed=20 + i) for i in range(6)]
        for x, out in zip(xs, pool.map(backend.infer, xs), strict=True):
            np.testing.assert_allclose(out, reference.infer(x), rtol=0, atol=1e-5)
    stem = f"realtime-{os.getpid()}-"
    assert any(name.startswith(stem) for name in os.listdir("/dev/shm"))
    backend.close()
    assert not any(name.startswith(stem) for name in os.listdir("/dev/shm"))


def test_concurrent_cameras_are_batched_by_the_server(triton_server, reference):
    backend = tb.create(None, None, triton_url=triton_server.url)
    x = crops(8, seed=3)
    before = tb.server_batch_counts(triton_server.url, MODEL)
    barrier = threading.Barrier(8)

    def camera(i: int) -> np.ndarray:
        barrier.wait()
        return np.concatenate([backend.infer(x[i:i + 1]) for _ in range(8)])

    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(camera, range(8)))
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out, np.repeat(reference.infer(x[i:i + 1]), 8, axis=0), rtol=0, atol=1e-5)
    after = tb.server_batch_counts(triton_server.url, MODEL)
    formed = {size: n - before.get(size, 0) for size, n in after.items() if n > before.get(size, 0)}
    mean = tb.server_batch_stats(triton_server.url, MODEL, since=before)
    assert sum(size * n for size, n in formed.items()) == 64  # every crop was run exactly once
    assert max(formed) > 1 and mean > 1.0, formed
    print(f"8 threads x 8 single-crop requests: server batches {dict(sorted(formed.items()))}, mean {mean:.2f}")
    backend.close()


def test_a_model_that_is_not_vitpose_is_refused_at_start(triton_server):
    with pytest.raises(tb.TritonModelMismatch) as err:
        tb.create(None, None, triton_url=triton_server.url, triton_model=WRONG_MODEL)
    text = str(err.value)
    assert "not a ViTPose 256x192 export" in text and "224" in text and "\n" not in text
    with pytest.raises(tb.TritonModelMismatch, match=f"no ready model 'vitpose_h'.*{MODEL}") as err:
        tb.create(None, None, triton_url=triton_server.url, variant="h")
    assert "\n" not in str(err.value)


def test_url_credentials_are_never_logged(triton_server, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"grpc://carol:pa55word@127.0.0.1:{triton_server.grpc_port}?token=tok3n"
    backend = tb.create(None, None, triton_url=url)  # the server ignores the auth header; a proxy would check it
    backend.infer(crops(1))
    texts = [backend.name, caplog.text]
    backend.close()
    with pytest.raises(PoseServerUnavailable) as err:
        backend.infer(crops(1))
    texts.append(str(err.value))
    for text in texts:
        assert "pa55word" not in text and "tok3n" not in text and "carol" not in text


def test_pause_kill_and_restart_backoff_recovery_and_no_thread_leak(triton_repository, triton_tiny, reference,
                                                                    tmp_path, monkeypatch):
    require_server_venv()
    server = TritonServer(triton_repository, tmp_path / "server.log")
    server.start()
    backend = tb.create(None, None, triton_url=server.url, triton_timeout_s=1.0, triton_backoff_max_s=1.0)
    try:
        x = crops(2, seed=7)
        expected = reference.infer(x)
        np.testing.assert_allclose(backend.infer(x), expected, rtol=0, atol=1e-5)

        server.pause()  # a hung server: the deadline ends the call
        started = time.monotonic()
        with pytest.raises(PoseServerUnavailable, match="DEADLINE_EXCEEDED") as err:
            backend.infer(x)
        assert time.monotonic() - started < 3.0 and "\n" not in str(err.value)
        assert backend.outage is not None
        started = time.monotonic()
        with pytest.raises(PoseServerUnavailable, match="next try in"):  # backoff: fails at once, no request
            backend.infer(x)
        assert time.monotonic() - started < 0.05
        server.resume()
        assert _recovers(backend, x, expected, within=10.0)

        server.kill()  # a crash
        with pytest.raises(PoseServerUnavailable, match="UNAVAILABLE") as err:
            backend.infer(x)
        assert "\n" not in str(err.value) and server.url in str(err.value)
        # Many real failed attempts (backoff shortened): no thread may be left behind.
        monkeypatch.setattr(tb, "BACKOFF_START_S", 0.005)
        backend.backoff_max_s = 0.01
        py_threads, threads = threading.active_count(), os_threads()
        attempts = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            with pytest.raises(PoseServerUnavailable):
                backend.infer(x)
            attempts += 1
            time.sleep(0.01)
        assert attempts > 50
        # One thread of slack: a thread of an earlier test may start or end meanwhile; a leak per attempt is > 50.
        assert threading.active_count() <= py_threads + 1 and os_threads() <= threads + 2
        monkeypatch.undo()
        backend.backoff_max_s = 1.0

        server.start()  # same ports
        assert _recovers(backend, x, expected, within=15.0)
        assert backend.outage is None
    finally:
        backend.close()
        server.stop()


def _recovers(backend, x: np.ndarray, expected: np.ndarray, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            out = backend.infer(x)
        except PoseServerUnavailable:
            time.sleep(0.05)
            continue
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
        return True
    return False


def test_server_batch_stats_of_an_unknown_span_is_zero(triton_server):
    counts = tb.server_batch_counts(triton_server.url, MODEL)
    assert tb.server_batch_stats(triton_server.url, MODEL, since=counts) == 0.0
