"""Queues and topics across nodes (several nodes in this process, loopback, port 0)."""

from __future__ import annotations

import asyncio

from cluster_util import cluster, eventually
from pulsing.streaming import PublishMode, read_queue, read_topic, write_queue, write_topic
from pulsing.streaming.manager import bucket_actor_name, owner_node


async def _bucket_hosts(system, topic: str, n: int) -> dict[str, list[str]]:
    names = {f"actors/{bucket_actor_name(topic, i)}" for i in range(n)}
    hosts: dict[str, list[str]] = {}
    for row in await system.all_named_actors():
        if row["name"] in names:
            hosts.setdefault(row["name"], []).append(row["node_id"])
    return hosts


async def test_queue_written_on_one_node_read_on_another():
    async with cluster(3) as (a, b, c):
        w = await write_queue(a, "xq", bucket_column="id", num_buckets=4)
        await w.put([{"id": i, "v": i * i} for i in range(40)])
        await w.flush()
        # A reader on another node, at once (no wait for the names to travel first).
        r = await read_queue(b, "xq")
        got = await r.get(limit=40, wait=True, timeout=5)
        while len(got) < 40:
            more = await r.get(limit=40 - len(got), wait=True, timeout=5)
            assert more, f"records lost: {len(got)} of 40"
            got += more
        assert sorted(x["id"] for x in got) == list(range(40))
        # Every bucket lives on its owner node, once in the cluster.
        hosts = await eventually(
            lambda: _four(_bucket_hosts(c, "xq", 4)), what="the 4 buckets in c's view"
        )
        for name, nodes in hosts.items():
            owner = owner_node(c, name.split("/", 1)[1])
            assert nodes == [str(owner)], (name, nodes, owner)


async def _four(coro):
    hosts = await coro
    return hosts if len(hosts) == 4 else None


async def test_nodes_opening_one_queue_at_once_share_its_buckets():
    async with cluster(3) as nodes:
        writers = await asyncio.gather(*[write_queue(s, "race", num_buckets=4) for s in nodes])
        await asyncio.gather(*[w.put({"id": k, "from": i}) for i, w in enumerate(writers)
                               for k in range(10)])
        for w in writers:
            await w.flush()
        hosts = await eventually(
            lambda: _four(_bucket_hosts(nodes[0], "race", 4)), what="the 4 buckets"
        )
        assert all(len(v) == 1 for v in hosts.values()), hosts  # no bucket twice
        r = await read_queue(nodes[1], "race")
        got = []
        while len(got) < 30:
            more = await r.get(limit=30 - len(got), wait=True, timeout=5)
            assert more, f"records lost: {len(got)} of 30"
            got += more
        assert sorted((x["from"], x["id"]) for x in got) == [
            (i, k) for i in range(3) for k in range(10)
        ]


async def test_topic_across_nodes():
    async with cluster(2) as (a, b):
        reader = await read_topic(b, "news")
        seen = []
        reader.add_callback(seen.append)
        await reader.start()
        writer = await write_topic(a, "news")
        res = await eventually(
            lambda: _delivered(writer.publish({"n": 1}, mode=PublishMode.WAIT_ALL_ACKS)),
            what="a subscriber on the other node",
        )
        assert res.success and res.subscriber_count == 1
        await eventually(lambda: seen, what="the message on the other node")
        assert seen[0] == {"n": 1}
        await reader.stop()


async def _delivered(coro):
    res = await coro
    return res if res.delivered else None
