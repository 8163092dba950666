"""Streams from @remote generator methods: items as yielded, break, empty, errors, final value."""

from __future__ import annotations

import asyncio

import pulsing as pul
import pytest
from pulsing.exceptions import PulsingActorError, PulsingBusinessError


@pul.remote
class Streamer:
    def __init__(self):
        self.closed = asyncio.Event()
        self.sync_closed = False
        self.produced = 0
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    def count(self, n):
        yield from range(n)
        return "done"

    async def acount(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield {"i": i}

    def empty(self):
        return
        yield  # pragma: no cover

    async def aempty(self):
        return
        yield  # pragma: no cover

    async def gated(self):
        # Item 1 is only produced once the caller has seen item 0: proves items arrive as
        # they are yielded, not at the end.
        yield 0
        await asyncio.wait_for(self.gate.wait(), 10)
        yield 1

    def open_gate(self):
        self.gate.set()

    async def endless(self):
        try:
            i = 0
            while True:
                self.produced = i
                yield i
                i += 1
                await asyncio.sleep(0)
        finally:
            self.closed.set()

    def sync_endless(self):
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            self.sync_closed = True

    async def was_closed(self):
        await asyncio.wait_for(self.closed.wait(), 10)
        return True

    def sync_was_closed(self):
        return self.sync_closed

    def fail_after(self, n):
        yield from range(n)
        raise ValueError(f"failed after {n}")

    async def afail_after(self, n):
        for i in range(n):
            yield i
        raise RuntimeError(f"async failed after {n}")

    def mutable_items(self):
        self.items = [[0]]
        yield self.items[0]

    def item_state(self):
        return self.items

    def ping(self):
        return "pong"


@pytest.fixture
async def s():
    await pul.init()
    yield await Streamer.spawn()
    await pul.shutdown()


async def test_sync_generator_items(s):
    assert [x async for x in s.count(5)] == [0, 1, 2, 3, 4]


async def test_async_generator_items(s):
    assert [x async for x in s.acount(3)] == [{"i": 0}, {"i": 1}, {"i": 2}]


async def test_items_arrive_as_yielded(s):
    it = s.gated().__aiter__()
    assert await asyncio.wait_for(it.__anext__(), 5) == 0
    await s.open_gate()
    assert await asyncio.wait_for(it.__anext__(), 5) == 1
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


async def test_empty_generators(s):
    assert [x async for x in s.empty()] == []
    assert [x async for x in s.aempty()] == []


async def test_await_generator_method(s):
    # A plain generator method awaited gives an async iterator over its items (as the original
    # Pulsing: `async for x in await proxy.gen()`); so does an untyped proxy on a local actor.
    it = await s.count(3)
    assert [x async for x in it] == [0, 1, 2]
    assert [x async for x in await s.as_any().count(2)] == [0, 1]
    # the await opens the stream: the call takes its place in the mailbox there
    early = await s.count(2)
    await s.ping()
    assert [x async for x in early] == [0, 1]
    # an async generator awaited is consumed (it has no return value)
    assert await s.acount(2) is None


async def test_early_break_closes_async_generator(s):
    async for x in s.endless():
        if x == 3:
            break
    assert await s.was_closed() is True
    assert await s.ping() == "pong"


async def test_early_break_closes_sync_generator(s):
    async for x in s.sync_endless():
        if x == 10:
            break
    for _ in range(20):
        if await s.sync_was_closed():
            break
        await asyncio.sleep(0.01)
    assert await s.sync_was_closed() is True


async def test_error_after_items(s):
    got = []
    with pytest.raises(PulsingBusinessError, match="failed after 2"):
        async for x in s.fail_after(2):
            got.append(x)
    assert got == [0, 1]
    got = []
    with pytest.raises(PulsingActorError, match="async failed after 3"):
        async for x in s.afail_after(3):
            got.append(x)
    assert got == [0, 1, 2]
    assert await s.ping() == "pong"


async def test_error_before_any_item(s):
    with pytest.raises(PulsingBusinessError):
        async for _ in s.fail_after(0):
            pass


async def test_stream_items_are_copies(s):
    async for item in s.mutable_items():
        item.append(1)
    assert await s.item_state() == [[0]]


async def test_many_concurrent_streams(s):
    async def collect(n):
        return [x async for x in s.count(n)]

    results = await asyncio.gather(*(collect(i) for i in range(30)))
    assert results == [list(range(i)) for i in range(30)]


async def test_iterating_a_plain_method_gives_one_item(s):
    u = s.as_any()
    assert [x async for x in u.ping()] == ["pong"]


async def test_untyped_proxy_streams(s):
    u = s.as_any()
    assert [x async for x in u.count(3)] == [0, 1, 2]
    assert [x async for x in await u.count(1)] == [0]


async def test_stream_from_resolved_proxy():
    await pul.init()
    await Streamer.spawn(name="st")
    p = await pul.resolve("st")
    assert [x async for x in p.acount(2)] == [{"i": 0}, {"i": 1}]
    typed = await Streamer.resolve("st")
    assert [x async for x in typed.count(2)] == [0, 1]
    await pul.shutdown()
