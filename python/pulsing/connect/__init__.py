"""Connect: the out-of-cluster client.

A program that is not a node of the cluster (a web server, a notebook, a script) connects to
one or more gateway nodes and calls actors anywhere in the cluster through them::

    conn = await Connect.to(["10.0.0.1:8000", "10.0.0.2:8000"])
    counter = await conn.resolve("counter", cls=Counter)
    print(await counter.incr(5))
    await conn.close()

The client holds no actor and joins no gossip: each call is an HTTP/2 request to a gateway,
which forwards it to the actor's node. When a gateway dies, the client moves on to the next one
of its list (kept fresh with `refresh_gateways`).

Status: the network transport is not part of this build yet, so `Connect.to` validates its
addresses and then fails with `PulsingRuntimeError` (it cannot reach a gateway). It never
returns a client that only pretends to be connected.
"""

from __future__ import annotations

from typing import Any

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


class Connect:
    """A connection to a Pulsing cluster through its gateways; create it with `Connect.to`."""

    def __init__(self, gateways: list[str]) -> None:
        self._gateways = list(gateways)
        self._closed = False

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
        raise PulsingRuntimeError(
            f"Cannot reach a Pulsing gateway at {', '.join(addrs)}: this build has no network "
            "transport yet (Connect needs it)"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise PulsingRuntimeError("Connect client is closed")
        raise PulsingRuntimeError("Connect client has no transport to its gateways")

    async def resolve(self, name: str, cls: type | None = None, *, node_id: Any = None) -> Any:
        """A proxy on the named actor: typed (methods of `cls` only) when `cls` is given,
        untyped otherwise. Method calls and streams work as on in-cluster proxies.

        Raises:
            PulsingRuntimeError: no such actor, or the gateways cannot be reached.
        """
        self._check_open()

    async def spawn(self, cls: type, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        """Create a `cls` actor on a node of the cluster (the class must be importable there)
        with `args`/`kwargs`, named `name` when given; returns a typed proxy.

        Raises:
            PulsingRuntimeError: the gateways cannot be reached or the spawn failed.
        """
        self._check_open()

    async def refresh_gateways(self) -> list[str]:
        """Ask the current gateway for the cluster's live gateways and use that list from now
        on; returns it."""
        self._check_open()
        return self.gateways

    async def close(self) -> None:
        """Close the connections to the gateways. Idempotent."""
        self._closed = True

    async def __aenter__(self) -> Connect:  # noqa: PYI034 - typing.Self needs 3.11
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
