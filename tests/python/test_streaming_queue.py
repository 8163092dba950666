"""Distributed queue: partitioning, offset reads, rank/world_size split, backends, sync wrappers."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, ClassVar

import pulsing as pul
import pytest
from pulsing.streaming import (
    BucketStorage,
    Queue,
    QueueReader,
    QueueWriter,
    read_queue,
    register_backend,
    write_queue,
)
from pulsing.streaming import backend as backend_mod
from pulsing.streaming.sync_queue import SyncQueue, SyncQueueReader, SyncQueueWriter


@pytest.fixture
async def system():
    s = await pul.actor_system()
    yield s
    await s.shutdown()


@pytest.fixture
async def global_system():
    s = await pul.init()
    yield s
    await pul.shutdown()


def md5_bucket(value: Any, n: int) -> int:
    return int(hashlib.md5(str(value).encode()).hexdigest(), 16) % n


def ids(records: list[dict[str, Any]]) -> list[Any]:
    return [r["id"] for r in records]


# ---- writing ----------------------------------------------------------------------------------


async def test_put_single_and_list(system):
    writer = await write_queue(system, "q_put")
    assert isinstance(writer, QueueWriter)
    res = await writer.put({"id": "a", "v": 1})
    assert res == {"bucket_id": md5_bucket("a", 4), "status": "ok"}
    res = await writer.put([{"id": "b"}, {"id": "c"}])
    assert res == [
        {"bucket_id": md5_bucket("b", 4), "status": "ok"},
        {"bucket_id": md5_bucket("c", 4), "status": "ok"},
    ]
    assert await writer.put([]) == []
    await writer.flush()
    assert sorted(ids(await writer.get(limit=10))) == ["a", "b", "c"]


async def test_put_missing_bucket_column(system):
    writer = await write_queue(system, "q_missing", bucket_column="user")
    with pytest.raises(ValueError, match="user"):
        await writer.put({"id": 1})
    # a list with one bad record writes nothing
    with pytest.raises(ValueError):
        await writer.put([{"user": "u1"}, {"id": 2}])
    with pytest.raises(TypeError):
        await writer.put("not a record")  # type: ignore[arg-type]
    assert await writer.get(limit=10) == []


async def test_get_bucket_id_is_stable_hash(system):
    writer = await write_queue(system, "q_hash", num_buckets=8)
    for value in ["a", "user-42", 7, 3.5, None]:
        expected = md5_bucket("" if value is None else value, 8)
        assert writer.get_bucket_id(value) == expected
        assert writer.queue.get_bucket_id(value) == expected
    await writer.put([{"id": i} for i in range(40)])
    for bucket in range(8):
        records = await writer.get(bucket_id=bucket, limit=100)
        assert all(md5_bucket(r["id"], 8) == bucket for r in records)


async def test_order_within_a_bucket(system):
    writer = await write_queue(system, "q_order")
    for i in range(30):
        await writer.put({"id": "same", "seq": i})
    await writer.put([{"id": "same", "seq": i} for i in range(30, 60)])
    bucket = writer.get_bucket_id("same")
    records = await writer.get(bucket_id=bucket, limit=100)
    assert [r["seq"] for r in records] == list(range(60))


async def test_stats(system):
    writer = await write_queue(system, "q_stats", bucket_column="k", num_buckets=2)
    await writer.put([{"k": i} for i in range(10)])
    stats = await writer.stats()
    assert stats["topic"] == "q_stats"
    assert stats["bucket_column"] == "k"
    assert stats["num_buckets"] == 2
    total = 0
    for bucket_id, bucket_stats in stats["buckets"].items():
        assert bucket_stats["bucket_id"] == bucket_id
        assert bucket_stats["backend"] == "memory"
        assert bucket_stats["persisted_count"] == 0
        assert bucket_stats["buffer_size"] == bucket_stats["total_count"]
        total += bucket_stats["total_count"]
    assert total == 10


# ---- reading ----------------------------------------------------------------------------------


async def test_reader_offsets_reset_set_offset(system):
    writer = await write_queue(system, "q_offsets", num_buckets=1)
    await writer.put([{"id": i} for i in range(10)])
    reader = await read_queue(system, "q_offsets", num_buckets=1)
    assert isinstance(reader, QueueReader)
    assert ids(await reader.get(limit=4)) == [0, 1, 2, 3]
    assert ids(await reader.get(limit=4)) == [4, 5, 6, 7]
    assert ids(await reader.get(limit=4)) == [8, 9]
    assert await reader.get(limit=4) == []
    reader.reset()
    assert ids(await reader.get(limit=3)) == [0, 1, 2]
    reader.set_offset(7)
    assert ids(await reader.get()) == [7, 8, 9]
    reader.set_offset(2, bucket_id=0)
    assert ids(await reader.get(limit=1)) == [2]


async def test_readers_are_independent(system):
    writer = await write_queue(system, "q_indep")
    await writer.put([{"id": i} for i in range(20)])
    r1 = await read_queue(system, "q_indep")
    r2 = await read_queue(system, "q_indep")
    a = await r1.get(limit=100)
    b = await r2.get(limit=100)
    assert sorted(ids(a)) == list(range(20))
    assert sorted(ids(b)) == list(range(20))
    assert await r1.get() == []


async def test_rank_world_size_split(system):
    writer = await write_queue(system, "q_rank", num_buckets=4)
    await writer.put([{"id": f"k{i}"} for i in range(60)])
    seen: list[str] = []
    for rank in range(2):
        reader = await read_queue(system, "q_rank", rank=rank, world_size=2, num_buckets=4)
        assert reader.bucket_ids == [b for b in range(4) if b % 2 == rank]
        records = await reader.get(limit=1000)
        assert all(md5_bucket(r["id"], 4) % 2 == rank for r in records)
        seen += ids(records)
    assert sorted(seen) == sorted(f"k{i}" for i in range(60))
    three = await read_queue(system, "q_rank", rank=0, world_size=3, num_buckets=4)
    assert three.bucket_ids == [0, 3]
    with pytest.raises(ValueError):
        await read_queue(system, "q_rank", rank=2, world_size=2)


async def test_bucket_id_and_bucket_ids(system):
    writer = await write_queue(system, "q_buckets")
    await writer.put([{"id": i} for i in range(40)])
    one = await read_queue(system, "q_buckets", bucket_id=1)
    assert one.bucket_ids == [1]
    assert all(md5_bucket(r["id"], 4) == 1 for r in await one.get(limit=100))
    two = await read_queue(system, "q_buckets", bucket_ids=[0, 3])
    got = await two.get(limit=100)
    assert {md5_bucket(r["id"], 4) for r in got} <= {0, 3}
    assert len(got) == len(await writer.get(bucket_id=0)) + len(await writer.get(bucket_id=3))


async def test_limit_spans_buckets_in_order(system):
    writer = await write_queue(system, "q_limit", num_buckets=4)
    await writer.put([{"id": i} for i in range(40)])
    reader = await read_queue(system, "q_limit")
    got: list[Any] = []
    while batch := await reader.get(limit=7):
        assert len(batch) <= 7
        got += ids(batch)
    assert sorted(got) == list(range(40))


async def test_wait_for_records(system):
    writer = await write_queue(system, "q_wait", num_buckets=4)
    reader = await read_queue(system, "q_wait")
    pending = asyncio.ensure_future(reader.get(limit=2, wait=True, timeout=30))
    await asyncio.sleep(0.01)
    await writer.put({"id": "x1"})
    await writer.put({"id": "x2"})
    got = await asyncio.wait_for(pending, 30)
    assert sorted(ids(got)) == ["x1", "x2"]
    # the offsets moved past what was returned
    await writer.put({"id": "x3"})
    assert ids(await reader.get(limit=10)) == ["x3"]


async def test_wait_single_bucket(system):
    writer = await write_queue(system, "q_wait1", num_buckets=1)
    reader = await read_queue(system, "q_wait1", num_buckets=1)
    pending = asyncio.ensure_future(reader.get(limit=1, wait=True))
    await asyncio.sleep(0.01)
    await writer.put({"id": 1})
    assert ids(await asyncio.wait_for(pending, 30)) == [1]


async def test_wait_timeout_returns_what_there_is(system):
    writer = await write_queue(system, "q_wait_to")
    await writer.put({"id": "only"})
    reader = await read_queue(system, "q_wait_to")
    assert ids(await reader.get(limit=10, wait=True, timeout=0.05)) == ["only"]
    assert await reader.get(limit=10, wait=True, timeout=0.05) == []


# ---- buckets as actors --------------------------------------------------------------------------


async def test_buckets_are_named_actors(system):
    writer = await write_queue(system, "q_named", num_buckets=2)
    await writer.put([{"id": i} for i in range(10)])
    bucket = writer.get_bucket_id(0)
    proxy = await BucketStorage.resolve(f"bucket_q_named_{bucket}", system=system, timeout=5)
    records = await proxy.get(100, 0)
    assert 0 in ids(records)


async def test_writers_share_buckets(system):
    w1 = await write_queue(system, "q_shared", num_buckets=2)
    w2 = await write_queue(system, "q_shared", num_buckets=2)
    await asyncio.gather(
        w1.put([{"id": f"a{i}"} for i in range(20)]),
        w2.put([{"id": f"b{i}"} for i in range(20)]),
        *(w1.put({"id": f"c{i}"}) for i in range(10)),
    )
    reader = await read_queue(system, "q_shared", num_buckets=2)
    assert len(await reader.get(limit=1000)) == 50


async def test_topic_with_odd_characters(system):
    topic = "odd topic/with.dots:and//slashes" + "x" * 300
    writer = await write_queue(system, topic)
    await writer.put({"id": 1})
    reader = await read_queue(system, topic)
    assert ids(await reader.get()) == [1]


async def test_system_queue_api(system):
    writer = await system.queue.write("q_api", bucket_column="uid", num_buckets=2)
    await writer.put({"uid": 5})
    reader = await system.queue.read("q_api", num_buckets=2)
    assert await reader.get() == [{"uid": 5}]


# ---- backends -----------------------------------------------------------------------------------


class ListBackend:
    """A duck-typed backend counting its constructions."""

    created: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, bucket_id: int, **kwargs: Any) -> None:
        ListBackend.created.append({"bucket_id": bucket_id, **kwargs})
        self.bucket_id = bucket_id
        self.rows: list[dict[str, Any]] = []

    async def put(self, record):
        self.rows.append(record)

    async def put_batch(self, records):
        self.rows.extend(records)

    async def get(self, limit, offset):
        return self.rows[offset : offset + limit]

    async def get_stream(self, limit, offset, wait=False, timeout=None):
        if offset < len(self.rows):
            yield self.rows[offset : offset + limit]

    async def flush(self):
        pass

    async def stats(self):
        return {
            "bucket_id": self.bucket_id,
            "buffer_size": len(self.rows),
            "persisted_count": 0,
            "total_count": len(self.rows),
            "backend": "list",
        }

    def total_count(self):
        return len(self.rows)


@pytest.fixture
def list_backend():
    saved = dict(backend_mod._REGISTERED_BACKENDS)
    ListBackend.created.clear()
    register_backend("list", ListBackend)
    yield ListBackend
    backend_mod._REGISTERED_BACKENDS.clear()
    backend_mod._REGISTERED_BACKENDS.update(saved)


async def test_registered_backend(system, list_backend):
    writer = await write_queue(
        system,
        "q_backend",
        num_buckets=1,
        storage_path="/tmp/q_backend",
        backend="list",
        backend_options={"flavour": "plain"},
    )
    await writer.put({"id": 1})
    stats = await writer.stats()
    assert stats["buckets"][0]["backend"] == "list"
    assert list_backend.created == [
        {
            "bucket_id": 0,
            "storage_path": "/tmp/q_backend/bucket_0",
            "batch_size": 100,
            "flavour": "plain",
        }
    ]


async def test_backend_class(system, list_backend):
    writer = await write_queue(system, "q_backend_cls", num_buckets=1, backend=ListBackend)
    await writer.put({"id": 1})
    assert (await writer.stats())["buckets"][0]["backend"] == "list"


async def test_unknown_backend(system):
    with pytest.raises(ValueError, match="Unknown backend"):
        await write_queue(system, "q_bad_backend", backend="nope")


# ---- sync wrappers ------------------------------------------------------------------------------


async def test_sync_requires_global_runtime(system):
    writer = await write_queue(system, "q_sync_local")
    reader = await read_queue(system, "q_sync_local")
    with pytest.raises(RuntimeError, match="require the global Pulsing runtime"):
        writer.sync()
    with pytest.raises(RuntimeError, match="require the global Pulsing runtime"):
        reader.sync()
    with pytest.raises(RuntimeError, match="require the global Pulsing runtime"):
        writer.queue.sync()


async def test_sync_wrappers_from_a_thread(global_system):
    writer = await write_queue(global_system, "q_sync", num_buckets=2)
    reader = await read_queue(global_system, "q_sync", num_buckets=2)
    sw, sr, sq = writer.sync(), reader.sync(), writer.queue.sync()
    assert isinstance(sw, SyncQueueWriter)
    assert isinstance(sr, SyncQueueReader)
    assert isinstance(sq, SyncQueue)

    def work() -> list[dict[str, Any]]:
        sw.put({"id": 1})
        sq.put([{"id": 2}, {"id": 3}])
        sw.flush()
        return sr.get(limit=10)

    got = await asyncio.to_thread(work)
    assert sorted(ids(got)) == [1, 2, 3]
    stats = await asyncio.to_thread(sq.stats)
    assert sum(b["total_count"] for b in stats["buckets"].values()) == 3
    # On the loop's own thread a blocking call would deadlock: it raises instead.
    with pytest.raises(RuntimeError, match="own thread"):
        sr.get()


async def test_queue_constructor_validates(system):
    with pytest.raises(ValueError):
        Queue(system, "q_zero", num_buckets=0)
