"""BucketStorage: the actor holding one bucket of a queue, over a pluggable backend."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from pulsing.core import remote

from .backend import StorageBackend, get_backend_class

__all__ = ["BucketStorage"]

logger = logging.getLogger(__name__)


@remote
class BucketStorage:
    """One bucket of a queue: an append-only log of records read by offset.

    Writes are applied in the order they arrive (one writer's records keep their order). The
    backend is built when the actor is constructed, so an unknown backend fails the spawn.

    Args:
        bucket_id: index of the bucket in its queue.
        storage_path: where a persistent backend keeps this bucket.
        batch_size: batch size hint passed to the backend.
        backend: backend name or class (``"memory"`` by default; see `register_backend`).
        backend_options: extra keyword arguments for the backend's constructor.
    """

    def __init__(
        self,
        bucket_id: int,
        storage_path: str,
        batch_size: int = 100,
        backend: str | type = "memory",
        backend_options: dict[str, Any] | None = None,
    ) -> None:
        self.bucket_id = bucket_id
        self.storage_path = storage_path
        self.batch_size = batch_size
        backend_class = get_backend_class(backend)
        self._backend: StorageBackend = backend_class(
            bucket_id=bucket_id,
            storage_path=storage_path,
            batch_size=batch_size,
            **(backend_options or {}),
        )
        self._backend_name = getattr(backend_class, "__name__", str(backend))
        # Async methods run as tasks started in arrival order; taking this FIFO lock first
        # thing keeps writes in that order even when the backend awaits inside put().
        self._write_lock = asyncio.Lock()
        self._consumption: dict[str, set[int]] = {}
        self._key_to_index: dict[str, int] = {}

    def on_start(self, actor_id: Any) -> None:
        logger.debug(
            "BucketStorage[%s] started with %s at %s",
            self.bucket_id,
            self._backend_name,
            self.storage_path,
        )

    # ---- records ----

    async def put(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append one record; returns ``{"status": "ok"}``."""
        if not record:
            raise ValueError("Missing 'record'")
        async with self._write_lock:
            await self._backend.put(record)
        return {"status": "ok"}

    async def put_batch(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Append records in order; returns ``{"status": "ok", "count": n}``."""
        if not records:
            raise ValueError("Missing 'records'")
        async with self._write_lock:
            await self._backend.put_batch(records)
        return {"status": "ok", "count": len(records)}

    async def get(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """At most `limit` records from `offset` (no waiting)."""
        return await self._backend.get(limit, offset)

    async def get_stream(
        self,
        limit: int = 100,
        offset: int = 0,
        wait: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Stream batches of records from `offset`, up to `limit` records. With `wait`, waits
        for new records until `limit` is reached or none arrived for `timeout` seconds."""
        async for records in self._backend.get_stream(limit, offset, wait, timeout):
            yield records

    async def flush(self) -> dict[str, Any]:
        """Flush the backend; returns ``{"status": "ok"}``."""
        async with self._write_lock:
            await self._backend.flush()
        return {"status": "ok"}

    async def stats(self) -> dict[str, Any]:
        """The backend's statistics (see `StorageBackend.stats`)."""
        return await self._backend.stats()

    def total_count(self) -> int:
        """Number of records in the bucket."""
        return self._backend.total_count()

    # ---- optional tensor-native API (used when the backend provides it) ----

    async def put_tensor(self, data: Any, partition_id: str = "default", **kwargs: Any) -> dict:
        """Write through the backend's `put_tensor`."""
        put_tensor = getattr(self._backend, "put_tensor", None)
        if put_tensor is None:
            raise NotImplementedError("Backend does not support put_tensor")
        async with self._write_lock:
            await put_tensor(data, partition_id=partition_id, **kwargs)
        return {"status": "ok"}

    async def get_meta(
        self,
        fields: list[str],
        batch_size: int,
        task_name: str = "default",
        sampler: Any = None,
        **sampling_kwargs: Any,
    ) -> Any:
        """Metadata of up to `batch_size` rows not yet consumed by `task_name`."""
        get_meta = getattr(self._backend, "get_meta", None)
        if get_meta is not None:
            meta = await get_meta(
                fields=fields,
                batch_size=batch_size,
                task_name=task_name,
                sampler=sampler,
                **sampling_kwargs,
            )
            return meta.to_dict() if hasattr(meta, "to_dict") else meta
        consumed = self._consumption.setdefault(task_name, set())
        ready = [i for i in range(self._backend.total_count()) if i not in consumed]
        if sampler is not None:
            sampled, marked = sampler.sample(ready, batch_size, **sampling_kwargs)
        else:
            sampled = marked = ready[:batch_size]
        consumed.update(marked)
        partition = sampling_kwargs.get("partition_id", "default")
        return {
            "samples": [
                {
                    "partition_id": partition,
                    "global_index": idx,
                    "fields": {
                        f: {"name": f, "dtype": None, "shape": None, "production_status": "ready"}
                        for f in fields
                    },
                }
                for idx in sampled
            ],
            "global_indexes": sampled,
        }

    async def get_data(self, batch_meta: dict[str, Any], fields: list[str] | None = None) -> Any:
        """Rows named by a `get_meta` result, restricted to `fields` when given."""
        get_data = getattr(self._backend, "get_data", None)
        if get_data is not None:
            return await get_data(batch_meta, fields=fields)
        indexes = batch_meta.get("global_indexes") or [
            s.get("global_index", -1) for s in batch_meta.get("samples", [])
        ]
        rows: list[dict[str, Any]] = []
        for idx in indexes:
            if idx >= 0:
                rows.extend(await self._backend.get(1, idx))
        if fields:
            return [{k: v for k, v in row.items() if k in fields} for row in rows]
        return rows

    async def mark_consumed(self, task_name: str, global_indexes: list[int]) -> dict:
        """Record rows as consumed by `task_name`."""
        self._consumption.setdefault(task_name, set()).update(global_indexes)
        mark = getattr(self._backend, "mark_consumed", None)
        if mark is not None:
            await mark(task_name, global_indexes)
        return {"status": "ok"}

    async def reset_consumption(self, task_name: str) -> dict:
        """Forget what `task_name` consumed."""
        self._consumption.pop(task_name, None)
        reset = getattr(self._backend, "reset_consumption", None)
        if reset is not None:
            await reset(task_name)
        return {"status": "ok"}

    async def clear(self, global_indexes: list[int]) -> dict:
        """Ask the backend to drop rows (when it supports it)."""
        clear = getattr(self._backend, "clear", None)
        if clear is not None:
            await clear(global_indexes)
        return {"status": "ok"}

    async def kv_register(self, key: str, global_index: int) -> dict:
        """Map `key` to a row index."""
        self._key_to_index[key] = global_index
        return {"status": "ok"}

    async def kv_resolve(self, keys: list[str]) -> dict:
        """Row indexes of `keys` (-1 when unknown)."""
        return {"indexes": [self._key_to_index.get(k, -1) for k in keys]}
