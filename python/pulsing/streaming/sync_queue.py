"""Blocking wrappers of the queue API, obtained with ``.sync()`` on a queue, writer or reader.

They are for code running in threads other than the event loop's (worker threads, sync
libraries): each call submits the coroutine to the loop the queue was opened on and waits for
it. They require the global runtime (``await pulsing.init()``), whose loop keeps running while
other threads block. Calling them on the loop's own thread would deadlock, so that raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .queue import Queue, QueueReader, QueueWriter

__all__ = ["SyncQueue", "SyncQueueReader", "SyncQueueWriter"]

T = TypeVar("T")
Record = dict[str, Any]


def _check_global(queue: Queue) -> asyncio.AbstractEventLoop:
    """The loop to submit to; RuntimeError unless `queue` is on the global runtime."""
    import pulsing

    global_system = None
    if pulsing.is_initialized():
        global_system = pulsing.get_system()
    if global_system is None or queue.system is not global_system:
        raise RuntimeError(
            "Synchronous queue wrappers (.sync()) require the global Pulsing runtime "
            "(await pulsing.init()); this queue belongs to another actor system"
        )
    loop = queue._loop
    if loop is None:
        raise RuntimeError(
            "Synchronous queue wrappers require the global Pulsing runtime's event loop; "
            "open the queue from a coroutine running on it"
        )
    return loop


def _run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on `loop` from another thread and return its result."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError(
            "a synchronous queue wrapper was called on the event loop's own thread, where it "
            "would deadlock; use the async API there (or call it from another thread)"
        )
    if loop.is_closed() or not loop.is_running():
        coro.close()
        raise RuntimeError("Event loop not running. Sync wrapper requires a running event loop.")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


class SyncQueue:
    """Blocking wrapper of a `Queue` (see `Queue.sync`)."""

    def __init__(self, queue: Queue) -> None:
        self._loop = _check_global(queue)
        self._queue = queue

    def put(self, record: Record | list[Record]) -> dict[str, Any] | list[dict[str, Any]]:
        """Blocking `Queue.put`."""
        return _run(self._loop, self._queue.put(record))

    def get(
        self,
        bucket_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
        wait: bool = False,
        timeout: float | None = None,
    ) -> list[Record]:
        """Blocking `Queue.get`."""
        return _run(self._loop, self._queue.get(bucket_id, limit, offset, wait, timeout))

    def flush(self) -> None:
        """Blocking `Queue.flush`."""
        _run(self._loop, self._queue.flush())

    def stats(self) -> dict[str, Any]:
        """Blocking `Queue.stats`."""
        return _run(self._loop, self._queue.stats())

    def get_bucket_id(self, partition_value: Any) -> int:
        """See `Queue.get_bucket_id`."""
        return self._queue.get_bucket_id(partition_value)


class SyncQueueWriter:
    """Blocking wrapper of a `QueueWriter`."""

    def __init__(self, writer: QueueWriter) -> None:
        self._loop = _check_global(writer.queue)
        self._writer = writer

    def put(self, record: Record | list[Record]) -> dict[str, Any] | list[dict[str, Any]]:
        """Blocking `QueueWriter.put`."""
        return _run(self._loop, self._writer.put(record))

    def flush(self) -> None:
        """Blocking `QueueWriter.flush`."""
        _run(self._loop, self._writer.flush())

    def stats(self) -> dict[str, Any]:
        """Blocking `QueueWriter.stats`."""
        return _run(self._loop, self._writer.stats())

    def get_bucket_id(self, partition_value: Any) -> int:
        """See `Queue.get_bucket_id`."""
        return self._writer.get_bucket_id(partition_value)


class SyncQueueReader:
    """Blocking wrapper of a `QueueReader`."""

    def __init__(self, reader: QueueReader) -> None:
        self._loop = _check_global(reader.queue)
        self._reader = reader

    def get(
        self, limit: int = 100, wait: bool = False, timeout: float | None = None
    ) -> list[Record]:
        """Blocking `QueueReader.get`."""
        return _run(self._loop, self._reader.get(limit, wait, timeout))

    def reset(self) -> None:
        """See `QueueReader.reset`."""
        self._reader.reset()

    def set_offset(self, offset: int, bucket_id: int | None = None) -> None:
        """See `QueueReader.set_offset`."""
        self._reader.set_offset(offset, bucket_id)
