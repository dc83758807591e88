"""FairPool (several copies of a model that cannot batch) and BlazePosePool over it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from realtime.pose.batching import FairPool


def test_each_copy_is_held_by_one_caller_at_a_time_and_all_copies_are_used():
    pool = FairPool(["a", "b"])
    busy: dict[str, int] = {"a": 0, "b": 0}
    overlap = []
    used = set()
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            with pool.take() as item:
                with lock:
                    busy[item] += 1
                    overlap.append(busy[item])
                    used.add(item)
                time.sleep(0.001)
                with lock:
                    busy[item] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert max(overlap) == 1 and used == {"a", "b"}


def test_waiting_callers_are_served_in_arrival_order():
    pool = FairPool(["only"])
    order: list[int] = []
    with pool.take():
        threads = []
        for i in range(5):
            t = threading.Thread(target=lambda i=i: _take_and_record(pool, order, i))
            t.start()
            threads.append(t)
            time.sleep(0.02)  # arrive one after another while the copy is busy
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]


def _take_and_record(pool: FairPool, order: list[int], i: int) -> None:
    with pool.take():
        order.append(i)


def test_blazepose_pool_reads_the_same_pose_as_one_interpreter(squat_clip):
    av = pytest.importorskip("av")
    from realtime.pose.blazepose import BlazePoseEstimator, BlazePoseModels, BlazePosePool

    with av.open(str(squat_clip)) as container:
        frames = [f.to_ndarray(format="bgr24") for _, f in zip(range(8), container.decode(video=0), strict=False)]
    single = BlazePoseEstimator(models=BlazePoseModels("full", 1))
    pooled = BlazePoseEstimator(models=BlazePosePool("full", copies=2, num_threads=1))
    for image in frames:
        a, b = single.estimate(image), pooled.estimate(image)
        assert (a.keypoints is None) == (b.keypoints is None)
        if a.keypoints is not None:
            np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
    single.close()
    pooled.close()
