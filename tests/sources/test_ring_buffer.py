"""RingBuffer: bounded FIFO with BLOCK / DROP_OLDEST policies, close() semantics, real producer/consumer threads."""

from __future__ import annotations

import threading
import time

import pytest

from realtime.sources.ring_buffer import DropPolicy, RingBuffer


def test_capacity_and_fifo_order():
    rb: RingBuffer[int] = RingBuffer(3, DropPolicy.BLOCK)
    assert rb.capacity == 3 and len(rb) == 0 and not rb.closed
    for i in range(3):
        assert rb.put(i, timeout=0)
    assert len(rb) == 3
    assert rb.put(99, timeout=0.05) is False  # full: BLOCK times out instead of growing
    assert [rb.get(0) for _ in range(3)] == [0, 1, 2]
    assert rb.get(timeout=0.01) is None
    assert rb.dropped == 0


def test_invalid_capacity():
    with pytest.raises(ValueError):
        RingBuffer(0, DropPolicy.BLOCK)


def test_drop_oldest_keeps_newest_and_counts():
    rb: RingBuffer[int] = RingBuffer(3, DropPolicy.DROP_OLDEST)
    for i in range(10):
        assert rb.put(i)  # never blocks, never refuses while open
    assert len(rb) == 3 and rb.dropped == 7
    assert [rb.get(0) for _ in range(3)] == [7, 8, 9]


def _run_pair(rb: RingBuffer[int], n: int, consumer_delay: float) -> list[int]:
    received: list[int] = []

    def consume() -> None:
        while True:
            item = rb.get(timeout=1.0)
            if item is None:
                if rb.closed:
                    return
                continue
            received.append(item)
            time.sleep(consumer_delay)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(n):
        assert rb.put(i)
    rb.close()
    consumer.join(10)
    assert not consumer.is_alive()
    return received


def test_drop_oldest_with_slow_consumer():
    rb: RingBuffer[int] = RingBuffer(4, DropPolicy.DROP_OLDEST)
    received = _run_pair(rb, 300, consumer_delay=0.002)
    assert rb.dropped > 0
    assert len(received) + rb.dropped == 300  # every item either delivered or counted as dropped
    assert received == sorted(set(received))  # order kept, no duplicates
    assert received[-1] == 299  # the freshest item always gets through


def test_block_never_drops_with_slow_consumer():
    rb: RingBuffer[int] = RingBuffer(2, DropPolicy.BLOCK)
    received = _run_pair(rb, 100, consumer_delay=0.001)
    assert received == list(range(100))
    assert rb.dropped == 0


def test_close_wakes_blocked_get():
    rb: RingBuffer[int] = RingBuffer(2, DropPolicy.BLOCK)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(rb.get(timeout=None)))
    t.start()
    time.sleep(0.1)
    assert t.is_alive()  # really blocked
    t0 = time.monotonic()
    rb.close()
    t.join(2)
    assert not t.is_alive() and time.monotonic() - t0 < 1.0
    assert result == [None]


def test_close_wakes_blocked_put():
    rb: RingBuffer[int] = RingBuffer(1, DropPolicy.BLOCK)
    assert rb.put(1)
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(rb.put(2, timeout=None)))
    t.start()
    time.sleep(0.1)
    assert t.is_alive()
    rb.close()
    t.join(2)
    assert not t.is_alive()
    assert result == [False]


def test_closed_buffer_drains_then_returns_none():
    rb: RingBuffer[int] = RingBuffer(3, DropPolicy.DROP_OLDEST)
    rb.put(1)
    rb.put(2)
    rb.close()
    assert rb.put(3) is False
    assert rb.get(timeout=None) == 1 and rb.get(timeout=None) == 2
    assert rb.get(timeout=None) is None  # closed and drained: no hang even without a timeout


def test_clear_wakes_producer():
    rb: RingBuffer[int] = RingBuffer(1, DropPolicy.BLOCK)
    rb.put(1)
    t = threading.Thread(target=lambda: rb.put(2, timeout=2))
    t.start()
    time.sleep(0.05)
    assert rb.clear() == 1
    t.join(2)
    assert not t.is_alive() and rb.get(0) == 2 and rb.dropped == 0


def test_many_threads_shut_down_on_close():
    rb: RingBuffer[int] = RingBuffer(2, DropPolicy.BLOCK)
    threads = [threading.Thread(target=rb.get, kwargs={"timeout": None}) for _ in range(3)]
    threads += [threading.Thread(target=rb.put, args=(i,), kwargs={"timeout": None}) for i in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    rb.close()
    for t in threads:
        t.join(2)
    assert not any(t.is_alive() for t in threads)
