"""Connect, the out-of-cluster client: address validation, calls through a gateway to actors on
any node (replies, streams, typed errors, cancellation), spawn, refresh_gateways, and moving on
when the gateway in use dies. The cluster is in-process (cluster_util), on loopback."""

from __future__ import annotations

import asyncio
import contextlib

import pulsing as pul
import pytest
from cluster_util import cluster, eventually
from pulsing.connect import Connect
from pulsing.exceptions import PulsingBusinessError, PulsingRuntimeError


@pytest.mark.parametrize("addr", ["localhost", "host:", ":8000", "h:0", "h:70000", "h:port", ""])
async def test_bad_address(addr):
    with pytest.raises(ValueError, match="host:port"):
        await Connect.to(addr)


async def test_bad_address_types():
    with pytest.raises(ValueError):
        await Connect.to([])
    with pytest.raises(TypeError):
        await Connect.to([8000])  # type: ignore[list-item]


@pytest.mark.parametrize("addr", ["127.0.0.1:1", ["127.0.0.1:1", "[::1]:2"]])
async def test_unreachable_gateway_raises(addr):
    with pytest.raises(PulsingRuntimeError, match="gateway"):
        await Connect.to(addr)


async def test_methods_exist_with_their_signatures():
    for name in ("to", "resolve", "spawn", "refresh_gateways", "close"):
        assert callable(getattr(Connect, name))
        assert getattr(Connect, name).__doc__


@pul.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def incr(self, k: int = 1) -> int:
        self.n += k
        return self.n

    async def tokens(self, n: int):
        for i in range(n):
            yield f"t{i}"
        raise ValueError("end of tokens")

    def fail(self) -> None:
        raise PulsingBusinessError(42, "nope", details="why")

    async def slow(self, s: float) -> str:
        try:
            await asyncio.sleep(s)
        except asyncio.CancelledError:
            self.n = -1
            raise
        return "done"

    def value(self) -> int:
        return self.n

    def countdown(self, n: int):
        yield from range(n, 0, -1)


@contextlib.asynccontextmanager
async def connected(addrs):
    conn = await Connect.to(addrs)
    try:
        yield conn
    finally:
        await conn.close()


async def test_calls_through_a_gateway_reach_any_node():
    async with cluster(3) as (gw, b, c):
        await Counter.spawn(system=c, name="counter", start=10)
        await eventually(lambda: gw.all_named_actors(), what="the name to reach the gateway")
        async with connected(gw.addr) as conn:
            assert conn.gateways == [gw.addr]
            typed = await conn.resolve("counter", cls=Counter)
            assert await typed.incr(5) == 15
            with pytest.raises(AttributeError):
                typed.nope  # noqa: B018 - typed proxies reject unknown names at once
            untyped = await conn.resolve("counter")
            assert await untyped.incr() == 16
            # Stream: items before the error arrive, then the error, typed.
            got = []
            with pytest.raises(pul.PulsingActorError, match="end of tokens"):
                async for t in typed.tokens(3):
                    got.append(t)
            assert got == ["t0", "t1", "t2"]
            with pytest.raises(PulsingBusinessError) as ei:
                await typed.fail()
            assert (ei.value.code, ei.value.message, ei.value.details) == (42, "nope", "why")
            # The actor survived its errors.
            assert await typed.value() == 16
            # A plain generator method awaited gives its items, typed or not.
            assert [x async for x in await typed.countdown(3)] == [3, 2, 1]
            assert [x async for x in await untyped.countdown(2)] == [2, 1]


async def test_cancel_through_a_gateway_cancels_the_remote_call():
    async with cluster(2) as (gw, b):
        await Counter.spawn(system=b, name="slowpoke")
        await eventually(lambda: gw.all_named_actors(), what="the name to reach the gateway")
        async with connected(gw.addr) as conn:
            p = await conn.resolve("slowpoke", cls=Counter)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(p.slow(30), 0.3)
            await eventually(lambda: p.value(), what="the remote call to be cancelled")
            assert await p.value() == -1


async def test_missing_name_and_spawn_errors():
    async with cluster(2) as (gw, b):
        async with connected(gw.addr) as conn:
            with pytest.raises(PulsingRuntimeError, match="not found"):
                await conn.resolve("nobody", timeout=0.2)
            made = await conn.spawn(Counter, 100, name="made")
            assert await made.incr() == 101
            again = await conn.resolve("made", cls=Counter)
            assert await again.value() == 101
            with pytest.raises(PulsingRuntimeError, match="cannot import"):
                await conn.spawn(_Local, name="x")
            with pytest.raises(TypeError):
                await conn.spawn(42)  # type: ignore[arg-type]


async def test_refresh_gateways_and_moving_on_when_the_gateway_dies():
    async with cluster(3) as (gw, b, c):
        await Counter.spawn(system=c, name="counter")
        await eventually(lambda: gw.all_named_actors(), what="the name to reach the gateway")
        async with connected(gw.addr) as conn:
            gateways = await conn.refresh_gateways()
            assert gateways[0] == gw.addr
            assert sorted(gateways) == sorted([gw.addr, b.addr, c.addr])
            p = await conn.resolve("counter", cls=Counter)
            assert await p.incr() == 1
            await gw.shutdown()
            await eventually(lambda: conn.gateways[0] != gw.addr, what="the client to move on")
            assert conn.gateways[0] in (b.addr, c.addr)
            # The proxy made through the dead gateway works through the new one.
            assert await eventually(lambda: _try(p.incr()), what="a call through the new gateway")
            p2 = await conn.resolve("counter", cls=Counter)
            assert await p2.value() >= 2


async def test_unreachable_gateways_in_a_list_are_skipped():
    async with cluster(1) as (gw,):
        async with connected(["127.0.0.1:1", gw.addr]) as conn:
            assert conn.gateways[0] == gw.addr
            await conn.refresh_gateways()


async def test_close_is_idempotent_and_final():
    async with cluster(1) as (gw,):
        conn = await Connect.to(gw.addr)
        await conn.close()
        await conn.close()
        with pytest.raises(PulsingRuntimeError, match="closed"):
            await conn.resolve("x")


async def _try(coro):
    try:
        return await coro
    except PulsingRuntimeError:
        return None


def _make_local():
    class _Local:  # defined in a function: not importable by qualname on the gateway
        pass

    return _Local


_Local = _make_local()
