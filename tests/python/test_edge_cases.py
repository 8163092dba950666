"""Edge cases: stopped actors, missing methods, unpicklable values, cancellation, full mailboxes,
shutdown with calls in flight, tasks and gather."""

from __future__ import annotations

import asyncio
import threading

import pulsing as pul
import pytest
from pulsing.core import Actor, SystemConfig, create_system
from pulsing.exceptions import (
    PulsingError,
    PulsingRuntimeError,
    PulsingSerializationError,
)


@pul.remote
class Worker:
    def __init__(self):
        self.n = 0
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()
        self.stream_cancelled = asyncio.Event()
        self.gate = asyncio.Event()
        self.seen = []

    def incr(self):
        self.n += 1
        return self.n

    async def aincr(self):
        await asyncio.sleep(0)
        self.n += 1
        return self.n

    async def slow(self):
        self.started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return "finished"

    async def blocked(self, tag):
        await self.gate.wait()
        self.seen.append(tag)
        return tag

    def release(self):
        self.gate.set()

    async def slow_stream(self):
        try:
            yield 0
            self.started.set()
            await asyncio.sleep(30)
            yield 1
        except (asyncio.CancelledError, GeneratorExit):
            self.stream_cancelled.set()
            raise

    async def saw_cancel(self):
        await asyncio.wait_for(self.cancelled.wait(), 10)
        return True

    async def saw_stream_cancel(self):
        await asyncio.wait_for(self.stream_cancelled.wait(), 10)
        return True

    def take(self, x):
        return "ok"

    def give_lock(self):
        return threading.Lock()

    def give_lambda(self):
        return lambda: 1

    def stream_unpicklable(self):
        yield 1
        yield threading.Lock()


@pytest.fixture
async def w():
    await pul.init()
    yield await Worker.spawn(name="w")
    await pul.shutdown()


async def test_call_to_stopped_actor_fails_at_once(w):
    await pul.get_system().stop("w")
    for call in (w.incr, w.aincr, w.as_any().incr):
        with pytest.raises(PulsingRuntimeError):
            await asyncio.wait_for(call(), 5)
    with pytest.raises(PulsingRuntimeError):
        await asyncio.wait_for(w.ref.ask("x"), 5)
    with pytest.raises(PulsingRuntimeError):
        await asyncio.wait_for(w.ref.tell("x"), 5)
    with pytest.raises(PulsingRuntimeError):

        async def consume():
            async for _ in w.slow_stream():
                pass

        await asyncio.wait_for(consume(), 5)


async def test_stop_fails_queued_calls():
    await pul.init()
    w = await Worker.spawn(name="q")
    blocked = [asyncio.ensure_future(w.blocked(i)) for i in range(3)]
    for _ in range(3):
        await asyncio.sleep(0)
    await pul.get_system().stop("q")
    results = await asyncio.wait_for(asyncio.gather(*blocked, return_exceptions=True), 5)
    assert all(isinstance(r, PulsingRuntimeError) for r in results), results
    await pul.shutdown()


async def test_missing_method_on_untyped_proxy(w):
    u = w.as_any()
    with pytest.raises(PulsingError, match="no_such_method"):
        await asyncio.wait_for(u.no_such_method(1), 5)
    assert await w.incr() == 1


async def test_unpicklable_argument(w):
    lock = threading.Lock()
    with pytest.raises(PulsingSerializationError) as ei:
        await w.take(lock)
    assert isinstance(ei.value, TypeError)
    assert isinstance(ei.value, PulsingError)
    assert "lock" in str(ei.value).lower()
    with pytest.raises(TypeError):
        await w.take(lambda: 1)
    with pytest.raises(PulsingSerializationError):
        await w.as_any().take(lock)
    assert await w.incr() == 1


async def test_unpicklable_result(w):
    with pytest.raises(PulsingSerializationError) as ei:
        await w.give_lock()
    assert "lock" in str(ei.value).lower()
    with pytest.raises(TypeError):
        await w.give_lambda()
    assert await w.incr() == 1


async def test_unpicklable_stream_item(w):
    got = []
    with pytest.raises(PulsingSerializationError):
        async for x in w.stream_unpicklable():
            got.append(x)
    assert got == [1]


async def test_unpicklable_low_level_message():
    class Echo(Actor):
        def receive(self, msg):
            return msg

    s = await pul.actor_system()
    try:
        ref = await s.spawn(Echo())
        with pytest.raises(PulsingSerializationError):
            await ref.ask(threading.Lock())
        with pytest.raises(PulsingSerializationError):
            await ref.tell(threading.Lock())
        assert await ref.ask(1) == 1
    finally:
        await s.shutdown()


async def test_cancel_caller_mid_ask_cancels_the_work(w):
    task = asyncio.create_task(w.slow())
    await asyncio.wait_for(_instance(w).started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await w.saw_cancel() is True
    assert await w.incr() == 1


def _instance(proxy):
    # The live instance of a local actor (to wait on its events from the test).
    return proxy.ref._cell.instance


async def test_wait_for_timeout_cancels_async_method(w):
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(w.slow(), 0.05)
    assert await w.saw_cancel() is True


async def test_cancel_caller_mid_stream(w):
    got = []

    async def consume():
        async for x in w.slow_stream():
            got.append(x)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(_instance(w).started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == [0]
    assert await w.saw_stream_cancel() is True


async def test_actor_stopped_mid_stream(w):
    got = []

    async def consume():
        async for x in w.slow_stream():
            got.append(x)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(_instance(w).started.wait(), 5)
    await pul.get_system().stop("w")
    with pytest.raises(PulsingRuntimeError):
        await asyncio.wait_for(task, 5)
    assert got == [0]
    assert _instance(w).stream_cancelled.is_set()


async def test_actor_stopped_while_async_method_runs(w):
    task = asyncio.create_task(w.slow())
    await asyncio.wait_for(_instance(w).started.wait(), 5)
    await pul.get_system().stop("w")
    with pytest.raises(PulsingRuntimeError, match="stopped"):
        await asyncio.wait_for(task, 5)
    assert _instance(w).cancelled.is_set()


async def test_full_mailbox_caller_waits_nothing_dropped():
    s = await create_system(SystemConfig.standalone().with_mailbox_capacity(2))
    try:
        gate = asyncio.Event()
        seen = []

        class Slow(Actor):
            async def receive(self, msg):
                if msg == 0:
                    await gate.wait()
                seen.append(msg)
                return msg

        ref = await s.spawn(Slow())
        asks = [asyncio.ensure_future(ref.ask(i)) for i in range(20)]
        tells = [asyncio.ensure_future(_await(ref.tell(100 + i))) for i in range(5)]
        for _ in range(10):
            await asyncio.sleep(0)
        assert not any(t.done() for t in tells)  # tells wait for room
        gate.set()
        assert await asyncio.wait_for(asyncio.gather(*asks), 10) == list(range(20))
        await asyncio.wait_for(asyncio.gather(*tells), 10)
        assert await ref.ask("end") == "end"
        assert seen == [*range(20), *range(100, 105), "end"]
    finally:
        await s.shutdown()


async def _await(aw):
    return await aw


async def test_full_mailbox_remote_class():
    s = await create_system(SystemConfig.standalone().with_mailbox_capacity(1))
    try:
        w = await Worker.spawn(system=s)
        calls = [asyncio.ensure_future(w.incr()) for _ in range(50)]
        assert sorted(await asyncio.wait_for(asyncio.gather(*calls), 10)) == list(range(1, 51))
    finally:
        await s.shutdown()


def test_mailbox_capacity_validated():
    with pytest.raises(ValueError):
        SystemConfig.standalone().with_mailbox_capacity(0)


async def test_shutdown_with_calls_in_flight():
    await pul.init()
    w = await Worker.spawn(name="busy")
    slow = asyncio.ensure_future(w.slow())
    queued = [asyncio.ensure_future(w.blocked(i)) for i in range(5)]

    class Serial(Actor):
        async def receive(self, msg):
            await asyncio.sleep(30)

    ref = await pul.spawn(Serial())
    first = asyncio.ensure_future(ref.ask(1))
    waiting = asyncio.ensure_future(ref.ask(2))
    await asyncio.wait_for(_instance(w).started.wait(), 5)
    await asyncio.wait_for(pul.shutdown(), 10)
    results = await asyncio.wait_for(
        asyncio.gather(slow, *queued, first, waiting, return_exceptions=True), 10
    )
    for r in results:  # running or queued: a clear error, not a cancellation
        assert isinstance(r, PulsingRuntimeError), r


async def test_create_task_for_sync_and_async_methods(w):
    t1 = asyncio.create_task(w.incr())
    t2 = asyncio.create_task(w.aincr())
    assert sorted(await asyncio.gather(t1, t2)) == [1, 2]
    t3 = asyncio.create_task(w.as_any().incr())
    assert await t3 == 3


async def test_gather_many_calls(w):
    results = await asyncio.gather(*(w.incr() for _ in range(1000)))
    assert sorted(results) == list(range(1, 1001))
    results = await asyncio.gather(*(w.aincr() for _ in range(300)))
    assert sorted(results) == list(range(1001, 1301))


async def test_tight_await_loop_does_not_starve_other_tasks(w):
    ticks = 0
    stop = False

    async def ticker():
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    t = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    for _ in range(5000):
        await w.incr()
    stop = True
    await t
    assert ticks > 1  # the caller's loop yielded now and then


async def test_call_from_another_thread_via_run_coroutine_threadsafe(w):
    loop = asyncio.get_running_loop()

    def in_thread():
        fut = asyncio.run_coroutine_threadsafe(_await(w.incr()), loop)
        return fut.result(10)

    assert await loop.run_in_executor(None, in_thread) == 1


async def test_init_twice_and_use_before_init_edge():
    with pytest.raises(PulsingRuntimeError, match="not initialized"):
        await Worker.spawn()
    a = await pul.init()
    b = await pul.init()
    assert a is b
    await pul.shutdown()
    with pytest.raises(PulsingRuntimeError, match="not initialized"):
        await Worker.resolve("w")


async def test_stop_inside_own_method():
    @pul.remote
    class Quitter:
        async def quit(self):
            await pul.get_system().stop("quitter")
            return "bye"

    await pul.init()
    q = await Quitter.spawn(name="quitter")
    try:
        r = await asyncio.wait_for(q.quit(), 5)
        assert r == "bye"
    except (PulsingRuntimeError, asyncio.CancelledError):
        pass  # stopping itself may cancel the call; it must not hang
    with pytest.raises(PulsingRuntimeError):
        await q.quit()
    await pul.shutdown()


async def test_cancelled_queued_call_never_runs():
    s = await pul.actor_system()
    try:
        gate = asyncio.Event()
        seen = []

        class Serial(Actor):
            async def receive(self, msg):
                if msg == "first":
                    await gate.wait()
                seen.append(msg)
                return msg

        ref = await s.spawn(Serial())
        first = asyncio.ensure_future(ref.ask("first"))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ref.ask("abandoned"), 0.05)
        gate.set()
        assert await first == "first"
        assert await ref.ask("last") == "last"
        assert seen == ["first", "last"]
    finally:
        await s.shutdown()


async def test_unawaited_tells_to_a_full_mailbox_are_kept():
    s = await create_system(SystemConfig.standalone().with_mailbox_capacity(1))
    try:
        gate = asyncio.Event()
        seen = []

        class Serial(Actor):
            async def receive(self, msg):
                if msg == 0:
                    await gate.wait()
                seen.append(msg)
                return msg

        ref = await s.spawn(Serial())
        for i in range(10):
            ref.tell(i)  # not awaited
        gate.set()
        assert await asyncio.wait_for(ref.ask("end"), 5) == "end"
        assert seen == [*range(10), "end"]
    finally:
        await s.shutdown()


async def test_generated_name_supports_restart():
    @pul.remote(restart_policy="on_failure", min_backoff=0.01, max_backoff=0.02)
    class R:
        def __init__(self):
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n

        def crash(self):
            raise RuntimeError("x")

    await pul.init()
    r = await R.spawn()  # no name: one is generated, so supervision works
    await r.incr()
    with pytest.raises(pul.PulsingSystemError):
        await r.crash()
    assert await asyncio.wait_for(r.incr(), 5) == 1
    await pul.shutdown()


def test_id_helpers_of_the_original():
    from pulsing.core import ActorId, NodeId

    a = ActorId.generate()
    assert a != ActorId.generate() and isinstance(ActorId(), ActorId)
    assert len(a.uuid()) == 32 and ActorId.from_str(a.uuid()) == a == ActorId.from_str(str(a))
    assert NodeId.local().is_local() and not NodeId.generate().is_local()
