"""Typed messages: a type string plus a payload, and streamed messages.

A `Message` sent to an actor arrives as a `Message`. `StreamMessage.create(type)` gives a message
whose payload is a stream, and the writer that feeds it; an actor returns the message from
`receive` and keeps writing while the caller reads `msg.stream_reader()`.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

from pulsing.exceptions import PulsingActorError, PulsingRuntimeError

__all__ = ["Message", "StreamMessage", "StreamReader", "StreamWriter"]


class Message:
    """A message with a type and a bytes payload (JSON when built with `from_json`)."""

    __slots__ = ("_payload", "_stream", "_unread", "msg_type")

    def __init__(self, msg_type: str, payload: bytes | bytearray | memoryview | None = None):
        if not isinstance(msg_type, str):
            raise TypeError(f"msg_type must be str, not {type(msg_type).__name__}")
        self.msg_type = msg_type
        self._payload = bytes(payload) if payload is not None else b""
        self._stream: _Channel | None = None

    @classmethod
    def from_json(cls, msg_type: str, obj: Any) -> Message:
        """A message whose payload is `obj` encoded as JSON (TypeError if it is not JSON)."""
        try:
            data = json.dumps(obj, separators=(",", ":")).encode()
        except (TypeError, ValueError) as e:
            raise TypeError(f"Message.from_json: payload is not JSON serializable: {e}") from e
        return cls(msg_type, data)

    @classmethod
    def empty(cls) -> Message:
        """A message with an empty type and payload."""
        return cls("", b"")

    @property
    def payload(self) -> bytes:
        """The payload bytes (not available on a stream message)."""
        if self._stream is not None:
            raise PulsingRuntimeError(
                "Cannot get payload from stream message, use stream_reader() instead"
            )
        return self._payload

    @property
    def is_stream(self) -> bool:
        return self._stream is not None

    def to_json(self) -> Any:
        """Decode the payload as JSON."""
        if self._stream is not None:
            raise PulsingRuntimeError(
                "Cannot parse stream message as JSON, use stream_reader() instead"
            )
        if not self._payload:
            return None
        return json.loads(self._payload)

    def stream_reader(self) -> StreamReader:
        """The async iterator over a stream message's items (once)."""
        if self._stream is None:
            raise PulsingRuntimeError("This is not a stream message, access payload directly")
        return self._stream.reader()

    def __repr__(self) -> str:
        if self._stream is not None:
            return f"Message(msg_type={self.msg_type!r}, stream)"
        return f"Message(msg_type={self.msg_type!r}, payload={len(self._payload)} bytes)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        if self._stream is not None or other._stream is not None:
            return self is other
        return self.msg_type == other.msg_type and self._payload == other._payload

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):
        if self._stream is not None:
            raise TypeError("a stream Message cannot be pickled")
        return (Message, (self.msg_type, self._payload))


class _Channel:
    """A bounded in-memory channel between one writer and one reader."""

    __slots__ = (
        "cancelled",
        "capacity",
        "closed",
        "error",
        "items",
        "reader_taken",
        "reader_waiter",
        "room_waiters",
    )

    def __init__(self, capacity: int) -> None:
        self.items: deque = deque()
        self.capacity = max(1, capacity)
        self.closed = False
        self.error: BaseException | None = None
        self.reader_waiter: asyncio.Future | None = None
        self.room_waiters: deque = deque()
        self.reader_taken = False
        self.cancelled = False

    def reader(self) -> StreamReader:
        if self.reader_taken:
            raise PulsingRuntimeError("Stream already consumed")
        self.reader_taken = True
        return StreamReader(self)

    def wake_reader(self) -> None:
        w = self.reader_waiter
        if w is not None and not w.done():
            w.set_result(None)
        self.reader_waiter = None

    def abandon(self) -> None:
        """Nobody will read: the writer's next write fails and waiting writers wake."""
        self.cancelled = True
        self.items.clear()
        try:
            self.wake_writers()
        except RuntimeError:  # loop already closed
            pass

    def wake_writers(self) -> None:
        while self.room_waiters and (len(self.items) < self.capacity or self.cancelled):
            w = self.room_waiters.popleft()
            if not w.done():
                w.set_result(None)


class _Done:
    """An already-completed awaitable (what `write` returns when there was room)."""

    __slots__ = ()

    def __await__(self):
        return None
        yield  # pragma: no cover - makes this a generator


_DONE = _Done()


class StreamWriter:
    """The producing end of a stream message. `write(obj)` queues at once when there is room
    and returns an awaitable that waits for room otherwise; `close()` ends the stream;
    `error(msg)` ends it with an error the reader raises after the items before it."""

    __slots__ = ("_ch",)

    def __init__(self, ch: _Channel) -> None:
        self._ch = ch

    def write(self, obj: Any):
        ch = self._ch
        if ch.closed:
            raise PulsingRuntimeError("Writer already closed")
        if ch.cancelled:
            raise PulsingRuntimeError("Stream closed: the reader went away")
        ch.items.append(obj)
        ch.wake_reader()
        if len(ch.items) <= ch.capacity:
            return _DONE
        return self._wait_room()

    async def _wait_room(self) -> None:
        ch = self._ch
        while len(ch.items) > ch.capacity and not ch.cancelled:
            fut = asyncio.get_running_loop().create_future()
            ch.room_waiters.append(fut)
            await fut

    def close(self):
        ch = self._ch
        if not ch.closed:
            ch.closed = True
            ch.wake_reader()
        return _DONE

    def error(self, msg: Any):
        ch = self._ch
        if not ch.closed:
            ch.error = msg if isinstance(msg, BaseException) else PulsingActorError(str(msg))
            ch.closed = True
            ch.wake_reader()
        return _DONE

    @property
    def closed(self) -> bool:
        return self._ch.closed


class StreamReader:
    """Async iterator over the items of a stream message."""

    __slots__ = ("_ch",)

    def __init__(self, ch: _Channel) -> None:
        self._ch = ch

    def __aiter__(self) -> StreamReader:
        return self

    async def __anext__(self) -> Any:
        ch = self._ch
        while True:
            if ch.items:
                item = ch.items.popleft()
                if ch.room_waiters:
                    ch.wake_writers()
                return item
            if ch.closed:
                if ch.error is not None:
                    err, ch.error = ch.error, None
                    raise err
                raise StopAsyncIteration
            fut = asyncio.get_running_loop().create_future()
            ch.reader_waiter = fut
            await fut

    def cancel(self) -> None:
        """Stop reading: the writer's next write fails and waiting writers wake."""
        self._ch.abandon()

    def __del__(self) -> None:
        if not self._ch.closed:
            self._ch.abandon()


class _Unread:
    """Held by a stream message only: the message dropped before its reader was taken
    abandons the channel (the producer stops rather than waiting for room for ever)."""

    __slots__ = ("ch",)

    def __init__(self, ch: _Channel) -> None:
        self.ch = ch

    def __del__(self) -> None:
        ch = self.ch
        if not ch.reader_taken and not ch.closed:
            ch.abandon()


class StreamMessage:
    """Factory of stream messages."""

    @staticmethod
    def create(msg_type: str, buffer_size: int = 32) -> tuple[Message, StreamWriter]:
        """A stream message of type `msg_type` and the writer feeding it; the writer holds at
        most `buffer_size` unread items before `write` makes the producer wait."""
        if buffer_size <= 0:
            raise ValueError("buffer_size must be positive")
        msg = Message(msg_type)
        ch = _Channel(buffer_size)
        msg._stream = ch
        msg._unread = _Unread(ch)
        return msg, StreamWriter(ch)
