"""The shared pose engine's batcher and fair gate: unit tests on a fake backend, then real ViTPose engines (tiny
random weights, ONNX Runtime and PyTorch on the CPU) fed by four cameras through ``MultiPipeline``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file

from realtime.pose.batching import Batcher, BatcherClosed, FairGate


class FakeBackend:
    """Doubles its input; records every batch it is given (sizes and the tags in the first crop pixel)."""

    name = "fake"
    input_hw = (4, 4)

    def __init__(self, delay_s: float = 0.0, fail: bool = False, hold: threading.Event | None = None) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.hold = hold  # while set-able and not set, infer blocks (a busy network)
        self.sizes: list[int] = []
        self.tags: list[list[int]] = []
        self.closed = False
        self.entered = threading.Event()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.entered.set()
        if self.hold is not None:
            assert self.hold.wait(10), "test never released the backend"
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise ValueError("network exploded")
        self.sizes.append(len(batch))
        self.tags.append([int(x) for x in batch[:, 0, 0, 0]])
        return batch * 2.0

    def close(self) -> None:
        self.closed = True


def crops(tag: int, n: int = 1) -> np.ndarray:
    """``n`` crops whose pixels all hold ``tag`` (then tag + 1, ...), so a result tells whose crops it was."""
    return np.stack([np.full((3, 4, 4), tag + i, np.float32) for i in range(n)])


def run_threads(targets) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    return errors


# --------------------------------------------------------------------------------------------------- Batcher


def test_several_cameras_form_batches_and_each_gets_its_own_result():
    backend = FakeBackend(delay_s=0.01)  # a network that takes time: crops pile up meanwhile
    batcher = Batcher(backend, max_batch=8, max_wait_ms=20)
    wrong: list[tuple[int, int]] = []

    def camera(cam: int, n_crops: int) -> Callable[[], None]:
        def loop():
            batcher.attach()
            try:
                for i in range(25):
                    tag = cam * 1000 + i * 10
                    out = batcher.infer(crops(tag, n_crops))
                    if out.shape != (n_crops, 3, 4, 4) or not np.array_equal(out, crops(tag, n_crops) * 2):
                        wrong.append((cam, i))
            finally:
                batcher.detach()
        return loop

    try:
        assert run_threads([camera(c, 1 + c % 2) for c in range(4)]) == []
        stats = batcher.stats()
    finally:
        batcher.close()
    assert wrong == []  # every caller got exactly its own heatmaps back
    assert sum(backend.sizes) == stats.crops == 25 * (1 + 2 + 1 + 2)
    assert stats.batches == len(backend.sizes) and stats.max_batch == max(backend.sizes)
    assert max(backend.sizes) > 1 and stats.mean_batch > 1.5  # really batched across cameras
    assert max(backend.sizes) <= 8
    assert backend.closed


def test_max_batch_caps_every_batch():
    backend = FakeBackend(delay_s=0.005)
    batcher = Batcher(backend, max_batch=3, max_wait_ms=20)
    for _ in range(6):
        batcher.attach()
    try:
        assert run_threads([lambda c=c: [batcher.infer(crops(c)) for _ in range(10)] for c in range(6)]) == []
    finally:
        batcher.close()
    assert max(backend.sizes) == 3 and sum(backend.sizes) == 60


def test_oldest_request_is_served_first():
    hold = threading.Event()
    backend = FakeBackend(hold=hold)
    batcher = Batcher(backend, max_batch=1, max_wait_ms=0)
    results: dict[int, np.ndarray] = {}
    threads = []
    try:
        busy = threading.Thread(target=lambda: results.setdefault(-1, batcher.infer(crops(-1))), daemon=True)
        busy.start()
        assert backend.entered.wait(5)  # the network is busy with the first crop; the rest queue up in order
        for tag in (30, 10, 40, 20):  # arrival order differs from any sort order
            t = threading.Thread(target=lambda tag=tag: results.setdefault(tag, batcher.infer(crops(tag))),
                                 daemon=True)
            t.start()
            threads.append(t)
            deadline = time.monotonic() + 5
            while len(batcher._queue) < len(threads) and time.monotonic() < deadline:
                time.sleep(0.001)
            assert len(batcher._queue) == len(threads)
        hold.set()
        for t in [busy, *threads]:
            t.join(10)
    finally:
        hold.set()
        batcher.close()
    assert [tags[0] for tags in backend.tags] == [-1, 30, 10, 40, 20]
    assert all(np.array_equal(results[tag], crops(tag) * 2) for tag in (-1, 30, 10, 40, 20))


def test_no_camera_starves_with_a_slow_network_and_uneven_callers():
    """One camera asks all the time with 3 crops, three others think between frames: all progress alike."""
    backend = FakeBackend(delay_s=0.01)
    batcher = Batcher(backend, max_batch=4, max_wait_ms=2)
    done = {c: 0 for c in range(4)}
    stop = time.monotonic() + 1.5

    def camera(cam: int) -> Callable[[], None]:
        def loop():
            batcher.attach()
            try:
                while time.monotonic() < stop:
                    batcher.infer(crops(cam, 3 if cam == 0 else 1))
                    done[cam] += 1
                    if cam:
                        time.sleep(0.002 * cam)  # uneven think times
            finally:
                batcher.detach()
        return loop

    try:
        assert run_threads([camera(c) for c in range(4)]) == []
    finally:
        batcher.close()
    assert min(done.values()) >= 10, done
    # every camera has one request in flight at most and requests are served oldest first: nobody gets more than
    # about twice the turns of another, whatever its crop count or its pace
    assert max(done.values()) <= 2 * min(done.values()) + 2, done


def test_first_crop_waits_at_most_max_wait_ms_for_other_cameras():
    backend = FakeBackend()
    batcher = Batcher(backend, max_batch=8, max_wait_ms=150)
    batcher.attach()
    batcher.attach()  # two cameras running, only one sends: its crop waits for the other, then goes alone
    try:
        t = time.perf_counter()
        out = batcher.infer(crops(7))
        waited = time.perf_counter() - t
    finally:
        batcher.close()
    assert np.array_equal(out, crops(7) * 2)
    assert 0.13 <= waited < 0.6, waited
    assert backend.sizes == [1]


def test_a_single_attached_camera_never_waits():
    backend = FakeBackend()
    batcher = Batcher(backend, max_batch=8, max_wait_ms=1000)
    batcher.attach()
    try:
        times = []
        for i in range(5):
            t = time.perf_counter()
            batcher.infer(crops(i))
            times.append(time.perf_counter() - t)
    finally:
        batcher.close()
    assert max(times) < 0.3, times  # far below the 1 s it could wait: nobody else is running


def test_detach_releases_a_crop_waiting_for_a_camera_that_stopped():
    backend = FakeBackend()
    batcher = Batcher(backend, max_batch=8, max_wait_ms=3000)
    batcher.attach()
    batcher.attach()
    took: list[float] = []

    def send():
        t = time.perf_counter()
        batcher.infer(crops(1))
        took.append(time.perf_counter() - t)

    try:
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        time.sleep(0.2)
        assert not took  # still waiting for the second camera
        batcher.detach()  # the second camera's source ended
        sender.join(5)
    finally:
        batcher.close()
    assert took and took[0] < 1.5, took


def test_a_backend_error_reaches_every_waiting_camera_and_the_batcher_carries_on():
    hold = threading.Event()
    backend = FakeBackend(fail=True, hold=hold)
    batcher = Batcher(backend, max_batch=8, max_wait_ms=500)
    for _ in range(3):
        batcher.attach()
    try:
        threads_errors: list[BaseException] = []
        runner = threading.Thread(target=lambda: threads_errors.extend(
            run_threads([lambda c=c: batcher.infer(crops(c)) for c in range(3)])), daemon=True)
        runner.start()
        time.sleep(0.3)
        hold.set()
        runner.join(10)
        assert len(threads_errors) == 3 and all(isinstance(e, ValueError) for e in threads_errors), threads_errors
        assert batcher.stats().batches == 0  # a failed batch is not counted as done
        backend.fail = False
        assert np.array_equal(batcher.infer(crops(5)), crops(5) * 2)  # the next frame works again
    finally:
        batcher.close()


def test_close_wakes_every_waiting_camera():
    hold = threading.Event()
    backend = FakeBackend(hold=hold)
    batcher = Batcher(backend, max_batch=1, max_wait_ms=0)
    errors: list[BaseException] = []
    finished: list[float] = []

    def send(tag: int):
        try:
            batcher.infer(crops(tag))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finished.append(time.monotonic())

    senders = [threading.Thread(target=send, args=(tag,), daemon=True) for tag in range(3)]
    for s in senders:
        s.start()
    assert backend.entered.wait(5)  # one crop in the (stuck) network, two queued
    time.sleep(0.1)
    closer = threading.Thread(target=batcher.close, daemon=True)
    t_close = time.monotonic()
    closer.start()
    for s in senders:
        s.join(3)
    hold.set()  # let the stuck network return so close() can finish
    closer.join(10)
    assert not any(s.is_alive() for s in senders)
    assert len(errors) == 3 and all(isinstance(e, BatcherClosed) for e in errors), errors
    assert max(finished) - t_close < 2.0
    assert not closer.is_alive() and backend.closed
    with pytest.raises(BatcherClosed):
        batcher.infer(crops(9))


# -------------------------------------------------------------------------------------------------- FairGate


def test_fair_gate_lets_waiters_in_in_arrival_order():
    gate = FairGate()
    order: list[int] = []
    gate.__enter__()  # someone holds the gate
    threads = []
    for i in range(6):
        def enter(i=i):
            with gate:
                order.append(i)
        t = threading.Thread(target=enter, daemon=True)
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while gate._next_ticket < i + 2 and time.monotonic() < deadline:  # i + 1 waiting, plus the holder
            time.sleep(0.001)
    gate.__exit__(None, None, None)
    for t in threads:
        t.join(5)
    assert order == list(range(6))
    assert gate.waits == 6


def test_fair_gate_is_mutually_exclusive():
    gate = FairGate()
    inside = 0
    most = 0

    def work():
        nonlocal inside, most
        for _ in range(200):
            with gate:
                inside += 1
                most = max(most, inside)
                inside -= 1

    assert run_threads([work] * 4) == []
    assert most == 1 and gate._serving == 800


# -------------------------------------------------------------------------- real engines through MultiPipeline


@pytest.fixture
def engines_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    from realtime.pose import vitpose

    monkeypatch.setenv("REALTIME_ENGINES_DIR", str(tmp_path / "engines"))
    monkeypatch.delenv(vitpose.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    """Eight frames of a real squat clip (a person the detector finds), at 640x360 to keep the detector cheap."""
    import av
    import cv2

    path = shared_file("workouttracker_reps/videos/squats/squat_24.mp4")
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 6 == 0:
                frames.append(cv2.resize(frame.to_ndarray(format="bgr24"), (640, 360), interpolation=cv2.INTER_AREA))
            if len(frames) == 8:
                break
    return frames


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_four_cameras_share_one_vitpose_network_in_batches(backend, engines_dir, clip_frames, tmp_path):
    from test_vitpose import centre_peaked_tiny

    from realtime.pipeline import Analyzer, CameraPipeline, MultiPipeline
    from realtime.pose import create_pose_engine
    from realtime.pose.topdown import box_to_center_scale
    from realtime.sources.synthetic import SyntheticSource

    centre_peaked_tiny().save_pretrained(tmp_path / "hf")
    engine = create_pose_engine("vitpose-b", backend, str(tmp_path / "hf"), max_batch=8, max_wait_ms=100)
    assert engine.batcher is not None and engine.name.startswith(f"vitpose-b/{backend}")
    calls: list[int] = []
    real_infer = engine.batcher.backend.infer

    def counting_infer(batch):  # what the network itself is given, beside the batcher's own record
        calls.append(len(batch))
        return real_infer(batch)

    engine.batcher.backend.infer = counting_infer
    results: dict[str, list] = {}
    try:
        pipelines = []
        for i in range(4):
            frames = clip_frames[i:] + clip_frames[:i]  # the cameras are not in step
            source = SyntheticSource(frames, fps=30.0, live=False, loop=False, source_id=f"cam{i}")
            estimator = engine.estimator("largest")

            class Keep:  # collects what the camera's output thread emits
                def __init__(self, name):
                    self.out = results.setdefault(name, [])

                def frame(self, result):
                    self.out.append(result)

                def write(self, record):
                    pass

            pipelines.append(CameraPipeline(source, Analyzer(estimator), name=f"cam{i}", events=Keep(f"cam{i}"),
                                            draw=False, on_start=engine.attach, on_stop=engine.detach))
        outcomes = MultiPipeline(pipelines, engine=engine).run()
        stats = engine.batch_stats()
    finally:
        engine.close()
    assert all(o.frames_processed == 8 and o.error is None for o in outcomes.values()), outcomes
    assert calls and sum(calls) == stats.crops and len(calls) == stats.batches
    assert stats.max_batch > 1 and max(calls) > 1, calls  # crops of several cameras in one network call
    assert max(calls) <= 4  # never more crops than cameras: one in flight per camera
    for name, frames in results.items():
        found = [r for r in frames if r.pose.keypoints is not None]
        assert len(found) >= 6, name
        for r in found:  # each camera got its own crop's answer: the model peaks at the centre of that box
            centre, scale = box_to_center_scale(r.pose.box)
            np.testing.assert_allclose(r.pose.keypoints[:, :2], np.broadcast_to(centre, (17, 2)),
                                       atol=float(scale[0]) / 40)
