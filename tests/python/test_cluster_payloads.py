"""Large payloads across nodes: numpy arrays travel as out-of-band buffers (pickle protocol 5)
and arrive byte-identical, as arguments, results and stream items."""

from __future__ import annotations

import asyncio
import hashlib

import numpy as np
import pulsing as pul
from cluster_util import cluster


@pul.remote
class Store:
    def __init__(self) -> None:
        self.last = None

    def digest(self, arr) -> tuple:
        self.last = arr
        return (
            hashlib.sha256(arr.tobytes()).hexdigest(),
            arr.dtype.str,
            arr.shape,
            bool(arr.flags.writeable),
        )

    def echo(self, obj):
        return obj

    def base_kind(self, arr) -> str:
        """What the received array's memory is: the received message itself (a memoryview over
        its segment), not a copy."""
        b = arr
        while getattr(b, "base", None) is not None and not isinstance(b, memoryview):
            b = b.base
        return type(b).__name__

    def make(self, n: int, seed: int):
        return np.random.default_rng(seed).integers(0, 255, size=n, dtype=np.uint8)

    def chunks(self, n: int, size: int):
        for i in range(n):
            yield np.full(size, i, dtype=np.uint8)


MIB = 1 << 20


async def test_64_mib_numpy_argument_and_result():
    async with cluster(2) as (a, b):
        await Store.spawn(system=b, name="store")
        p = await Store.resolve("store", system=a, timeout=20)
        arr = np.random.default_rng(1).standard_normal(8 * MIB)  # 64 MiB of float64
        assert arr.nbytes == 64 * MIB
        want = hashlib.sha256(arr.tobytes()).hexdigest()
        digest, dtype, shape, writeable = await p.digest(arr)
        assert (digest, dtype, shape) == (want, arr.dtype.str, arr.shape)
        assert writeable  # received buffers are the receiver's own
        assert await p.base_kind(arr) == "memoryview"  # no copy after receipt either
        back = await p.make(64 * MIB, 7)
        assert back.nbytes == 64 * MIB
        assert np.array_equal(
            back, np.random.default_rng(7).integers(0, 255, size=64 * MIB, dtype=np.uint8)
        )
        back[0] = 1  # writable on the caller's side too


async def test_mixed_payloads_and_stream_items():
    async with cluster(2) as (a, b):
        await Store.spawn(system=b, name="store2")
        p = await Store.resolve("store2", system=a, timeout=20)
        obj = {
            "small": np.arange(10),
            "big": np.arange(300_000, dtype=np.int32),
            "fortran": np.asfortranarray(np.arange(200_000, dtype=np.float32).reshape(400, 500)),
            "bytes": b"x" * 200_000,
            "nested": [bytearray(b"y" * 100_000), (1, 2.5, "s")],
        }
        got = await p.echo(obj)
        assert np.array_equal(got["small"], obj["small"])
        assert np.array_equal(got["big"], obj["big"]) and got["big"].dtype == np.int32
        assert np.array_equal(got["fortran"], obj["fortran"])
        assert got["bytes"] == obj["bytes"] and got["nested"] == obj["nested"]
        sizes = []
        async for chunk in p.chunks(4, 2 * MIB):
            assert chunk.nbytes == 2 * MIB and int(chunk[0]) == int(chunk[-1]) == len(sizes)
            sizes.append(chunk.nbytes)
        assert len(sizes) == 4


async def test_send_side_keeps_large_buffers_out_of_the_pickle():
    from pulsing.core import system as sysmod

    arr = np.arange(8 * MIB, dtype=np.float64)  # 64 MiB
    mt, payload = sysmod._encode(arr)
    assert mt == sysmod.PICKLE_TYPE and isinstance(payload, list) and len(payload) == 2
    assert len(payload[0]) < 4096  # the pickle stream holds no array bytes
    assert np.shares_memory(np.frombuffer(payload[1], dtype=arr.dtype), arr)  # not a copy
    del payload
    async with cluster(2) as (a, b):
        await Store.spawn(system=b, name="store3")
        p = await Store.resolve("store3", system=a, timeout=20)
        small = np.arange(1000, dtype=np.int64)
        assert np.array_equal(await p.echo(small), small)  # in band below 64 KiB
        digest = (await p.digest(arr))[0]
        assert digest == hashlib.sha256(arr.tobytes()).hexdigest()
        # the sender's buffer is released once the message is freed: the array can be resized
        for _ in range(500):
            try:
                arr.resize(10, refcheck=False)
                break
            except ValueError:
                await asyncio.sleep(0.01)
        assert arr.shape == (10,)


async def test_a_result_for_another_node_is_not_copied_before_it_is_sent(monkeypatch):
    """The reply's pickle is the copy: a result that only goes to a caller on another node is
    not copied first (copy_value), while a local caller still gets its own copy."""
    from pulsing.core import system as sysmod

    copied: list = []
    real = sysmod._core

    class Counting:
        def __getattr__(self, name):
            if name == "copy_value":

                def copy_value(v):
                    copied.append(type(v).__name__)
                    return real.copy_value(v)

                return copy_value
            return getattr(real, name)

    monkeypatch.setattr(sysmod, "_core", Counting())
    async with cluster(2) as (a, b):
        await Store.spawn(system=b, name="store")
        p = await Store.resolve("store", system=a, timeout=20)
        got = await p.make(MIB, 7)
        assert np.array_equal(got, np.random.default_rng(7).integers(0, 255, MIB, np.uint8))
        assert copied == []
        local = await Store.resolve("store", system=b, timeout=20)
        mine = await local.make(MIB, 7)
        assert np.array_equal(mine, got)
        assert copied == ["ndarray"]
