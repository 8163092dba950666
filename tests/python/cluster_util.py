"""Helpers for the in-process cluster tests: several systems on the test's loop.

Every node binds 127.0.0.1 with port 0 and is shut down by the fixture, whatever the test did.
Conditions are polled with generous limits: the tests assert behaviour, never speed.
"""

from __future__ import annotations

import asyncio
import contextlib

import pulsing as pul

# Membership timings (docs/design/membership.md). Most tests are not about failure detection, and
# on a loaded machine (load average 40-150 on 2 vCPUs, other builds running) a process can go
# unscheduled for a second or more: with 100 ms probes and a 300 ms suspicion its peers declared
# it Dead, dropping its routes and names, and calls failed with "i/o error" or "actor not found".
# So the default profile tolerates a starved process: memberlist's LAN probe pair and a long
# suspicion (a peer must be silent for ~7 s to be declared Dead), with fast dissemination so that
# joins and names still converge quickly (gossip and push-pull judge nobody).
TOLERANT = {
    "probe_interval_ms": 1000,
    "probe_timeout_ms": 500,
    "gossip_interval_ms": 30,
    "suspicion_mult": 6,
    "push_pull_interval_ms": 500,
    "join_retry_ms": 50,
    "dead_reclaim_ms": 60_000,
    "heartbeat_interval_ms": 100,
    "heartbeat_timeout_ms": 10_000,
}
# Short timings, for tests about detecting a dead node: failures are noticed in well under a
# second on an idle machine. Such tests assert with generous deadlines, never on speed.
FAST = {
    "probe_interval_ms": 100,
    "probe_timeout_ms": 50,
    "gossip_interval_ms": 30,
    "suspicion_mult": 3,
    "push_pull_interval_ms": 500,
    "join_retry_ms": 50,
    "dead_reclaim_ms": 60_000,
    "heartbeat_interval_ms": 100,
    "heartbeat_timeout_ms": 1000,
}
CONVERGE_S = 20.0


async def node(seeds=(), timing=None, **kw):
    """One more node of the test cluster, on the running loop (TOLERANT timings by default)."""
    timing = TOLERANT if timing is None else timing
    return await pul.actor_system(addr="127.0.0.1:0", seeds=list(seeds), timing=timing, **kw)


async def eventually(pred, timeout: float = CONVERGE_S, what: str = "condition"):
    """Poll `pred` (sync or async) until it returns a truthy value; that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while True:
        r = pred()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return r
        last = r
        if loop.time() >= deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.02)


async def alive_view(system) -> dict[int, str]:
    return {int(m["node_id"]): m["status"] for m in await system.members()}


async def converged(systems) -> bool:
    ids = {s.node_id.id for s in systems}
    for s in systems:
        view = await alive_view(s)
        if {n for n, st in view.items() if st == "Alive"} != ids:
            return False
    return True


@contextlib.asynccontextmanager
async def cluster(n: int, timing=None):
    """`n` nodes joined into one cluster (the first is everyone's seed), shut down at the end,
    also when the test fails."""
    systems = []
    try:
        first = await node(timing=timing)
        systems.append(first)
        for _ in range(n - 1):
            systems.append(await node(seeds=[first.addr], timing=timing))
        await eventually(lambda: converged(systems), what=f"{n} nodes to converge")
        yield systems
    finally:
        for s in reversed(systems):
            with contextlib.suppress(Exception):
                await s.shutdown()
