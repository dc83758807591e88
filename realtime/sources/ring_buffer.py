"""A bounded, thread-safe FIFO between one producer (capture) and one or more consumers.

Two policies: ``BLOCK`` makes the producer wait for space (files: every frame matters), ``DROP_OLDEST`` evicts the
oldest item so the consumer always sees the freshest frames (cameras/streams: never build a backlog).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from enum import Enum
from typing import Generic, TypeVar

T = TypeVar("T")


class DropPolicy(Enum):
    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"


class RingBuffer(Generic[T]):
    """Bounded queue with a drop policy; ``close()`` wakes every waiter, ``get`` drains what is left."""

    def __init__(self, capacity: int, policy: DropPolicy = DropPolicy.BLOCK) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = int(capacity)
        self._policy = DropPolicy(policy)
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._dropped = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def policy(self) -> DropPolicy:
        return self._policy

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        """Items evicted by ``DROP_OLDEST`` (``BLOCK`` never drops)."""
        return self._dropped

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add ``item``; False when the buffer is closed or (``BLOCK``) no space came within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._policy is DropPolicy.BLOCK:
                while not self._closed and len(self._items) >= self._capacity:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            if self._closed:
                return False
            if len(self._items) >= self._capacity:  # DROP_OLDEST only: BLOCK waited above
                self._items.popleft()
                self._dropped += 1
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """Oldest item; None when nothing came within ``timeout`` or the buffer is closed and drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()  # wake a producer blocked on a full buffer
            return item

    def clear(self) -> int:
        """Discard everything queued (not counted as drops); returns how many items were removed."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._cond.notify_all()
            return n

    def close(self) -> None:
        """No more puts; wakes blocked producers and consumers. Items already queued can still be read."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
