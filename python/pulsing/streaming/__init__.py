"""Streaming: distributed queues (partitioned, offset-read logs) and topics (pub/sub).

Queue::

    writer = await system.queue.write("samples", bucket_column="id")   # or write_queue(system, ...)
    await writer.put({"id": "u1", "x": 1})
    reader = await system.queue.read("samples", rank=0, world_size=2)
    records = await reader.get(limit=10)

Topic::

    writer = await system.topic.write("events")
    reader = await system.topic.read("events")
    reader.add_callback(print)
    await reader.start()
    await writer.publish({"type": "login"})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backend import (
    MemoryBackend,
    StorageBackend,
    get_backend_class,
    list_backends,
    register_backend,
)
from .manager import get_bucket_ref, get_topic_broker
from .pubsub import (
    PublishMode,
    PublishResult,
    TopicReader,
    TopicWriter,
    read_topic,
    subscribe_to_topic,
    write_topic,
)
from .queue import Queue, QueueReader, QueueWriter, read_queue, write_queue
from .storage import BucketStorage
from .sync_queue import SyncQueue, SyncQueueReader, SyncQueueWriter

if TYPE_CHECKING:
    from pulsing.core import ActorSystem

__all__ = [
    "BucketStorage",
    "MemoryBackend",
    "PublishMode",
    "PublishResult",
    "Queue",
    "QueueAPI",
    "QueueReader",
    "QueueWriter",
    "StorageBackend",
    "SyncQueue",
    "SyncQueueReader",
    "SyncQueueWriter",
    "TopicAPI",
    "TopicReader",
    "TopicWriter",
    "get_backend_class",
    "get_bucket_ref",
    "get_topic_broker",
    "list_backends",
    "read_queue",
    "read_topic",
    "register_backend",
    "subscribe_to_topic",
    "write_queue",
    "write_topic",
]


def _system_or_global(system: ActorSystem | None) -> ActorSystem:
    if system is not None:
        return system
    import pulsing

    return pulsing.get_system()  # PulsingRuntimeError "not initialized" when there is none


class QueueAPI:
    """``system.queue``: `write_queue` / `read_queue` bound to a system.

    Args:
        system: the system; None means the global one (``pulsing.init()``), looked up at each
            call.
    """

    def __init__(self, system: ActorSystem | None = None) -> None:
        self._system = system

    async def write(
        self,
        topic: str,
        *,
        bucket_column: str = "id",
        num_buckets: int = 4,
        batch_size: int = 100,
        storage_path: str | None = None,
        backend: str | type = "memory",
        backend_options: dict[str, Any] | None = None,
    ) -> QueueWriter:
        """Open queue `topic` for writing (see `write_queue`)."""
        return await write_queue(
            _system_or_global(self._system),
            topic,
            bucket_column=bucket_column,
            num_buckets=num_buckets,
            batch_size=batch_size,
            storage_path=storage_path,
            backend=backend,
            backend_options=backend_options,
        )

    async def read(
        self,
        topic: str,
        *,
        bucket_id: int | None = None,
        bucket_ids: list[int] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        num_buckets: int = 4,
        storage_path: str | None = None,
        backend: str | type = "memory",
        backend_options: dict[str, Any] | None = None,
    ) -> QueueReader:
        """Open queue `topic` for reading (see `read_queue`)."""
        return await read_queue(
            _system_or_global(self._system),
            topic,
            bucket_id=bucket_id,
            bucket_ids=bucket_ids,
            rank=rank,
            world_size=world_size,
            num_buckets=num_buckets,
            storage_path=storage_path,
            backend=backend,
            backend_options=backend_options,
        )


class TopicAPI:
    """``system.topic``: `write_topic` / `read_topic` bound to a system.

    Args:
        system: the system; None means the global one, looked up at each call.
    """

    def __init__(self, system: ActorSystem | None = None) -> None:
        self._system = system

    async def write(self, topic: str, *, writer_id: str | None = None) -> TopicWriter:
        """Open `topic` for publishing (see `write_topic`)."""
        return await write_topic(_system_or_global(self._system), topic, writer_id=writer_id)

    async def read(
        self, topic: str, *, reader_id: str | None = None, auto_start: bool = False
    ) -> TopicReader:
        """Open `topic` for reading (see `read_topic`)."""
        return await read_topic(
            _system_or_global(self._system), topic, reader_id=reader_id, auto_start=auto_start
        )
