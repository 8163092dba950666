"""The exception classes and typed errors from sync, async and stream methods."""

from __future__ import annotations

import asyncio
import pickle

import pulsing as pul
import pytest
from pulsing.exceptions import (
    PulsingActorError,
    PulsingBusinessError,
    PulsingError,
    PulsingRuntimeError,
    PulsingSerializationError,
    PulsingSystemError,
    PulsingTimeoutError,
    PulsingUnsupportedError,
)

# ---- the classes --------------------------------------------------------------------------------


def test_base():
    e = PulsingError("boom")
    assert isinstance(e, Exception)
    assert str(e) == "boom"


def test_runtime_error():
    cause = OSError("disk")
    e = PulsingRuntimeError("not found", cause=cause)
    assert str(e) == "not found"
    assert e.cause is cause
    assert PulsingRuntimeError("x").cause is None
    assert isinstance(e, PulsingError)
    assert not isinstance(e, PulsingActorError)


def test_actor_error():
    e = PulsingActorError("bad", actor_name="actors/x", cause=KeyError("k"))
    assert str(e) == "bad"
    assert e.actor_name == "actors/x"
    assert isinstance(e.cause, KeyError)
    e2 = PulsingActorError("m")
    assert e2.actor_name is None and e2.cause is None


def test_business_error():
    e = PulsingBusinessError(404, "missing", details="id=3")
    assert (e.code, e.message, e.details) == (404, "missing", "id=3")
    assert str(e) == "[404] missing"
    assert PulsingBusinessError(400, "m").details is None
    assert isinstance(e, PulsingActorError)


def test_system_error():
    e = PulsingSystemError("db down", recoverable=False)
    assert (e.error, e.recoverable) == ("db down", False)
    assert str(e) == "db down"
    assert PulsingSystemError("x").recoverable is True
    assert isinstance(e, PulsingActorError)


def test_timeout_error():
    e = PulsingTimeoutError("fetch", duration_ms=1500)
    assert (e.operation, e.duration_ms) == ("fetch", 1500)
    assert str(e) == "Operation 'fetch' timed out after 1500ms"
    assert PulsingTimeoutError("op").duration_ms == 0
    assert str(PulsingTimeoutError("op")) == "Operation 'op' timed out after 0ms"
    assert isinstance(e, PulsingActorError)


def test_unsupported_error():
    e = PulsingUnsupportedError("teleport")
    assert e.operation == "teleport"
    assert str(e) == "Unsupported operation: teleport"
    assert isinstance(e, PulsingActorError)


def test_serialization_error_is_type_error_and_pulsing_error():
    e = PulsingSerializationError("cannot send argument")
    assert isinstance(e, TypeError)
    assert isinstance(e, PulsingError)


def test_can_be_raised_and_caught_as_base():
    for e in (
        PulsingBusinessError(1, "a"),
        PulsingSystemError("b"),
        PulsingTimeoutError("c"),
        PulsingUnsupportedError("d"),
    ):
        with pytest.raises(PulsingActorError):
            raise e
        with pytest.raises(PulsingError):
            raise e


# ---- typed errors from actors ------------------------------------------------------------------


class Custom(Exception):
    pass


@pul.remote
class Faulty:
    def __init__(self):
        self.count = 0

    def ok(self):
        self.count += 1
        return self.count

    def value_error(self):
        raise ValueError("bad input")

    def type_error(self):
        raise TypeError("wrong type")

    def timeout(self):
        raise TimeoutError("too slow")

    def other(self):
        raise Custom("custom failure")

    def runtime(self):
        raise RuntimeError("runtime failure")

    def business(self):
        raise PulsingBusinessError(409, "conflict", details="row 7")

    def system(self):
        raise PulsingSystemError("fatal", recoverable=False)

    def ptimeout(self):
        raise PulsingTimeoutError("lookup", duration_ms=250)

    def unsupported(self):
        raise PulsingUnsupportedError("fly")

    async def a_value_error(self):
        await asyncio.sleep(0)
        raise ValueError("async bad input")

    async def a_timeout(self):
        await asyncio.sleep(0)
        raise asyncio.TimeoutError()

    async def a_other(self):
        await asyncio.sleep(0)
        raise Custom("async custom")

    async def a_business(self):
        raise PulsingBusinessError(422, "unprocessable")

    def gen_value_error(self):
        yield 1
        yield 2
        raise ValueError("gen bad")

    async def agen_other(self):
        yield "a"
        await asyncio.sleep(0)
        raise Custom("agen custom")

    async def agen_business(self):
        yield 1
        raise PulsingBusinessError(451, "blocked", details="d")


@pytest.fixture
async def faulty():
    await pul.init()
    yield await Faulty.spawn(name="faulty")
    await pul.shutdown()


async def test_value_error_is_business_400(faulty):
    with pytest.raises(PulsingBusinessError) as ei:
        await faulty.value_error()
    assert ei.value.code == 400
    assert ei.value.message == "bad input"
    assert "bad input" in str(ei.value)


async def test_type_error_is_business_400(faulty):
    with pytest.raises(PulsingBusinessError) as ei:
        await faulty.type_error()
    assert ei.value.code == 400
    assert "wrong type" in str(ei.value)


async def test_timeout_error_is_pulsing_timeout(faulty):
    with pytest.raises(PulsingTimeoutError):
        await faulty.timeout()
    with pytest.raises(PulsingTimeoutError):
        await faulty.a_timeout()


async def test_other_exceptions_are_system_errors(faulty):
    with pytest.raises(PulsingSystemError) as ei:
        await faulty.other()
    assert "custom failure" in str(ei.value)
    assert ei.value.recoverable is True
    with pytest.raises(PulsingSystemError, match="runtime failure"):
        await faulty.runtime()
    with pytest.raises(PulsingSystemError, match="async custom"):
        await faulty.a_other()


async def test_raised_pulsing_errors_keep_their_fields(faulty):
    with pytest.raises(PulsingBusinessError) as ei:
        await faulty.business()
    assert (ei.value.code, ei.value.message, ei.value.details) == (409, "conflict", "row 7")
    with pytest.raises(PulsingSystemError) as ei2:
        await faulty.system()
    assert (ei2.value.error, ei2.value.recoverable) == ("fatal", False)
    with pytest.raises(PulsingTimeoutError) as ei3:
        await faulty.ptimeout()
    assert (ei3.value.operation, ei3.value.duration_ms) == ("lookup", 250)
    with pytest.raises(PulsingUnsupportedError) as ei4:
        await faulty.unsupported()
    assert ei4.value.operation == "fly"
    with pytest.raises(PulsingBusinessError) as ei5:
        await faulty.a_business()
    assert ei5.value.code == 422


async def test_async_value_error(faulty):
    with pytest.raises(PulsingBusinessError) as ei:
        await faulty.a_value_error()
    assert ei.value.code == 400 and "async bad input" in str(ei.value)


async def test_errors_are_actor_errors_not_runtime(faulty):
    for m in (faulty.value_error, faulty.other, faulty.timeout, faulty.a_other):
        with pytest.raises(PulsingActorError) as ei:
            await m()
        assert not isinstance(ei.value, PulsingRuntimeError)


async def test_stream_error_after_items(faulty):
    got = []
    with pytest.raises(PulsingBusinessError) as ei:
        async for x in faulty.gen_value_error():
            got.append(x)
    assert got == [1, 2]
    assert ei.value.code == 400 and "gen bad" in str(ei.value)

    got = []
    with pytest.raises(PulsingSystemError, match="agen custom"):
        async for x in faulty.agen_other():
            got.append(x)
    assert got == ["a"]

    got = []
    with pytest.raises(PulsingBusinessError) as ei2:
        async for x in faulty.agen_business():
            got.append(x)
    assert got == [1]
    assert (ei2.value.code, ei2.value.details) == (451, "d")


async def test_awaiting_a_failing_stream_raises(faulty):
    # an async generator awaited is consumed: its error is raised by the await
    with pytest.raises(PulsingSystemError, match="agen custom"):
        await faulty.agen_other()
    # a plain generator awaited gives its items: the error comes while iterating, after them
    got = []
    with pytest.raises(PulsingBusinessError, match="gen bad"):
        async for x in await faulty.gen_value_error():
            got.append(x)
    assert got == [1, 2]


async def test_actor_keeps_serving_and_state_after_errors(faulty):
    assert await faulty.ok() == 1
    for m in (
        faulty.value_error,
        faulty.other,
        faulty.a_other,
        faulty.timeout,
        faulty.system,
    ):
        with pytest.raises(PulsingActorError):
            await m()
    with pytest.raises(PulsingActorError):
        async for _ in faulty.agen_other():
            pass
    assert await faulty.ok() == 2  # state survived (policy "never": no restart)


async def test_error_carries_actor_name_and_original_type(faulty):
    with pytest.raises(PulsingSystemError) as ei:
        await faulty.other()
    assert ei.value.actor_name == "actors/faulty"
    assert getattr(ei.value, "error_type", "Custom") == "Custom"


async def test_low_level_receive_errors():
    class Bad(pul.Actor):
        def receive(self, msg):
            if msg == "v":
                raise ValueError("low value")
            if msg == "x":
                raise KeyError("low key")
            return "ok"

    class AsyncBad(pul.Actor):
        async def receive(self, msg):
            await asyncio.sleep(0)
            raise ValueError("async low")

    s = await pul.actor_system()
    try:
        ref = await s.spawn(Bad())
        with pytest.raises(PulsingBusinessError, match="low value"):
            await ref.ask("v")
        with pytest.raises(PulsingSystemError, match="low key"):
            await ref.ask("x")
        assert await ref.ask("y") == "ok"
        aref = await s.spawn(AsyncBad())
        with pytest.raises(PulsingBusinessError, match="async low"):
            await aref.ask(1)
    finally:
        await s.shutdown()


async def test_errors_pickle_round_trip():
    for e in (
        PulsingBusinessError(400, "m", "d"),
        PulsingSystemError("s", False),
        PulsingTimeoutError("op", 5),
        PulsingUnsupportedError("u"),
        PulsingRuntimeError("r"),
        PulsingActorError("a", actor_name="n"),
    ):
        e2 = pickle.loads(pickle.dumps(e))
        assert type(e2) is type(e)
        assert str(e2) == str(e)
