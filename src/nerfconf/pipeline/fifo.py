"""Bounded FIFOs between stages that drop the oldest item when full.

A call must not build latency when a stage falls behind: the stale frame is
worth less than the new one, so it goes, and the drop is counted.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldest(Generic[T]):
    """Thread-safe; ``get`` returns None once the queue is closed and drained."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("a FIFO needs room for at least one item")
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._items) >= self._maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> T | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if not self._items:
                return None
            return self._items.popleft()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


class AsyncDropOldest(Generic[T]):
    """The asyncio twin, fed from other threads through ``put_threadsafe``."""

    def __init__(self, maxsize: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if maxsize < 1:
            raise ValueError("a FIFO needs room for at least one item")
        self._queue: asyncio.Queue[T | None] = asyncio.Queue()
        self._maxsize = maxsize
        self._loop = loop or asyncio.get_running_loop()
        self.dropped = 0

    def put_nowait(self, item: T | None) -> None:
        """``None`` marks the end of the stream."""
        while item is not None and self._queue.qsize() >= self._maxsize:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    def put_threadsafe(self, item: T | None) -> None:
        self._loop.call_soon_threadsafe(self.put_nowait, item)

    async def get(self) -> T | None:
        return await self._queue.get()
