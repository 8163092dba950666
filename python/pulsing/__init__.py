"""Pulsing: a distributed actor runtime for Python with a C core.

import pulsing as pul

@pul.remote
class Counter:
    def __init__(self, start=0): self.value = start
    def incr(self, n=1): self.value += n; return self.value

await pul.init()
c = await Counter.spawn(name="counter")
print(await c.incr(5))          # 5
await pul.shutdown()
"""

from __future__ import annotations

from typing import Any

from pulsing.core import (
    Actor,
    ActorClass,
    ActorId,
    ActorProxy,
    ActorRef,
    ActorSystem,
    Message,
    NodeId,
    StreamMessage,
    SystemConfig,
    ZeroCopyDescriptor,
    as_any,
    ask_with_timeout,
    create_system,
    get_system,
    init,
    is_initialized,
    mount,
    remote,
    resolve,
    shutdown,
    unmount,
)
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

__version__ = "0.2.0"

__all__ = [
    "Actor",
    "ActorClass",
    "ActorId",
    "ActorProxy",
    "ActorRef",
    "ActorSystem",
    "Message",
    "NodeId",
    "PulsingActorError",
    "PulsingBusinessError",
    "PulsingError",
    "PulsingRuntimeError",
    "PulsingSerializationError",
    "PulsingSystemError",
    "PulsingTimeoutError",
    "PulsingUnsupportedError",
    "StreamMessage",
    "SystemConfig",
    "ZeroCopyDescriptor",
    "__version__",
    "actor_system",
    "as_any",
    "ask_with_timeout",
    "bootstrap",
    "get_system",
    "init",
    "is_initialized",
    "mount",
    "queue",
    "refer",
    "remote",
    "resolve",
    "shutdown",
    "spawn",
    "topic",
    "unmount",
]


async def actor_system(
    addr: str | None = None,
    *,
    seeds: list[str] | None = None,
    passphrase: str | None = None,
    head_addr: str | None = None,
    is_head_node: bool = False,
    timing: dict[str, int] | None = None,
) -> ActorSystem:
    """A new actor system that is not the global one (several may live side by side, e.g.
    three nodes of a test cluster in one process: `actor_system(addr="127.0.0.1:0",
    seeds=[first.addr])`). Arguments as for `init`."""
    from pulsing.core import _config

    return await create_system(_config(addr, seeds, passphrase, head_addr, is_head_node, timing))


async def bootstrap(
    addr: str | None = None,
    *,
    seeds: list[str] | None = None,
    passphrase: str | None = None,
    head_addr: str | None = None,
    is_head_node: bool = False,
    timing: dict[str, int] | None = None,
) -> ActorSystem:
    """Make sure the global system is running and return it (init when needed)."""
    return await init(
        addr,
        seeds=seeds,
        passphrase=passphrase,
        head_addr=head_addr,
        is_head_node=is_head_node,
        timing=timing,
    )


async def spawn(
    actor: Any,
    *,
    name: str | None = None,
    public: bool | None = None,
    restart_policy: str = "never",
    max_restarts: int = 3,
    min_backoff: float = 0.1,
    max_backoff: float = 30.0,
) -> ActorRef:
    """Spawn a low-level actor on the global system; see `ActorSystem.spawn`."""
    return await get_system().spawn(
        actor,
        name=name,
        public=public,
        restart_policy=restart_policy,
        max_restarts=max_restarts,
        min_backoff=min_backoff,
        max_backoff=max_backoff,
    )


async def refer(actor_id: ActorId | int | str) -> ActorRef:
    """A reference to an actor by id (an ActorId, an int or the string `str(actor_id)`)."""
    return await get_system().refer(actor_id)


class _GlobalQueueAPI:
    """`pul.queue`: the queue API of the global system."""

    async def write(self, topic: str, **kwargs: Any) -> Any:
        return await get_system().queue.write(topic, **kwargs)

    async def read(self, topic: str, **kwargs: Any) -> Any:
        return await get_system().queue.read(topic, **kwargs)


class _GlobalTopicAPI:
    """`pul.topic`: the pub/sub API of the global system."""

    async def write(self, topic: str, **kwargs: Any) -> Any:
        return await get_system().topic.write(topic, **kwargs)

    async def read(self, topic: str, **kwargs: Any) -> Any:
        return await get_system().topic.read(topic, **kwargs)


queue = _GlobalQueueAPI()
topic = _GlobalTopicAPI()
