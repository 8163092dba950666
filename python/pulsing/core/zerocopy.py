"""Zero-copy descriptors: large buffers described, not pickled.

An object whose type defines `__zerocopy__(ctx)` is sent as the `ZeroCopyDescriptor` that method
returns and arrives as a `ZeroCopyDescriptor` whose `buffers` hold the same bytes. Environment
(read on every call):

- `PULSING_ZEROCOPY` = `auto` (default: use `__zerocopy__` when present), `off` (pickle as usual),
  `force` (objects without `__zerocopy__` and non-contiguous buffers are rejected);
- `PULSING_ZEROCOPY_STREAM_THRESHOLD` (65536): descriptors carrying more bytes than this travel
  as a stream of chunks;
- `PULSING_ZEROCOPY_CHUNK_BYTES` (1048576): the chunk size.
"""

from __future__ import annotations

import os
from typing import Any

from pulsing.exceptions import PulsingRuntimeError

__all__ = ["ZeroCopyDescriptor", "mode", "prepare"]

_DEFAULT_THRESHOLD = 65536
_DEFAULT_CHUNK = 1048576


class ZeroCopyDescriptor:
    """A payload described by its buffers: `buffers` (contiguous buffer objects), `dtype`,
    `shape`, `strides`, `transport` ("inline" or "stream"), `checksum`, `version`."""

    __slots__ = ("buffers", "checksum", "dtype", "shape", "strides", "transport", "version")

    def __init__(
        self,
        buffers: list[Any],
        *,
        dtype: str | None = None,
        shape: list[int] | tuple[int, ...] | None = None,
        strides: list[int] | tuple[int, ...] | None = None,
        transport: str | None = "inline",
        checksum: str | None = None,
        version: int = 1,
    ) -> None:
        if buffers is None or isinstance(buffers, (bytes, bytearray, memoryview)):
            buffers = [buffers] if buffers is not None else []
        buffers = list(buffers)
        if not buffers:
            raise ValueError("ZeroCopyDescriptor requires at least one buffer")
        for b in buffers:
            try:
                mv = memoryview(b)
            except TypeError:
                raise TypeError(
                    "ZeroCopyDescriptor.buffers items must expose a contiguous Python buffer "
                    f"(bytes/bytearray/memoryview/tensor), not {type(b).__name__}"
                ) from None
            if not mv.contiguous:
                raise ValueError(
                    "ZeroCopyDescriptor.buffers items must expose a contiguous Python buffer "
                    "(bytes/bytearray/memoryview/tensor)"
                )
        self.buffers = buffers
        self.dtype = dtype
        self.shape = list(shape) if shape is not None else None
        self.strides = list(strides) if strides is not None else None
        self.transport = transport or "inline"
        self.checksum = checksum
        self.version = version

    @property
    def nbytes(self) -> int:
        """Total size of the buffers in bytes."""
        return sum(memoryview(b).nbytes for b in self.buffers)

    def __repr__(self) -> str:
        return (
            f"ZeroCopyDescriptor(version={self.version}, buffers={len(self.buffers)}, "
            f"nbytes={self.nbytes}, dtype={self.dtype!r}, shape={self.shape!r}, "
            f"transport={self.transport!r})"
        )

    def __reduce__(self):
        # Pickle protocol 5 sends the buffers out of band.
        import pickle

        bufs = [pickle.PickleBuffer(b) for b in self.buffers]
        return (
            _rebuild,
            (
                bufs,
                self.dtype,
                self.shape,
                self.strides,
                self.transport,
                self.checksum,
                self.version,
            ),
        )


def _rebuild(buffers, dtype, shape, strides, transport, checksum, version):
    return ZeroCopyDescriptor(
        [bytes(b) if isinstance(b, memoryview) else b for b in buffers],
        dtype=dtype,
        shape=shape,
        strides=strides,
        transport=transport,
        checksum=checksum,
        version=version,
    )


def mode() -> str:
    """The current PULSING_ZEROCOPY mode: "auto", "off" or "force"."""
    m = os.environ.get("PULSING_ZEROCOPY", "auto").strip().lower() or "auto"
    if m not in ("auto", "off", "force"):
        raise PulsingRuntimeError(f"PULSING_ZEROCOPY must be auto, off or force, not {m!r}")
    return m


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise PulsingRuntimeError(f"{name} must be an integer, not {raw!r}") from None
    if v <= 0:
        raise PulsingRuntimeError(f"{name} must be positive, not {v}")
    return v


def prepare(obj: Any, m: str) -> ZeroCopyDescriptor | None:
    """The descriptor `obj` travels as, or None when it travels pickled.

    Raises PulsingRuntimeError in force mode for an object without `__zerocopy__`."""
    hook = getattr(type(obj), "__zerocopy__", None)
    if hook is None or m == "off":
        if m == "force":
            raise PulsingRuntimeError(
                f"PULSING_ZEROCOPY=force but object does not provide __zerocopy__: "
                f"{type(obj).__name__}"
            )
        return None
    ctx = {
        "transport": "inline",
        "stream_threshold": _env_int("PULSING_ZEROCOPY_STREAM_THRESHOLD", _DEFAULT_THRESHOLD),
        "chunk_bytes": _env_int("PULSING_ZEROCOPY_CHUNK_BYTES", _DEFAULT_CHUNK),
    }
    desc = hook(obj, ctx)
    if not isinstance(desc, ZeroCopyDescriptor):
        raise PulsingRuntimeError("__zerocopy__ must return ZeroCopyDescriptor")
    return desc


def transfer(desc: ZeroCopyDescriptor) -> ZeroCopyDescriptor:
    """Move a descriptor the way the transport does and return what the receiver gets.

    Up to the threshold the buffers travel inline (copied once into the receiver's memory);
    above it they travel as a stream of chunks of PULSING_ZEROCOPY_CHUNK_BYTES that the
    receiver reassembles into buffers of the original sizes."""
    threshold = _env_int("PULSING_ZEROCOPY_STREAM_THRESHOLD", _DEFAULT_THRESHOLD)
    chunk = _env_int("PULSING_ZEROCOPY_CHUNK_BYTES", _DEFAULT_CHUNK)
    views = [memoryview(b).cast("B") for b in desc.buffers]
    total = sum(v.nbytes for v in views)
    if total <= threshold:
        out = [bytes(v) for v in views]
        transport = "inline"
    else:
        out = []
        for v in views:
            buf = bytearray(v.nbytes)
            for off in range(0, v.nbytes, chunk):  # one chunk at a time, as on the wire
                buf[off : off + chunk] = v[off : off + chunk]
            out.append(buf)
        transport = "stream"
    return ZeroCopyDescriptor(
        out,
        dtype=desc.dtype,
        shape=desc.shape,
        strides=desc.strides,
        transport=transport,
        checksum=desc.checksum,
        version=desc.version,
    )
