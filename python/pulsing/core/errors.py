"""Classification of user exceptions and their structured form (the same locally and remotely).

An exception raised by user code becomes a Pulsing actor error once, in the actor; its category
and fields travel as a tuple (`to_fields`) and are rebuilt as the same class at the caller
(`from_fields`), so nothing is parsed back out of a string.
"""

from __future__ import annotations

import asyncio
import json

from pulsing import _core
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

# kinds (the values of pul_errkind_t)
RUNTIME = _core.ERRKIND_RUNTIME
BUSINESS = _core.ERRKIND_BUSINESS
SYSTEM = _core.ERRKIND_SYSTEM
TIMEOUT = _core.ERRKIND_TIMEOUT
UNSUPPORTED = _core.ERRKIND_UNSUPPORTED


def classify(exc: BaseException, operation: str, actor_name: str | None) -> PulsingError:
    """The Pulsing error a caller sees for `exc` raised by user code in `operation`."""
    if isinstance(exc, PulsingError):
        err = exc
    elif isinstance(exc, (ValueError, TypeError)):
        err = PulsingBusinessError(400, str(exc))
    elif isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        err = PulsingTimeoutError(operation, 0)
    else:
        err = PulsingSystemError(str(exc) or type(exc).__name__, recoverable=True)
    if err is not exc:
        err.cause = exc
        err.error_type = type(exc).__name__
    elif not hasattr(err, "error_type"):
        err.error_type = type(exc).__name__
    if isinstance(err, PulsingActorError) and err.actor_name is None:
        err.actor_name = actor_name
    return err


def triggers_restart(err: BaseException) -> bool:
    """System-class failures (anything but business and timeout errors) restart the actor."""
    return isinstance(err, PulsingActorError) and not isinstance(
        err, (PulsingBusinessError, PulsingTimeoutError)
    )


def failure_reason(e: BaseException) -> str:
    """The short reason of a failed core operation ("connection refused", "timed out"): the
    CoreError's text when `e` wraps one, else `str(e)`."""
    cause = getattr(e, "cause", None)
    return str(cause.args[0]) if cause is not None and cause.args else str(e)


def _wire_code(code: object) -> int:
    """A business code as the wire's 64-bit integer (a code that is not one becomes 0; its text
    stays in the message)."""
    try:
        v = int(code)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
    return v if -(1 << 63) <= v < 1 << 63 else 0


def _wire_details(details: object) -> str | None:
    """`details` is documented as a str; anything else crosses the wire as its JSON text (or
    its repr when it has none) rather than failing the reply."""
    if details is None or isinstance(details, str):
        return details
    try:
        return json.dumps(details, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(details)


def to_fields(err: PulsingError) -> tuple:
    """(kind, message, code, details, recoverable, duration_ms, type_name) of an error."""
    type_name = getattr(err, "error_type", type(err).__name__)
    if isinstance(err, PulsingBusinessError):
        return (
            BUSINESS, str(err.message), _wire_code(err.code), _wire_details(err.details), True,
            0, type_name,
        )
    if isinstance(err, PulsingSystemError):
        return (SYSTEM, err.error, 0, None, bool(err.recoverable), 0, type_name)
    if isinstance(err, PulsingTimeoutError):
        return (TIMEOUT, err.operation, 0, None, True, int(err.duration_ms), type_name)
    if isinstance(err, PulsingUnsupportedError):
        return (UNSUPPORTED, err.operation, 0, None, False, 0, type_name)
    if isinstance(err, PulsingActorError):
        return (SYSTEM, str(err), 0, None, True, 0, type_name)
    return (RUNTIME, str(err), 0, None, True, 0, type_name)


def from_fields(
    kind: int,
    message: str,
    code: int = 0,
    details: str | None = None,
    recoverable: bool = True,
    duration_ms: int = 0,
    type_name: str | None = None,
    actor_name: str | None = None,
) -> PulsingError:
    """Rebuild the error described by `to_fields`."""
    if kind == BUSINESS:
        err: PulsingError = PulsingBusinessError(code, message, details)
    elif kind == SYSTEM:
        err = PulsingSystemError(message, recoverable)
    elif kind == TIMEOUT:
        err = PulsingTimeoutError(message, duration_ms)
    elif kind == UNSUPPORTED:
        err = PulsingUnsupportedError(message)
    else:
        return PulsingRuntimeError(message)
    err.error_type = type_name
    err.actor_name = actor_name
    return err


def from_core_error(e: BaseException, what: str = "") -> PulsingError:
    """Map a `_core.CoreError` to the Pulsing error a caller should see."""
    if not isinstance(e, _core.CoreError):
        return e if isinstance(e, PulsingError) else PulsingRuntimeError(str(e), cause=e)
    if e.code == _core.EACTOR and e.kind != RUNTIME:
        return from_fields(
            e.kind, e.message, e.biz_code, e.details, e.recoverable, e.duration_ms, e.type_name
        )
    prefix = f"{what}: " if what else ""
    if e.code == _core.ETIMEDOUT:
        return PulsingTimeoutError(what or "ask", 0)
    return PulsingRuntimeError(f"{prefix}{e.args[0] if e.args else e}", cause=e)


def serialization_error(value: object, exc: BaseException, what: str) -> PulsingSerializationError:
    err = PulsingSerializationError(f"cannot send {what}: {exc}", cause=exc)
    err.__cause__ = exc
    return err
