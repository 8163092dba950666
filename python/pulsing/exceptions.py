"""The Pulsing exception hierarchy: one error model, locally and across the network.

    PulsingError
    +-- PulsingRuntimeError          framework: not found, stopped, transport, cluster, config
    |   +-- PulsingSerializationError  a value that cannot be pickled (also a TypeError)
    +-- PulsingActorError            raised by user code inside an actor
        +-- PulsingBusinessError     (code, message, details): user input, business rules
        +-- PulsingSystemError       (error, recoverable): internal failures; may restart
        +-- PulsingTimeoutError      (operation, duration_ms)
        +-- PulsingUnsupportedError  (operation)

Inside an actor, `ValueError`/`TypeError` become business errors (code 400), `TimeoutError` a
timeout error and anything else a recoverable system error. The caller receives the same class
with the same fields whether the actor is local or remote; `error_type` names the class of the
exception originally raised.
"""

from __future__ import annotations

__all__ = [
    "PulsingActorError",
    "PulsingBusinessError",
    "PulsingError",
    "PulsingRuntimeError",
    "PulsingSerializationError",
    "PulsingSystemError",
    "PulsingTimeoutError",
    "PulsingUnsupportedError",
]


class PulsingError(Exception):
    """Base of every Pulsing error; `str(e)` is the message."""


class PulsingRuntimeError(PulsingError, RuntimeError):
    """A framework error: actor not found or stopped, system not initialized, transport,
    cluster or configuration problems. Not an actor error."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause

    def __reduce__(self):
        return (type(self), (str(self), self.cause), self.__dict__)


class PulsingSerializationError(PulsingRuntimeError, TypeError):
    """A message or a result that cannot be pickled; the message names the offending type."""


class PulsingActorError(PulsingError):
    """An error raised by user code while an actor handled a message."""

    def __init__(
        self,
        message: str,
        actor_name: str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.actor_name = actor_name
        self.cause = cause

    def __reduce__(self):
        return (type(self), (str(self), self.actor_name, self.cause), self.__dict__)


class PulsingBusinessError(PulsingActorError):
    """A business error (bad input, a rule broken): `code`, `message`, `details`.

    `str(e)` is ``"[<code>] <message>"``.
    """

    def __init__(self, code: int, message: str, details: str | None = None) -> None:
        self.code = code
        self.message = message
        self.details = details
        super().__init__(f"[{code}] {message}")

    def __reduce__(self):
        return (type(self), (self.code, self.message, self.details), self.__dict__)


class PulsingSystemError(PulsingActorError):
    """An internal failure of the actor: `error`, `recoverable`. Triggers supervision."""

    def __init__(self, error: str, recoverable: bool = True) -> None:
        self.error = error
        self.recoverable = recoverable
        super().__init__(error)

    def __reduce__(self):
        return (type(self), (self.error, self.recoverable), self.__dict__)


class PulsingTimeoutError(PulsingActorError):
    """An operation timed out: `operation`, `duration_ms`."""

    def __init__(self, operation: str, duration_ms: int = 0) -> None:
        self.operation = operation
        self.duration_ms = duration_ms
        super().__init__(f"Operation '{operation}' timed out after {duration_ms}ms")

    def __reduce__(self):
        return (type(self), (self.operation, self.duration_ms), self.__dict__)


class PulsingUnsupportedError(PulsingActorError):
    """The operation is not supported: `operation`."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(f"Unsupported operation: {operation}")

    def __reduce__(self):
        return (type(self), (self.operation,), self.__dict__)
