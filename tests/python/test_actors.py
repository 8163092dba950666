"""Low-level actors, references, names, ids, timeouts, payload fidelity and copy semantics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pulsing as pul
import pytest
from pulsing.core import Actor, ActorId, ActorRef, ask_with_timeout
from pulsing.exceptions import PulsingRuntimeError


@pytest.fixture
async def system():
    s = await pul.actor_system()
    yield s
    await s.shutdown()


class Echo(Actor):
    def receive(self, msg):
        return msg


class Recorder(Actor):
    def __init__(self):
        self.events = []
        self.got = []
        self.actor_id = None

    def on_start(self, actor_id):
        self.events.append("start")
        self.actor_id = actor_id

    def on_stop(self):
        self.events.append("stop")

    def metadata(self):
        return {"kind": "recorder"}

    def receive(self, msg):
        self.events.append("msg")
        self.got.append(msg)
        return len(self.got)


# ---- the Actor base ---------------------------------------------------------------------------


def test_actor_is_abstract():
    with pytest.raises(TypeError):
        Actor()

    class NoReceive(Actor):
        pass

    with pytest.raises(TypeError):
        NoReceive()


def test_default_hooks():
    e = Echo()
    assert e.on_start(ActorId(1)) is None
    assert e.on_stop() is None
    assert e.metadata() == {}


async def test_spawn_returns_ref_and_the_very_object(system):
    r = Recorder()
    ref = await system.spawn(r, name="rec", public=True)
    assert isinstance(ref, ActorRef)
    assert isinstance(ref.actor_id, ActorId)
    assert await ref.ask("a") == 1
    assert r.got == ["a"]  # the spawned object is the very object
    assert r.actor_id == ref.actor_id
    assert r.events[:2] == ["start", "msg"]
    assert r.metadata() == {"kind": "recorder"}
    await system.stop("rec")
    assert r.events[-1] == "stop"


async def test_public_false_accepted(system):
    ref = await system.spawn(Echo(), public=False)
    assert await ref.ask(1) == 1
    ref2 = await system.spawn(Echo(), public=True)
    assert await ref2.ask(2) == 2


async def test_async_receive(system):
    class A(Actor):
        async def receive(self, msg):
            await asyncio.sleep(0)
            return msg * 2

    ref = await system.spawn(A())
    assert await ref.ask(21) == 42


async def test_async_receive_is_serial(system):
    gate = asyncio.Event()
    order = []

    class A(Actor):
        async def receive(self, msg):
            order.append(("begin", msg))
            if msg == 1:
                await gate.wait()
            order.append(("end", msg))
            return msg

    ref = await system.spawn(A())
    f1 = asyncio.ensure_future(ref.ask(1))
    f2 = asyncio.ensure_future(ref.ask(2))
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == [("begin", 1)]  # message 2 waits for message 1
    gate.set()
    assert await asyncio.gather(f1, f2) == [1, 2]
    assert order == [("begin", 1), ("end", 1), ("begin", 2), ("end", 2)]


async def test_on_start_before_first_message(system):
    r = Recorder()
    ref = await system.spawn(r)
    await ref.ask(0)
    assert r.events.index("start") < r.events.index("msg")


async def test_async_on_start_runs_before_messages(system):
    order = []

    class A(Actor):
        async def on_start(self, actor_id):
            await asyncio.sleep(0.01)
            order.append("start")

        def receive(self, msg):
            order.append(msg)
            return msg

    ref = await system.spawn(A())
    await ref.ask("m")
    assert order == ["start", "m"]


async def test_on_start_raising_does_not_fail_spawn(system):
    class A(Actor):
        def on_start(self, actor_id):
            raise RuntimeError("start failed")

        def receive(self, msg):
            return msg

    class B(Actor):
        async def on_start(self, actor_id):
            raise RuntimeError("async start failed")

        def receive(self, msg):
            return msg

    ref = await system.spawn(A(), name="a")
    assert await ref.ask(1) == 1
    ref = await system.spawn(B(), name="b")
    assert await ref.ask(2) == 2


async def test_tell(system):
    r = Recorder()
    ref = await system.spawn(r)
    await ref.tell("x")
    await ref.tell(None)  # a None payload is fine
    ref.tell("y")  # not awaited: still delivered
    assert await ref.ask("z") == 4
    assert r.got == ["x", None, "y", "z"]


async def test_ask_none(system):
    ref = await system.spawn(Echo())
    assert await ref.ask(None) is None


async def test_as_any_and_as_type(system):
    class Obj(Actor):
        def receive(self, msg):
            return msg

        def hello(self, who):
            return f"hello {who}"

    ref = await system.spawn(Obj())
    assert await ref.as_any().hello("a") == "hello a"
    typed = ref.as_type(Obj)
    assert await typed.hello("b") == "hello b"
    with pytest.raises(AttributeError):
        _ = typed.nope


async def test_spawn_non_actor_is_type_error(system):
    with pytest.raises(TypeError):
        await system.spawn(object())


async def test_pul_spawn_uses_global():
    await pul.init()
    ref = await pul.spawn(Echo(), name="g")
    assert await ref.ask("v") == "v"
    await pul.shutdown()


# ---- names ------------------------------------------------------------------------------------


async def test_name_reuse_after_stop_by_short_name(system):
    r1 = Recorder()
    await system.spawn(r1, name="x")
    await system.stop("x")  # short name for actors/x
    assert r1.events[-1] == "stop"
    ref = await system.spawn(Echo(), name="x")
    assert await ref.ask(1) == 1
    await system.stop("actors/x")
    ref = await system.spawn(Echo(), name="actors/x")
    assert (await system.resolve("x")).actor_id == ref.actor_id


async def test_stop_by_ref_and_unknown(system):
    ref = await system.spawn(Echo())
    await system.stop(ref)
    with pytest.raises(PulsingRuntimeError):
        await ref.ask(1)
    with pytest.raises(PulsingRuntimeError):
        await system.stop("never-existed")


async def test_duplicate_name(system):
    await system.spawn(Echo(), name="dup")
    with pytest.raises(PulsingRuntimeError, match="already exists"):
        await system.spawn(Echo(), name="dup")
    with pytest.raises(PulsingRuntimeError, match="already exists"):
        await system.spawn(Echo(), name="actors/dup")


@pytest.mark.parametrize("bad", ["", "a b", "a//b", "/a", "a/", "bad!", "x/y/ z"])
async def test_invalid_names(system, bad):
    with pytest.raises(ValueError):
        await system.spawn(Echo(), name=bad)


async def test_system_names_reserved(system):
    with pytest.raises((ValueError, PulsingRuntimeError)):
        await system.spawn(Echo(), name="system/mine")


async def test_multi_segment_names(system):
    ref = await system.spawn(Echo(), name="services/api/v1")
    assert (await system.resolve("services/api/v1")).actor_id == ref.actor_id
    names = [d["name"] for d in await system.all_named_actors()]
    assert names == ["services/api/v1"]


async def test_all_named_actors_shape(system):
    ref = await system.spawn(Echo(), name="n1")
    await system.spawn(Echo())  # anonymous: not listed
    (entry,) = await system.all_named_actors()
    assert entry["name"] == "actors/n1"
    assert "node_id" in entry
    assert ActorId(entry["actor_id"]) == ref.actor_id if "actor_id" in entry else True


# ---- ids --------------------------------------------------------------------------------------


def test_actor_id_forms():
    a = ActorId(12345)
    assert int(a) == 12345
    assert a == ActorId(12345)
    assert ActorId(str(a)) == a
    assert hash(a) == hash(ActorId(12345))
    assert a != ActorId(1)
    with pytest.raises((TypeError, ValueError)):
        ActorId("not an id")


async def test_str_actor_id_round_trips_through_refer(system):
    ref = await system.spawn(Echo())
    s = str(ref.actor_id)
    again = await system.refer(s)
    assert again.actor_id == ref.actor_id
    assert await again.ask("r") == "r"
    assert (await system.refer(ActorId(int(ref.actor_id)))).actor_id == ref.actor_id
    assert (await system.refer(int(ref.actor_id))).actor_id == ref.actor_id


async def test_refer_global_by_string():
    await pul.init()
    ref = await pul.spawn(Echo())
    again = await pul.refer(str(ref.actor_id))
    assert await again.ask(9) == 9
    await pul.shutdown()


async def test_refer_unknown_id_fails_at_call(system):
    ref = await system.refer(ActorId(987654321))
    with pytest.raises(PulsingRuntimeError):
        await asyncio.wait_for(ref.ask(1), 5)


# ---- timeouts ---------------------------------------------------------------------------------


class Slow(Actor):
    def __init__(self):
        self.cancelled = asyncio.Event()

    async def receive(self, msg):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return msg


async def test_wait_for_raises_timeout_and_cancels(system):
    slow = Slow()
    ref = await system.spawn(slow)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ref.ask(1), 0.05)
    await asyncio.wait_for(slow.cancelled.wait(), 5)


async def test_ask_with_timeout(system):
    ref = await system.spawn(Slow())
    with pytest.raises(asyncio.TimeoutError):
        await ask_with_timeout(ref, 1, timeout=0.05)
    echo = await system.spawn(Echo())
    assert await ask_with_timeout(echo, 7, timeout=5) == 7


async def test_actor_serves_after_a_timed_out_ask(system):
    class Gate(Actor):
        def __init__(self):
            self.n = 0

        async def receive(self, msg):
            if msg == "slow":
                await asyncio.sleep(30)
            self.n += 1
            return self.n

    ref = await system.spawn(Gate())
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ref.ask("slow"), 0.05)
    assert await asyncio.wait_for(ref.ask("fast"), 5) == 1


# ---- payloads ---------------------------------------------------------------------------------


@dataclass
class Point:
    x: int
    y: float
    tags: list = field(default_factory=list)


@dataclass(frozen=True)
class Frozen:
    a: tuple


PAYLOADS = [
    1,
    2**100,
    -3,
    1.5,
    float("inf"),
    True,
    None,
    "text",
    b"\x00bytes",
    bytearray(b"ba"),
    (1, 2),
    (1, [2, 3]),
    [1, (2, 3), {"k": {4, 5}}],
    {"nested": {"list": [1, 2.0, "3"], "tuple": (1,)}},
    {1: "int key", (1, 2): "tuple key"},
    frozenset({1, 2}),
    Point(1, 2.0, ["a"]),
    Frozen((1, 2)),
    [Point(0, 0.0)],
    complex(1, 2),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
async def test_payload_fidelity(system, payload):
    ref = await system.spawn(Echo())
    got = await ref.ask(payload)
    assert got == payload
    assert type(got) is type(payload)
    if isinstance(payload, (list, tuple)):
        assert [type(x) for x in got] == [type(x) for x in payload]


async def test_int_float_types_kept(system):
    ref = await system.spawn(Echo())
    got = await ref.ask({"i": 1, "f": 1.0, "b": True})
    assert type(got["i"]) is int and type(got["f"]) is float and type(got["b"]) is bool


# ---- copy semantics ---------------------------------------------------------------------------


@pul.remote
class Store:
    def __init__(self, items):
        self.items = items

    def keep(self, value):
        self.stored = value

    def stored_value(self):
        return self.stored

    def get_items(self):
        return self.items

    async def akeep(self, value):
        self.stored = value

    def same(self, obj):
        return obj is self.items


async def test_mutating_argument_after_send_does_not_change_actor_copy():
    await pul.init()
    s = await Store.spawn([])
    arg = [1, 2]
    await s.keep(arg)
    arg.append(3)
    assert await s.stored_value() == [1, 2]
    d = {"k": [1]}
    await s.akeep(d)
    d["k"].append(2)
    assert await s.stored_value() == {"k": [1]}
    await pul.shutdown()


async def test_mutating_returned_value_does_not_change_actor_state():
    await pul.init()
    s = await Store.spawn([1, 2])
    got = await s.get_items()
    got.append(99)
    assert await s.get_items() == [1, 2]
    await pul.shutdown()


async def test_low_level_message_copied(system):
    r = Recorder()
    ref = await system.spawn(r)
    msg = {"a": [1]}
    await ref.ask(msg)
    msg["a"].append(2)
    assert r.got == [{"a": [1]}]
    assert r.got[0] is not msg


async def test_spawned_object_and_ctor_args_not_copied():
    await pul.init()
    items = [1, 2, 3]
    s = await Store.spawn(items)
    assert await s.get_items() == [1, 2, 3]
    items.append(4)  # the actor holds the very list
    assert await s.get_items() == [1, 2, 3, 4]
    await pul.shutdown()


async def test_ref_inside_payload(system):
    target = await system.spawn(Echo())

    class Forward(Actor):
        async def receive(self, msg):
            ref, value = msg
            return await ref.ask(value)

    fwd = await system.spawn(Forward())
    assert await fwd.ask((target, "via")) == "via"


# ---- through the core (a C actor relays to a Python actor) ------------------------------------


def _via_forwarder(target: ActorRef, value) -> pul.Message:
    import pickle

    from pulsing.core.system import PICKLE_TYPE

    body = int(target.actor_id).to_bytes(16, "big") + pickle.dumps(value, protocol=5)
    return pul.Message(PICKLE_TYPE, body)


async def test_python_actor_reached_through_the_core(system):
    from pulsing.exceptions import PulsingBusinessError, PulsingSystemError

    class Calc(Actor):
        def receive(self, msg):
            if msg == "bad":
                raise ValueError("bad through core")
            if msg == "boom":
                raise KeyError("boom")
            return {"got": msg}

    target = await system.spawn(Calc())
    fw = await system.refer(system._core_system().spawn_builtin("forwarder"))
    assert await asyncio.wait_for(fw.ask(_via_forwarder(target, [1, 2])), 5) == {"got": [1, 2]}
    with pytest.raises(PulsingBusinessError) as ei:
        await asyncio.wait_for(fw.ask(_via_forwarder(target, "bad")), 5)
    assert ei.value.code == 400 and "bad through core" in str(ei.value)
    with pytest.raises(PulsingSystemError, match="boom"):
        await asyncio.wait_for(fw.ask(_via_forwarder(target, "boom")), 5)


async def test_remote_method_call_through_the_core(system):
    from pulsing.core.system import _CALL_TAG, _VALUE

    @pul.remote
    class Adder:
        def add(self, a, b):
            return a + b

        async def aadd(self, a, b):
            await asyncio.sleep(0)
            return a + b

    a = await Adder.spawn(system=system)
    fw = await system.refer(system._core_system().spawn_builtin("forwarder"))
    call = (_CALL_TAG, "add", (2, 3), {}, _VALUE)
    assert await asyncio.wait_for(fw.ask(_via_forwarder(a.ref, call)), 5) == 5
    call = (_CALL_TAG, "aadd", (4,), {"b": 5}, _VALUE)
    assert await asyncio.wait_for(fw.ask(_via_forwarder(a.ref, call)), 5) == 9


async def test_ask_to_stopped_actor_through_the_core_fails(system):
    target = await system.spawn(Echo())
    await system.stop(target)
    fw = await system.refer(system._core_system().spawn_builtin("forwarder"))
    with pytest.raises(pul.PulsingError):
        await asyncio.wait_for(fw.ask(_via_forwarder(target, 1)), 5)
