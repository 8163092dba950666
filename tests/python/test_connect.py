"""Connect, the out-of-cluster client: address validation and an honest failure until the
network transport exists."""

from __future__ import annotations

import pytest
from pulsing.connect import Connect
from pulsing.exceptions import PulsingRuntimeError


@pytest.mark.parametrize("addr", ["localhost", "host:", ":8000", "h:0", "h:70000", "h:port", ""])
async def test_bad_address(addr):
    with pytest.raises(ValueError, match="host:port"):
        await Connect.to(addr)


async def test_bad_address_types():
    with pytest.raises(ValueError):
        await Connect.to([])
    with pytest.raises(TypeError):
        await Connect.to([8000])  # type: ignore[list-item]


@pytest.mark.parametrize("addr", ["127.0.0.1:1", ["127.0.0.1:1", "[::1]:2"]])
async def test_unreachable_gateway_raises(addr):
    with pytest.raises(PulsingRuntimeError, match="gateway"):
        await Connect.to(addr)


async def test_methods_exist_with_their_signatures():
    for name in ("to", "resolve", "spawn", "refresh_gateways", "close"):
        assert callable(getattr(Connect, name))
        assert getattr(Connect, name).__doc__
