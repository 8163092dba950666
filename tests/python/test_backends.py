"""Storage backends of queue buckets: MemoryBackend, the StorageBackend protocol, the registry.

These tests need no actor system."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pulsing.streaming import (
    MemoryBackend,
    StorageBackend,
    get_backend_class,
    list_backends,
    register_backend,
)
from pulsing.streaming import backend as backend_mod


@pytest.fixture
def clean_registry():
    saved = dict(backend_mod._REGISTERED_BACKENDS)
    yield
    backend_mod._REGISTERED_BACKENDS.clear()
    backend_mod._REGISTERED_BACKENDS.update(saved)


async def collect(stream) -> list[list[dict[str, Any]]]:
    return [batch async for batch in stream]


# ---- MemoryBackend ------------------------------------------------------------------------------


async def test_memory_put_get_offsets():
    b = MemoryBackend(bucket_id=1)
    await b.put({"id": 0})
    await b.put_batch([{"id": 1}, {"id": 2}, {"id": 3}])
    assert await b.get(10, 0) == [{"id": i} for i in range(4)]
    assert await b.get(2, 1) == [{"id": 1}, {"id": 2}]
    assert await b.get(10, 4) == []
    assert await b.get(0, 0) == []
    assert b.total_count() == 4


async def test_memory_accepts_backend_kwargs():
    b = MemoryBackend(bucket_id=2, storage_path="/nowhere", batch_size=7, extra="x")
    assert b.bucket_id == 2
    assert b.total_count() == 0


async def test_memory_stats_shape():
    b = MemoryBackend(bucket_id=5)
    await b.put_batch([{"id": i} for i in range(3)])
    await b.flush()
    assert await b.stats() == {
        "bucket_id": 5,
        "buffer_size": 3,
        "persisted_count": 0,
        "total_count": 3,
        "backend": "memory",
    }


async def test_memory_stream_without_wait():
    b = MemoryBackend(bucket_id=0)
    await b.put_batch([{"i": i} for i in range(250)])
    batches = await collect(b.get_stream(1000, 10))
    assert [len(x) for x in batches] == [100, 100, 40]
    assert [r["i"] for batch in batches for r in batch] == list(range(10, 250))
    assert await collect(b.get_stream(5, 248)) == [[{"i": 248}, {"i": 249}]]
    assert await collect(b.get_stream(3, 0)) == [[{"i": 0}, {"i": 1}, {"i": 2}]]
    assert await collect(b.get_stream(10, 250)) == []


async def test_memory_stream_waits_for_new_records():
    b = MemoryBackend(bucket_id=0)
    got: list[dict[str, Any]] = []

    async def consume():
        async for batch in b.get_stream(3, 0, wait=True):
            got.extend(batch)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    await b.put({"i": 0})
    await b.put_batch([{"i": 1}, {"i": 2}, {"i": 3}])
    await asyncio.wait_for(task, 5)
    assert got == [{"i": 0}, {"i": 1}, {"i": 2}]


async def test_memory_stream_wait_timeout_ends_stream():
    b = MemoryBackend(bucket_id=0)
    await b.put({"i": 0})
    batches = await collect(b.get_stream(10, 0, wait=True, timeout=0.05))
    assert batches == [[{"i": 0}]]


async def test_memory_tensor_methods():
    b = MemoryBackend(bucket_id=0)
    assert await b.put_tensor({"x": 1, "y": 2}) == {"size": 1}
    assert await b.put_tensor([{"x": 3, "y": 4}]) == {"size": 1}
    with pytest.raises(TypeError):
        await b.put_tensor(42)
    meta = await b.get_meta(["x"], batch_size=5)
    assert meta["global_indexes"] == [0, 1]
    assert await b.get_data(meta, fields=["x"]) == [{"x": 1}, {"x": 3}]
    assert await b.get_data({"global_indexes": [1, 9]}) == [{"x": 3, "y": 4}]


# ---- StorageBackend protocol ----------------------------------------------------------------------


class DuckBackend:
    def __init__(self, bucket_id: int, **kwargs: Any) -> None:
        self.records: list[dict[str, Any]] = []

    async def put(self, record):
        self.records.append(record)

    async def put_batch(self, records):
        self.records.extend(records)

    async def get(self, limit, offset):
        return self.records[offset : offset + limit]

    async def get_stream(self, limit, offset, wait=False, timeout=None):
        if offset < len(self.records):
            yield self.records[offset : offset + limit]

    async def flush(self):
        pass

    async def stats(self):
        return {"backend": "duck", "total_count": len(self.records)}

    def total_count(self):
        return len(self.records)


def test_protocol_is_runtime_checkable():
    assert isinstance(MemoryBackend(bucket_id=0), StorageBackend)
    assert isinstance(DuckBackend(bucket_id=0), StorageBackend)  # tensor methods optional
    assert not isinstance(object(), StorageBackend)

    class NoFlush(DuckBackend):
        flush = None

    class Partial:
        async def put(self, record): ...

    assert not isinstance(NoFlush(bucket_id=0), StorageBackend)
    assert not isinstance(Partial(), StorageBackend)


def test_protocol_subclass_must_implement_required_methods():
    class Incomplete(StorageBackend):
        pass

    with pytest.raises(TypeError):
        Incomplete()

    class Complete(DuckBackend, StorageBackend):
        pass

    backend = Complete(bucket_id=0)
    assert isinstance(backend, StorageBackend)
    with pytest.raises(NotImplementedError):
        asyncio.run(backend.put_tensor({"x": 1}))


# ---- registry ----------------------------------------------------------------------------------


def test_builtin_backends():
    assert "memory" in list_backends()
    assert get_backend_class("memory") is MemoryBackend
    assert get_backend_class(DuckBackend) is DuckBackend


def test_unknown_backend(clean_registry):
    with pytest.raises(ValueError, match="Unknown backend"):
        get_backend_class("no_such_backend")


def test_register_backend(clean_registry):
    register_backend("duck", DuckBackend)
    assert get_backend_class("duck") is DuckBackend
    assert list_backends() == ["memory", "duck"]
    register_backend("duck", MemoryBackend)  # a later registration replaces
    assert get_backend_class("duck") is MemoryBackend


def test_register_backend_rejects_non_class(clean_registry):
    with pytest.raises(TypeError, match="must be a class"):
        register_backend("bad", DuckBackend(bucket_id=0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a class"):
        register_backend("bad", "memory")  # type: ignore[arg-type]
    assert "bad" not in list_backends()


def test_import_surface():
    from pulsing import streaming
    from pulsing.streaming import sync_queue

    for name in [
        "Queue",
        "QueueReader",
        "QueueWriter",
        "write_queue",
        "read_queue",
        "BucketStorage",
        "MemoryBackend",
        "StorageBackend",
        "register_backend",
        "get_backend_class",
        "list_backends",
        "write_topic",
        "read_topic",
        "TopicWriter",
        "TopicReader",
        "PublishMode",
        "PublishResult",
        "QueueAPI",
        "TopicAPI",
    ]:
        assert getattr(streaming, name).__doc__, name
    assert sync_queue.SyncQueue and sync_queue.SyncQueueWriter and sync_queue.SyncQueueReader
