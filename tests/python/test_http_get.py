"""ActorSystem.http_get / CoreSystem.http_get: REST endpoints over the core's HTTP/2 client."""

from __future__ import annotations

import asyncio
import json
import socket

import pulsing as pul
import pytest
from pulsing.exceptions import PulsingRuntimeError


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_get_endpoints_from_a_system_without_listener():
    node = await pul.actor_system("127.0.0.1:0")
    client = await pul.actor_system()
    try:
        st, body = await client.http_get(node.addr, "/health")
        assert st == 200 and json.loads(body)["addr"] == node.addr
        st, body = await client.http_get(node.addr, "/cluster/members")
        assert st == 200 and [m["addr"] for m in json.loads(body)] == [node.addr]
        st, body = await client.http_get(node.addr, "/actors")
        assert st == 200 and isinstance(json.loads(body), list)
        st, body = await client.http_get(node.addr, "/metrics")
        assert st == 200 and b"pulsing_actors" in body
        st, _ = await client.http_get(node.addr, "/nope")
        assert st == 404
        # Many at once on the one control connection.
        res = await asyncio.gather(*(client.http_get(node.addr, "/health") for _ in range(50)))
        assert all(s == 200 for s, _ in res)
    finally:
        await client.shutdown()
        await node.shutdown()


async def test_get_errors():
    client = await pul.actor_system()
    try:
        with pytest.raises(PulsingRuntimeError, match="i/o error"):
            await client.http_get(f"127.0.0.1:{_dead_port()}", "/health")
        with pytest.raises(PulsingRuntimeError):
            await client.http_get("127.0.0.1:1", "health")
        # A pending GET is failed, not leaked, when the system shuts down.
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(4)
        try:
            addr = f"127.0.0.1:{lsock.getsockname()[1]}"
            with pytest.raises(PulsingRuntimeError, match="deadline exceeded"):
                await client.http_get(addr, "/health", timeout=0.2)
            task = asyncio.ensure_future(client.http_get(addr, "/health", timeout=None))
            await asyncio.sleep(0.05)
        finally:
            await client.shutdown()
            lsock.close()
        with pytest.raises(PulsingRuntimeError):
            await task
    finally:
        await client.shutdown()
