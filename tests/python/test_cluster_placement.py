"""spawn(placement="remote" | node_id) through the `system/placement` service of another node."""

from __future__ import annotations

import os

import pulsing as pul
import pytest
from cluster_util import cluster, node
from pulsing.core.ids import NodeId
from pulsing.exceptions import PulsingBusinessError, PulsingRuntimeError


@pul.remote
class Worker:
    def __init__(self, start: int, *, label: str = "w") -> None:
        if start < 0:
            raise ValueError("start must be >= 0")
        self.value = start
        self.label = label

    def incr(self, n: int = 1) -> int:
        self.value += n
        return self.value

    def info(self) -> dict:
        return {"label": self.label, "pid": os.getpid(), "value": self.value}

    async def items(self, n: int):
        for i in range(n):
            yield i


def _node_of(system, proxy) -> int:
    return int(system._core.actor_node(proxy.ref.actor_id.id))


async def test_placement_remote_round_robin():
    async with cluster(3) as (a, b, c):
        hosts = []
        for i in range(4):
            w = await Worker.spawn(i, system=a, placement="remote", label=f"w{i}")
            assert not w.ref.is_local()
            assert await w.incr(10) == i + 10
            assert (await w.info())["label"] == f"w{i}"
            assert [x async for x in w.items(3)] == [0, 1, 2]
            hosts.append(_node_of(a, w))
        others = {b.node_id.id, c.node_id.id}
        assert set(hosts) == others  # round-robin over the other Alive members
        assert a.node_id.id not in hosts


async def test_placement_on_a_node_with_a_name():
    async with cluster(3) as (a, _b, c):
        w = await Worker.spawn(5, system=a, name="placed", placement=c.node_id)
        assert _node_of(a, w) == c.node_id.id
        # it is a named actor of node c: resolvable from c on its local fast path
        local = await Worker.resolve("placed", system=c, timeout=5)
        assert local.ref.is_local() and await local.incr() == 6
        # by the id form members() reports
        m = next(m for m in await a.members() if m["node_id"] == str(c.node_id.id))
        w2 = await Worker.spawn(1, system=a, placement=m["node_id"])
        assert _node_of(a, w2) == c.node_id.id
        # placement on this node is a local spawn
        w3 = await Worker.spawn(1, system=a, placement=a.node_id)
        assert w3.ref.is_local()
        # the name is taken on c now: a typed, clear error
        with pytest.raises(PulsingRuntimeError, match="already exists"):
            await Worker.spawn(0, system=a, name="placed", placement=c.node_id)


async def test_placement_errors_come_back_typed():
    async with cluster(2) as (a, b):
        with pytest.raises(PulsingBusinessError) as ei:  # the constructor rejected its args
            await Worker.spawn(-1, system=a, placement=b.node_id)
        assert ei.value.code == 400 and "start must be >= 0" in ei.value.message
        with pytest.raises(PulsingBusinessError):
            await Worker.spawn(system=a, placement=b.node_id)  # missing argument: TypeError

        @pul.remote
        class NotImportable:  # defined in a function: no node can import it by name
            def ping(self):
                return "pong"

        with pytest.raises(PulsingRuntimeError, match="cannot import"):
            await NotImportable.spawn(system=a, placement="remote")
        with pytest.raises(PulsingRuntimeError, match="not an Alive member"):
            await Worker.spawn(1, system=a, placement=NodeId(12345))
        with pytest.raises(ValueError):
            await Worker.spawn(1, system=a, placement="elsewhere")


async def test_placement_remote_without_peers_fails_clearly():
    alone = await node()
    try:
        with pytest.raises(PulsingRuntimeError, match="no other Alive member"):
            await Worker.spawn(1, system=alone, placement="remote")
    finally:
        await alone.shutdown()
