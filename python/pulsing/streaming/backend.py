"""Storage backends of queue buckets: the protocol, the in-memory default and the registry.

A bucket actor (`BucketStorage`) keeps its records in one backend instance. The backend is
chosen per queue by name or class: ``"memory"`` is built in; plugins add their own with
`register_backend` or pass a class directly to `write_queue(..., backend=MyBackend)`.
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "MemoryBackend",
    "StorageBackend",
    "get_backend_class",
    "list_backends",
    "register_backend",
]

logger = logging.getLogger(__name__)

# A stream yields at most this many records per batch.
STREAM_BATCH = 100

_REQUIRED_METHODS = ("put", "put_batch", "get", "get_stream", "flush", "stats", "total_count")


def _defines(klass: type, name: str) -> bool:
    """True when `name` is defined (and not set to None) along the MRO of `klass`."""
    for base in klass.__mro__:
        if name in base.__dict__:
            return base.__dict__[name] is not None
    return False


@runtime_checkable
class StorageBackend(Protocol):
    """What a bucket needs from its storage (inherit from it or duck-type it).

    A backend is built as ``cls(bucket_id=..., storage_path=..., batch_size=..., **options)``
    inside the bucket actor; every coroutine runs on that actor's event loop, one call at a
    time for ``put``/``put_batch`` (a bucket's writes are ordered). Records are an
    append-only log addressed by offset: ``get(limit, offset)`` reads ``[offset, offset +
    limit)``. The tensor methods at the end are optional: an object is a `StorageBackend`
    (``isinstance``) when it has the seven required methods; a subclass inherits the tensor
    methods' defaults (they raise NotImplementedError).
    """

    @classmethod
    def __subclasshook__(cls, other: type) -> bool:
        # The default protocol check would also demand the optional tensor methods.
        if cls is StorageBackend and all(_defines(other, name) for name in _REQUIRED_METHODS):
            return True
        return NotImplemented

    @abstractmethod
    async def put(self, record: dict[str, Any]) -> None:
        """Append one record."""
        ...

    @abstractmethod
    async def put_batch(self, records: list[dict[str, Any]]) -> None:
        """Append several records, in order."""
        ...

    @abstractmethod
    async def get(self, limit: int, offset: int) -> list[dict[str, Any]]:
        """Return at most `limit` records starting at `offset` (fewer at the end of the log)."""
        ...

    @abstractmethod
    def get_stream(
        self,
        limit: int,
        offset: int,
        wait: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield batches of records from `offset` until `limit` records were yielded.

        Without `wait` it stops at the end of the log. With `wait` it waits for records to be
        appended, and stops once `limit` is reached or no record arrived for `timeout`
        seconds (`None`: no limit).
        """
        ...

    @abstractmethod
    async def flush(self) -> None:
        """Persist buffered records (a no-op for pure in-memory backends)."""
        ...

    @abstractmethod
    async def stats(self) -> dict[str, Any]:
        """Statistics: at least ``bucket_id``, ``buffer_size``, ``persisted_count``,
        ``total_count`` and ``backend``."""
        ...

    @abstractmethod
    def total_count(self) -> int:
        """Number of records in the log (buffered and persisted)."""
        ...

    async def put_tensor(self, data: Any, **kwargs: Any) -> Any:
        """Optional tensor-native write."""
        raise NotImplementedError

    async def get_data(self, batch_meta: Any, fields: list[str] | None = None) -> Any:
        """Optional tensor-native read of the rows a `get_meta` result names."""
        raise NotImplementedError

    async def get_meta(
        self,
        fields: list[str],
        batch_size: int,
        task_name: str = "default",
        sampler: Any = None,
        **sampling_kwargs: Any,
    ) -> Any:
        """Optional tensor-native metadata of ready rows."""
        raise NotImplementedError


class MemoryBackend:
    """The built-in backend: an in-memory list, nothing persisted.

    Readers may wait for new records (`get_stream(..., wait=True)`). The log lives as long as
    its bucket actor.

    Args:
        bucket_id: the bucket this backend serves (reported by `stats()`).
        **kwargs: ignored (``storage_path``, ``batch_size`` and backend options other backends
            use).
    """

    def __init__(self, bucket_id: int, **kwargs: Any) -> None:
        self.bucket_id = bucket_id
        self.buffer: list[dict[str, Any]] = []
        # Created lazily: a backend may be built outside any running loop (tests, factories).
        self._cond: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def _notify(self) -> None:
        cond = self._condition()
        async with cond:
            cond.notify_all()

    async def put(self, record: dict[str, Any]) -> None:
        """Append one record and wake waiting readers."""
        self.buffer.append(record)
        await self._notify()

    async def put_batch(self, records: list[dict[str, Any]]) -> None:
        """Append records in order and wake waiting readers."""
        self.buffer.extend(records)
        await self._notify()

    async def get(self, limit: int, offset: int) -> list[dict[str, Any]]:
        """Return ``buffer[offset:offset + limit]``."""
        if limit <= 0 or offset < 0:
            return []
        return self.buffer[offset : offset + limit]

    async def get_stream(
        self,
        limit: int,
        offset: int,
        wait: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield batches (at most 100 records each) from `offset`; see `StorageBackend`."""
        current = max(offset, 0)
        remaining = limit
        while remaining > 0:
            if current >= len(self.buffer):
                if not wait:
                    return
                cond = self._condition()
                async with cond:
                    if current >= len(self.buffer):
                        try:
                            await asyncio.wait_for(cond.wait(), timeout)
                        except asyncio.TimeoutError:
                            return
                continue
            batch = self.buffer[current : current + min(remaining, STREAM_BATCH)]
            current += len(batch)
            remaining -= len(batch)
            yield batch

    async def flush(self) -> None:
        """Nothing to persist."""

    async def stats(self) -> dict[str, Any]:
        """``{"bucket_id", "buffer_size", "persisted_count": 0, "total_count",
        "backend": "memory"}``."""
        return {
            "bucket_id": self.bucket_id,
            "buffer_size": len(self.buffer),
            "persisted_count": 0,
            "total_count": len(self.buffer),
            "backend": "memory",
        }

    def total_count(self) -> int:
        """Number of records held."""
        return len(self.buffer)

    async def put_tensor(self, data: Any, **kwargs: Any) -> Any:
        """Store a record or a list of records; returns ``{"size": n}``."""
        if isinstance(data, list):
            await self.put_batch(data)
            return {"size": len(data)}
        if isinstance(data, dict):
            await self.put(data)
            return {"size": 1}
        raise TypeError("MemoryBackend.put_tensor expects dict or list[dict]")

    async def get_data(self, batch_meta: Any, fields: list[str] | None = None) -> Any:
        """Rows at ``batch_meta["global_indexes"]``, restricted to `fields` when given."""
        if isinstance(batch_meta, dict):
            indexes = batch_meta.get("global_indexes", [])
        else:
            indexes = getattr(batch_meta, "global_indexes", [])
        rows = [self.buffer[i] for i in indexes if 0 <= i < len(self.buffer)]
        if not fields:
            return rows
        return [{k: v for k, v in row.items() if k in fields} for row in rows]

    async def get_meta(
        self,
        fields: list[str],
        batch_size: int,
        task_name: str = "default",
        sampler: Any = None,
        **sampling_kwargs: Any,
    ) -> Any:
        """Metadata of up to `batch_size` rows (all rows are ready in memory)."""
        ready = list(range(len(self.buffer)))
        if sampler is not None:
            sampled, _ = sampler.sample(ready, batch_size, **sampling_kwargs)
        else:
            sampled = ready[:batch_size]
        partition = sampling_kwargs.get("partition_id", "default")
        return {
            "samples": [
                {
                    "partition_id": partition,
                    "global_index": idx,
                    "fields": {
                        field: {
                            "name": field,
                            "dtype": None,
                            "shape": None,
                            "production_status": "ready",
                        }
                        for field in fields
                    },
                }
                for idx in sampled
            ],
            "global_indexes": sampled,
        }


# ---- registry ----------------------------------------------------------------------------------

_BUILTIN_BACKENDS: dict[str, type] = {"memory": MemoryBackend}
_REGISTERED_BACKENDS: dict[str, type] = {}


def register_backend(name: str, backend_class: type) -> None:
    """Make `backend_class` available as ``backend=name`` (a later registration replaces an
    earlier one; a registered name shadows a built-in one).

    Raises:
        TypeError: `backend_class` is not a class.
    """
    if not isinstance(backend_class, type):
        raise TypeError(f"backend_class must be a class, got {type(backend_class)}")
    _REGISTERED_BACKENDS[name] = backend_class
    logger.info("Registered storage backend: %s", name)


def get_backend_class(backend: str | type) -> type:
    """The backend class for a name, or `backend` itself when it is already a class.

    Raises:
        ValueError: unknown name (the message lists the available ones).
    """
    if isinstance(backend, type):
        return backend
    if backend in _REGISTERED_BACKENDS:
        return _REGISTERED_BACKENDS[backend]
    if backend in _BUILTIN_BACKENDS:
        return _BUILTIN_BACKENDS[backend]
    raise ValueError(
        f"Unknown backend: {backend}. Available: {list_backends()}. "
        "Use register_backend() to add custom backends."
    )


def list_backends() -> list[str]:
    """Names usable as ``backend=``: the built-in ones, then the registered ones."""
    names = list(_BUILTIN_BACKENDS)
    names += [n for n in _REGISTERED_BACKENDS if n not in _BUILTIN_BACKENDS]
    return names
