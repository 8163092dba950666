"""Connect: the out-of-cluster client.

A program that is not a node of the cluster (a web server, a notebook, a script) connects to
one or more gateway nodes and calls actors anywhere in the cluster through them::

    conn = await Connect.to(["10.0.0.1:8000", "10.0.0.2:8000"])
    counter = await conn.resolve("counter", cls=Counter)
    print(await counter.incr(5))
    await conn.close()

The client holds no actor, opens no port and joins no gossip. It runs a private actor system
without a listener whose transport sends the calls for every node's actors to the gateway in use
(`CoreSystem.gateway_route`); the gateway forwards each call to the actor's node and the reply,
stream items and typed errors come back the same way. Names are resolved, and `spawn` is done,
by the gateway's `system/gateway` service. Every node with a listener is a gateway.

When the gateway in use stops answering (its `GET /health`, checked every second, fails, or a
`resolve`/`refresh_gateways` call cannot reach it), the client moves to the next reachable
gateway of its list by itself; calls in flight on the dead gateway fail (they are not replayed:
they may have run), and calls made after the move — through proxies made before it too — go
through the new one. Actors that lived on the dead gateway are gone with it. `refresh_gateways` replaces the list with the
cluster's Alive nodes. See docs/design/connect.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

from pulsing.core.errors import failure_reason
from pulsing.exceptions import PulsingRuntimeError

__all__ = ["Connect"]


def _parse_addr(addr: Any) -> str:
    """Validate a ``"host:port"`` gateway address (``"[v6]:port"`` for IPv6) and return it."""
    if not isinstance(addr, str):
        raise TypeError(f"gateway address must be a str 'host:port', not {type(addr).__name__}")
    host, sep, port = addr.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid gateway address {addr!r}: expected 'host:port'")
    return addr.strip()


def _parse_addrs(addr: str | list[str] | tuple[str, ...]) -> list[str]:
    addrs = [addr] if isinstance(addr, str) else list(addr)
    if not addrs:
        raise ValueError("Connect.to needs at least one gateway address")
    return [_parse_addr(a) for a in addrs]


_HEALTH_TIMEOUT_S = 2.0
_WATCH_EVERY_S = 1.0
_GATEWAY_DEADLINE_MS = 30_000


class Connect:
    """A connection to a Pulsing cluster through its gateways; create it with `Connect.to`."""

    def __init__(self, system: Any, gateways: list[str]) -> None:
        self._system = system
        self._gateways = list(gateways)
        self._node: int | None = None  # the gateway in use: its node id
        self._closed = False
        self._watch: asyncio.Task | None = None
        self._moving: asyncio.Task | None = None

    @property
    def gateways(self) -> list[str]:
        """The gateway addresses this client knows, the one in use first."""
        return list(self._gateways)

    @classmethod
    async def to(cls, addr: str | list[str], *, timeout: float = 10.0) -> Connect:
        """Connect to the cluster through the gateway at `addr` (or the first reachable one of
        a list), waiting at most `timeout` seconds.

        Raises:
            TypeError, ValueError: an address is not a ``"host:port"`` string.
            PulsingRuntimeError: no gateway could be reached.
        """
        addrs = _parse_addrs(addr)
        import pulsing as pul

        system = await pul.actor_system()
        conn = cls(system, addrs)
        try:
            await conn._attach_any(time.monotonic() + timeout)
        except BaseException:
            await system.shutdown()
            raise
        conn._watch = asyncio.get_running_loop().create_task(conn._watchdog())
        return conn

    # ---- gateways ----

    async def _probe(self, addr: str, timeout: float) -> int:
        """The node id of the node at `addr` (GET /health); PulsingRuntimeError if it does not
        answer as a Pulsing node."""
        try:
            status, body = await self._system.http_get(
                addr, "/health", timeout=max(0.05, min(timeout, _HEALTH_TIMEOUT_S))
            )
        except PulsingRuntimeError as e:
            raise PulsingRuntimeError(f"gateway {addr}: {failure_reason(e)}") from None
        if status != 200:
            raise PulsingRuntimeError(f"gateway {addr} answered {status} to GET /health")
        try:
            return uuid.UUID(json.loads(body)["node_id"]).int
        except (ValueError, KeyError, TypeError):
            raise PulsingRuntimeError(
                f"gateway {addr} is not a Pulsing node (bad /health answer)"
            ) from None

    def _use(self, addr: str, node: int) -> None:
        core = self._system._core
        core.gateway_route(node, addr)  # its own services (system/gateway)
        core.gateway_route(0, addr)  # and every other node's actors, forwarded
        self._node = node
        self._gateways.remove(addr)
        self._gateways.insert(0, addr)

    async def _attach_any(self, deadline: float, skip: str | None = None) -> None:
        """Use the first gateway of the list (from the one after `skip`) that answers."""
        order = list(self._gateways)
        if skip in order:
            i = order.index(skip)
            order = order[i + 1 :] + order[: i + 1]
        errors = []
        for addr in order:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                node = await self._probe(addr, left)
            except PulsingRuntimeError as e:
                errors.append(str(e))
                continue
            self._use(addr, node)
            return
        raise PulsingRuntimeError(
            "Cannot reach a Pulsing gateway at "
            + ", ".join(order)
            + (f" ({'; '.join(errors)})" if errors else " (timed out)")
        )

    async def _move_on(self, failed: str) -> None:
        """The gateway at `failed` stopped answering: use the next one that does."""
        if self._closed or not self._gateways or self._gateways[0] != failed:
            return  # already moved (or closing)
        if self._moving is None or self._moving.done():
            self._moving = asyncio.get_running_loop().create_task(
                self._attach_any(time.monotonic() + 10.0, skip=failed)
            )
        await asyncio.shield(self._moving)

    async def _watchdog(self) -> None:
        while not self._closed:
            await asyncio.sleep(_WATCH_EVERY_S)
            if self._closed or not self._gateways:
                return
            current = self._gateways[0]
            try:
                node = await self._probe(current, _HEALTH_TIMEOUT_S)
                if node != self._node:  # another process took the address
                    self._use(current, node)
            except PulsingRuntimeError:
                with contextlib.suppress(PulsingRuntimeError):
                    await self._move_on(current)
            except Exception:  # noqa: BLE001 - the system shut down under us
                return

    async def _gateway_call(self, method: str, *args: Any) -> Any:
        """Call `system/gateway` on the gateway in use; on a transport failure move to the next
        gateway and try once more (these calls are safe to repeat, except spawn: see there)."""
        from pulsing.core import system as _sys
        from pulsing.core.remote import GATEWAY_SERVICE

        self._check_open()
        call = _sys._RawPickled((_sys._CALL_TAG, method, args, {}, _sys._VALUE))

        def ask() -> Any:  # to the gateway in use at the time of the call
            return self._system._core_ask(
                0, call, deadline_ms=_GATEWAY_DEADLINE_MS, named=(self._node, GATEWAY_SERVICE)
            )

        current = self._gateways[0]
        try:
            return await ask()
        except PulsingRuntimeError as e:
            if method == "spawn" or not _is_transport_error(e):
                raise
        await self._move_on(current)
        return await ask()

    def _check_open(self) -> None:
        if self._closed:
            raise PulsingRuntimeError("Connect client is closed")

    # ---- the API ----

    async def resolve(
        self, name: str, cls: type | None = None, *, node_id: Any = None, timeout: float | None = None
    ) -> Any:
        """A proxy on the named actor: typed (methods of `cls` only) when `cls` is given,
        untyped otherwise. Method calls and streams work as on in-cluster proxies.

        Raises:
            PulsingRuntimeError: no such actor, or the gateways cannot be reached.
        """
        from pulsing.core.ids import NodeId
        from pulsing.core.remote import _ResolvedProxy, proxy_for
        from pulsing.core.system import ActorRef

        want = NodeId(node_id).id if node_id is not None else None
        actor_id = await self._gateway_call("resolve", name, want, timeout)
        ref = ActorRef(self._system, actor_id, None)
        return proxy_for(ref, cls) if cls is not None else _ResolvedProxy(ref)

    async def spawn(self, cls: type, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        """Create a `cls` actor on the gateway node (the class must be importable there) with
        `args`/`kwargs`, named `name` when given; returns a typed proxy.

        Raises:
            PulsingRuntimeError: the gateways cannot be reached or the spawn failed (a spawn is
                not retried on another gateway: it may have happened).
        """
        from pulsing.core.remote import ActorClass, proxy_for
        from pulsing.core.system import ActorRef

        target = cls._cls if isinstance(cls, ActorClass) else cls
        if not isinstance(target, type):
            raise TypeError(f"Connect.spawn expects a class, not {type(cls).__name__}")
        actor_id = await self._gateway_call(
            "spawn", target.__module__, target.__qualname__, args, kwargs, name
        )
        return proxy_for(ActorRef(self._system, actor_id, None), cls)

    async def refresh_gateways(self) -> list[str]:
        """Ask the current gateway for the cluster's live gateways and use that list from now
        on (the one in use stays first); returns it."""
        fresh = await self._gateway_call("gateways")
        current = self._gateways[0]
        self._gateways = [current] + [a for a in fresh if a != current]
        return self.gateways

    async def close(self) -> None:
        """Close the connections to the gateways. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for t in (self._watch, self._moving):
            if t is not None and not t.done():
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t
        await self._system.shutdown()

    async def __aenter__(self) -> Connect:  # noqa: PYI034 - typing.Self needs 3.11
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _is_transport_error(e: BaseException) -> bool:
    """A failure to reach the gateway (as opposed to an answer from it)."""
    from pulsing import _core

    cause = getattr(e, "cause", None)
    return isinstance(cause, _core.CoreError) and cause.code in (_core.EIO, _core.ECLOSED)
