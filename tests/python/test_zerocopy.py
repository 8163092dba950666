"""Zero copy: descriptor validation, __zerocopy__ objects, PULSING_ZEROCOPY modes, chunking."""

from __future__ import annotations

import numpy as np
import pulsing as pul
import pytest
from pulsing.core import ZeroCopyDescriptor
from pulsing.exceptions import PulsingError


class Tensor:
    """A user type that knows how to describe itself."""

    def __init__(self, arr):
        self.arr = np.ascontiguousarray(arr)

    def __zerocopy__(self, ctx):
        return ZeroCopyDescriptor(
            buffers=[self.arr.data],
            dtype=str(self.arr.dtype),
            shape=list(self.arr.shape),
            strides=list(self.arr.strides),
        )

    def __eq__(self, other):
        return isinstance(other, Tensor) and np.array_equal(self.arr, other.arr)


class StridedTensor(Tensor):
    def __init__(self, arr):
        self.arr = arr  # not made contiguous

    def __zerocopy__(self, ctx):
        return ZeroCopyDescriptor(buffers=[self.arr], dtype=str(self.arr.dtype))


def as_array(desc: ZeroCopyDescriptor) -> np.ndarray:
    return np.frombuffer(bytes(desc.buffers[0]), dtype=desc.dtype).reshape(desc.shape)


# ---- the descriptor ---------------------------------------------------------------------------


def test_descriptor_fields_and_defaults():
    d = ZeroCopyDescriptor(buffers=[b"abc", bytearray(b"de")], dtype="uint8", shape=[5])
    assert d.transport == "inline"
    assert d.checksum is None
    assert d.version == 1
    assert d.shape == [5]
    assert d.strides is None
    assert d.nbytes == 5
    d2 = ZeroCopyDescriptor(
        buffers=[memoryview(b"x")],
        dtype=None,
        shape=None,
        strides=None,
        transport="stream",
        checksum="c",
        version=2,
    )
    assert (d2.transport, d2.checksum, d2.version) == ("stream", "c", 2)


def test_descriptor_validation():
    with pytest.raises(ValueError):
        ZeroCopyDescriptor(buffers=[])
    with pytest.raises(TypeError):
        ZeroCopyDescriptor(buffers=[object()])
    with pytest.raises(TypeError):
        ZeroCopyDescriptor(buffers=[123])
    arr = np.arange(20, dtype=np.int32)[::2]  # not contiguous
    with pytest.raises(ValueError):
        ZeroCopyDescriptor(buffers=[arr])


def test_descriptor_accepts_numpy_buffers():
    arr = np.arange(6, dtype=np.float64)
    d = ZeroCopyDescriptor(buffers=[arr], dtype="float64", shape=[6])
    assert d.nbytes == 48


# ---- through an actor -------------------------------------------------------------------------


@pul.remote
class Sink:
    def take(self, obj):
        self.last = obj
        return type(obj).__name__

    def describe(self, obj):
        if isinstance(obj, ZeroCopyDescriptor):
            return {
                "type": "desc",
                "dtype": obj.dtype,
                "shape": obj.shape,
                "transport": obj.transport,
                "bytes": b"".join(bytes(memoryview(b).cast("B")) for b in obj.buffers),
            }
        return {"type": type(obj).__name__}

    def echo(self, obj):
        return obj

    def make(self, n):
        return Tensor(np.arange(n, dtype=np.int64))


@pytest.fixture
async def sink():
    await pul.init()
    yield await Sink.spawn()
    await pul.shutdown()


async def test_zerocopy_object_arrives_as_descriptor(sink, monkeypatch):
    monkeypatch.delenv("PULSING_ZEROCOPY", raising=False)
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = await sink.describe(Tensor(arr))
    assert got["type"] == "desc"
    assert got["dtype"] == "float32"
    assert got["shape"] == [3, 4]
    assert got["bytes"] == arr.tobytes()


async def test_result_with_zerocopy_arrives_as_descriptor(sink, monkeypatch):
    monkeypatch.delenv("PULSING_ZEROCOPY", raising=False)
    d = await sink.make(10)
    assert isinstance(d, ZeroCopyDescriptor)
    assert np.array_equal(as_array(d), np.arange(10, dtype=np.int64))


async def test_descriptor_sent_directly(sink):
    d = ZeroCopyDescriptor(buffers=[b"hello"], dtype="uint8", shape=[5])
    got = await sink.describe(d)
    assert got["type"] == "desc" and got["bytes"] == b"hello"


async def test_mode_off_pickles_the_object(sink, monkeypatch):
    monkeypatch.setenv("PULSING_ZEROCOPY", "off")
    t = Tensor(np.arange(4))
    assert (await sink.describe(t))["type"] == "Tensor"
    back = await sink.echo(t)
    assert isinstance(back, Tensor) and back == t


async def test_mode_read_on_every_call(sink, monkeypatch):
    t = Tensor(np.arange(4))
    monkeypatch.setenv("PULSING_ZEROCOPY", "off")
    assert (await sink.describe(t))["type"] == "Tensor"
    monkeypatch.setenv("PULSING_ZEROCOPY", "auto")
    assert (await sink.describe(t))["type"] == "desc"


async def test_mode_force(sink, monkeypatch):
    monkeypatch.setenv("PULSING_ZEROCOPY", "force")
    assert (await sink.describe(Tensor(np.arange(3))))["type"] == "desc"
    assert await sink.echo(5) == 5  # plain immutable values still travel

    class NoHook:
        pass

    with pytest.raises(PulsingError):
        await sink.take(NoHook())
    with pytest.raises((PulsingError, ValueError)):
        await sink.take(StridedTensor(np.arange(20)[::2]))


async def test_chunked_above_threshold_byte_identical(sink, monkeypatch):
    monkeypatch.setenv("PULSING_ZEROCOPY_STREAM_THRESHOLD", "1024")
    monkeypatch.setenv("PULSING_ZEROCOPY_CHUNK_BYTES", "1000")  # not a divisor: a short tail
    rng = np.random.default_rng(7)
    arr = rng.standard_normal((257, 33)).astype(np.float64)
    got = await sink.describe(Tensor(arr))
    assert got["transport"] == "stream"
    assert got["bytes"] == arr.tobytes()
    small = await sink.describe(Tensor(np.arange(8, dtype=np.uint8)))
    assert small["transport"] == "inline"


async def test_default_threshold_large_payload(sink, monkeypatch):
    monkeypatch.delenv("PULSING_ZEROCOPY_STREAM_THRESHOLD", raising=False)
    monkeypatch.delenv("PULSING_ZEROCOPY_CHUNK_BYTES", raising=False)
    arr = np.arange(3 * 1024 * 1024 // 8, dtype=np.int64)  # 3 MiB: several default chunks
    got = await sink.describe(Tensor(arr))
    assert got["transport"] == "stream"
    assert got["bytes"] == arr.tobytes()


async def test_plain_numpy_arrays_round_trip(sink, monkeypatch):
    monkeypatch.delenv("PULSING_ZEROCOPY", raising=False)
    arr = np.arange(100_000, dtype=np.float32).reshape(100, 1000)
    back = await sink.echo(arr)
    assert isinstance(back, np.ndarray)
    assert back.dtype == arr.dtype and np.array_equal(back, arr)
    back[0, 0] = -1  # a copy, not the caller's array
    assert arr[0, 0] == 0
