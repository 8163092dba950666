"""Pulsing core: actor systems, actors, references, proxies and messages.

Simple API (one global system per process)::

    from pulsing.core import init, shutdown, remote

    await init()

    @remote
    class Counter:
        def __init__(self, start=0): self.value = start
        def incr(self): self.value += 1; return self.value

    counter = await Counter.spawn(start=10)
    print(await counter.incr())        # 11
    await shutdown()

Explicit systems: `await pulsing.actor_system()`; low-level actors subclass `Actor`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any

from pulsing.core.ids import ActorId, NodeId
from pulsing.core.messaging import Message, StreamMessage, StreamReader, StreamWriter
from pulsing.core.system import ActorRef, ActorSystem, CallFuture
from pulsing.core.zerocopy import ZeroCopyDescriptor
from pulsing.exceptions import PulsingActorError, PulsingError, PulsingRuntimeError

__all__ = [
    "Actor",
    "ActorClass",
    "ActorId",
    "ActorProxy",
    "ActorRef",
    "ActorSystem",
    "AsyncCall",
    "CallFuture",
    "Message",
    "NodeId",
    "PulsingActorError",
    "PulsingError",
    "PulsingRuntimeError",
    "StreamMessage",
    "StreamReader",
    "StreamWriter",
    "SystemConfig",
    "ZeroCopyDescriptor",
    "as_any",
    "ask_with_timeout",
    "get_system",
    "init",
    "is_initialized",
    "mount",
    "remote",
    "resolve",
    "shutdown",
    "tell_with_timeout",
    "unmount",
]

DEFAULT_ASK_TIMEOUT = 30.0


# Every remote call has a deadline (ARCHITECTURE.md §3): a generous one by default, so a call
# whose remote actor hangs fails one day with PulsingTimeoutError while legitimate long calls (a
# model generating for minutes) are not cut off. For a stream it bounds the wait for the first
# item only. PULSING_REMOTE_DEADLINE_S overrides it (0: none); asyncio.wait_for sets tighter ones.
DEFAULT_REMOTE_DEADLINE_S = 300.0


def _default_remote_deadline_ms() -> int:
    import os

    raw = os.environ.get("PULSING_REMOTE_DEADLINE_S")
    try:
        seconds = float(raw) if raw is not None else DEFAULT_REMOTE_DEADLINE_S
    except ValueError:
        seconds = DEFAULT_REMOTE_DEADLINE_S
    return max(0, int(seconds * 1000))


class SystemConfig:
    """How to build a system: its address, seeds, passphrase and head-node settings."""

    def __init__(self, addr: str | None = None) -> None:
        self.addr = addr
        self.seeds: list[str] = []
        self.passphrase: str | None = None
        self.is_head_node = False
        self.head_addr: str | None = None
        self.mailbox_capacity = 256
        self.timing: dict[str, int] | None = None  # pul_cluster_timing_t fields by name
        self.remote_deadline_ms = _default_remote_deadline_ms()

    @classmethod
    def standalone(cls) -> SystemConfig:
        """A single process: no listener, no cluster."""
        return cls(None)

    @classmethod
    def with_addr(cls, addr: str) -> SystemConfig:
        return cls(addr)

    def _copy(self, **changes: Any) -> SystemConfig:
        c = SystemConfig(self.addr)
        c.__dict__.update(self.__dict__)
        c.__dict__.update(changes)
        return c

    def with_seeds(self, seeds: list[str]) -> SystemConfig:
        return self._copy(seeds=list(seeds))

    def with_passphrase(self, passphrase: str) -> SystemConfig:
        return self._copy(passphrase=passphrase)

    def with_head_node(self) -> SystemConfig:
        return self._copy(is_head_node=True)

    def with_head_addr(self, addr: str) -> SystemConfig:
        return self._copy(head_addr=addr)

    def with_timing(self, **timing: int) -> SystemConfig:
        """Membership timings (fields of pul_cluster_timing_t, e.g. probe_interval_ms=200)."""
        return self._copy(timing={**(self.timing or {}), **timing})

    def with_mailbox_capacity(self, capacity: int) -> SystemConfig:
        if capacity <= 0:
            raise ValueError("mailbox capacity must be positive")
        return self._copy(mailbox_capacity=int(capacity))

    def __repr__(self) -> str:
        return (
            f"SystemConfig(addr={self.addr!r}, seeds={self.seeds!r}, "
            f"tls={'enabled' if self.passphrase else 'disabled'}, head={self.is_head_node}, "
            f"head_addr={self.head_addr!r})"
        )


JOIN_WAIT_S = 5.0  # how long init() waits for the first successful join when seeds are given


async def create_system(config: SystemConfig) -> ActorSystem:
    """Build a system from a config on the running loop.

    With an address the node listens there ("host:port"; port 0 takes an ephemeral port,
    reported by `system.addr`), runs the `system/placement` service, and joins `seeds` (or the
    head node) in the background; this waits, without blocking the loop, up to JOIN_WAIT_S
    for the first successful join and then returns either way (seeds are retried)."""
    if config.is_head_node and config.head_addr:
        raise ValueError("Cannot set both is_head_node and head_addr")
    if config.passphrase is not None:
        raise PulsingRuntimeError(
            "a cluster passphrase (mutual TLS) is not supported by this build yet; run "
            "without passphrase on a trusted network"
        )
    clustered = bool(
        config.addr is not None or config.seeds or config.head_addr or config.is_head_node
    )
    system = ActorSystem(
        addr=config.addr,
        mailbox_capacity=config.mailbox_capacity,
        seeds=list(config.seeds),
        head_addr=config.head_addr,
        is_head_node=config.is_head_node,
        timing=config.timing,
        remote_deadline_ms=config.remote_deadline_ms,
    )
    if not clustered:
        return system
    try:
        if system.addr is not None:
            _warn_if_exposed(system.addr)
            from pulsing.core.remote import start_placement_service

            start_placement_service(system)
        if config.seeds or config.head_addr:
            await _wait_joined(system, JOIN_WAIT_S)
    except BaseException:
        await system.shutdown()
        raise
    return system


def _warn_if_exposed(addr: str) -> None:
    host = addr.rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("127."):
        import logging

        logging.getLogger("pulsing").warning(
            "Pulsing node listening on %s WITHOUT a passphrase: payloads are pickles, so anyone "
            "who can reach this port can run code in this process. Bind 127.0.0.1 or use a "
            "trusted network.",
            addr,
        )


async def _wait_joined(system: ActorSystem, limit: float) -> bool:
    """True once another member is Alive in this node's view (at most `limit` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        if system._alive_peers():
            return True
        if loop.time() >= deadline:
            import logging

            logging.getLogger("pulsing").warning(
                "no seed answered within %.1f s; joining continues in the background", limit
            )
            return False
        await asyncio.sleep(0.02)


async def _create(config: SystemConfig, loop: Any = None) -> ActorSystem:
    return await create_system(config)


ActorSystem.create = staticmethod(_create)  # type: ignore[attr-defined]


# ---- the global system ----------------------------------------------------------------------

_system: ActorSystem | None = None


def _global_system() -> ActorSystem | None:
    s = _system
    if s is not None and (s._closed or s._loop.is_closed()):
        return None
    return s


def _systems_for_loop() -> list[ActorSystem]:
    from pulsing.core.system import _live_systems

    return list(_live_systems)


def _config(addr, seeds, passphrase, head_addr, is_head_node, timing=None) -> SystemConfig:
    if head_addr and is_head_node:
        raise ValueError("Cannot set both is_head_node and head_addr")
    if isinstance(seeds, str):
        seeds = [seeds]
    config = SystemConfig(addr)
    if timing:
        config = config._copy(timing=dict(timing))
    if seeds:
        config = config.with_seeds(seeds)
    if passphrase:
        config = config.with_passphrase(passphrase)
    if is_head_node:
        config = config.with_head_node()
    elif head_addr:
        config = config.with_head_addr(head_addr)
    return config


async def init(
    addr: str | None = None,
    *,
    seeds: list[str] | None = None,
    passphrase: str | None = None,
    head_addr: str | None = None,
    is_head_node: bool = False,
    timing: dict[str, int] | None = None,
) -> ActorSystem:
    """Start the global actor system (a second call returns the same system).

    Without `addr` it is a single process that opens no port. With `addr="host:port"` it is a
    node of a cluster: it joins through `seeds` (gossip) or `head_addr` (head-node mode), or is
    the head with `is_head_node=True`; `timing` tunes membership (pul_cluster_timing_t fields
    by name, e.g. {"probe_interval_ms": 200})."""
    global _system
    config = _config(addr, seeds, passphrase, head_addr, is_head_node, timing)
    if _system is not None:
        if not _system._closed and not _system._loop.is_closed():
            return _system
        _system._abandon()
        _system = None
    system = await create_system(config)
    _system = system
    return system


async def shutdown() -> None:
    """Shut the global system down (a no-op when it is not initialized)."""
    global _system
    system, _system = _system, None
    if system is not None:
        if system._loop.is_closed():
            system._abandon()
        else:
            await system.shutdown()


def get_system() -> ActorSystem:
    """The global system; PulsingRuntimeError when `init()` has not been called."""
    s = _global_system()
    if s is None:
        raise PulsingRuntimeError("Actor system not initialized. Call 'await init()' first.")
    return s


def is_initialized() -> bool:
    """True between `init()` and `shutdown()`."""
    return _global_system() is not None


async def ask_with_timeout(actor_ref: Any, msg: Any, timeout: float = DEFAULT_ASK_TIMEOUT) -> Any:
    """`ref.ask(msg)` bounded by `timeout` seconds: asyncio.TimeoutError when it expires (the
    ask is cancelled)."""
    return await asyncio.wait_for(actor_ref.ask(msg), timeout=timeout)


async def tell_with_timeout(actor_ref: Any, msg: Any, timeout: float = DEFAULT_ASK_TIMEOUT) -> None:
    """`ref.tell(msg)` bounded by `timeout` seconds."""
    await asyncio.wait_for(_as_coro(actor_ref.tell(msg)), timeout=timeout)


async def _as_coro(aw: Any) -> Any:
    return await aw


class Actor(ABC):
    """Base class of low-level actors: implement `receive(msg)` (sync or async).

    `receive` handles one message at a time (an async receive is awaited before the next);
    its return value is the reply. `on_start(actor_id)` runs before the first message,
    `on_stop()` when the actor stops, `metadata()` describes it."""

    def on_start(self, actor_id: ActorId) -> None:
        """Called before the first message."""

    def on_stop(self) -> None:
        """Called when the actor stops (also at shutdown)."""

    def metadata(self) -> dict[str, str]:
        """Diagnostics about this actor."""
        return {}

    @abstractmethod
    def receive(self, msg: Any) -> Any:
        """Handle one message and return the reply."""


from pulsing.core.remote import (
    ActorClass,
    ActorProxy,
    AsyncCall,
    as_any,
    mount,
    remote,
    resolve,
    unmount,
)
