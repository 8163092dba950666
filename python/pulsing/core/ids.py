"""Actor and node identities: random 128-bit values, printed as UUIDs."""

from __future__ import annotations

import secrets
import uuid

__all__ = ["ActorId", "NodeId"]


def _parse_id(value: object, kind: str) -> int:
    if isinstance(value, _Id):
        return value.id
    if isinstance(value, bool):
        raise TypeError(f"{kind} must be a UUID string or integer, not bool")
    if isinstance(value, int):
        if not 0 <= value < 1 << 128:
            raise ValueError(f"{kind} out of range: {value}")
        return value
    if isinstance(value, uuid.UUID):
        return value.int
    if isinstance(value, str):
        s = value.strip()
        for prefix in ("ActorId(", "NodeId("):
            if s.startswith(prefix) and s.endswith(")"):
                s = s[len(prefix) : -1]
        try:
            return uuid.UUID(s).int
        except ValueError:
            pass
        try:
            return _parse_id(int(s, 10), kind)
        except ValueError:
            pass
        raise ValueError(f"{kind} must be a UUID string or integer: {value!r}")
    raise TypeError(f"{kind} must be a UUID string or integer, not {type(value).__name__}")


class _Id:
    __slots__ = ("id",)
    _kind = "Id"

    def __init__(self, id: int | str | _Id | None = None) -> None:
        self.id = secrets.randbits(128) if id is None else _parse_id(id, self._kind)

    @classmethod
    def from_str(cls, s: str):
        """Parse the UUID form printed by `str()` (a decimal integer is accepted too)."""
        return cls(s)

    @classmethod
    def generate(cls):
        """A new random id (what `cls()` gives too)."""
        return cls(secrets.randbits(128))

    def uuid(self) -> str:
        """The id as 32 hex digits (no dashes), as the original printed it."""
        return uuid.UUID(int=self.id).hex

    def __str__(self) -> str:
        return str(uuid.UUID(int=self.id))

    def __repr__(self) -> str:
        return f"{self._kind}({self})"

    def __int__(self) -> int:
        return self.id

    def __index__(self) -> int:
        return self.id

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Id):
            return type(other) is type(self) and other.id == self.id
        if isinstance(other, int) and not isinstance(other, bool):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._kind, self.id))

    def __reduce__(self):
        return (type(self), (self.id,))


class ActorId(_Id):
    """The cluster-wide identity of an actor. `ActorId(int)` and `ActorId("<uuid>")` work;
    `str(actor_id)` round-trips through `refer(str)`."""

    __slots__ = ()
    _kind = "ActorId"


class NodeId(_Id):
    """The identity of a node (an actor system). `NodeId.local()` (0) stands for "this node"
    where an API takes a node id."""

    __slots__ = ()
    _kind = "NodeId"

    @classmethod
    def local(cls) -> NodeId:
        return cls(0)

    def is_local(self) -> bool:
        return self.id == 0
