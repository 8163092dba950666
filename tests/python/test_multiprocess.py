"""A cluster of real processes on 127.0.0.1 (port 0): three to five `cluster_node.py` processes,
plus this test process as one more member where a test needs to call in.

Join through seeds, resolve and call across nodes, streams, typed errors, cancellation,
placement, kill -9 of a node, graceful leave, head-node mode, a garbage-sending peer and a 64 MiB
payload. Assertions are on behaviour only, never on speed; where membership must converge the
tests poll with generous deadlines. Every node process is killed at teardown (its whole process
group), even when the test fails, and the fixture checks that none is left.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct
import time

import pulsing as pul
import pytest
from cluster_actors import Counter, Echo, Failer, Relay, Streamer
from cluster_harness import Cluster, Node, statuses
from cluster_node import FAST_TIMING, TOLERANT_TIMING, timing_kwargs
from pulsing import NodeId
from pulsing.exceptions import (
    PulsingActorError,
    PulsingBusinessError,
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
)

pytestmark = pytest.mark.timeout(180)

CONVERGE = 30.0  # seconds allowed for membership to converge (defaults detect in ~5-25 s)


def _closed_cluster(c: Cluster):
    try:
        yield c
    finally:
        pids = [n.pid for n in c.nodes]
        c.close()
        for pid in pids:  # no node outlives its test
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


@pytest.fixture
def cluster():
    """Nodes with timings that tolerate a starved process (tests not about failure detection):
    on a loaded machine, short timings declared live nodes Dead and calls failed."""
    yield from _closed_cluster(Cluster(tolerant=True))


@pytest.fixture
def fast_cluster():
    """Nodes with short timings, for the tests about detecting a dead node."""
    yield from _closed_cluster(Cluster())


async def start(cluster: Cluster, n: int, **kw) -> list[Node]:
    """Start n nodes without blocking the test's event loop while they boot."""
    return await asyncio.to_thread(cluster.start, n, **kw)


async def join(nodes: list[Node], timing: dict = TOLERANT_TIMING, **kw) -> pul.ActorSystem:
    """This test process as a member of the cluster, seeded with the nodes' addresses, with the
    timings of the nodes' cluster (TOLERANT_TIMING, or FAST_TIMING for a fast_cluster)."""
    kw.update(timing_kwargs(pul.actor_system, timing))
    return await pul.actor_system(addr="127.0.0.1:0", seeds=[n.addr for n in nodes], **kw)


def nid(x) -> int:
    return int(NodeId(x))


async def eventually(fn, timeout: float = CONVERGE, what: str = "condition", interval=0.1):
    """Await fn() (a coroutine function or plain function) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if asyncio.iscoroutine(last):
                last = await last
        except Exception as e:  # noqa: BLE001 - keep polling, report the last failure
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)


async def node_view(node: Node) -> dict[int, str]:
    """{node_id: status} as `node` sees the cluster (asked on its stdin)."""
    return statuses(await asyncio.to_thread(node.members))


async def system_view(system) -> dict[int, str]:
    return statuses(await system.members())


def all_alive(view: dict[int, str], ids) -> bool:
    return all(view.get(i) == "Alive" for i in ids)


def gone(view: dict[int, str], node_id: int, accept=("Dead",)) -> bool:
    """The member is reported Dead (or, for a leave, Left; absent once reclaimed)."""
    return view.get(node_id, "absent") in (*accept, "absent")


# ---- join, resolve, call ------------------------------------------------------------------------


async def test_join_through_seeds(cluster):
    nodes = await start(cluster, 3)
    ids = [n.node_id for n in nodes]
    for node in nodes:
        assert node.addr.startswith("127.0.0.1:") and not node.addr.endswith(":0")
    for node in nodes:
        await eventually(lambda node=node: _alive_in(node, ids), what=f"{node.label} sees all")
    system = await join(nodes[:1])
    try:
        assert system.addr.startswith("127.0.0.1:") and not system.addr.endswith(":0")
        everyone = [*ids, nid(system.node_id)]
        await eventually(lambda: _sys_alive(system, everyone), what="the test member sees all")
        # the others learn about the newcomer by gossip, not only the seed it joined through
        await eventually(lambda: _alive_in(nodes[2], everyone), what="node2 sees the newcomer")
        members = await system.members()
        assert {"node_id", "addr", "status"} <= set(members[0])
        addrs = {nid(m["node_id"]): m["addr"] for m in members}
        assert all(addrs[n.node_id] == n.addr for n in nodes)
    finally:
        await system.shutdown()


async def _alive_in(node: Node, ids) -> bool:
    return all_alive(await node_view(node), ids)


async def _sys_alive(system, ids) -> bool:
    return all_alive(await system_view(system), ids)


async def test_seeds_by_host_name(cluster):
    """A seed given by host name is looked up off the core thread; one that cannot resolve
    (RFC 2606 .invalid) is logged with its name and the reason and does not stop the join."""
    seed = await asyncio.to_thread(cluster.start_node, label="seed")
    port = seed.addr.rsplit(":", 1)[1]
    node = await asyncio.to_thread(
        cluster.start_node, seeds=["no-such-host.invalid:1", f"localhost:{port}"], label="named"
    )
    ids = [seed.node_id, node.node_id]
    await eventually(lambda: _alive_in(node, ids), what="joined through localhost")
    await eventually(lambda: _alive_in(seed, ids), what="the seed sees it")
    line = await eventually(
        lambda: next((x for x in node.log().splitlines() if "no-such-host.invalid" in x), None),
        what="the failed lookup is logged",
    )
    assert "cannot resolve" in line


async def test_five_nodes_join_through_a_chain_of_seeds(cluster):
    # node i only knows node i-1: everybody must still learn about everybody (gossip).
    first = await asyncio.to_thread(cluster.start_node)
    nodes = [first]
    for _ in range(4):
        nodes.append(await asyncio.to_thread(cluster.start_node, seeds=[nodes[-1].addr]))
    ids = [n.node_id for n in nodes]
    for node in (nodes[0], nodes[4]):
        await eventually(lambda node=node: _alive_in(node, ids), what=f"{node.label} sees 5")


async def test_resolve_and_call_across_nodes(cluster):
    nodes = await start(
        cluster,
        3,
        spawn={
            0: ["Counter:shared"],
            1: ["Counter:counter", "Counter:shared"],
            2: ["Relay:relay", "Counter:shared"],
        },
    )
    system = await join(nodes[:1])
    try:
        counter = await Counter.resolve("counter", system=system, timeout=CONVERGE)
        assert await counter.incr(5) == 5
        assert await counter.incr() == 6
        where = await counter.where()
        assert where["node_id"] == nodes[1].node_id and where["pid"] == nodes[1].pid

        # node-to-node: the relay on node2 calls the counter on node1 (same actor, same state)
        relay = await Relay.resolve("relay", system=system, timeout=CONVERGE)
        assert await relay.call("counter", "incr", 10) == 16
        assert await counter.get() == 16

        # one instance per node; resolve by node id, and round-robin reaches several nodes
        for n in nodes:
            p = await Counter.resolve("shared", system=system, node_id=n.node_id, timeout=CONVERGE)
            assert (await p.where())["node_id"] == n.node_id
        hosts = set()
        for _ in range(12):
            p = await Counter.resolve("shared", system=system, timeout=CONVERGE)
            hosts.add((await p.where())["node_id"])
        assert len(hosts) >= 2, "resolve never picked another instance"

        # the actor's id routes by itself: refer() from the id alone
        ref = await system.refer(str(counter.ref.actor_id))
        assert await Counter.proxy(ref).get() == 16
        assert (await relay.call("counter", "where"))["addr"] == nodes[1].addr

        # a missing name fails once its timeout passes, it does not hang
        with pytest.raises(PulsingRuntimeError):
            await Counter.resolve("no-such-actor", system=system, timeout=1.0)
    finally:
        await system.shutdown()


async def test_pickle_fidelity_across_nodes(cluster):
    nodes = await start(cluster, 3, spawn={1: ["Echo:echo"]})
    system = await join(nodes[:1])
    try:
        echo = await Echo.resolve("echo", system=system, timeout=CONVERGE)
        samples = [
            None,
            0,
            -1,
            2**100,
            1.5,
            "héllo",
            b"\x00\x01",
            (1, (2, 3)),
            [1, [2, [3]]],
            {"a": {1, 2}, 3: frozenset({4})},
            bytearray(b"xyz"),
        ]
        for v in samples:
            got = await echo.echo(v)
            assert got == v and type(got) is type(v)
            assert await echo.aecho(v) == v
        mutable = {"k": [1, 2]}
        got = await echo.echo(mutable)
        got["k"].append(3)
        assert mutable == {"k": [1, 2]}
    finally:
        await system.shutdown()


# ---- streams ----------------------------------------------------------------------------------


async def test_streams_across_nodes(cluster):
    nodes = await start(cluster, 3, spawn={1: ["Streamer:streamer"], 2: ["Relay:relay"]})
    system = await join(nodes[:1])
    try:
        s = await Streamer.resolve("streamer", system=system, timeout=CONVERGE)
        assert [t async for t in s.tokens(20)] == [f"tok{i}" for i in range(20)]
        assert [t async for t in s.sync_tokens(1000)] == list(range(1000))
        assert [t async for t in s.tokens(0)] == []
        # items arrive as they are produced: an endless stream still delivers
        got = []
        async for x in s.endless():
            got.append(x)
            if len(got) == 50:
                break
        assert got == list(range(50))
        # node to node
        relay = await Relay.resolve("relay", system=system, timeout=CONVERGE)
        assert await relay.stream("streamer", "tokens", 5) == [f"tok{i}" for i in range(5)]
        # an error midway arrives after the items yielded before it, typed
        items = []
        with pytest.raises(PulsingBusinessError) as ei:
            async for x in s.fail_after(3):
                items.append(x)
        assert items == [0, 1, 2]
        assert ei.value.code == 400 and "stream failed after 3" in str(ei.value)
        # several streams at once over the same connection
        results = await asyncio.gather(*[_collect(s.tokens(30)) for _ in range(8)])
        assert all(r == [f"tok{i}" for i in range(30)] for r in results)
    finally:
        await system.shutdown()


async def _collect(agen) -> list:
    return [x async for x in agen]


# ---- errors -----------------------------------------------------------------------------------


async def test_typed_errors_across_nodes(cluster):
    nodes = await start(cluster, 3, spawn={1: ["Failer:failer"], 2: ["Relay:relay"]})
    system = await join(nodes[:1])
    try:
        f = await Failer.resolve("failer", system=system, timeout=CONVERGE)

        with pytest.raises(PulsingBusinessError) as ei:
            await f.value_error("bad value")
        assert ei.value.code == 400 and ei.value.message == "bad value"
        assert "bad value" in str(ei.value)

        with pytest.raises(PulsingBusinessError) as ei:
            await f.business()
        assert (ei.value.code, ei.value.message, ei.value.details) == (
            418,
            "I am a teapot",
            "short and stout",
        )
        assert str(ei.value) == "[418] I am a teapot"

        with pytest.raises(PulsingSystemError) as ei:
            await f.system()
        assert ei.value.recoverable is True and "disk on fire" in str(ei.value)
        assert getattr(ei.value, "error_type", "RuntimeError") == "RuntimeError"

        with pytest.raises(PulsingSystemError) as ei:
            await f.custom()
        assert "custom exception type" in str(ei.value)

        with pytest.raises(PulsingTimeoutError) as ei:
            await f.timeout()
        assert isinstance(ei.value, PulsingActorError)

        # the actor survived every error and kept its state
        assert await f.count() == 5

        # the same classes node to node (relay on node2 -> failer on node1)
        relay = await Relay.resolve("relay", system=system, timeout=CONVERGE)
        r = await relay.try_call("failer", "business")
        assert r["error"] == "PulsingBusinessError" and "teapot" in r["message"]
        r = await relay.try_call("failer", "system")
        assert r["error"] == "PulsingSystemError"
        r = await relay.try_call("no-such-actor", "x", timeout=1.0)
        assert r["error"] == "PulsingRuntimeError"
    finally:
        await system.shutdown()


# ---- cancellation -----------------------------------------------------------------------------


async def test_cancellation_across_nodes(cluster):
    nodes = await start(cluster, 3, spawn={1: ["Streamer:streamer"]})
    system = await join(nodes[:1])
    try:
        s = await Streamer.resolve("streamer", system=system, timeout=CONVERGE)
        # a caller that gives up cancels the remote work
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(s.sleep(60), 0.5)
        await eventually(
            lambda: _stat(s, "cancelled", 1), timeout=15, what="remote async call cancelled"
        )
        # task.cancel() too
        task = asyncio.ensure_future(s.sleep(60))
        await eventually(lambda: _stat(s, "started", 2), timeout=15, what="second call started")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually(
            lambda: _stat(s, "cancelled", 2),
            timeout=15,
            what="cancelled task cancels the remote call",
        )

        # a consumer that breaks out of a stream stops the remote producer
        async for x in s.endless():
            if x == 10:
                break
        await eventually(lambda: _stat(s, "closed", 1), timeout=15, what="producer closed")
        before = (await s.stats())["produced"]
        await asyncio.sleep(0.5)
        assert (await s.stats())["produced"] == before, "the producer kept running"
        # and the actor still serves
        assert [t async for t in s.tokens(3)] == ["tok0", "tok1", "tok2"]
    finally:
        await system.shutdown()


async def _stat(proxy, key: str, at_least: int) -> bool:
    return (await proxy.stats())[key] >= at_least


# ---- placement --------------------------------------------------------------------------------


async def test_placement(cluster):
    nodes = await start(cluster, 3, spawn={2: ["Relay:relay"]})
    system = await join(nodes[:1])
    try:
        ids = {n.node_id for n in nodes}
        await eventually(lambda: _sys_alive(system, ids), what="the test member sees all")
        me = nid(system.node_id)

        c = await Counter.spawn(5, system=system, placement="remote")
        where = await c.where()
        assert where["node_id"] != me and where["node_id"] in ids
        assert await c.incr() == 6

        target = nodes[1]
        c1 = await Counter.spawn(100, system=system, name="placed", placement=target.node_id)
        assert (await c1.where())["node_id"] == target.node_id
        assert await c1.incr(1) == 101
        # the placed actor is named cluster-wide: another node finds it
        relay = await Relay.resolve("relay", system=system, timeout=CONVERGE)
        assert await relay.call("placed", "incr", 1, timeout=CONVERGE) == 102

        # placement by the id form that members() reports
        m = next(m for m in await system.members() if nid(m["node_id"]) == nodes[2].node_id)
        c2 = await Streamer.spawn(system=system, placement=m["node_id"])
        assert (await c2.where())["node_id"] == nodes[2].node_id
        assert [t async for t in c2.tokens(2)] == ["tok0", "tok1"]

        with pytest.raises(PulsingRuntimeError):
            await Counter.spawn(system=system, placement=NodeId(12345))
    finally:
        await system.shutdown()


# ---- failures ---------------------------------------------------------------------------------


async def test_kill9_node(fast_cluster):
    cluster = fast_cluster
    nodes = await start(
        cluster,
        4,
        spawn={
            0: ["Relay:relay0"],
            1: ["Counter:victim", "Streamer:vstream", "Counter:both"],
            2: ["Relay:relay2", "Counter:survivor", "Counter:both"],
            3: ["Relay:relay3"],
        },
    )
    victim, survivors = nodes[1], [nodes[0], nodes[2], nodes[3]]
    system = await join(nodes[:1], timing=FAST_TIMING)
    try:
        everyone = [n.node_id for n in nodes]
        await eventually(lambda: _sys_alive(system, everyone), what="converged")
        v = await Counter.resolve("victim", system=system, timeout=CONVERGE)
        vs = await Streamer.resolve("vstream", system=system, timeout=CONVERGE)
        assert await v.incr() == 1
        relay2 = await Relay.resolve("relay2", system=system, timeout=CONVERGE)
        assert (await relay2.try_call("victim", "incr"))["ok"] == 2
        in_flight = asyncio.ensure_future(vs.sleep(120))
        await eventually(lambda: _stat(vs, "started", 1), timeout=15, what="call started")

        victim.kill()

        # the call in flight fails (transport error), it does not hang
        with pytest.raises(PulsingError):
            await asyncio.wait_for(in_flight, CONVERGE)
        # every survivor declares it dead
        for node in survivors:
            await eventually(
                lambda node=node: _dead_in(node, victim.node_id),
                what=f"{node.label} declares the killed node dead",
            )
        await eventually(
            lambda: _sys_dead(system, victim.node_id), what="the test member declares it dead"
        )
        # its names vanish from every view; calls to it fail promptly
        with pytest.raises(PulsingRuntimeError):
            await Counter.resolve("victim", system=system, timeout=1.0)
        r = await relay2.try_call("victim", "incr", timeout=1.0)
        assert r.get("error"), r
        with pytest.raises(PulsingError):
            await asyncio.wait_for(v.incr(), 15)
        # a name with an instance on a survivor resolves to the survivor only
        for _ in range(4):
            b = await Counter.resolve("both", system=system, timeout=5)
            assert (await b.where())["node_id"] == nodes[2].node_id
        # survivors keep working, among themselves too
        relay3 = await Relay.resolve("relay3", system=system, timeout=CONVERGE)
        assert (await relay3.try_call("survivor", "incr"))["ok"] == 1
        s = await Counter.resolve("survivor", system=system, timeout=5)
        assert await s.incr() == 2
        live = [n.node_id for n in survivors]
        for node in survivors:  # (a survivor starved on a loaded machine may have to refute)
            await eventually(
                lambda node=node: _alive_in(node, live), what=f"{node.label} sees survivors"
            )
        c = await Counter.spawn(system=system, placement=nodes[3].node_id)
        assert await c.incr() == 1
    finally:
        await system.shutdown()


async def _dead_in(node: Node, node_id: int) -> bool:
    return gone(await node_view(node), node_id)


async def _sys_dead(system, node_id: int) -> bool:
    return gone(await system_view(system), node_id)


async def test_graceful_leave(cluster):
    nodes = await start(cluster, 3, spawn={1: ["Relay:relay1"], 2: ["Counter:leaver"]})
    ids = [n.node_id for n in nodes]
    for node in nodes[:2]:
        await eventually(lambda node=node: _alive_in(node, ids), what="converged")
    system = await join(nodes[:1])
    try:
        leaver = await Counter.resolve("leaver", system=system, timeout=CONVERGE)
        assert await leaver.incr() == 1

        assert nodes[2].terminate() == 0, nodes[2].log()  # SIGTERM: clean exit

        for node in nodes[:2]:
            await eventually(
                lambda node=node: _left_in(node, nodes[2].node_id),
                what=f"{node.label} sees the node leave",
            )
        await eventually(lambda: _left_sys(system, nodes[2].node_id), what="test member")
        with pytest.raises(PulsingRuntimeError):
            await Counter.resolve("leaver", system=system, timeout=1.0)
        with pytest.raises(PulsingError):
            await asyncio.wait_for(leaver.incr(), 15)
        # the others are unaffected
        relay = await Relay.resolve("relay1", system=system, timeout=5)
        assert (await relay.where())["node_id"] == nodes[1].node_id
        for node in nodes[:2]:
            await eventually(lambda node=node: _alive_in(node, ids[:2]), what="the others")
    finally:
        await system.shutdown()


async def _left_in(node: Node, node_id: int) -> bool:
    return gone(await node_view(node), node_id, accept=("Left", "Dead"))


async def _left_sys(system, node_id: int) -> bool:
    return gone(await system_view(system), node_id, accept=("Left", "Dead"))


# ---- head-node mode ---------------------------------------------------------------------------


async def test_head_node_mode(fast_cluster):
    cluster = fast_cluster
    nodes = await start(cluster, 3, head=True, spawn={1: ["Relay:relay"], 2: ["Counter:counter"]})
    head, ids = nodes[0], [n.node_id for n in nodes]
    await eventually(lambda: _alive_in(head, ids), what="the head sees its workers")
    await eventually(lambda: _alive_in(nodes[1], ids), what="a worker gets the head's view")
    kw = timing_kwargs(pul.init, FAST_TIMING)
    system = await pul.init(addr="127.0.0.1:0", head_addr=head.addr, **kw)
    try:
        c = await Counter.resolve("counter", system=system, timeout=CONVERGE)
        assert await c.incr(3) == 3
        assert (await c.where())["node_id"] == nodes[2].node_id
        relay = await Relay.resolve("relay", system=system, timeout=CONVERGE)
        assert await relay.call("counter", "incr", 1) == 4  # worker to worker, directly

        nodes[2].kill()
        await eventually(lambda: _dead_in(head, nodes[2].node_id), what="head declares it dead")
        await eventually(
            lambda: _dead_in(nodes[1], nodes[2].node_id), what="a worker learns it from the head"
        )
        # this process is a worker too: it learns it with its next heartbeat's answer
        await eventually(lambda: _sys_dead(system, nodes[2].node_id), what="test worker learns it")
        with pytest.raises(PulsingRuntimeError):
            await Counter.resolve("counter", system=system, timeout=1.0)
        assert (await relay.where())["node_id"] == nodes[1].node_id
    finally:
        await pul.shutdown()


def _free_port() -> int:
    """A port the OS says is free now, to restart a node at the same address later."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _status_in(node: Node, node_id: int) -> str:
    return (await node_view(node)).get(node_id, "absent")


async def _named_in(node: Node) -> set[str]:
    answer = await asyncio.to_thread(node.command, "named")
    return {n["name"] for n in answer["named"]}


async def test_head_node_dies_and_returns(fast_cluster):
    """Workers outlive their head: they keep their actors, their view and calls to each other,
    report the head unreachable, and re-register with a head that comes back at the same
    address, whose registry is rebuilt from them."""
    cluster = fast_cluster
    bind = ["--bind", f"127.0.0.1:{_free_port()}"]
    head = await asyncio.to_thread(cluster.start_node, head=True, extra_args=bind, label="head")
    w1 = cluster.spawn_node(head_addr=head.addr, spawn=["Relay:relay"], label="w1")
    w2 = cluster.spawn_node(head_addr=head.addr, spawn=["Counter:counter"], label="w2")
    for w in (w1, w2):
        await asyncio.to_thread(w.wait_ready)
    workers = [w1.node_id, w2.node_id]
    kw = timing_kwargs(pul.actor_system, FAST_TIMING)
    system = await pul.actor_system(addr="127.0.0.1:0", head_addr=head.addr, **kw)
    try:
        me = nid(system.node_id)
        await eventually(lambda: _alive_in(head, [*workers, me]), what="the head sees everyone")
        c = await Counter.resolve("counter", system=system, timeout=CONVERGE)
        relay = await Relay.resolve("relay", system=system, timeout=CONVERGE)
        assert await c.incr(1) == 1
        # what the workers know before the head goes: each other's names
        await eventually(lambda: _has_names(w1, {"actors/counter"}), what="w1 knows counter")
        await eventually(lambda: _has_names(w2, {"actors/relay"}), what="w2 knows relay")

        head.kill()
        # reported unreachable: Dead once heartbeat_timeout has passed without an answer
        await eventually(
            lambda: _sys_dead(system, head.node_id), what="the test worker reports the head"
        )
        await eventually(lambda: _dead_in(w1, head.node_id), what="w1 reports the head")
        # the workers keep working with what they know
        await eventually(lambda: _sys_alive(system, workers), what="the workers stay alive")
        await eventually(lambda: _alive_in(w1, [w2.node_id, me]), what="in w1's view too")
        assert await c.incr(1) == 2
        assert await relay.call("counter", "incr", 1) == 3  # w1 -> w2, resolved by name
        c_again = await Counter.resolve("counter", system=system, timeout=5)
        assert await c_again.get() == 3

        # a head comes back at the same address (a new process: a new node id)
        head2 = await asyncio.to_thread(
            cluster.start_node, head=True, extra_args=bind, label="head2"
        )
        assert head2.addr == head.addr and head2.node_id != head.node_id
        everyone = [head2.node_id, *workers, me]
        await eventually(lambda: _alive_in(head2, everyone), what="workers re-register")
        # the registry is rebuilt from the workers' heartbeats
        await eventually(
            lambda: _has_names(head2, {"actors/counter", "actors/relay"}),
            what="the new head knows the workers' names",
        )
        await eventually(lambda: _sys_alive(system, everyone), what="the test worker follows")
        await eventually(lambda: _alive_in(w2, everyone), what="w2 follows the new head")
        assert head.node_id not in await node_view(w2)
        assert await relay.call("counter", "incr", 1) == 4
        assert await c.incr(1) == 5
    finally:
        await system.shutdown()


async def _has_names(node: Node, names: set[str]) -> bool:
    return names <= await _named_in(node)


# ---- a hostile peer ---------------------------------------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _h2_frame(ftype: int, flags: int, stream: int, payload: bytes, length=None) -> bytes:
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def _send_garbage(addr: str, data: bytes, read_timeout: float = 10.0) -> bool:
    """Connect, send `data`, then read until the node closes the connection. True if it did."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return True
        s.settimeout(read_timeout)
        deadline = time.monotonic() + read_timeout
        try:
            while time.monotonic() < deadline:
                if not s.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


async def test_garbage_peer(cluster):
    nodes = await start(cluster, 3, spawn={1: ["Counter:counter"]})
    target = nodes[1]
    system = await join(nodes[:1])
    try:
        c = await Counter.resolve("counter", system=system, timeout=CONVERGE)
        assert await c.incr() == 1
        rnd = os.urandom(256 * 1024)
        attacks = {
            "random bytes": rnd,
            "http/1.1": b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 4,
            "preface then junk": H2_PREFACE + rnd[:4096],
            "frame claiming 16 MiB": H2_PREFACE
            + _h2_frame(4, 0, 0, b"")  # empty SETTINGS
            + _h2_frame(0, 0, 1, b"x" * 100, length=(1 << 24) - 1),
            "headers on stream 0": H2_PREFACE
            + _h2_frame(4, 0, 0, b"")
            + _h2_frame(1, 4, 0, b"\x82\x84"),
            "zeros": bytes(64 * 1024),
        }
        for what, data in attacks.items():
            closed = await asyncio.to_thread(_send_garbage, target.addr, data)
            assert closed, f"{what}: the node kept a garbage connection open"
            assert await c.incr() >= 2, what  # still serves its callers
        # connections that say nothing, or half a preface, then vanish
        host, port = target.addr.rsplit(":", 1)
        socks = [socket.create_connection((host, int(port)), timeout=5) for _ in range(20)]
        for i, s in enumerate(socks):
            if i % 2:
                s.sendall(H2_PREFACE[:10])
            s.close()
        await asyncio.sleep(0.2)
        before = await c.get()
        assert await c.incr() == before + 1
        # and it is still a healthy member for everybody
        await eventually(
            lambda: _alive_in(nodes[0], [n.node_id for n in nodes]), what="target still Alive"
        )
        assert target.alive
    finally:
        await system.shutdown()


# ---- big payloads -----------------------------------------------------------------------------


async def test_64mib_payload(cluster):
    np = pytest.importorskip("numpy")
    nodes = await start(cluster, 3, spawn={1: ["Echo:echo"], 2: ["Relay:relay"]})
    system = await join(nodes[:1])
    try:
        echo = await Echo.resolve("echo", system=system, timeout=CONVERGE)
        n = 64 << 20
        arr = np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8)
        want = hashlib.sha256(arr).hexdigest()
        got = await asyncio.wait_for(echo.digest(arr), 120)
        assert got == {"nbytes": n, "sha256": want, "type": "ndarray"}

        # and back: a 64 MiB reply, byte-identical
        back = await asyncio.wait_for(echo.make(n, 9), 120)
        ref = np.random.default_rng(9).integers(0, 256, n, dtype=np.uint8)
        assert isinstance(back, np.ndarray) and back.dtype == np.uint8 and back.shape == (n,)
        assert np.array_equal(back, ref)
        del back, ref

        # 64 MiB of bytes, node to node (relay on node2 -> echo on node1)
        blob = os.urandom(n)
        got = await asyncio.wait_for(echo.digest(blob), 120)
        assert got["nbytes"] == n and got["sha256"] == hashlib.sha256(blob).hexdigest()
        relay = await Relay.resolve("relay", system=system, timeout=CONVERGE)
        got = await asyncio.wait_for(relay.call("echo", "make", 1 << 20, 3), 120)
        assert np.array_equal(
            got, np.random.default_rng(3).integers(0, 256, 1 << 20, dtype=np.uint8)
        )
        # small calls still go through after the big ones
        assert await echo.echo("small") == "small"
    finally:
        await system.shutdown()


# ---- the harness itself (no network needed) -----------------------------------------------------


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_harness_never_leaves_a_node_behind(tmp_path):
    # close() kills whatever is still running; a node ends cleanly on SIGTERM
    with Cluster() as c:
        a = c.start_node(extra_args=["--bind", "none"], spawn=["Counter:c"])
        b = c.start_node(extra_args=["--bind", "none"])
        assert a.alive and b.alive
        assert b.terminate() == 0
    assert _pid_gone(a.pid) and _pid_gone(b.pid)

    # a test runner that dies (kill -9) takes its nodes with it
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, signal, sys\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "from cluster_harness import Cluster\n"
        "c = Cluster()\n"
        "n = c.start_node(extra_args=['--bind', 'none'])\n"
        "print(n.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while not _pid_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pid_gone(pid), "a node outlived the process that started it"


# ---- Connect: a client process that is not a member -----------------------------------------


async def test_connect_client_through_gateways(cluster):
    from pulsing.connect import Connect

    nodes = await start(cluster, 3, spawn={1: ["Counter:counter", "Streamer:tok"]})
    conn = await Connect.to([nodes[0].addr, nodes[2].addr])
    try:
        assert conn.gateways[0] == nodes[0].addr
        counter = await conn.resolve("counter", cls=Counter, timeout=CONVERGE)
        assert await counter.incr(3) == 3
        where = await counter.where()
        assert where["node_id"] == nodes[1].node_id and where["pid"] == nodes[1].pid
        tok = await conn.resolve("tok", cls=Streamer, timeout=CONVERGE)
        assert [t async for t in tok.tokens(4)] == ["tok0", "tok1", "tok2", "tok3"]
        # the client is not a member: no node lists it
        view = await node_view(nodes[1])
        assert len(view) == 3
        # the gateway dies: the client moves to the next one by itself and keeps calling
        nodes[0].kill()
        await eventually(
            lambda: conn.gateways[0] == nodes[2].addr, timeout=30, what="the client moves on"
        )
        assert await eventually(lambda: counter.incr(), what="a call through the new gateway") >= 4
        again = await conn.resolve("counter", cls=Counter, timeout=CONVERGE)
        assert (await again.where())["node_id"] == nodes[1].node_id
    finally:
        await conn.close()
