"""@remote classes, spawn/resolve, typed and untyped proxies, delayed(), mount, concurrency."""

from __future__ import annotations

import asyncio

import pulsing as pul
import pytest
from pulsing.core import ActorProxy, ActorRef
from pulsing.exceptions import PulsingRuntimeError


@pul.remote
class Counter:
    """A counter."""

    label = "class-attr"

    def __init__(self, start=0, *, step=1):
        self.value = start
        self.step = step

    def incr(self, n=None):
        self.value += self.step if n is None else n
        return self.value

    def get(self):
        return self.value

    async def aget(self):
        await asyncio.sleep(0)
        return self.value

    def _private(self):
        return "secret"

    @staticmethod
    def static_add(a, b):
        return a + b


@pytest.fixture
async def system():
    s = await pul.init()
    yield s
    await pul.shutdown()


# ---- @remote and spawn ------------------------------------------------------------------------


def test_remote_without_and_with_options():
    assert isinstance(Counter, pul.ActorClass) if hasattr(pul, "ActorClass") else True
    assert Counter.__name__ == "Counter"
    assert Counter.__doc__ == "A counter."

    for policy in ("never", "on_failure", "on-failure", "always"):

        @pul.remote(restart_policy=policy, max_restarts=5, min_backoff=0.01, max_backoff=1.0)
        class C:
            def f(self):
                return 1

        assert hasattr(C, "spawn")

    with pytest.raises(ValueError):

        @pul.remote(restart_policy="sometimes")
        class Bad:
            pass


def test_calling_the_class_builds_a_plain_instance():
    c = Counter(3)
    assert c.incr() == 4  # a plain object, not an actor


async def test_spawn_with_and_without_name(system):
    a = await Counter.spawn()
    b = await Counter.spawn(5, step=2, name="counter")
    assert isinstance(a, ActorProxy) and isinstance(b, ActorProxy)
    assert await a.incr() == 1
    assert await b.incr() == 7
    names = [d["name"] for d in await system.all_named_actors()]
    assert "actors/counter" in names
    assert len(names) == 2  # a generated name for the first one
    assert a.ref != b.ref


async def test_spawn_accepts_public_and_placement(system):
    c = await Counter.spawn(name="p", public=True, placement=None)
    assert await c.get() == 0
    c2 = await Counter.spawn(public=False, placement="local")
    assert await c2.get() == 0


async def test_spawn_on_explicit_system():
    s = await pul.actor_system()
    try:
        c = await Counter.spawn(10, system=s, name="c")
        assert await c.incr() == 11
        again = await Counter.resolve("c", system=s)
        assert await again.get() == 11
    finally:
        await s.shutdown()


async def test_duplicate_remote_name(system):
    await Counter.spawn(name="same")
    with pytest.raises(PulsingRuntimeError, match="already exists"):
        await Counter.spawn(name="same")


# ---- resolve ----------------------------------------------------------------------------------


async def test_cls_resolve(system):
    await Counter.spawn(7, name="c7")
    c = await Counter.resolve("c7")
    assert await c.get() == 7
    c = await Counter.resolve("actors/c7", timeout=1)
    assert await c.incr() == 8
    with pytest.raises(AttributeError, match="No method 'nope'"):
        _ = c.nope


async def test_cls_resolve_missing_after_timeout(system):
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(PulsingRuntimeError):
        await Counter.resolve("missing", timeout=0.2)
    assert loop.time() - t0 >= 0.15
    with pytest.raises(PulsingRuntimeError):
        await Counter.resolve("missing")


async def test_resolve_waits_for_the_name_to_appear(system):
    async def later():
        await asyncio.sleep(0.05)
        await Counter.spawn(1, name="late")

    task = asyncio.create_task(later())
    c = await Counter.resolve("late", timeout=10)
    assert await c.get() == 1
    await task


async def test_pul_resolve_untyped_and_typed(system):
    await Counter.spawn(3, name="r")
    any_proxy = await pul.resolve("r")
    assert await any_proxy.get() == 3
    _ = any_proxy.whatever_name  # forwarded: no error at access
    typed = await pul.resolve("r", cls=Counter)
    assert await typed.incr() == 4
    with pytest.raises(AttributeError):
        _ = typed.nope

    # a plain class works too
    class Plain:
        def get(self): ...

    typed2 = await pul.resolve("r", cls=Plain, timeout=1)
    assert await typed2.get() == 4
    with pytest.raises(AttributeError):
        _ = typed2.incr
    with pytest.raises(PulsingRuntimeError):
        await pul.resolve("absent", timeout=0.05)


async def test_pul_resolve_node_id(system):
    await Counter.spawn(name="n")
    c = await pul.resolve("n", node_id=system.node_id)
    assert await c.get() == 0


async def test_resolved_proxy_has_ref_api(system):
    class Echo(pul.Actor):
        def receive(self, msg):
            return msg

    ref = await pul.spawn(Echo(), name="echo")
    r = await pul.resolve("echo")
    assert r.actor_id == ref.actor_id
    assert await r.ask(1) == 1


# ---- typed proxies ----------------------------------------------------------------------------


async def test_typed_proxy_attribute_errors_at_access(system):
    c = await Counter.spawn()
    with pytest.raises(AttributeError, match="No method 'missing'"):
        c.missing  # noqa: B018 - access alone raises
    with pytest.raises(AttributeError):
        c._private  # noqa: B018
    with pytest.raises(AttributeError):
        c.__secret  # noqa: B018
    with pytest.raises(AttributeError):
        c.label  # noqa: B018 - a class attribute is not a method


async def test_typed_proxy_calls_static_method(system):
    c = await Counter.spawn()
    assert await c.static_add(2, 3) == 5


async def test_proxy_ref_and_as_any(system):
    c = await Counter.spawn(2)
    assert isinstance(c.ref, ActorRef)
    u = c.as_any()
    assert isinstance(u, ActorProxy)
    assert u.ref == c.ref
    assert await u.incr() == 3
    assert await u.value == 3  # await proxy.attr reads a plain attribute
    assert await u.step == 1
    assert await u.label == "class-attr"


async def test_untyped_proxy_missing_method_fails(system):
    c = await Counter.spawn()
    u = c.as_any()
    m = u.does_not_exist  # forwarded: no error at access
    with pytest.raises(pul.PulsingError) as ei:
        await m()
    assert "does_not_exist" in str(ei.value)
    with pytest.raises(pul.PulsingError):
        await u.does_not_exist
    assert await c.get() == 0  # still serving


async def test_untyped_proxy_private_names_refused(system):
    u = (await Counter.spawn()).as_any()
    with pytest.raises(AttributeError):
        u._private  # noqa: B018


async def test_actor_proxy_constructors(system):
    c = await Counter.spawn(1)
    p = ActorProxy(c.ref)
    assert await p.incr() == 2
    p2 = ActorProxy(c.ref, method_names=["get", "aget"], async_methods={"aget"})
    assert await p2.get() == 2
    assert await p2.aget() == 2
    with pytest.raises(AttributeError, match="No method 'incr'"):
        _ = p2.incr
    p3 = c.ref.as_type(Counter)
    assert await p3.get() == 2
    assert pul.ActorProxy is ActorProxy


async def test_call_forms(system):
    c = await Counter.spawn()
    # sync method: awaitable, create_task-able, gather-able
    assert await asyncio.create_task(c.incr()) == 1
    assert await asyncio.ensure_future(c.incr()) == 2
    assert await asyncio.create_task(c.aget()) == 2
    results = await asyncio.gather(*(c.incr() for _ in range(100)))
    assert sorted(results) == list(range(3, 103))
    results = await asyncio.gather(*(c.aget() for _ in range(50)))
    assert len(results) == 50
    assert await asyncio.wait_for(c.get(), 5) == 102
    assert await asyncio.wait_for(c.aget(), 5) == 102


async def test_gather_many_actors(system):
    counters = [await Counter.spawn(i) for i in range(20)]
    got = await asyncio.gather(*(c.incr() for c in counters for _ in range(10)))
    assert len(got) == 200
    assert await asyncio.gather(*(c.get() for c in counters)) == [i + 10 for i in range(20)]


# ---- serial sync methods, concurrent async methods --------------------------------------------


@pul.remote
class Conc:
    def __init__(self):
        self.log = []
        self.inside = 0
        self.max_inside = 0
        self.a_started = asyncio.Event()
        self.b_started = asyncio.Event()

    def sync_step(self, tag):
        self.inside += 1
        self.max_inside = max(self.max_inside, self.inside)
        self.log.append(tag)
        self.inside -= 1
        return tag

    async def wait_for_b(self):
        self.a_started.set()
        await asyncio.wait_for(self.b_started.wait(), 10)
        return "a"

    async def wait_for_a(self):
        self.b_started.set()
        await asyncio.wait_for(self.a_started.wait(), 10)
        return "b"

    def get_log(self):
        return self.log


async def test_async_methods_run_concurrently(system):
    # Each method waits for the other to have started: only possible when both run at once.
    c = await Conc.spawn()
    got = await asyncio.gather(c.wait_for_b(), c.wait_for_a())
    assert got == ["a", "b"]


async def test_sync_methods_are_serial_and_in_order(system):
    c = await Conc.spawn()
    await asyncio.gather(*(c.sync_step(i) for i in range(200)))
    assert await c.get_log() == list(range(200))


async def test_sync_method_waits_while_async_awaits(system):
    # The mailbox is free while an async method awaits: a sync call gets through.
    c = await Conc.spawn()
    t = asyncio.create_task(c.wait_for_b())
    assert await asyncio.wait_for(c.sync_step("x"), 5) == "x"
    await c.wait_for_a()
    assert await t == "a"


# ---- delayed ----------------------------------------------------------------------------------


@pul.remote
class Timer:
    def __init__(self):
        self.fired = []
        self.event = asyncio.Event()
        self.task = None

    def schedule(self, delay, tag):
        task = self.delayed(delay).fire(tag)
        assert isinstance(task, asyncio.Task)
        self.task = task
        return "scheduled"

    def cancel_last(self):
        return self.task.cancel()

    def fire(self, tag):
        self.fired.append(tag)
        self.event.set()

    async def wait_fired(self):
        await asyncio.wait_for(self.event.wait(), 10)
        return self.fired


async def test_delayed_call_fires(system):
    t = await Timer.spawn()
    assert await t.schedule(0.01, "x") == "scheduled"
    assert await t.wait_fired() == ["x"]


async def test_delayed_call_cancelled(system):
    t = await Timer.spawn()
    await t.schedule(0.2, "never")
    assert await t.cancel_last() is True
    await t.schedule(0.3, "later")  # fires after the cancelled one would have
    assert await t.wait_fired() == ["later"]


# ---- mount ------------------------------------------------------------------------------------


class Service:
    def __init__(self, name):
        self.name = name
        pul.mount(self, name=name)

    def hello(self, who):
        return f"{self.name} greets {who}"

    async def ahello(self):
        return "async hi"


async def test_mount_and_unmount(system):
    svc = Service("svc")
    p = await pul.resolve("svc")
    assert await p.hello("bob") == "svc greets bob"
    assert await p.ahello() == "async hi"
    typed = await pul.resolve("svc", cls=Service)
    assert await typed.hello("x") == "svc greets x"
    assert svc.name == "svc"
    pul.unmount("svc")
    await asyncio.sleep(0)
    with pytest.raises(PulsingRuntimeError):
        await pul.resolve("svc", timeout=0.05)
    Service("svc")  # the name is free again
    assert await (await pul.resolve("svc")).hello("y") == "svc greets y"


def test_mount_before_init_fails():
    with pytest.raises(PulsingRuntimeError, match="not initialized"):
        pul.mount(object(), name="x")
    pul.unmount("x")  # no-op


# ---- plain def methods that return something to await ------------------------------------------


def _plain_wrapper(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # a def: iscoroutinefunction(wrapper) is False
        return fn(*args, **kwargs)

    return wrapper


@pul.remote
class Decorated:
    @_plain_wrapper
    async def double(self, x):
        await asyncio.sleep(0)
        return x * 2

    @_plain_wrapper
    async def fail(self):
        raise ValueError("decorated failure")

    def gen_result(self):
        return self._gen()

    def _gen(self):
        yield 1
        return "final"


async def test_def_returning_a_coroutine_is_awaited(system):
    d = await Decorated.spawn()
    assert await d.double(21) == 42
    assert await asyncio.gather(*(d.double(i) for i in range(5))) == [0, 2, 4, 6, 8]
    with pytest.raises(pul.PulsingBusinessError, match="decorated failure"):
        await d.fail()
    assert await d.gen_result() == "final"
