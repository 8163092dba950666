"""Membership as the Python API shows it: a graceful shutdown leaves every view (and its names
leave the registry), a new node joins through any member."""

from __future__ import annotations

import asyncio

import pulsing as pul
import pytest
from cluster_util import alive_view, cluster, eventually, node
from pulsing.exceptions import PulsingRuntimeError


@pul.remote
class Box:
    def __init__(self) -> None:
        self.v = 0

    def get(self) -> int:
        return self.v


async def test_graceful_shutdown_leaves_the_views():
    async with cluster(3) as (a, b, c):
        await Box.spawn(system=c, name="box")
        await eventually(lambda: _resolvable(a, "box"), what="the name of c to reach a")
        c_id = c.node_id.id
        await c.shutdown()

        async def gone_from(s):
            view = await alive_view(s)
            return view.get(c_id, "absent") in ("Dead", "absent")

        await eventually(lambda: gone_from(a), what="a to see c gone")
        await eventually(lambda: gone_from(b), what="b to see c gone")
        left = [m for m in await a.members() if m["node_id"] == str(c_id)]
        assert not left or left[0]["left"] is True  # a graceful leave, not a failure
        with pytest.raises(PulsingRuntimeError):
            await a.resolve("box", timeout=0.2)
        assert not [n for n in await a.all_named_actors() if n["node_id"] == str(c_id)]


async def test_join_through_any_member():
    async with cluster(2) as (a, b):
        c = await node(seeds=[b.addr])  # b, not the first node
        try:
            await eventually(
                lambda: _sees(a, c.node_id.id), what="a to learn about c through gossip"
            )
            await Box.spawn(system=a, name="abox")
            p = await Box.resolve("abox", system=c, timeout=20)
            assert await p.get() == 0
        finally:
            await c.shutdown()


async def test_seed_that_never_answers_does_not_block_forever():
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    # port 1 on loopback refuses connections: init waits a bounded time, then returns
    s = await asyncio.wait_for(node(seeds=["127.0.0.1:1"]), 30)
    try:
        assert loop.time() - t0 < 30
        view = await alive_view(s)
        assert view == {s.node_id.id: "Alive"}
    finally:
        await s.shutdown()


async def _resolvable(system, name) -> bool:
    return any(n["name"] == f"actors/{name}" for n in await system.all_named_actors())


async def _sees(system, node_id) -> bool:
    return (await alive_view(system)).get(node_id) == "Alive"


async def test_head_node_mode():
    from cluster_util import TOLERANT, converged

    head = await pul.actor_system(addr="127.0.0.1:0", is_head_node=True, timing=TOLERANT)
    workers = []
    try:
        for _ in range(2):
            workers.append(
                await pul.actor_system(addr="127.0.0.1:0", head_addr=head.addr, timing=TOLERANT)
            )
        everyone = [head, *workers]
        await eventually(lambda: converged(everyone), what="head and workers to converge")
        await Box.spawn(system=workers[0], name="hbox")
        p = await Box.resolve("hbox", system=workers[1], timeout=20)
        assert not p.ref.is_local() and await p.get() == 0
    finally:
        for s in reversed(workers):
            await s.shutdown()
        await head.shutdown()
