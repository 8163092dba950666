"""Several nodes in one process: join, resolve across nodes, calls, streams, typed errors,
cancellation, tells and references by id (docs/design/python-runtime.md, "Remote routes")."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pulsing as pul
import pytest
from cluster_util import TOLERANT, cluster, eventually, node
from pulsing.core import Message, StreamMessage
from pulsing.exceptions import (
    PulsingBusinessError,
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
    PulsingUnsupportedError,
)


@pul.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start
        self.tag = "counter"
        self.notes: list = []
        self.cancelled = 0
        self.closed_streams = 0

    def incr(self, n: int = 1) -> int:
        self.value += n
        return self.value

    def get(self) -> int:
        return self.value

    def note(self, x) -> None:
        self.notes.append(x)

    def get_notes(self) -> list:
        return list(self.notes)

    async def slow(self, seconds: float) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "done"

    async def call_other(self, other, n: int) -> int:
        assert not other.ref.is_local()  # a proxy sent over binds to this node's system
        return await other.incr(n)

    def stats(self) -> dict:
        return {"cancelled": self.cancelled, "closed_streams": self.closed_streams}

    async def tokens(self, n: int, fail_at: int = -1):
        try:
            for i in range(n):
                if i == fail_at:
                    raise ValueError(f"bad token {i}")
                yield f"tok{i}"
                await asyncio.sleep(0)
        finally:
            self.closed_streams += 1

    def count(self, n: int):
        yield from range(n)
        return "finished"

    async def endless(self):
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.001)
        finally:
            self.closed_streams += 1

    def fail(self, kind: str):
        if kind == "business":
            raise PulsingBusinessError(422, "rejected", details="field x")
        if kind == "business-dict":
            raise PulsingBusinessError(409, "conflict", details={"field": "x", "n": 2})
        if kind == "value":
            raise ValueError("bad value")
        if kind == "system":
            raise PulsingSystemError("disk on fire", recoverable=False)
        if kind == "timeout":
            raise PulsingTimeoutError("fetch", 1500)
        if kind == "unsupported":
            raise PulsingUnsupportedError("teleport")
        raise RuntimeError("boom")


async def test_join_members_and_addr():
    async with cluster(3) as (a, b, c):
        for s in (a, b, c):
            host, port = s.addr.rsplit(":", 1)
            assert host == "127.0.0.1" and int(port) > 0
        members = await a.members()
        assert members[0]["node_id"] == str(a.node_id.id)  # this node first
        assert {m["node_id"] for m in members} == {str(s.node_id.id) for s in (a, b, c)}
        by_id = {m["node_id"]: m for m in members}
        for s in (a, b, c):
            m = by_id[str(s.node_id.id)]
            assert m["addr"] == s.addr and m["status"] == "Alive"


async def test_resolve_and_call_across_nodes():
    async with cluster(3) as (a, b, _c):
        await Counter.spawn(10, system=b, name="counter")
        p = await Counter.resolve("counter", system=a, timeout=20)
        assert not p.ref.is_local()
        assert await p.incr(5) == 15
        assert await p.get() == 15
        # the local instance stays on the local fast path
        local = await Counter.resolve("counter", system=b, timeout=5)
        assert local.ref.is_local()
        assert await local.get() == 15
        # untyped proxies forward any name; `await proxy.attr` reads a plain attribute
        anyp = p.as_any()
        assert await anyp.incr(1) == 16
        assert await anyp.tag == "counter"
        # pul.resolve-style untyped proxy with ask/tell: low-level messages to a @remote
        # instance without receive fail clearly, they never hang
        with pytest.raises(PulsingRuntimeError):
            await asyncio.wait_for(p.ref.ask({"x": 1}), 10)


async def direct_writes(system, addr) -> int:
    st, body = await system.http_get(addr, "/metrics")
    assert st == 200
    for line in body.decode().splitlines():
        if line.startswith('pulsing_direct_writes_total{finished_by="caller"}'):
            return int(line.split()[-1])
    raise AssertionError("no pulsing_direct_writes_total in /metrics")


async def pumped_reads(system) -> int:
    st, body = await system.http_get(system.addr, "/metrics")
    assert st == 200
    for line in body.decode().splitlines():
        if line.startswith("pulsing_pumped_reads_total "):
            return int(line.split()[-1])
    raise AssertionError("no pulsing_pumped_reads_total in /metrics")


async def test_lone_remote_asks_replies_are_read_by_the_loop():
    """The reply of a lone remote ask is read from the socket by the caller's loop itself, and the
    next request by the actor's loop, the core threads asleep (docs/design/threads.md,
    "Pumping"); bursts, errors, streams, a blocked loop and the other node going away all keep
    working around it."""
    async with cluster(2) as (a, b):
        await Counter.spawn(0, system=b, name="pumped")
        p = await Counter.resolve("pumped", system=a, timeout=20)
        assert await p.incr(1) == 1
        r0, s0 = await pumped_reads(a), await pumped_reads(b)
        n = 1
        for _ in range(300):
            await asyncio.sleep(0.002)
            n += 1
            assert await p.incr(1) == n
            if await pumped_reads(a) > r0 + 5 and await pumped_reads(b) > s0 + 5:
                break
        else:
            raise AssertionError("no reply (or request) was read by the loop itself")
        # a burst among lone asks; typed errors; a stream
        assert await asyncio.gather(*(p.incr(0) for _ in range(100))) == [n] * 100
        with pytest.raises(PulsingBusinessError):
            await p.fail("business")
        assert [x async for x in p.tokens(5)] == [f"tok{i}" for i in range(5)]
        # the loop blocked while a reply is in flight: the core thread takes the connection back
        # (its watchdog) and the reply is there when the loop runs again
        assert await p.incr(0) == n  # lone: pumped
        t = asyncio.ensure_future(p.incr(1))
        await asyncio.sleep(0)  # sent
        time.sleep(0.2)  # noqa: ASYNC251 - blocks the loop on purpose
        n += 1
        assert await t == n
        assert await p.incr(0) == n
        # the other node goes away: calls fail promptly, nothing hangs
        await b.shutdown()
        with pytest.raises(PulsingError):
            await asyncio.wait_for(p.incr(1), 10)


async def test_lone_remote_asks_are_written_by_the_loops():
    """A remote ask alone on its connection is written to the socket by the caller's loop thread
    and its reply by the actor's, while the core threads sleep (docs/design/threads.md, "Direct
    writes"); cancellation and deadlines keep working around it."""
    async with cluster(2) as (a, b):
        await Counter.spawn(0, system=b, name="direct")
        p = await Counter.resolve("direct", system=a, timeout=20)
        assert await p.incr(1) == 1  # dials the data connection
        a0, b0 = await direct_writes(a, a.addr), await direct_writes(b, b.addr)
        for i in range(200):
            await asyncio.sleep(0.002)  # the core threads go back to sleep between asks
            assert await p.incr(1) == i + 2
            if await direct_writes(a, a.addr) > a0 and await direct_writes(b, b.addr) > b0:
                break
        else:
            raise AssertionError("no ask or reply was written directly")
        # cancel right behind a directly written ask: the actor's task is cancelled
        for _ in range(3):
            await asyncio.sleep(0.002)
            t = asyncio.ensure_future(p.slow(30))
            await asyncio.sleep(0.05)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t

        async def all_cancelled():
            return (await p.stats())["cancelled"] == 3

        await eventually(all_cancelled, what="the actor saw 3 cancellations")
        assert await p.incr(1) == i + 3


async def test_resolve_missing_name_times_out():
    async with cluster(2) as (a, _b):
        with pytest.raises(PulsingRuntimeError, match="not found"):
            await a.resolve("nobody", timeout=0.3)


async def test_round_robin_and_node_id():
    async with cluster(3) as (a, b, c):
        await Counter.spawn(0, system=b, name="shared")
        await Counter.spawn(100, system=c, name="shared")

        async def both_visible():
            return (
                len(
                    {
                        n["node_id"]
                        for n in await a.all_named_actors()
                        if n["name"] == "actors/shared"
                    }
                )
                == 2
            )

        await eventually(both_visible, what="both instances in the registry")
        seen = set()
        for _ in range(6):
            p = await Counter.resolve("shared", system=a, timeout=5)
            seen.add(await p.get() >= 100)
        assert seen == {True, False}  # round-robin reached both nodes
        pc = await Counter.resolve("shared", system=a, node_id=c.node_id, timeout=5)
        pb = await Counter.resolve("shared", system=a, node_id=str(b.node_id.id), timeout=5)
        assert await pc.get() == 100 and await pb.get() == 0
        with pytest.raises(PulsingRuntimeError):
            await Counter.resolve("shared", system=a, node_id=a.node_id, timeout=0.2)
        named = await a.all_named_actors()
        shared = [n for n in named if n["name"] == "actors/shared"]
        assert {n["node_id"] for n in shared} == {str(b.node_id.id), str(c.node_id.id)}
        assert all(n["instances"] == 2 for n in shared)
        assert not any(n["name"].startswith("system/") for n in named)


async def test_remote_streams():
    async with cluster(2) as (a, b):
        await Counter.spawn(system=b, name="streamer")
        p = await Counter.resolve("streamer", system=a, timeout=20)
        assert [t async for t in p.tokens(5)] == [f"tok{i}" for i in range(5)]
        assert [i async for i in p.count(4)] == [0, 1, 2, 3]
        # a plain generator method awaited: an async iterator over its items, across nodes too
        assert [i async for i in await p.count(3)] == [0, 1, 2]
        # an untyped proxy does not know the kind: the node answers and the await opens a stream
        u = p.as_any()
        assert [i async for i in await u.count(2)] == [0, 1]
        assert [t async for t in u.tokens(2)] == ["tok0", "tok1"]
        assert [t async for t in p.tokens(0)] == []
        # an error surfaces after the items yielded before it, typed
        got = []
        with pytest.raises(PulsingBusinessError) as ei:
            async for t in p.tokens(5, fail_at=3):
                got.append(t)
        assert got == ["tok0", "tok1", "tok2"]
        assert ei.value.code == 400 and "bad token 3" in ei.value.message
        # an early break cancels the remote generator
        before = (await p.stats())["closed_streams"]
        async for i in p.endless():
            if i == 5:
                break

        async def closed():
            return (await p.stats())["closed_streams"] > before

        await eventually(closed, 10, "the remote generator to be closed after break")


async def test_typed_errors_across_nodes():
    async with cluster(2) as (a, b):
        await Counter.spawn(system=b, name="errs")
        p = await Counter.resolve("errs", system=a, timeout=20)
        with pytest.raises(PulsingBusinessError) as ei:
            await p.fail("business")
        e = ei.value
        assert (e.code, e.message, e.details) == (422, "rejected", "field x")
        assert str(e) == "[422] rejected"
        with pytest.raises(PulsingBusinessError) as ei:
            await p.fail("value")
        assert ei.value.code == 400 and "bad value" in str(ei.value)
        with pytest.raises(PulsingSystemError) as ei:
            await p.fail("system")
        assert ei.value.error == "disk on fire" and ei.value.recoverable is False
        with pytest.raises(PulsingTimeoutError) as ei:
            await p.fail("timeout")
        assert (ei.value.operation, ei.value.duration_ms) == ("fetch", 1500)
        with pytest.raises(PulsingUnsupportedError) as ei:
            await p.fail("unsupported")
        assert ei.value.operation == "teleport"
        with pytest.raises(PulsingSystemError) as ei:
            await p.fail("other")
        assert "boom" in str(ei.value) and ei.value.recoverable is True
        # details that are not a str (documented as one) cross as their JSON text; the reply
        # used to fail and stop the actor
        with pytest.raises(PulsingBusinessError) as ei:
            await p.fail("business-dict")
        assert (ei.value.code, ei.value.message) == (409, "conflict")
        assert ei.value.details == '{"field": "x", "n": 2}'
        assert await p.incr() == 1  # the actor survived and keeps serving


async def test_cancellation_of_remote_calls():
    async with cluster(2) as (a, b):
        await Counter.spawn(system=b, name="slowpoke")
        p = await Counter.resolve("slowpoke", system=a, timeout=20)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(p.slow(30), 0.3)
        assert loop.time() - t0 < 20  # the caller is released, not held by the remote work

        def cancelled(n):
            async def check():
                return (await p.stats())["cancelled"] == n

            return check

        # the remote method's task is cancelled too (RST_STREAM -> pul_ctx_on_end -> Reply)
        await eventually(cancelled(1), 10, "the remote method to see the cancellation")
        task = asyncio.ensure_future(p.slow(30))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually(cancelled(2), 10, "the second cancellation")
        assert await p.slow(0) == "done"  # the actor keeps serving
        # a consumer cancelled while iterating a remote stream cancels the remote generator
        before = (await p.stats())["closed_streams"]

        async def consume():
            async for _ in p.endless():
                pass

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(consume(), 0.3)

        async def closed():
            return (await p.stats())["closed_streams"] > before

        await eventually(closed, 10, "the remote generator to be closed after cancellation")


async def test_tell_and_refer_by_id():
    async with cluster(2) as (a, b):
        local = await Counter.spawn(system=b, name="mail")
        aid = local.ref.actor_id
        ref = await a.refer(str(aid))
        assert not ref.is_local() and ref.actor_id == aid
        p = Counter.proxy(ref)
        await p.ref.tell(("__not_a_call__",))  # ignored: no receive, tells never raise
        for i in range(5):
            await ref.as_any().note(i)
        assert await p.get_notes() == [0, 1, 2, 3, 4]
        # proxies of remote refs are usable with an int id as well
        p2 = Counter.proxy(await a.refer(aid.id))
        assert await p2.incr(2) == 2


async def test_proxies_travel_between_nodes():
    async with cluster(2) as (a, b):
        mine = await Counter.spawn(1, system=a, name="mine")
        theirs = await Counter.spawn(system=b, name="theirs")
        remote = await Counter.resolve("theirs", system=a, timeout=20)
        assert theirs.ref.is_local() and not remote.ref.is_local()
        # b calls back into a with the proxy it was given
        assert await remote.call_other(mine, 41) == 42
        assert await mine.get() == 42


async def test_low_level_actor_across_nodes():
    class Echo(pul.Actor):
        def receive(self, msg):
            return ("echo", msg)

    async with cluster(2) as (a, b):
        await b.spawn(Echo(), name="echo")
        ref = await a.resolve("echo", timeout=20)
        assert await ref.ask({"k": [1, 2.5, (3,)]}) == ("echo", {"k": [1, 2.5, (3,)]})
        msg = pul.Message.from_json("greet", {"hi": 1})
        # a Message travels with its own type
        reply = await ref.ask(msg)
        assert reply[0] == "echo" and reply[1].msg_type == "greet"
        assert reply[1].to_json() == {"hi": 1}


async def test_stopped_remote_actor_fails_promptly():
    async with cluster(2) as (a, b):
        await Counter.spawn(system=b, name="gone")
        p = await Counter.resolve("gone", system=a, timeout=20)
        assert await p.incr() == 1
        await b.stop("gone")
        with pytest.raises(PulsingRuntimeError):
            await asyncio.wait_for(p.incr(), 10)


async def test_global_init_with_seeds_joins():
    first = await node()
    try:
        system = await pul.init(addr="127.0.0.1:0", seeds=[first.addr], timing=TOLERANT)
        assert pul.is_initialized() and system.addr.startswith("127.0.0.1:")
        # init waited for the first join: the seed is already a member
        assert str(first.node_id.id) in {m["node_id"] for m in await system.members()}
        await Counter.spawn(7, name="global_counter")
        p = await Counter.resolve("global_counter", system=first, timeout=20)
        assert await p.get() == 7
        proxy = await pul.resolve("global_counter", timeout=5)
        assert proxy.ref.is_local()
    finally:
        await pul.shutdown()
        await first.shutdown()


async def test_bind_errors_and_passphrase_are_clear():
    a = await node()
    try:
        with pytest.raises(PulsingRuntimeError, match="bind"):
            await pul.actor_system(addr=a.addr)
    finally:
        await a.shutdown()
    with pytest.raises(PulsingRuntimeError, match="passphrase"):
        await pul.actor_system(addr="127.0.0.1:0", passphrase="secret")
    with pytest.raises(ValueError, match="Cannot set both"):
        await pul.actor_system(addr="127.0.0.1:0", head_addr="127.0.0.1:1", is_head_node=True)


async def test_remote_calls_have_a_deadline(monkeypatch):
    monkeypatch.setenv("PULSING_REMOTE_DEADLINE_S", "0.3")
    async with cluster(2) as (a, b):
        await Counter.spawn(system=b, name="late")
        p = await Counter.resolve("late", system=a, timeout=20)
        with pytest.raises(PulsingTimeoutError):
            await asyncio.wait_for(p.slow(30), 20)

        async def cancelled():
            return (await p.stats())["cancelled"] == 1

        await eventually(cancelled, 10, "the other node to give up too")
        # a stream's deadline bounds its start only: a long stream is not cut off
        n = 0
        async for _ in p.endless():
            n += 1
            if n == 400:  # ~0.4 s and more of items
                break
        assert n == 400


@pul.remote
class Snapshots:
    """Returns its own list, then lets other work of its loop mutate it."""

    def __init__(self) -> None:
        self.items: list = [1]

    def snap(self) -> list:
        asyncio.get_running_loop().call_soon(self.items.append, "late")
        return self.items

    async def asnap(self) -> list:
        await asyncio.sleep(0)
        asyncio.get_running_loop().call_soon(self.items.append, "late")
        return self.items


async def test_remote_result_is_the_value_when_the_method_returned():
    """A reply to another node is not copied before it is pickled, so it must be pickled before
    anything else runs on the actor's loop: a mutation scheduled by the method (or by a later
    message) never reaches the caller (copy semantics, ARCHITECTURE.md §3)."""
    async with cluster(2) as (a, b):
        await Snapshots.spawn(system=b, name="snapshots")
        p = await Snapshots.resolve("snapshots", system=a, timeout=20)
        assert not p.ref.is_local()
        first = await p.snap()
        assert first == [1]
        second = await p.asnap()
        assert second == [1, "late"]  # the first call's mutation, not this one's


# ---- a sync method that blocks its home loop on what it sent -----------------------------------

PINGED = threading.Event()


class Pinger(pul.Actor):
    def receive(self, msg):
        PINGED.set()
        return "pong"


class Blocker(pul.Actor):
    def __init__(self) -> None:
        self.sent = None

    def receive(self, msg):
        if msg == "settle":
            return self.sent  # awaited by the runtime
        if msg == "noop":
            return None
        _, pinger = msg
        # Runs in the bridge's drain pass (an idle actor called from another node), which holds
        # the door: this ask is queued for the core thread without waking it. The method then
        # blocks its home loop until another thread has received the ask.
        self.sent = pinger.ask("ping")
        return PINGED.wait(10)


# Membership that leaves the core threads asleep for the whole test: nothing but the door (or
# the held post's bound) wakes them, as in a quiet single-purpose deployment.
QUIET = dict(
    TOLERANT,
    probe_interval_ms=60_000,
    probe_timeout_ms=30_000,
    gossip_interval_ms=60_000,
    push_pull_interval_ms=60_000,
)


@pytest.mark.timeout(90)
async def test_sync_method_blocking_on_what_it_sent_does_not_hang():
    """A hold of the door delays a post by a bound, not until the holder returns to the bridge:
    a sync method that waits (blocking its home loop) for another thread to receive an ask it
    posted gets its answer (threads.md, "Batching the door"). Before, the ask left only when the
    method returned: it waited forever (here: its 10 s, then False)."""
    PINGED.clear()
    a = await node(timing=QUIET)
    await a.spawn(Blocker(), name="blocker")  # before b joins: b learns the name with its join
    ready = threading.Event()
    box: dict = {}

    def b_thread() -> None:  # node b, with its own home loop on this thread
        async def main() -> None:
            box["loop"] = asyncio.get_running_loop()
            box["stop"] = asyncio.Event()
            b = await node(seeds=[a.addr], timing=QUIET)
            try:
                box["b"] = b
                box["pinger"] = await b.spawn(Pinger(), name="pinger")
                ready.set()
                await box["stop"].wait()
            finally:
                await b.shutdown()

        try:
            asyncio.run(main())
        finally:
            ready.set()

    async def call_go():  # on b's loop: the blocked method's caller is on another node
        blocker = await box["b"].resolve("blocker", timeout=20)
        # With company: the deliveries reach a's home loop together, so the method runs in a
        # drain pass of several entries, which holds the door (a pass of one entry does not).
        calls = [blocker.ask(("go", box["pinger"]))] + [blocker.ask("noop") for _ in range(8)]
        ok = (await asyncio.wait_for(asyncio.gather(*calls), 30))[0]
        return ok, await asyncio.wait_for(blocker.ask("settle"), 30)

    t = threading.Thread(target=b_thread, name="node-b")
    t.start()
    try:
        assert await asyncio.to_thread(ready.wait, 30) and "b" in box
        done = asyncio.run_coroutine_threadsafe(call_go(), box["loop"])
        ok, pong = await asyncio.wait_for(asyncio.wrap_future(done), 60)
        assert ok, "the ask posted by the blocked method never left"
        assert pong == "pong"
    finally:
        if "stop" in box:
            with contextlib.suppress(RuntimeError):  # b's loop already closed: b failed
                box["loop"].call_soon_threadsafe(box["stop"].set)
        await asyncio.to_thread(t.join, 30)
        await a.shutdown()
        assert not t.is_alive()


class _Tokens(pul.Actor):
    """Answers a stream Message: built by hand (StreamMessage) or from a generator receive."""

    async def receive(self, msg):
        if msg.msg_type == "gen":
            return self._gen(msg.to_json()["n"])
        m, w = StreamMessage.create("Tok", buffer_size=4)

        async def produce() -> None:
            for i in range(msg.to_json()["n"]):
                await w.write(f"t{i}")
            if msg.msg_type == "fail":
                await w.error("midway")
            else:
                await w.close()

        asyncio.create_task(produce())
        return m

    async def _gen(self, n):
        for i in range(n):
            yield i


class _GenTokens(pul.Actor):
    async def receive(self, msg):
        for i in range(msg):
            yield f"g{i}"
        if msg == 2:
            raise ValueError("gen broke")


async def test_stream_messages_across_nodes():
    async with cluster(2) as (a, b):
        await b.spawn(_Tokens(), name="tokens")
        await b.spawn(_GenTokens(), name="gentokens")
        r = await a.resolve("tokens", timeout=20)
        m = await r.ask(Message.from_json("go", {"n": 50}))  # more than the buffer: flow
        assert isinstance(m, Message) and m.is_stream and m.msg_type == "Tok"
        assert [x async for x in m.stream_reader()] == [f"t{i}" for i in range(50)]
        m = await r.ask(Message.from_json("fail", {"n": 2}))
        got = []
        with pytest.raises(PulsingError, match="midway"):
            async for x in m.stream_reader():
                got.append(x)
        assert got == ["t0", "t1"]
        g = await a.resolve("gentokens", timeout=20)
        assert [x async for x in (await g.ask(3)).stream_reader()] == ["g0", "g1", "g2"]
        got = []
        with pytest.raises(PulsingError, match="gen broke"):
            async for x in (await g.ask(2)).stream_reader():
                got.append(x)
        assert got == ["g0", "g1"]
        # a reader that stops early, and one that never reads: nothing is left behind
        m = await r.ask(Message.from_json("go", {"n": 1000}))
        async for x in m.stream_reader():
            break
        del m
        await r.ask(Message.from_json("go", {"n": 1000}))
        await eventually(lambda: not b._exports, what="the exports to be pulled")


async def test_local_actor_names_and_named_instances():
    async with cluster(2) as (a, b):
        await Counter.spawn(system=a, name="twice")
        await Counter.spawn(system=b, name="twice")
        await Counter.spawn(system=b, name="once")
        assert "actors/twice" in a.local_actor_names()
        assert "actors/once" not in a.local_actor_names()
        assert {"actors/twice", "actors/once"} <= set(b.local_actor_names())
        rows = await eventually(
            lambda: _two(a.get_named_instances("twice")), what="both instances in a's view"
        )
        assert {r["node_id"] for r in rows} == {str(a.node_id.id), str(b.node_id.id)}
        assert all(r["status"] == "Alive" and r["addr"] for r in rows)
        mine = [r for r in rows if r["node_id"] == str(a.node_id.id)]
        assert mine[0]["class"] == "Counter"
        assert await a.get_named_instances("nobody") == []


async def _two(rows):
    rows = await rows
    return rows if len(rows) == 2 else None


class _Summer(pul.Actor):
    """Reads a stream Message it is sent and answers the sum of its items."""

    async def receive(self, msg):
        return sum([x async for x in msg.stream_reader()])


async def test_stream_message_sent_to_another_node():
    async with cluster(2) as (a, b):
        await b.spawn(_Summer(), name="summer")
        r = await a.resolve("summer", timeout=20)
        m, w = StreamMessage.create("nums", buffer_size=4)

        async def produce() -> None:
            for i in range(100):
                await w.write(i)
            await w.close()

        task = asyncio.create_task(produce())
        assert await r.ask(m) == sum(range(100))
        await task
        assert not a._exports  # pulled


class _Log(pul.Actor):
    """Records what it is told; answers the record when asked for it."""

    def __init__(self) -> None:
        self.seen: list = []

    def receive(self, msg):
        if msg == "log":
            return list(self.seen)
        self.seen.append(msg[0])
        return None


async def test_messages_to_one_actor_keep_their_order_across_nodes():
    """Messages from one sender to one actor on another node arrive in the order they were sent,
    whatever their sizes: a 3 MiB body takes several HTTP/2 frames, and the small ones sent after
    it must not overtake it (docs/design/net.md, "Tells in batches, and order per actor")."""
    big = b"x" * (3 << 20)
    async with cluster(2) as (a, b):
        counter = await Counter.spawn(system=b, name="ordered")
        p = Counter.proxy(await a.refer(str(counter.ref.actor_id)))
        # asks sent at once, without waiting for each: they arrive in order
        calls = [p.note((i, big if i % 7 == 0 else b"")) for i in range(40)]
        await asyncio.gather(*calls)
        assert [n[0] for n in await p.get_notes()] == list(range(40))
        # tells, interleaved with asks of the same actor
        log_ref = await b.spawn(_Log(), name="log")
        ref = await a.refer(str(log_ref.actor_id))
        for i in range(60):
            if i % 10 == 5:
                assert await ref.ask("log") == list(range(i))
            await ref.tell((i, big if i % 9 == 0 else b""))
        assert await ref.ask("log") == list(range(60))
