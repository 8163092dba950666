"""Backpressure of remote streams reaches the Python consumer: a slow `async for` over a fast
remote generator holds the generator on the other node (docs/design/python-runtime.md,
"Streams through the core"), then everything arrives in order; break while held frees it."""

from __future__ import annotations

import asyncio

import pulsing as pul
from cluster_util import cluster, eventually

# Both nodes live in this process, so the producer's counters are plain module globals.
YIELDED = 0
CLOSED = 0
SIZE = 128 * 1024  # 128 items fill one 16 MiB HTTP/2 stream window


@pul.remote
class Producer:
    async def produce(self, n: int):
        global YIELDED, CLOSED
        try:
            for i in range(n):
                YIELDED += 1
                yield i, bytes(SIZE)
        finally:
            CLOSED += 1


async def settled() -> int:
    """YIELDED once it stops moving for half a second (generous polling, not a timing test)."""
    last, still = -1, 0
    for _ in range(200):
        await asyncio.sleep(0.1)
        if YIELDED == last:
            still += 1
            if still >= 5:
                break
        else:
            last, still = YIELDED, 0
    return YIELDED


async def test_slow_consumer_holds_remote_producer():
    global YIELDED
    n = 800
    async with cluster(2) as (a, b):
        await Producer.spawn(system=b, name="producer")
        p = await Producer.resolve("producer", system=a, timeout=20)
        YIELDED = 0
        got = []
        async for i, data in p.produce(n):
            assert len(data) == SIZE
            got.append(i)
            if i == 2:
                # The consumer has taken 3 items and stops: the producer must be held.
                held = await settled()
                assert held < 500, held
            elif i % 50 == 0:
                await asyncio.sleep(0.01)
        assert got == list(range(n))
        assert YIELDED == n


async def test_break_while_held_frees_the_producer():
    global YIELDED
    async with cluster(2) as (a, b):
        await Producer.spawn(system=b, name="producer")
        p = await Producer.resolve("producer", system=a, timeout=20)
        YIELDED = 0
        before = CLOSED
        async for i, _ in p.produce(100_000):
            if i == 1:
                held = await settled()
                assert held < 500, held
                break
        await eventually(lambda: CLOSED > before, 20, "the held generator to be closed")
        assert YIELDED < 1000


async def test_consumer_shutdown_while_held_frees_the_producer():
    global YIELDED
    async with cluster(2) as (a, b):
        await Producer.spawn(system=b, name="producer")
        p = await Producer.resolve("producer", system=a, timeout=20)
        YIELDED = 0
        before = CLOSED
        it = p.produce(100_000).__aiter__()
        await it.__anext__()
        held = await settled()
        assert held < 500, held
        await a.shutdown()  # the consumer's node goes while the producer is held
        await eventually(lambda: CLOSED > before, 20, "the held generator to be closed")
        assert YIELDED < 1000
