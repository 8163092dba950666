"""Supervision: restarts re-run the constructor, keep queued mail, give up after max_restarts."""

from __future__ import annotations

import asyncio

import pulsing as pul
import pytest
from pulsing.exceptions import (
    PulsingBusinessError,
    PulsingRuntimeError,
    PulsingSystemError,
)

BUILT = []


@pul.remote(restart_policy="on_failure", max_restarts=3, min_backoff=0.01, max_backoff=0.05)
class Fragile:
    def __init__(self, tag="t"):
        BUILT.append(tag)
        self.count = 0

    def incr(self):
        self.count += 1
        return self.count

    def crash(self):
        raise RuntimeError("crash")

    async def acrash(self):
        await asyncio.sleep(0)
        raise KeyError("async crash")

    def bad_input(self):
        raise ValueError("bad input")

    def timeout(self):
        raise TimeoutError("slow")


@pytest.fixture(autouse=True)
async def global_system():
    BUILT.clear()
    await pul.init()
    yield
    await pul.shutdown()


async def eventually(pred, timeout=5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await pred():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


async def test_restart_reruns_constructor_and_resets_state():
    f = await Fragile.spawn("x", name="fragile")
    assert await f.incr() == 1
    assert await f.incr() == 2
    with pytest.raises(PulsingSystemError, match="crash"):
        await f.crash()
    # Mail sent while it restarts waits for the new instance: state starts over.
    assert await asyncio.wait_for(f.incr(), 5) == 1
    assert BUILT == ["x", "x"]  # constructor re-run with the same arguments


async def test_async_failure_restarts():
    f = await Fragile.spawn(name="fa")
    await f.incr()
    with pytest.raises(PulsingSystemError, match="async crash"):
        await f.acrash()
    assert await asyncio.wait_for(f.incr(), 5) == 1


async def test_business_and_timeout_errors_do_not_restart():
    f = await Fragile.spawn(name="fb")
    await f.incr()
    with pytest.raises(PulsingBusinessError):
        await f.bad_input()
    with pytest.raises(pul.PulsingTimeoutError):
        await f.timeout()
    assert await f.incr() == 2
    assert len(BUILT) == 1


async def test_queued_mail_kept_across_restart():
    f = await Fragile.spawn(name="fq")
    crash = asyncio.ensure_future(f.crash())
    later = [asyncio.ensure_future(f.incr()) for _ in range(5)]
    with pytest.raises(PulsingSystemError):
        await crash
    got = await asyncio.wait_for(asyncio.gather(*later), 5)
    assert sorted(got) == [1, 2, 3, 4, 5]  # none dropped; served by the new instance


async def test_name_kept_across_restart():
    f = await Fragile.spawn(name="fn")
    with pytest.raises(PulsingSystemError):
        await f.crash()
    again = await Fragile.resolve("fn", timeout=2)
    assert await asyncio.wait_for(again.incr(), 5) == 1
    assert again.ref.actor_id == f.ref.actor_id


async def test_gives_up_after_max_restarts():
    f = await Fragile.spawn(name="gives-up")
    for _ in range(3):
        with pytest.raises(PulsingSystemError):
            await asyncio.wait_for(f.crash(), 5)
        await asyncio.wait_for(f.incr(), 5)  # restarted
    with pytest.raises(PulsingSystemError):
        await asyncio.wait_for(f.crash(), 5)  # the 4th failure: no more restarts

    async def gone():
        try:
            await Fragile.resolve("gives-up")
        except PulsingRuntimeError:
            return True
        return False

    await eventually(gone)
    with pytest.raises(PulsingRuntimeError) as ei:
        await asyncio.wait_for(f.incr(), 5)
    assert "restarts" in str(ei.value) or "stopped" in str(ei.value)
    assert [d["name"] for d in await pul.get_system().all_named_actors()] == []


async def test_never_policy_keeps_instance():
    @pul.remote
    class Plain:
        def __init__(self):
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n

        def crash(self):
            raise RuntimeError("x")

    p = await Plain.spawn()
    await p.incr()
    with pytest.raises(PulsingSystemError):
        await p.crash()
    assert await p.incr() == 2


async def test_policy_spellings():
    for i, policy in enumerate(("on_failure", "on-failure", "always")):

        @pul.remote(restart_policy=policy, max_restarts=2, min_backoff=0.01, max_backoff=0.02)
        class C:
            def __init__(self):
                self.n = 0

            def incr(self):
                self.n += 1
                return self.n

            def crash(self):
                raise RuntimeError("boom")

        c = await C.spawn(name=f"c{i}")
        await c.incr()
        with pytest.raises(PulsingSystemError):
            await c.crash()
        assert await asyncio.wait_for(c.incr(), 5) == 1, policy


async def test_low_level_spawn_with_factory_restarts():
    built = []

    class Worker(pul.Actor):
        def __init__(self):
            built.append(1)
            self.n = 0

        def receive(self, msg):
            if msg == "crash":
                raise RuntimeError("worker crash")
            self.n += 1
            return self.n

    ref = await pul.spawn(
        Worker, name="w", restart_policy="on_failure", max_restarts=2, min_backoff=0.01
    )
    assert await ref.ask("x") == 1
    with pytest.raises(PulsingSystemError):
        await ref.ask("crash")
    assert await asyncio.wait_for(ref.ask("x"), 5) == 1
    assert len(built) == 2


async def test_anonymous_actor_with_restart_policy_rejected():
    class W(pul.Actor):
        def receive(self, msg):
            return msg

    with pytest.raises(PulsingRuntimeError):
        await pul.spawn(W(), restart_policy="on_failure")


async def test_invalid_policy_values():
    class W(pul.Actor):
        def receive(self, msg):
            return msg

    with pytest.raises(ValueError):
        await pul.spawn(W(), name="w", restart_policy="sometimes")
    with pytest.raises(ValueError):
        await pul.spawn(W(), name="w", max_restarts=-1)
