"""Tests of the pulsing._core extension alone (no use of the rest of the package).

Every test that builds a CoreSystem goes through the `core` fixture, which registers the bridge
with the running loop, and checks after close that no thread, fd or core allocation is left.
"""

from __future__ import annotations

import asyncio
import gc
import os
import struct
import threading

import pytest
from pulsing import _core

# ---- helpers ------------------------------------------------------------------------------------


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


# libuv opens process-wide descriptors (its signal pipe) with the first loop: create and close
# one system up front so that fd baselines only see what systems leave behind.
_core.CoreSystem().close()


class Core:
    """A CoreSystem wired to the running loop (what the Python runtime does)."""

    def __init__(self, **kw):
        self.loop = asyncio.get_running_loop()
        self.sys = _core.CoreSystem(**kw)
        self.fd = self.sys.fileno()
        self.loop.add_reader(self.fd, self.sys.drain)

    def close(self):
        if not self.sys.closed:
            self.loop.remove_reader(self.fd)
            self.sys.close()

    async def ask(self, target, msg_type, payload, deadline_ms=0):
        fut = self.loop.create_future()
        self.sys.ask(target, msg_type, payload, fut, deadline_ms)
        return await fut

    def stream(self, target, msg_type, payload):
        """Start a stream call; returns (call, queue of (type, bytes) items, end future)."""
        q: list = []
        end = self.loop.create_future()

        def on_item(t, b, err):
            if t is not None:
                q.append((t, b))
            elif not end.done():
                end.set_result(err)

        call = self.sys.ask_stream(target, msg_type, payload, on_item)
        return call, q, end


@pytest.fixture
async def core():
    gc.collect()
    mem0, fds0, thr0 = _core.mem_live(), _fds(), _threads()
    c = Core()
    try:
        yield c
    finally:
        c.close()
        del c
        gc.collect()
        assert _core.mem_live() == mem0
        assert _fds() == fds0
        assert _threads() == thr0


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def i64(n: int) -> bytes:
    return struct.pack("<q", n)


# ---- module functions ---------------------------------------------------------------------------


def test_codes_and_strerror():
    assert _core.EINVAL == -1 and _core.EOF == -16
    assert _core.strerror(_core.ENOTFOUND) == "actor not found"
    assert _core.strerror(_core.ECLOSED) == "system or stream closed"
    assert _core.strerror(12345)  # unknown codes still give a string
    assert {
        _core.ERRKIND_RUNTIME,
        _core.ERRKIND_BUSINESS,
        _core.ERRKIND_SYSTEM,
        _core.ERRKIND_TIMEOUT,
        _core.ERRKIND_UNSUPPORTED,
    } == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    "name,allow_system,expected",
    [
        ("counter", False, "actors/counter"),
        ("services/counter", False, "services/counter"),
        ("a/b/c", False, "a/b/c"),
        ("A-z_0/9", False, "A-z_0/9"),
        ("system/core", True, "system/core"),
    ],
)
def test_normalize_name_ok(name, allow_system, expected):
    assert _core.normalize_name(name, allow_system) == expected


@pytest.mark.parametrize(
    "name,rule",
    [
        ("", "empty"),
        ("a b", "' '"),
        ("a/", "empty path segment"),
        ("/a", "empty path segment"),
        ("a//b", "empty path segment"),
        ("a.b", "'.'"),
        ("é", "0xc3"),
        ("system/core", "reserved"),
        ("x" * 300, "longer than"),
        ("a/" + "x" * 260, "longer than"),
    ],
)
def test_normalize_name_rules(name, rule):
    with pytest.raises(ValueError, match="invalid actor name") as ei:
        _core.normalize_name(name)
    assert rule in str(ei.value)


def test_normalize_name_types():
    with pytest.raises(TypeError):
        _core.normalize_name(b"abc")  # type: ignore[arg-type]


def test_random_id():
    ids = {_core.random_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(0 < i < 2**128 for i in ids)
    assert any(i >= 2**64 for i in ids)


def test_mem_live_is_int():
    assert isinstance(_core.mem_live(), int)


# ---- copy_value -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -5,
        2**200,
        1.5,
        2j,
        "",
        "text",
        b"bytes",
        (),
        (1, "a", None),
        ((1, 2), (b"x", (3.0,))),
        frozenset({1, 2}),
        (frozenset({(1, 2)}), "x"),
    ],
)
def test_copy_value_identity_for_immutables(value):
    assert _core.copy_value(value) is value


class _Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, _Point) and (self.x, self.y) == (other.x, other.y)


class _MyInt(int):
    pass


@pytest.mark.parametrize(
    "value",
    [
        [1, 2],
        {"a": [1]},
        {1, 2},
        bytearray(b"abc"),
        (1, [2]),
        _Point(1, [2]),
        _MyInt(3),
        frozenset({_MyInt(1)}),
        (("x", {"y": 1}),),
    ],
)
def test_copy_value_copies_mutables(value):
    out = _core.copy_value(value)
    assert out == value
    assert out is not value


def test_copy_value_is_deep():
    inner = [1]
    value = {"k": (inner, 2)}
    out = _core.copy_value(value)
    inner.append(2)
    assert out == {"k": ([1], 2)}


def test_copy_value_out_of_band_buffers_are_copied():
    np = pytest.importorskip("numpy")
    arr = np.arange(100_000, dtype=np.int64)
    out = _core.copy_value({"a": arr})["a"]
    assert (out == arr).all()
    arr[0] = 42
    assert out[0] == 0
    assert out.flags.writeable
    out[1] = 7  # the copy is writable and independent
    assert arr[1] == 1
    f = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    g = _core.copy_value(f)
    assert (g == f).all() and g is not f


def test_copy_value_unpicklable_names_the_type():
    lock = threading.Lock()
    with pytest.raises(TypeError) as ei:
        _core.copy_value(lock)
    assert "lock" in str(ei.value)
    assert ei.value.__cause__ is not None
    with pytest.raises(TypeError) as ei:
        _core.copy_value({"inner": [lock]})
    assert "'dict'" in str(ei.value) and "_thread.lock" in str(ei.value)

    def local():
        pass

    with pytest.raises(TypeError, match="local"):
        _core.copy_value([local])


# ---- CoreSystem life cycle ------------------------------------------------------------------------


def test_create_close_many_systems_fresh_loops():
    gc.collect()
    mem0, fds0, thr0 = _core.mem_live(), _fds(), _threads()

    async def one(i):
        c = Core()
        try:
            assert c.sys.node_id > 0
            e = c.sys.spawn_builtin("echo", f"echo{i}")
            assert await c.ask(e, "t", b"x") == ("t", b"x")
        finally:
            c.close()
        assert c.sys.closed
        c.sys.close()  # idempotent

    for i in range(20):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(one(i))
        finally:
            loop.close()
    gc.collect()
    assert _core.mem_live() == mem0
    assert _fds() == fds0
    assert _threads() == thr0


def test_several_systems_at_once():
    async def main():
        cs = [Core() for _ in range(3)]
        try:
            assert len({c.sys.node_id for c in cs}) == 3
            ids = [c.sys.spawn_builtin("counter") for c in cs]
            for c, i in zip(cs, ids):
                assert await c.ask(i, "inc", i64(7)) == ("i64", i64(7))
        finally:
            for c in cs:
                c.close()

    asyncio.run(main())


def test_dealloc_closes():
    gc.collect()
    mem0, fds0, thr0 = _core.mem_live(), _fds(), _threads()
    s = _core.CoreSystem()
    s.spawn_builtin("echo")
    s.register("py", lambda t, p, r: None)
    del s
    gc.collect()
    assert _core.mem_live() == mem0
    assert _fds() == fds0
    assert _threads() == thr0


def test_cycle_through_handler_is_collected():
    gc.collect()
    fds0, thr0 = _fds(), _threads()

    class Runtime:
        pass

    rt = Runtime()
    rt.sys = _core.CoreSystem()
    rt.handler = lambda t, p, r, rt=rt: rt  # handler -> rt -> sys -> handler
    rt.sys.register("py", rt.handler)
    del rt
    gc.collect()
    assert _fds() == fds0
    assert _threads() == thr0


async def test_closed_system_raises(core):
    s = core.sys
    core.close()
    assert s.closed
    for call in (
        lambda: s.fileno(),
        lambda: s.lookup("x"),
        lambda: s.actors(),
        lambda: s.spawn_builtin("echo"),
        lambda: s.register("x", print),
        lambda: s.unregister(1),
        lambda: s.stop(1),
        lambda: s.tell(1, "t", b""),
        lambda: s.ask(1, "t", b"", core.loop.create_future()),
        lambda: s.ask_stream(1, "t", b"", print),
    ):
        with pytest.raises(_core.CoreError) as ei:
            call()
        assert ei.value.code == _core.ECLOSED
    s.drain()  # a stray reader callback after close is harmless
    s.close()


def test_config_validation():
    with pytest.raises(ValueError):
        _core.CoreSystem(mailbox_capacity=0)
    with pytest.raises(TypeError):
        _core.CoreSystem(256)  # keyword-only


# ---- table and names ----------------------------------------------------------------------------


async def test_register_lookup_duplicate_actors(core):
    s = core.sys

    def h(t, p, r):
        return None

    a = s.register("svc/one", h)
    b = s.register("two", h)
    anon = s.register(None, h)
    assert len({a, b, anon}) == 3
    assert s.lookup("svc/one") == a
    assert s.lookup("two") == b
    assert s.lookup("actors/two") == b
    assert s.lookup("nobody") is None
    with pytest.raises(ValueError):
        s.lookup("bad name")
    with pytest.raises(_core.CoreError) as ei:
        s.register("two", h)
    assert ei.value.code == _core.EEXIST
    assert "actors/two" in str(ei.value)
    with pytest.raises(ValueError, match="reserved"):
        s.register("system/x", h)
    sysname = s.register("system/x", h, allow_system=True)
    table = dict(s.actors())
    assert table[a] == "svc/one" and table[b] == "actors/two" and table[anon] is None
    assert table[sysname] == "system/x"
    s.unregister(b)
    s.unregister(b)  # idempotent
    for _ in range(100):
        if s.lookup("two") is None:
            break
        await asyncio.sleep(0.005)
    assert s.lookup("two") is None
    assert b not in dict(s.actors())
    c = s.register("two", h)  # the name is free again
    assert c != b


async def test_spawn_builtin_errors(core):
    with pytest.raises(ValueError, match="unknown builtin"):
        core.sys.spawn_builtin("nope")
    core.sys.spawn_builtin("echo", "e")
    with pytest.raises(_core.CoreError) as ei:
        core.sys.spawn_builtin("echo", "e")
    assert ei.value.code == _core.EEXIST


async def test_bad_ids(core):
    fut = core.loop.create_future()
    for bad, exc in ((0, ValueError), (-1, ValueError), (2**128, ValueError), ("x", TypeError)):
        with pytest.raises(exc):
            core.sys.ask(bad, "t", b"", fut)
    assert not fut.done()


# ---- asks to C actors ------------------------------------------------------------------------------


async def test_ask_echo_payload_kinds(core):
    e = core.sys.spawn_builtin("echo")
    assert await core.ask(e, "t", b"hello") == ("t", b"hello")
    assert await core.ask(e, "t", bytearray(b"ba")) == ("t", b"ba")
    assert await core.ask(e, "t", memoryview(b"xmvx")[1:3]) == ("t", b"mv")
    assert await core.ask(e, "ütf", b"") == ("ütf", b"")
    assert await core.ask(e, "t", None) == ("t", b"")
    big = os.urandom(1 << 20)
    assert await core.ask(e, "t", big) == ("t", big)
    # out-of-band segments: small copied, large zero-copy; the reply concatenates them
    seg = bytearray(os.urandom(200_000))
    assert await core.ask(e, "t", [b"head", seg, b"tail"]) == ("t", b"head" + bytes(seg) + b"tail")
    assert await core.ask(e, "t", (b"only",)) == ("t", b"only")
    with pytest.raises(TypeError):
        await core.ask(e, "t", "not bytes")
    with pytest.raises(TypeError):
        await core.ask(e, 5, b"")


async def test_ask_complete_callable_resolves_the_future(core):
    """With complete=, the drain hands the outcome to the callable instead of the future."""
    e = core.sys.spawn_builtin("echo")
    seen = []

    def complete(fut, ok, value):
        seen.append((ok, value))
        fut.set_result("decoded" if ok else "failed")

    fut = core.loop.create_future()
    core.sys.ask(e, "t", b"hi", fut, 0, False, complete)
    assert await fut == "decoded"
    fut = core.loop.create_future()
    core.sys.ask(e, "t", [b"h", b"i"], fut, complete=complete, segments=True)
    assert await fut == "decoded"
    fut = core.loop.create_future()
    core.sys.ask(_core.random_id(), "t", b"", fut, complete=complete)
    assert await asyncio.wait_for(fut, 5) == "failed"
    assert seen[0] == (True, ("t", b"hi"))
    assert seen[1][0] is True and seen[1][1][0] == "t"
    assert b"".join([seen[1][1][1], *map(bytes, seen[1][1][2])]) == b"hi"
    assert seen[2][0] is False and seen[2][1].code == _core.ENOTFOUND
    # a cancelled future: the callable is not called
    fut = core.loop.create_future()
    core.sys.ask(e, "t", b"x", fut, complete=complete)
    fut.cancel()
    await asyncio.sleep(0.05)
    assert len(seen) == 3
    with pytest.raises(TypeError):
        core.sys.ask(e, "t", b"", core.loop.create_future(), complete=5)
    core.sys.spawn_builtin("echo", "named-echo")
    fut = core.loop.create_future()
    core.sys.ask_named(None, "named-echo", "t", b"n", fut, complete=complete)
    assert await asyncio.wait_for(fut, 5) == "decoded"
    assert seen[3] == (True, ("t", b"n"))


async def test_zero_copy_segment_released_after_reply(core):
    np = pytest.importorskip("numpy")
    e = core.sys.spawn_builtin("echo")
    arr = np.arange(50_000, dtype=np.int64)
    _, b = await core.ask(e, "t", [b"", arr])
    assert b == arr.tobytes()
    for _ in range(50):  # the view is released at a later drain (off the GIL on the core)
        try:
            arr.resize(10, refcheck=False)  # fails while a buffer export is alive
            break
        except ValueError:
            await asyncio.sleep(0.005)
    assert arr.shape == (10,)


async def test_counter_many_in_flight(core):
    c = core.sys.spawn_builtin("counter", "cnt")
    n = 2000
    futs = []
    for _ in range(n):
        f = core.loop.create_future()
        core.sys.ask(c, "inc", i64(1), f)
        futs.append(f)
    res = await asyncio.gather(*futs)
    totals = sorted(struct.unpack("<q", b)[0] for _, b in res)
    assert totals == list(range(1, n + 1))  # serial state changes, every reply delivered
    stats = core.sys.bridge_stats()
    assert stats["pushes"] >= n
    assert stats["wakeups"] <= stats["pushes"]


async def test_spin(core):
    assert core.sys.spin(0) is False
    assert core.sys.spin(1000) is False  # nothing in flight: gives up after ~1 ms
    e = core.sys.spawn_builtin("echo")
    fut = core.loop.create_future()
    core.sys.ask(e, "t", b"", fut)
    assert core.sys.spin(5_000_000)  # returns as soon as the completion is queued
    core.sys.drain()
    assert fut.done() and fut.result() == ("t", b"")


async def test_tell(core):
    c = core.sys.spawn_builtin("counter")
    for _ in range(10):
        core.sys.tell(c, "inc", i64(2))
    assert await core.ask(c, "inc", i64(0)) == ("i64", i64(20))
    with pytest.raises(_core.CoreError) as ei:
        core.sys.tell(_core.random_id(), "t", b"")
    assert ei.value.code == _core.ENOTFOUND


async def test_ask_unknown_actor_fails_promptly(core):
    with pytest.raises(_core.CoreError) as ei:
        await asyncio.wait_for(core.ask(_core.random_id(), "t", b""), 5)
    assert ei.value.code == _core.ENOTFOUND


async def test_ask_stopped_actor(core):
    e = core.sys.spawn_builtin("echo")
    core.sys.stop(e)
    core.sys.stop(e)  # idempotent
    with pytest.raises(_core.CoreError) as ei:
        await asyncio.wait_for(core.ask(e, "t", b""), 5)
    assert ei.value.code in (_core.ENOTFOUND, _core.ESTOPPED)


@pytest.mark.parametrize(
    "kind",
    [
        _core.ERRKIND_SYSTEM,
        _core.ERRKIND_BUSINESS,
        _core.ERRKIND_TIMEOUT,
        _core.ERRKIND_UNSUPPORTED,
        _core.ERRKIND_RUNTIME,
    ],
)
async def test_failer_error_fields(core, kind):
    f = core.sys.spawn_builtin("failer")
    with pytest.raises(_core.CoreError) as ei:
        await core.ask(f, "x", bytes([kind]))
    err = ei.value
    assert err.code == _core.EACTOR
    assert err.kind == kind
    assert err.message == "induced failure"
    assert err.biz_code == 418
    assert err.details == "failer details"
    assert err.recoverable is True
    assert err.duration_ms == 1500
    assert err.type_name == "RuntimeError"
    assert "induced failure" in str(err)


async def test_failer_default_is_system_error(core):
    f = core.sys.spawn_builtin("failer")
    with pytest.raises(_core.CoreError) as ei:
        await core.ask(f, "x", b"")
    assert ei.value.kind == _core.ERRKIND_SYSTEM


# ---- streams -------------------------------------------------------------------------------------


async def test_stream_items_then_end(core):
    st = core.sys.spawn_builtin("streamer")
    call, items, end = core.stream(st, "s", u32(100))
    assert await asyncio.wait_for(end, 10) is None
    assert [struct.unpack("<I", b)[0] for _, b in items] == list(range(100))
    assert all(t == "item" for t, _ in items)
    assert call.done
    call.cancel()  # harmless after the end


async def test_stream_flow_bounds_items_not_taken(core):
    # flow=True: the items handed over and not taken stay bounded (the C producer is held by
    # its stream window), then taking them lets everything through, in order.
    st = core.sys.spawn_builtin("streamer")
    items: list = []
    end = core.loop.create_future()

    def on_item(t, b, err):
        if t is not None:
            items.append(b)
        elif not end.done():
            end.set_result(err)

    call = core.sys.ask_stream(st, "s", u32(5000), on_item, flow=True)
    last = -1
    for _ in range(100):  # until the count stops moving (generous polling)
        await asyncio.sleep(0.02)
        if len(items) == last:
            break
        last = len(items)
    assert len(items) < 500 and not end.done()
    taken = 0
    while not end.done() or taken < len(items):
        if taken < len(items):
            call.taken()
            taken += 1
        else:
            await asyncio.sleep(0.001)
    assert await end is None
    assert [struct.unpack("<I", b)[0] for b in items] == list(range(5000))


async def test_stream_empty(core):
    st = core.sys.spawn_builtin("streamer")
    _call, items, end = core.stream(st, "s", u32(0))
    assert await asyncio.wait_for(end, 10) is None
    assert items == []


async def test_stream_plain_reply_is_one_item(core):
    e = core.sys.spawn_builtin("echo")
    _call, items, end = core.stream(e, "t", b"once")
    assert await asyncio.wait_for(end, 10) is None
    assert items == [("t", b"once")]


async def test_stream_error(core):
    f = core.sys.spawn_builtin("failer")
    _call, _items, end = core.stream(f, "t", b"")
    err = await asyncio.wait_for(end, 10)
    assert isinstance(err, _core.CoreError) and err.code == _core.EACTOR
    assert err.kind == _core.ERRKIND_SYSTEM


async def test_stream_cancel_mid_stream(core):
    st = core.sys.spawn_builtin("streamer")
    # 1000 items, 2 ms apart: cancel after a few
    call, items, end = core.stream(st, "s", u32(1000) + u32(2))
    for _ in range(500):
        if len(items) >= 3:
            break
        await asyncio.sleep(0.002)
    assert len(items) >= 3
    call.cancel()
    assert call.done
    n = len(items)
    await asyncio.sleep(0.05)
    assert len(items) == n  # nothing after cancel
    assert not end.done()  # on_item is not called again, not even for the end
    # the producer saw the cancel and stopped: the system is still healthy
    e = core.sys.spawn_builtin("echo")
    assert await core.ask(e, "t", b"ok") == ("t", b"ok")


async def test_stream_to_unknown_actor(core):
    _call, _items, end = core.stream(_core.random_id(), "t", b"")
    err = await asyncio.wait_for(end, 5)
    assert err.code == _core.ENOTFOUND


# ---- cancel and deadlines --------------------------------------------------------------------------


async def test_cancel_ask_future_cancels_core_call(core):
    replies = []
    py = core.sys.register("hold", lambda t, p, r: replies.append(r))
    fut = core.loop.create_future()
    core.sys.ask(py, "t", b"", fut)
    for _ in range(200):
        if replies:
            break
        await asyncio.sleep(0.002)
    assert len(replies) == 1
    fut.cancel()
    await asyncio.sleep(0.02)
    # the callee's late answer goes nowhere and breaks nothing
    try:
        replies[0].send("late", b"x")
    except _core.CoreError:
        pass
    replies.clear()
    await asyncio.sleep(0.02)
    e = core.sys.spawn_builtin("echo")
    assert await core.ask(e, "t", b"ok") == ("t", b"ok")


async def test_cancel_many_asks(core):
    e = core.sys.spawn_builtin("echo")
    futs = []
    for i in range(500):
        f = core.loop.create_future()
        core.sys.ask(e, "t", b"x", f)
        futs.append(f)
    for f in futs[::2]:
        f.cancel()
    res = await asyncio.gather(*futs, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in res[::2])
    assert all(r == ("t", b"x") for r in res[1::2])


async def test_ask_deadline(core):
    py = core.sys.register("slow", lambda t, p, r: None if r is None else core_hold.append(r))
    core_hold: list = []
    with pytest.raises(_core.CoreError) as ei:
        await asyncio.wait_for(core.ask(py, "t", b"", deadline_ms=50), 5)
    assert ei.value.code == _core.ETIMEDOUT
    core_hold.clear()


# ---- Python (foreign) actors reached through the core ---------------------------------------------


async def test_forwarder_reaches_python_actor(core):
    got = []

    def handler(msg_type, payload, reply):
        assert isinstance(payload, memoryview)
        got.append((msg_type, bytes(payload), reply is None))
        if reply is not None:
            assert reply.is_ask
            reply.send("pong", bytes(payload).upper())

    py = core.sys.register("py", handler)
    fw = core.sys.spawn_builtin("forwarder")
    assert await core.ask(fw, "ping", py.to_bytes(16, "big") + b"abc") == ("pong", b"ABC")
    core.sys.tell(fw, "note", py.to_bytes(16, "big") + b"told")
    for _ in range(200):
        if len(got) == 2:
            break
        await asyncio.sleep(0.002)
    assert got == [("ping", b"abc", False), ("note", b"told", True)]


async def test_python_actor_direct_ask_and_error(core):
    def handler(msg_type, payload, reply):
        if msg_type == "ok":
            reply.send("r", [b"a", bytearray(b"b" * 20000)])
        elif msg_type == "err":
            reply.error(
                _core.ERRKIND_BUSINESS, "bad input", code=400, details="d", type_name="ValueError"
            )
        elif msg_type == "drop":
            pass  # dropped without an answer: abandoned
        elif msg_type == "abandon":
            reply.abandon()
            with pytest.raises(RuntimeError):
                reply.abandon()
        elif msg_type == "raise":
            raise KeyError("boom")

    py = core.sys.register("py2", handler)
    assert await core.ask(py, "ok", b"") == ("r", b"a" + b"b" * 20000)
    with pytest.raises(_core.CoreError) as ei:
        await core.ask(py, "err", b"")
    e = ei.value
    assert (e.code, e.kind, e.biz_code, e.details, e.type_name, e.message) == (
        _core.EACTOR,
        _core.ERRKIND_BUSINESS,
        400,
        "d",
        "ValueError",
        "bad input",
    )
    for t in ("drop", "abandon"):
        with pytest.raises(_core.CoreError) as ei:
            await asyncio.wait_for(core.ask(py, t, b""), 5)
        assert ei.value.code == _core.ESTOPPED


async def test_handler_exception_is_reported_and_drain_goes_on(core):
    errors = []
    core.loop.set_exception_handler(lambda loop, ctx: errors.append(repr(ctx.get("exception"))))

    def handler(msg_type, payload, reply):
        if msg_type == "raise":
            raise KeyError("boom")
        reply.send("ok", b"")

    py = core.sys.register("py3", handler)
    fut_raise = core.loop.create_future()
    core.sys.ask(py, "raise", b"", fut_raise)
    assert await core.ask(py, "fine", b"") == ("ok", b"")
    with pytest.raises(_core.CoreError) as ei:
        await asyncio.wait_for(fut_raise, 5)
    assert ei.value.code == _core.ESTOPPED  # the dropped Reply was abandoned
    assert any("KeyError" in e for e in errors)


async def test_python_actor_streams_to_core_caller(core):
    writers = []

    def handler(msg_type, payload, reply):
        w = reply.stream()
        writers.append(w)
        n = int(bytes(payload))
        state = {"i": 0}

        def pump():
            while state["i"] < n:
                if not w.push("item", str(state["i"]).encode()):
                    w.on_writable(pump)
                    return
                state["i"] += 1
            w.end()
            with pytest.raises(RuntimeError):
                w.end()

        pump()

    py = core.sys.register("py-stream", handler)
    _call, items, end = core.stream(py, "s", b"200")
    assert await asyncio.wait_for(end, 10) is None
    assert [int(b) for _, b in items] == list(range(200))


async def test_python_writer_error_mid_stream(core):
    def handler(msg_type, payload, reply):
        w = reply.stream()
        w.push("item", b"1")
        w.error(_core.ERRKIND_SYSTEM, "went wrong", recoverable=False, type_name="OSError")

    py = core.sys.register("py-stream-err", handler)
    _call, items, end = core.stream(py, "s", b"")
    err = await asyncio.wait_for(end, 10)
    assert items == [("item", b"1")]  # items before the error are delivered first
    assert err.code == _core.EACTOR and err.kind == _core.ERRKIND_SYSTEM
    assert err.recoverable is False and err.type_name == "OSError"


async def test_unregister_releases_handler(core):
    import weakref

    class H:
        def __call__(self, t, p, r):
            pass

    h = H()
    ref = weakref.ref(h)
    stopped = []
    py = core.sys.register("gone", h, on_stop=stopped.append)
    del h
    assert ref() is not None  # the system holds it while registered
    core.sys.unregister(py)
    for _ in range(200):
        gc.collect()
        if ref() is None:
            break
        await asyncio.sleep(0.002)
    assert ref() is None
    assert stopped == [py]


# ---- close with work in flight -------------------------------------------------------------------


async def test_close_with_calls_in_flight(core):
    held = []
    py = core.sys.register("never", lambda t, p, r: held.append(r))
    st = core.sys.spawn_builtin("streamer")
    futs = []
    for _ in range(50):
        f = core.loop.create_future()
        core.sys.ask(py, "t", b"", f)
        futs.append(f)
    _call, _items, end = core.stream(st, "s", u32(100000) + u32(5))
    await asyncio.sleep(0.02)
    core.close()
    res = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), 5)
    assert all(isinstance(r, _core.CoreError) and r.code == _core.ECLOSED for r in res)
    err = await asyncio.wait_for(end, 5)
    assert err.code == _core.ECLOSED
    for r in held:  # replies outliving the system raise, never crash
        with pytest.raises(_core.CoreError):
            r.send("t", b"")
    held.clear()


async def test_close_from_inside_a_handler(core):
    closed = core.loop.create_future()

    def handler(t, p, r):
        core.close()
        closed.set_result(True)

    py = core.sys.register("closer", handler)
    e = core.sys.spawn_builtin("echo")
    other = core.loop.create_future()
    core.sys.ask(e, "t", b"", other)
    core.sys.tell(py, "t", b"")
    assert await asyncio.wait_for(closed, 5)
    r = await asyncio.wait_for(asyncio.gather(other, return_exceptions=True), 5)
    assert r[0] == ("t", b"") or (isinstance(r[0], _core.CoreError) and r[0].code == _core.ECLOSED)


async def test_reply_on_cancel_when_the_caller_gives_up(core):
    replies = []
    cancelled = []

    def handler(msg_type, payload, reply):
        replies.append(reply)
        reply.on_cancel(lambda: cancelled.append(msg_type))

    py = core.sys.register("py_cancel", handler)
    fut = core.loop.create_future()
    core.sys.ask(py, "first", b"", fut)
    for _ in range(200):
        if replies:
            break
        await asyncio.sleep(0.002)
    fut.cancel()
    for _ in range(500):
        if cancelled:
            break
        await asyncio.sleep(0.002)
    assert cancelled == ["first"] and replies[0].cancelled
    replies[0].abandon()  # late: harmless
    # a deadline that passes counts as giving up too; an answered ask never calls back
    with pytest.raises(_core.CoreError):
        await core.ask(py, "late", b"", deadline_ms=30)
    for _ in range(500):
        if len(cancelled) == 2:
            break
        await asyncio.sleep(0.002)
    assert cancelled == ["first", "late"]
    seen = []
    replies[1].on_cancel(lambda: seen.append(1))  # already cancelled: runs at once
    assert seen == [1]

    def answer(msg_type, payload, reply):
        reply.on_cancel(lambda: cancelled.append("never"))
        reply.send("ok", b"")

    py2 = core.sys.register("py_answer", answer)
    assert await core.ask(py2, "x", b"") == ("ok", b"")
    await asyncio.sleep(0.05)
    assert "never" not in cancelled
