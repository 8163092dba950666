"""Distributed queue: records partitioned by a column into buckets, each a `BucketStorage` actor.

Reads are an offset-based log: reading does not remove records; a `QueueReader` remembers one
offset per bucket, and any number of readers read the same records independently.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import TYPE_CHECKING, Any

from .backend import get_backend_class
from .manager import get_bucket_ref

if TYPE_CHECKING:
    from pulsing.core import ActorProxy, ActorSystem

    from .sync_queue import SyncQueue, SyncQueueReader, SyncQueueWriter

__all__ = ["Queue", "QueueReader", "QueueWriter", "read_queue", "write_queue"]

logger = logging.getLogger(__name__)

Record = dict[str, Any]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Queue:
    """A queue `topic` of `system`, split into `num_buckets` buckets by `bucket_column`.

    A record goes to bucket ``md5(str(record[bucket_column])) % num_buckets`` (the same on every
    node and every run). Buckets are created on first use, with `backend`.

    Args:
        system: the actor system the buckets live in.
        topic: queue name.
        bucket_column: the column that picks a record's bucket.
        num_buckets: number of buckets.
        batch_size: batch size hint for the backend.
        storage_path: base path for persistent backends (default ``./queue_storage/<topic>``).
        backend: backend name or class (default ``"memory"``).
        backend_options: extra keyword arguments for the backend.

    Raises:
        ValueError: `num_buckets` < 1 or unknown backend.
    """

    def __init__(
        self,
        system: ActorSystem,
        topic: str,
        bucket_column: str = "id",
        num_buckets: int = 4,
        batch_size: int = 100,
        storage_path: str | None = None,
        backend: str | type = "memory",
        backend_options: dict[str, Any] | None = None,
    ) -> None:
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
        get_backend_class(backend)  # fail here, not in a bucket, on an unknown name
        self.system = system
        self.topic = topic
        self.bucket_column = bucket_column
        self.num_buckets = num_buckets
        self.batch_size = batch_size
        self.storage_path = storage_path or f"./queue_storage/{topic}"
        self.backend = backend
        self.backend_options = backend_options
        self._bucket_refs: dict[int, ActorProxy] = {}
        self._bucket_locks: dict[int, asyncio.Lock] = {}
        # The loop the sync wrappers submit to.
        self._loop = _running_loop()

    # ---- partitioning and buckets ----

    def _hash_partition(self, value: Any) -> int:
        if value is None:
            value = ""
        return int(hashlib.md5(str(value).encode()).hexdigest(), 16) % self.num_buckets

    def get_bucket_id(self, partition_value: Any) -> int:
        """The bucket a record whose bucket column is `partition_value` goes to."""
        return self._hash_partition(partition_value)

    async def _ensure_bucket(self, bucket_id: int) -> ActorProxy:
        ref = self._bucket_refs.get(bucket_id)
        if ref is not None:
            return ref
        lock = self._bucket_locks.setdefault(bucket_id, asyncio.Lock())
        async with lock:
            ref = self._bucket_refs.get(bucket_id)
            if ref is None:
                ref = await get_bucket_ref(
                    self.system,
                    self.topic,
                    bucket_id,
                    batch_size=self.batch_size,
                    storage_path=self.storage_path,
                    backend=self.backend,
                    backend_options=self.backend_options,
                )
                self._bucket_refs[bucket_id] = ref
            return ref

    # ---- writing ----

    async def put(self, record: Record | list[Record]) -> dict[str, Any] | list[dict[str, Any]]:
        """Append one record (a dict) or a list of records.

        Records of one bucket are appended in the order given. Returns
        ``{"bucket_id": i, "status": "ok"}`` for a record, a list of those (in input order) for
        a list.

        Raises:
            TypeError: not a dict or a list of dicts.
            ValueError: a record lacks the bucket column (then nothing of a list is written).
        """
        if isinstance(record, dict):
            records, single = [record], True
        elif isinstance(record, list):
            records, single = record, False
        else:
            raise TypeError("record must be a dict or list of dicts")
        bucket_ids = []
        for rec in records:
            if not isinstance(rec, dict):
                raise TypeError("record must be a dict or list of dicts")
            if self.bucket_column not in rec:
                raise ValueError(f"Missing partition column '{self.bucket_column}'")
            bucket_ids.append(self._hash_partition(rec[self.bucket_column]))

        groups: dict[int, list[Record]] = {}
        for bid, rec in zip(bucket_ids, records):
            groups.setdefault(bid, []).append(rec)

        async def write(bid: int, recs: list[Record]) -> None:
            bucket = await self._ensure_bucket(bid)
            if len(recs) == 1:
                await bucket.put(recs[0])
            else:
                await bucket.put_batch(recs)

        if len(groups) == 1:
            ((bid, recs),) = groups.items()
            await write(bid, recs)
        elif groups:
            await asyncio.gather(*(write(bid, recs) for bid, recs in groups.items()))

        results = [{"bucket_id": bid, "status": "ok"} for bid in bucket_ids]
        return results[0] if single else results

    async def flush(self) -> None:
        """Flush every bucket this queue object has used."""
        refs = list(self._bucket_refs.values())
        if refs:
            await asyncio.gather(*(ref.flush() for ref in refs))

    # ---- reading ----

    async def get(
        self,
        bucket_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
        wait: bool = False,
        timeout: float | None = None,
    ) -> list[Record]:
        """Read up to `limit` records from `offset` of one bucket, or of every bucket (in
        bucket order) when `bucket_id` is None. Nothing is consumed: the same call returns the
        same records. `wait`/`timeout` as in `QueueReader.get`."""
        bucket_ids = [bucket_id] if bucket_id is not None else list(range(self.num_buckets))
        offsets = dict.fromkeys(bucket_ids, offset)
        records, _ = await self._read(bucket_ids, offsets, limit, wait, timeout)
        return records

    async def _read_bucket(
        self,
        bucket_id: int,
        offset: int,
        wait: bool,
        timeout: float | None,
        out: list[Record],
        limit: int,
        counts: dict[int, int],
    ) -> None:
        """Append records of one bucket, from `offset`, to `out` until `out` holds `limit`;
        ``counts[bucket_id]`` grows as records land (so a cancelled read still accounts for
        what it appended)."""
        bucket = await self._ensure_bucket(bucket_id)
        stream = bucket.get_stream(limit - len(out), offset, wait, timeout)
        try:
            async for batch in stream:
                batch = batch[: limit - len(out)]
                out.extend(batch)
                counts[bucket_id] += len(batch)
                if len(out) >= limit:
                    break
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception as e:  # noqa: BLE001 - the stream is abandoned either way
                    logger.debug("closing a bucket stream failed: %r", e)

    async def _read(
        self,
        bucket_ids: list[int],
        offsets: dict[int, int],
        limit: int,
        wait: bool,
        timeout: float | None,
    ) -> tuple[list[Record], dict[int, int]]:
        """Read from `offsets` (not modified); returns the records and the new offsets."""
        out: list[Record] = []
        counts = dict.fromkeys(bucket_ids, 0)
        if limit > 0 and bucket_ids:
            await self._read_into(bucket_ids, offsets, limit, wait, timeout, out, counts)
        new_offsets = dict(offsets)
        for bid, n in counts.items():
            new_offsets[bid] = offsets[bid] + n
        return out, new_offsets

    async def _read_into(
        self,
        bucket_ids: list[int],
        offsets: dict[int, int],
        limit: int,
        wait: bool,
        timeout: float | None,
        out: list[Record],
        counts: dict[int, int],
    ) -> None:
        # What is there now, bucket by bucket.
        for bid in bucket_ids:
            if len(out) >= limit:
                return
            await self._read_bucket(bid, offsets[bid], False, None, out, limit, counts)
        if not wait or len(out) >= limit:
            return
        # Then wait for new records on every bucket at once, taking them in arrival order,
        # until `limit` is reached or every bucket stayed idle for `timeout`.
        if len(bucket_ids) == 1:
            bid = bucket_ids[0]
            await self._read_bucket(
                bid, offsets[bid] + counts[bid], True, timeout, out, limit, counts
            )
            return
        start = dict(counts)
        tasks = [
            asyncio.ensure_future(
                self._read_bucket(bid, offsets[bid] + start[bid], True, timeout, out, limit, counts)
            )
            for bid in bucket_ids
        ]
        try:
            pending = set(tasks)
            while pending and len(out) < limit:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- misc ----

    async def stats(self) -> dict[str, Any]:
        """``{"topic", "bucket_column", "num_buckets", "buckets": {bucket_id: bucket stats}}``
        for the buckets this queue object has used."""
        bucket_ids = sorted(self._bucket_refs)
        stats = await asyncio.gather(*(self._bucket_refs[b].stats() for b in bucket_ids))
        return {
            "topic": self.topic,
            "bucket_column": self.bucket_column,
            "num_buckets": self.num_buckets,
            "buckets": dict(zip(bucket_ids, stats)),
        }

    def sync(self) -> SyncQueue:
        """A blocking wrapper, for threads other than the event loop's.

        Raises:
            RuntimeError: the queue does not belong to the global runtime (``pulsing.init()``).
        """
        from .sync_queue import SyncQueue

        return SyncQueue(self)


class QueueWriter:
    """Write handle returned by `write_queue`."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    @property
    def topic(self) -> str:
        """Queue name."""
        return self.queue.topic

    async def put(self, record: Record | list[Record]) -> dict[str, Any] | list[dict[str, Any]]:
        """Append a record or a list of records (see `Queue.put`)."""
        return await self.queue.put(record)

    async def flush(self) -> None:
        """Flush the buckets written to."""
        await self.queue.flush()

    async def stats(self) -> dict[str, Any]:
        """Queue statistics (see `Queue.stats`)."""
        return await self.queue.stats()

    async def get(
        self,
        bucket_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
        wait: bool = False,
        timeout: float | None = None,
    ) -> list[Record]:
        """Read records without tracking an offset (see `Queue.get`)."""
        return await self.queue.get(bucket_id, limit, offset, wait, timeout)

    def get_bucket_id(self, partition_value: Any) -> int:
        """The bucket a record with this bucket-column value goes to."""
        return self.queue.get_bucket_id(partition_value)

    def sync(self) -> SyncQueueWriter:
        """A blocking wrapper (see `Queue.sync`)."""
        from .sync_queue import SyncQueueWriter

        return SyncQueueWriter(self)


class QueueReader:
    """Read handle returned by `read_queue`: reads its buckets from per-bucket offsets.

    Args:
        queue: the queue.
        bucket_ids: buckets to read, or None for all of them.
    """

    def __init__(self, queue: Queue, bucket_ids: list[int] | None = None) -> None:
        self.queue = queue
        self.bucket_ids = bucket_ids
        self._offsets: dict[int, int] = {}

    @property
    def topic(self) -> str:
        """Queue name."""
        return self.queue.topic

    def _get_bucket_ids(self) -> list[int]:
        if self.bucket_ids is not None:
            return list(self.bucket_ids)
        return list(range(self.queue.num_buckets))

    async def get(
        self, limit: int = 100, wait: bool = False, timeout: float | None = None
    ) -> list[Record]:
        """The next records (at most `limit`) of this reader's buckets, advancing its offsets.

        Without `wait`, returns what is there now (possibly nothing). With `wait`, also waits
        for new records until `limit` records were read or no record arrived for `timeout`
        seconds (`None`: until `limit`).
        """
        bucket_ids = self._get_bucket_ids()
        offsets = {bid: self._offsets.get(bid, 0) for bid in bucket_ids}
        records, new_offsets = await self.queue._read(bucket_ids, offsets, limit, wait, timeout)
        self._offsets.update(new_offsets)
        return records

    def reset(self) -> None:
        """Read again from the start of every bucket."""
        self._offsets.clear()

    def set_offset(self, offset: int, bucket_id: int | None = None) -> None:
        """Set the offset of one bucket, or of all of this reader's buckets."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if bucket_id is not None:
            self._offsets[bucket_id] = offset
        else:
            for bid in self._get_bucket_ids():
                self._offsets[bid] = offset

    def sync(self) -> SyncQueueReader:
        """A blocking wrapper (see `Queue.sync`)."""
        from .sync_queue import SyncQueueReader

        return SyncQueueReader(self)


async def write_queue(
    system: ActorSystem,
    topic: str,
    bucket_column: str = "id",
    num_buckets: int = 4,
    batch_size: int = 100,
    storage_path: str | None = None,
    backend: str | type = "memory",
    backend_options: dict[str, Any] | None = None,
) -> QueueWriter:
    """Open queue `topic` for writing (see `Queue` for the arguments).

    Example::

        writer = await write_queue(system, "samples", bucket_column="user")
        await writer.put({"user": "u1", "x": 1})
    """
    queue = Queue(
        system,
        topic,
        bucket_column=bucket_column,
        num_buckets=num_buckets,
        batch_size=batch_size,
        storage_path=storage_path,
        backend=backend,
        backend_options=backend_options,
    )
    return QueueWriter(queue)


def _assign_buckets(num_buckets: int, rank: int, world_size: int) -> list[int]:
    """Round-robin split: bucket i goes to rank ``i % world_size``."""
    return [i for i in range(num_buckets) if i % world_size == rank]


async def read_queue(
    system: ActorSystem,
    topic: str,
    bucket_id: int | None = None,
    bucket_ids: list[int] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    num_buckets: int = 4,
    storage_path: str | None = None,
    backend: str | type = "memory",
    backend_options: dict[str, Any] | None = None,
) -> QueueReader:
    """Open queue `topic` for reading.

    The buckets read are, by precedence: those of `rank` among `world_size` consumers (bucket
    ``i`` when ``i % world_size == rank``), `bucket_id`, `bucket_ids`, or all `num_buckets`.
    `num_buckets`, `storage_path` and `backend` must match the writer's.

    Example::

        reader0 = await read_queue(system, "q", rank=0, world_size=2)  # buckets 0, 2
        reader1 = await read_queue(system, "q", rank=1, world_size=2)  # buckets 1, 3
    """
    if rank is not None and world_size is not None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        assigned: list[int] | None = _assign_buckets(num_buckets, rank, world_size)
        logger.debug("reader rank=%s/%s assigned buckets %s", rank, world_size, assigned)
    elif bucket_id is not None:
        assigned = [bucket_id]
    elif bucket_ids is not None:
        assigned = list(bucket_ids)
    else:
        assigned = None
    if assigned is not None and any(b < 0 for b in assigned):
        raise ValueError(f"bucket ids must be >= 0, got {assigned}")
    queue = Queue(
        system,
        topic,
        num_buckets=num_buckets,
        storage_path=storage_path,
        backend=backend,
        backend_options=backend_options,
    )
    return QueueReader(queue, bucket_ids=assigned)
