"""Actor classes for the multi-process tests, the cluster demo and the remote benchmarks.

They live in an importable module (not in a test file) so that every node process can import
them: placement (`spawn(placement=...)`) re-creates the class on another node by its import path,
and `cluster_node.py --spawn Class:name` spawns them by name. The harness puts this directory on
the children's PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import pulsing as pul
from pulsing.exceptions import PulsingBusinessError


def _here() -> dict[str, Any]:
    """Which node this code runs on: its node id (normalized to an int) and address."""
    system = pul.get_system()
    return {"node_id": int(system.node_id), "addr": system.addr, "pid": os.getpid()}


@pul.remote
class Counter:
    """State that changes one message at a time."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def incr(self, n: int = 1) -> int:
        self.value += n
        return self.value

    def get(self) -> int:
        return self.value

    def where(self) -> dict[str, Any]:
        return _here()


@pul.remote
class Echo:
    """Values and buffers back and forth; a checksum of a large buffer without returning it."""

    def echo(self, x: Any) -> Any:
        return x

    async def aecho(self, x: Any) -> Any:
        await asyncio.sleep(0)
        return x

    def digest(self, buf: Any) -> dict[str, Any]:
        """Size and sha256 of a bytes-like object or numpy array (of its raw bytes)."""
        mv = memoryview(buf).cast("B") if not isinstance(buf, (bytes, bytearray)) else buf
        return {
            "nbytes": len(mv),
            "sha256": hashlib.sha256(mv).hexdigest(),
            "type": type(buf).__name__,
        }

    def nbytes(self, buf: Any) -> int:
        """Just the size: for bandwidth figures (no hashing on the receiving side)."""
        return memoryview(buf).nbytes

    def blob(self, nbytes: int) -> Any:
        """A numpy uint8 array of nbytes, kept between calls (for reply bandwidth figures)."""
        import numpy as np

        cache = self.__dict__.setdefault("_blobs", {})
        if nbytes not in cache:
            cache[nbytes] = np.ones(nbytes, dtype=np.uint8)
        return cache[nbytes]

    def make(self, nbytes: int, seed: int = 7) -> Any:
        """A numpy uint8 array of nbytes, deterministic from seed (for replies that are large)."""
        import numpy as np

        return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)

    def where(self) -> dict[str, Any]:
        return _here()


@pul.remote
class Streamer:
    """Token streams: finite, slow, endless (to be cancelled), failing midway."""

    def __init__(self) -> None:
        self.closed = 0  # endless streams whose consumer went away
        self.produced = 0
        self.cancelled = 0  # async calls cancelled by their caller
        self.started = 0

    async def tokens(self, n: int, delay: float = 0.0):
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            yield f"tok{i}"

    def sync_tokens(self, n: int):
        yield from range(n)

    async def fail_after(self, n: int):
        for i in range(n):
            yield i
        raise ValueError(f"stream failed after {n} items")

    async def endless(self):
        try:
            i = 0
            while True:
                self.produced += 1
                yield i
                i += 1
                await asyncio.sleep(0.001)
        finally:
            self.closed += 1

    async def sleep(self, seconds: float) -> str:
        self.started += 1
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "slept"

    def stats(self) -> dict[str, int]:
        return {
            "closed": self.closed,
            "produced": self.produced,
            "cancelled": self.cancelled,
            "started": self.started,
        }

    def where(self) -> dict[str, Any]:
        return _here()


class Teapot(Exception):
    pass


@pul.remote
class Failer:
    """Every error category, raised by user code."""

    def __init__(self) -> None:
        self.calls = 0

    def value_error(self, msg: str = "bad value") -> None:
        self.calls += 1
        raise ValueError(msg)

    def business(self) -> None:
        self.calls += 1
        raise PulsingBusinessError(418, "I am a teapot", details="short and stout")

    def system(self) -> None:
        self.calls += 1
        raise RuntimeError("disk on fire")

    def custom(self) -> None:
        self.calls += 1
        raise Teapot("custom exception type")

    async def timeout(self) -> None:
        self.calls += 1
        raise TimeoutError("took too long")

    def count(self) -> int:
        return self.calls


@pul.remote
class Relay:
    """Calls other actors by name from inside a node: node-to-node traffic, not test-to-node."""

    async def call(self, name: str, method: str, *args: Any, timeout: float = 10.0) -> Any:
        proxy = await pul.resolve(name, timeout=timeout)
        return await getattr(proxy, method)(*args)

    async def try_call(self, name: str, method: str, *args: Any, timeout: float = 5.0) -> Any:
        """Like call, but returns {"ok": value} or {"error": class name, "message": str}."""
        try:
            proxy = await pul.resolve(name, timeout=timeout)
            value = await asyncio.wait_for(getattr(proxy, method)(*args), timeout)
            return {"ok": value}
        except Exception as e:  # noqa: BLE001 - reported to the test
            return {"error": type(e).__name__, "message": str(e)}

    async def stream(self, name: str, method: str, *args: Any, timeout: float = 10.0) -> list:
        proxy = await pul.resolve(name, timeout=timeout)
        return [x async for x in getattr(proxy, method)(*args)]

    async def members(self) -> list[dict[str, Any]]:
        """This node's membership view."""
        return await pul.get_system().members()

    async def named(self) -> list[dict[str, Any]]:
        return await pul.get_system().all_named_actors()

    def where(self) -> dict[str, Any]:
        return _here()


class TellSink(pul.Actor):
    """A low-level actor that counts what it is told; asked "count", it answers the count."""

    def __init__(self) -> None:
        self.count = 0

    def receive(self, msg: Any) -> Any:
        if msg == "count":
            return self.count
        self.count += 1
        return None


CLASSES = {c.__name__: c for c in (Counter, Echo, Streamer, Failer, Relay)}
LOW_LEVEL = {"TellSink": TellSink}
