"""Import surface, init/shutdown, use before init, non-global systems, repeated creation."""

from __future__ import annotations

import asyncio
import importlib

import pulsing as pul
import pytest
from pulsing.core import system as system_mod
from pulsing.exceptions import PulsingRuntimeError

# ---- import surface ---------------------------------------------------------------------------

TOP_LEVEL = [
    "init",
    "shutdown",
    "get_system",
    "is_initialized",
    "actor_system",
    "remote",
    "spawn",
    "refer",
    "resolve",
    "mount",
    "unmount",
    "queue",
    "topic",
    "bootstrap",
    "ActorSystem",
    "ActorRef",
    "ActorId",
    "ActorProxy",
    "Actor",
    "PulsingError",
    "PulsingRuntimeError",
    "PulsingActorError",
    "PulsingBusinessError",
    "PulsingSystemError",
    "PulsingTimeoutError",
    "PulsingUnsupportedError",
]

CORE = [
    "Actor",
    "ActorId",
    "ActorRef",
    "ActorProxy",
    "ActorSystem",
    "Message",
    "StreamMessage",
    "SystemConfig",
    "ZeroCopyDescriptor",
    "get_system",
    "init",
    "shutdown",
    "is_initialized",
    "remote",
    "ask_with_timeout",
]

EXCEPTIONS = [
    "PulsingError",
    "PulsingRuntimeError",
    "PulsingActorError",
    "PulsingBusinessError",
    "PulsingSystemError",
    "PulsingTimeoutError",
    "PulsingUnsupportedError",
]

STREAMING = [
    "Queue",
    "QueueReader",
    "write_queue",
    "read_queue",
    "BucketStorage",
    "MemoryBackend",
    "StorageBackend",
    "register_backend",
    "get_backend_class",
    "list_backends",
    "write_topic",
    "read_topic",
    "TopicWriter",
    "TopicReader",
    "PublishMode",
    "PublishResult",
]


@pytest.mark.parametrize(
    "module, names",
    [
        ("pulsing", TOP_LEVEL),
        ("pulsing.core", CORE),
        ("pulsing.core.messaging", ["Message", "StreamMessage"]),
        ("pulsing.exceptions", EXCEPTIONS),
        ("pulsing.streaming", STREAMING),
        ("pulsing.connect", ["Connect"]),
    ],
)
def test_import_surface(module, names):
    mod = importlib.import_module(module)
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"{module} lacks {missing}"
    exec(f"from {module} import {', '.join(names)}", {})  # noqa: S102


def test_sync_queue_module_imports():
    importlib.import_module("pulsing.streaming.sync_queue")


def test_same_objects_everywhere():
    import pulsing.exceptions as exc
    from pulsing import core
    from pulsing.core import messaging

    assert pul.Actor is core.Actor
    assert pul.ActorRef is core.ActorRef
    assert pul.ActorProxy is core.ActorProxy
    assert messaging.Message is core.Message
    assert messaging.StreamMessage is core.StreamMessage
    for n in EXCEPTIONS:
        assert getattr(pul, n) is getattr(exc, n)


# ---- the global system --------------------------------------------------------------------------


async def test_init_returns_global_system_and_twice_same():
    assert not pul.is_initialized()
    s = await pul.init()
    assert isinstance(s, pul.ActorSystem)
    assert pul.is_initialized()
    assert pul.get_system() is s
    assert await pul.init() is s
    assert await pul.bootstrap() is s
    await pul.shutdown()
    assert not pul.is_initialized()


async def test_head_addr_and_is_head_node_is_value_error():
    with pytest.raises(ValueError, match="Cannot set both"):
        await pul.init(head_addr="127.0.0.1:9", is_head_node=True)
    assert not pul.is_initialized()


async def test_shutdown_without_init_is_noop():
    assert not pul.is_initialized()
    await pul.shutdown()
    await pul.shutdown()
    assert not pul.is_initialized()


async def test_use_before_init():
    @pul.remote
    class C:
        def f(self):
            return 1

    with pytest.raises(PulsingRuntimeError, match="not initialized"):
        pul.get_system()
    with pytest.raises(PulsingRuntimeError, match="not initialized"):
        await C.spawn()
    with pytest.raises(PulsingRuntimeError, match="not initialized"):
        await C.resolve("x")
    with pytest.raises(PulsingRuntimeError, match="not initialized"):
        await pul.resolve("x")
    with pytest.raises(PulsingRuntimeError, match="not initialized"):
        await pul.refer(1)


def test_get_system_before_init_sync():
    with pytest.raises(PulsingRuntimeError, match="not initialized"):
        pul.get_system()
    assert not pul.is_initialized()


async def test_reinit_after_shutdown_gives_a_new_system():
    s1 = await pul.init()
    await pul.shutdown()
    s2 = await pul.init()
    assert s2 is not s1
    assert not s2.is_closed
    await pul.shutdown()


async def test_global_spawn_refer_resolve():
    class Echo(pul.Actor):
        def receive(self, msg):
            return msg

    await pul.init()
    ref = await pul.spawn(Echo(), name="echo")
    assert await ref.ask(3) == 3
    again = await pul.refer(ref.actor_id)
    assert await again.ask("x") == "x"
    by_name = await pul.resolve("echo")
    assert await by_name.ask(5) == 5
    assert by_name.actor_id == ref.actor_id


# ---- non-global systems ------------------------------------------------------------------------


class Echo(pul.Actor):
    def receive(self, msg):
        return msg


async def test_actor_system_api():
    s = await pul.actor_system()
    try:
        assert not pul.is_initialized()  # not the global system
        ref = await s.spawn(Echo(), name="echo")
        assert await ref.ask(1) == 1
        assert (await s.refer(ref.actor_id)).actor_id == ref.actor_id
        assert (await s.resolve("echo")).actor_id == ref.actor_id
        assert (await s.resolve("actors/echo", timeout=0.1)).actor_id == ref.actor_id
        assert (await s.resolve_named("echo")).actor_id == ref.actor_id
        named = await s.all_named_actors()
        assert [d["name"] for d in named] == ["actors/echo"]
        members = await s.members()
        assert len(members) == 1
        assert set(members[0]) >= {"node_id", "addr", "status"}
        assert members[0]["status"] == "Alive"
        assert str(s.node_id.id) == members[0]["node_id"] or str(s.node_id) == members[0]["node_id"]
        assert s.addr is None  # a single process opens no port
        await s.stop("echo")
        with pytest.raises(PulsingRuntimeError):
            await s.resolve("echo")
        assert await s.all_named_actors() == []
    finally:
        await s.shutdown()
    assert s.is_closed
    await s.shutdown()  # twice is fine


async def test_several_systems_side_by_side():
    a = await pul.actor_system()
    b = await pul.actor_system()
    g = await pul.init()
    try:
        assert len({a.node_id, b.node_id, g.node_id}) == 3
        ra = await a.spawn(Echo(), name="same")
        rb = await b.spawn(Echo(), name="same")  # names are per system
        assert await ra.ask("a") == "a"
        assert await rb.ask("b") == "b"
        await a.shutdown()
        assert await rb.ask("still") == "still"
    finally:
        await a.shutdown()
        await b.shutdown()
        await pul.shutdown()
    assert not system_mod._live_systems


def test_systems_on_many_fresh_loops():
    class Counter:
        def __init__(self):
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n

    C = pul.remote(Counter)

    async def once(i):
        await pul.init()
        c = await C.spawn(name="c")
        assert await c.incr() == 1
        local = await pul.actor_system()
        await local.spawn(Echo(), name="e")
        await local.shutdown()
        await pul.shutdown()
        return i

    for i in range(20):
        assert asyncio.run(once(i)) == i
    assert not system_mod._live_systems
    assert not pul.is_initialized()


def test_global_system_left_on_closed_loop_is_replaced():
    async def leave():
        return await pul.init()

    s1 = asyncio.run(leave())  # never shut down; its loop is closed now
    assert not pul.is_initialized()

    async def again():
        s2 = await pul.init()
        assert s2 is not s1
        await pul.shutdown()

    asyncio.run(again())
    assert s1 not in system_mod._live_systems


async def test_shutdown_calls_on_stop_of_live_actors():
    stopped = []

    class A(pul.Actor):
        def __init__(self, tag):
            self.tag = tag

        def receive(self, msg):
            return msg

        def on_stop(self):
            stopped.append(self.tag)

    @pul.remote
    class R:
        def on_stop(self):
            stopped.append("remote")

        def f(self):
            return 1

    class AsyncStop(pul.Actor):
        def receive(self, msg):
            return msg

        async def on_stop(self):
            await asyncio.sleep(0)
            stopped.append("async")

    s = await pul.init()
    await s.spawn(A("named"), name="a")
    await s.spawn(A("anon"))
    await R.spawn()
    await s.spawn(AsyncStop())
    await pul.shutdown()
    assert sorted(stopped) == ["anon", "async", "named", "remote"]


async def test_calls_after_shutdown_fail():
    s = await pul.actor_system()
    ref = await s.spawn(Echo())
    await s.shutdown()
    with pytest.raises(PulsingRuntimeError):
        await ref.ask(1)
    with pytest.raises(PulsingRuntimeError):
        await s.spawn(Echo())
    with pytest.raises(PulsingRuntimeError):
        await s.resolve("x")


async def test_cluster_options_fail_clearly_or_work():
    # Without the transport an address must either work (real port) or fail clearly; never hang.
    try:
        s = await asyncio.wait_for(pul.actor_system("127.0.0.1:0"), 10)
    except PulsingRuntimeError:
        return
    try:
        _host, port = s.addr.rsplit(":", 1)
        assert int(port) > 0
    finally:
        await s.shutdown()
