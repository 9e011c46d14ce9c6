import asyncio
import threading

import pytest

from nerfconf.pipeline.fifo import AsyncDropOldest, DropOldest


def test_a_full_fifo_drops_its_oldest_items_and_counts_them():
    q = DropOldest(2)
    for i in range(5):
        q.put(i)
    assert q.dropped == 3
    assert [q.get(0), q.get(0)] == [3, 4]
    assert q.get(0.01) is None


def test_a_closed_fifo_drains_then_returns_none_and_wakes_waiters():
    q = DropOldest(4)
    got = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    q.close()
    t.join(2)
    assert got == [None]
    q.put(1)  # ignored once closed
    assert q.get(0) is None


def test_fifo_needs_room():
    with pytest.raises(ValueError):
        DropOldest(0)


def test_async_fifo_takes_items_from_threads_and_drops_the_oldest():
    async def main():
        q = AsyncDropOldest(2)
        t = threading.Thread(target=lambda: [q.put_threadsafe(i) for i in range(4)] + [q.put_threadsafe(None)])
        t.start()
        t.join()
        await asyncio.sleep(0.01)
        items = []
        while (x := await q.get()) is not None:
            items.append(x)
        return items, q.dropped

    items, dropped = asyncio.run(main())
    assert items == [2, 3] and dropped == 2
