"""Type stub for pulsing._core, the CPython extension over libpulsing.

Glue only: the extension owns the bridge between a system's core thread and its home asyncio
loop, and exposes the C core's identity, naming and actor table. Policy (what a call means,
errors as exception classes, supervision of Python actors) lives in the Python package.

Threading: every function here is called on the home loop's thread with the GIL held. The core
thread never touches a PyObject: it pushes completions onto the system's completion queue and
writes the eventfd only when the queue goes from empty to non-empty; `CoreSystem.drain()` (the
`loop.add_reader` callback) empties the whole queue in one pass.
"""

import asyncio
from collections.abc import Callable
from typing import Any

# ---- error codes (mirror PUL_E* of include/pulsing/pulsing.h) ---------------------------------
EINVAL: int
ENOMEM: int
ENOTFOUND: int
EEXIST: int
ENAME: int
ECLOSED: int
ESTOPPED: int
ETIMEDOUT: int
ECANCELED: int
EFULL: int
EACTOR: int
ETOOBIG: int
EPROTO: int
EIO: int
ESTATE: int
EOF: int
EAGAIN: int
EINTERNAL: int
EADDR: int

# error kinds (pul_errkind_t)
ERRKIND_NONE: int
ERRKIND_RUNTIME: int
ERRKIND_BUSINESS: int
ERRKIND_SYSTEM: int
ERRKIND_TIMEOUT: int
ERRKIND_UNSUPPORTED: int

class CoreError(Exception):
    """A failed core operation. args[0] is a human-readable message.

    code: the PUL_E* code. When code == EACTOR the remaining fields carry the structured error
    the actor replied with (kind and its fields); otherwise kind == ERRKIND_RUNTIME.
    """

    code: int
    kind: int
    message: str
    biz_code: int
    details: str | None
    recoverable: bool
    duration_ms: int
    type_name: str | None

def strerror(code: int, /) -> str: ...
def normalize_name(name: str, allow_system: bool = False) -> str:
    """'x' -> 'actors/x'; validates segments. Raises ValueError naming the rule broken."""

def random_id() -> int:
    """A fresh random 128-bit id (never 0), from the C core."""

def mem_live() -> int:
    """Live allocations inside libpulsing (leak checks in tests)."""

def copy_value(obj: Any, /) -> Any:
    """Copy semantics for in-process messages: returns obj itself when it is immutable (None,
    bool, int, float, complex, str, bytes, and tuples/frozensets of those, recursively);
    otherwise a copy made by a pickle protocol-5 round trip (out-of-band buffers copied once).
    Raises TypeError naming the offending type when the value cannot be pickled."""

# Payloads (every `payload` argument below): bytes, bytearray, memoryview or any contiguous
# buffer; None for an empty payload; or a list/tuple [head, *buffers]: head is copied as the
# message payload and each further buffer is attached as an out-of-band segment (buffers of
# 16 KiB or more without a copy: the buffer is held until the core frees the message, then
# released on the home thread). Payloads received from the core (ask replies, stream items)
# are bytes: the payload followed by its segments, concatenated.

class Reply:
    """The deferred reply to a message delivered by the core to a Python actor. Each of send,
    error, stream and abandon consumes it; a second use raises RuntimeError. Dropped without
    an answer it is abandoned (the caller gets ESTOPPED), never leaked; so is the reply of a
    handler that raised without answering. After the system's close every method raises
    CoreError(ECLOSED)."""

    is_ask: bool  # always True: a tell is delivered with reply=None
    @property
    def used(self) -> bool:
        """True once send/error/stream/abandon consumed it."""
    @property
    def remote(self) -> bool:
        """True when the caller is on another node: the answer only goes onto the wire (no copy
        for copy semantics is needed). False once used."""
    def send(self, msg_type: str, payload: bytes | memoryview | Any, /) -> None: ...
    def error(
        self,
        kind: int,
        message: str,
        *,
        code: int = 0,
        details: str | None = None,
        recoverable: bool = True,
        duration_ms: int = 0,
        type_name: str | None = None,
    ) -> None: ...
    def stream(self) -> StreamWriter: ...
    def abandon(self) -> None: ...
    def on_cancel(self, callback: Callable[[], None], /) -> None:
        """callback() runs on the home loop if the caller gives up before the answer (it
        cancelled, its HTTP/2 stream was reset, its deadline passed); at once when it already
        has; never once answered (pul_ctx_on_end)."""
    @property
    def cancelled(self) -> bool:
        """True once the caller gave up unanswered."""

class StreamWriter:
    """Producing end of a streamed reply to a core caller."""

    def push(self, msg_type: str, payload: bytes | memoryview | Any, /) -> bool:
        """True when accepted; False when the window is full (call on_writable and retry).
        Raises CoreError(ECANCELED) when the consumer went away."""
    def on_writable(self, callback: Callable[[], None], /) -> None:
        """callback() runs on the home loop once there is room again (or on cancel)."""
    def end(self) -> None:
        """End cleanly. A second end()/error() raises RuntimeError. A writer dropped without
        end() ends the stream with a system error."""
    def error(
        self,
        kind: int,
        message: str,
        *,
        code: int = 0,
        details: str | None = None,
        recoverable: bool = True,
        duration_ms: int = 0,
        type_name: str | None = None,
    ) -> None: ...

class CoreSystem:
    """One libpulsing system: its core thread and its bridge to the home loop.

    Create on the home loop thread, then `loop.add_reader(sys.fileno(), sys.drain)`.
    close() fails every pending call, joins the core thread and frees everything; it is
    idempotent. Remove the reader before close(). After close every method raises
    CoreError(ECLOSED), except close() and drain() (no-ops) and the `closed` property.
    A CoreSystem garbage-collected unclosed is closed then."""

    node_id: int
    def __init__(
        self,
        *,
        mailbox_capacity: int = 256,
        max_message_size: int = ...,
        stream_window: int = 32,
        default_deadline_ms: int = 0,
        listen_addr: str | None = None,
        advertise_addr: str | None = None,
        seeds: list[str] | tuple[str, ...] | None = None,
        head_addr: str | None = None,
        is_head_node: bool = False,
        timing: dict[str, int] | None = None,
        remote_deadline_ms: int = 0,
    ) -> None:
        """listen_addr "host:port" (port 0: ephemeral) opens this node's port and joins
        `seeds` in the background; `timing` sets fields of pul_cluster_timing_t by name
        (ValueError for an unknown one). A port that cannot be bound raises CoreError(EADDR).
        Without listen_addr/seeds/head the system is a single process with no port."""
    @property
    def addr(self) -> str | None:
        """The advertised "host:port" (the real port), or None without a listener."""
    def fileno(self) -> int: ...
    def drain(self) -> None:
        """Run every queued completion: resolve futures, call handlers and stream callbacks.
        A callback that raises does not stop the pass: the first exception is re-raised at
        the end (asyncio's exception handler reports it), later ones go to
        sys.unraisablehook."""
    def close(self) -> None:
        """Pending ask futures get CoreError(ECLOSED) at once (set_exception, skipped when
        already done), stream calls get on_item(None, None, CoreError(ECLOSED)), deferred
        replies are abandoned and writers ended; then the core shuts down (GIL released),
        what it queued is drained, the eventfd is closed and every Python reference dropped.
        May be called from inside a callback run by drain()."""
    @property
    def closed(self) -> bool: ...
    def spin(self, max_us: float, /) -> bool:
        """Busy-wait, with the GIL released, up to max_us microseconds for a completion to be
        queued; True when one is (then drain() has work). A home loop that spins a little
        before sleeping in epoll_wait saves the ~30 us wake-up of an idle vCPU
        (docs/design/threads.md); when to spend a core on that is the runtime's call."""
    def bridge_stats(self) -> dict[str, int]:
        """{'pushes': entries queued by the core, 'wakeups': eventfd writes} since creation."""

    # ---- table and names ----
    def register(
        self,
        name: str | None,
        handler: Callable[[str, memoryview, Reply | None], None],
        *,
        mailbox_capacity: int = 0,
        allow_system: bool = False,
        on_stop: Callable[[int], None] | None = None,
        segments: bool = False,
    ) -> int:
        """Register a foreign (Python) actor in the C table and return its new actor id.
        name is normalized; ValueError for a bad name, KeyError-like CoreError(EEXIST) when taken.
        Messages routed to it through the core are delivered on the home loop as
        handler(msg_type, payload, reply) with reply None for a tell; payload is a read-only
        memoryview over the core's message (valid as long as you keep it). The handler is
        held (strong reference) until the actor is unregistered and its last message drained.
        on_stop(actor_id), if given, runs on the home loop once the core is done with the
        actor (after unregister/stop from anywhere, and after its last message was handed
        to handler); it is not called by close(). With segments=True the handler is called
        as handler(msg_type, payload, reply, segments): payload is the message's payload
        alone and segments a tuple of writable memoryviews (see Payloads above)."""
    def unregister(self, actor_id: int, /) -> None:
        """Remove it; asks still queued for it in the core fail with ESTOPPED. Idempotent."""
    def lookup(self, name: str, /) -> int | None:
        """The id registered under name (normalized; 'system/...' names are allowed here),
        or None. ValueError for a bad name."""
    def actors(self) -> list[tuple[int, str | None]]: ...

    # ---- C actors (built into the extension for tests, benches and examples) ----
    def spawn_builtin(self, kind: str, name: str | None = None) -> int:
        """kind: 'echo' (replies with the message), 'counter' (payload = 8-byte little-endian
        signed increment, default 1; replies ('i64', running total as 8-byte LE)),
        'streamer' (payload = 4-byte LE count n [+ 4-byte LE delay_ms between items]; streams
        n items ('item', 4-byte LE index) then ends), 'failer' (replies with a structured
        error: kind = payload[0] if given else ERRKIND_SYSTEM, message 'induced failure',
        biz_code 418, details 'failer details', recoverable, duration_ms 1500, type_name
        'RuntimeError'), 'forwarder' (payload = 16-byte big-endian target id + body; forwards
        (msg_type, body) to the target through the core and relays its reply or error; a tell
        is forwarded as a tell). ValueError for an unknown kind."""
    def stop(self, actor_id: int, /) -> None:
        """Stop any actor (C or registered Python one). Idempotent."""

    # ---- calls through the core ----
    def ask(
        self,
        target: int,
        msg_type: str,
        payload: bytes | memoryview | Any,
        future: Any,
        deadline_ms: int = 0,
        segments: bool = False,
        complete: Callable[[Any, bool, Any], None] | None = None,
    ) -> None:
        """Send through the core (to an actor of this node or, by its id's node prefix, of
        another node); future.set_result((msg_type, bytes)) -- (msg_type, bytes, segments)
        with segments=True -- or
        future.set_exception(CoreError) on the home loop (skipped if the future is already
        done). With `complete`, the drain calls complete(future, True, that tuple) or
        complete(future, False, CoreError) instead, and the callable resolves the future.
        Cancelling the future cancels the call (through a done callback).
        Errors known at once (bad id/payload, closed system) raise here and leave the
        future untouched; ENOTFOUND for an unknown target arrives through the future."""
    def tell(self, target: int, msg_type: str, payload: bytes | memoryview | Any, /) -> None: ...
    def ask_stream(
        self,
        target: int,
        msg_type: str,
        payload: bytes | memoryview | Any,
        on_item: Callable[..., None],
        deadline_ms: int = 0,
        segments: bool = False,
        flow: bool = False,
    ) -> StreamCall:
        """on_item(msg_type, payload, None) per item (on_item(msg_type, payload, None,
        segments) with segments=True); on_item(None, None, None) at the clean end;
        on_item(None, None, err) on error. Runs on the home loop. flow=True bounds the items
        handed over and not yet taken: the consumer calls StreamCall.taken() for each item it
        takes, and the call is paused at 64 outstanding (the producer is held), resumed at 16."""
    def ask_named(
        self,
        node_id: int | None,
        name: str,
        msg_type: str,
        payload: bytes | memoryview | Any,
        future: Any,
        deadline_ms: int = 0,
        segments: bool = False,
        complete: Callable[[Any, bool, Any], None] | None = None,
    ) -> None:
        """Like ask, to the instance of `name` on node `node_id` (None: this node)."""

    # ---- cluster (pul_members, pul_resolve_name, pul_named_foreach, pul_actor_node) ----
    def gateway_route(self, node_id: int, addr: str | None) -> None:
        """Calls and tells for the actors of node `node_id` (0: every node without a route of
        its own) go to the gateway at `addr`, which forwards them; `None` drops the route."""
    def http_get(
        self, addr: str, path: str, future: asyncio.Future[Any], timeout_ms: int = 0
    ) -> None:
        """GET http://addr/path (a REST endpoint such as "/cluster/members") over the core's
        HTTP/2 client; `future` gets (HTTP status as a decimal str, body bytes) or a CoreError
        (EIO: cannot connect; ETIMEDOUT). Works on a system without a listener."""
    def members(self) -> list[tuple[int, str, str, int]]:
        """(node_id, addr, status, incarnation) per member, this node first; status is
        "Alive", "Suspect", "Dead" or "Left"; addr is "" for a node without a listener."""
    def resolve_name(self, name: str, /) -> list[tuple[int, int]]:
        """(node_id, actor_id) of the live instances of `name` cluster-wide, by node id."""
    def named_actors(self) -> list[tuple[str, int, int]]:
        """(name, node_id, actor_id) of every live named actor of the cluster view."""
    def actor_node(self, actor_id: int, /) -> int | None:
        """The node hosting `actor_id` (by its id prefix), or None when unknown."""

class StreamCall:
    def cancel(self) -> None:
        """Cancel: the producer sees its stream cancelled; on_item is not called again (not
        even for the end). Idempotent; harmless after the end."""
    def taken(self) -> None:
        """The consumer took one item (ask_stream(flow=True)). With 64 items handed over and
        not taken the call is paused (the producer is held by flow control); at 16 it resumes.
        Harmless after the end."""
    @property
    def done(self) -> bool:
        """True once the end was delivered or cancel() ran."""
