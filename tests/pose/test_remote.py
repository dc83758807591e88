"""The pose network hosted in the analyzer's process for camera worker processes: answers, batching across
processes, errors, and a worker that dies."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest

from realtime.pose.batching import Batcher
from realtime.pose.remote import EngineHost, RemoteBackend, RemoteEngineError

HW = (32, 24)  # a small network input keeps the shared buffers small; heatmaps are 8 x 6


class FakeNetwork:
    """Heatmaps that depend on each crop: map k of crop i is filled with crop i's mean plus k."""

    name = "fake"
    input_hw = HW

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def infer(self, crops: np.ndarray) -> np.ndarray:
        if self.fail:
            raise ValueError("the network is broken")
        means = crops.reshape(len(crops), -1).mean(axis=1)
        maps = np.ones((len(crops), 17, HW[0] // 4, HW[1] // 4), np.float32)
        return maps * (means[:, None, None, None] + np.arange(17, dtype=np.float32)[None, :, None, None])

    def close(self) -> None:
        pass


def crops_for(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, *HW)).astype(np.float32)


def _camera(slot, seed: int, n: int, calls: int, out, together=None) -> None:
    """A camera worker: attach, ``calls`` requests of ``n`` crops, detach; the answers back to the test.
    ``together``: a barrier, so that every camera is running before the first request (processes start apart)."""
    backend = RemoteBackend(slot)
    backend.attach()
    if together is not None:
        together.wait(60)
    answers = []
    try:
        for i in range(calls):
            answers.append(backend.infer(crops_for(seed + i, n)))
        out.put(("ok", seed, answers))
    except RemoteEngineError as exc:
        out.put(("error", seed, str(exc)))
    finally:
        backend.detach()


def _attach_and_hang(slot, ready) -> None:
    RemoteBackend(slot).attach()
    ready.put("attached")
    time.sleep(60)


def start(target, *args):
    proc = mp.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


@pytest.fixture
def queue():
    return mp.get_context("spawn").Queue()


def test_a_worker_process_gets_the_network_answer_for_each_of_its_crops(queue):
    network = FakeNetwork()
    batcher = Batcher(network, max_batch=8, max_wait_ms=0)
    host = EngineHost(batcher, 1, HW)
    try:
        proc = start(_camera, host.slots[0], 7, 3, 2, queue)  # 3 crops a call: more than the slot holds at once
        kind, _, answers = queue.get(timeout=60)
        proc.join(10)
    finally:
        host.close()
        batcher.close()
    assert kind == "ok"
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(answer, network.infer(crops_for(7 + i, 3)), rtol=1e-6)


def test_crops_of_cameras_in_different_processes_run_in_one_batch(queue):
    network = FakeNetwork()
    batcher = Batcher(network, max_batch=8, max_wait_ms=500)  # waits for every attached camera's crop
    host = EngineHost(batcher, 3, HW)
    try:
        together = mp.get_context("spawn").Barrier(3)
        procs = [start(_camera, host.slots[i], 100 * i, 1, 10, queue, together) for i in range(3)]
        got = [queue.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(10)
        stats = batcher.stats()
    finally:
        host.close()
        batcher.close()
    for kind, seed, answers in got:
        assert kind == "ok"
        for i, answer in enumerate(answers):
            np.testing.assert_allclose(answer, network.infer(crops_for(seed + i, 1)), rtol=1e-6)
    assert stats.crops == 30
    assert stats.max_batch > 1 and stats.batches < 30, stats  # crops from several processes shared a batch


def test_an_engine_error_reaches_the_camera_and_the_engine_keeps_serving(queue):
    network = FakeNetwork(fail=True)
    batcher = Batcher(network, max_batch=8, max_wait_ms=0)
    host = EngineHost(batcher, 1, HW)
    try:
        proc = start(_camera, host.slots[0], 1, 1, 1, queue)
        kind, _, message = queue.get(timeout=60)
        proc.join(10)
        assert kind == "error" and "the network is broken" in message
        network.fail = False  # the host thread is still there for the next request
        here = RemoteBackend(host.slots[0])
        np.testing.assert_allclose(here.infer(crops_for(3, 1)), network.infer(crops_for(3, 1)), rtol=1e-6)
    finally:
        host.close()
        batcher.close()


def test_a_killed_worker_no_longer_counts_as_a_camera_the_engine_waits_for(queue):
    batcher = Batcher(FakeNetwork(), max_batch=8, max_wait_ms=0)
    host = EngineHost(batcher, 1, HW)
    try:
        proc = start(_attach_and_hang, host.slots[0], queue)
        assert queue.get(timeout=60) == "attached"
        assert host.attached == 1
        proc.kill()
        proc.join(10)
        host.slots[0].conn.close()  # the analyzer's copy of the worker's end: EOF once the worker's is gone too
        deadline = time.monotonic() + 10
        while host.attached and time.monotonic() < deadline:
            time.sleep(0.05)
        assert host.attached == 0
    finally:
        host.close()
        batcher.close()

