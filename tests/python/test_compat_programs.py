"""Whole programs in the style the original Pulsing's users wrote them, run unchanged.

Each test is a small program rather than one feature: mounting plain objects from their
constructors and calling back and forth between them, the original's `ActorSystem.create(config,
loop)` entry point, a Message/StreamMessage protocol on a low-level actor, and ids/members in the
forms the original's own streaming code compares.
"""

from __future__ import annotations

import asyncio

import pulsing as pul
import pytest
from pulsing.core import (
    Actor,
    ActorSystem,
    Message,
    StreamMessage,
    SystemConfig,
    ask_with_timeout,
)
from pulsing.exceptions import PulsingBusinessError, PulsingRuntimeError


class Peer:
    """The original's counting game, one process: each object mounts itself in __init__."""

    def __init__(self, name, peers):
        self.name = name
        self.peers = sorted(peers)
        self.log = []
        pul.mount(self, name=name)

    async def yield_number(self):
        num = self.peers.index(self.name) + 1
        for peer in self.peers:
            proxy = (await pul.resolve(peer, timeout=5)).as_type(Peer)
            await proxy.on_number(num, self.name)

    async def on_number(self, num, from_who):
        self.log.append({"number": num, "from": from_who})
        idx = self.peers.index(self.name)
        if idx > 0 and from_who == self.peers[idx - 1]:
            await self.yield_number()

    def get_log(self):
        return list(self.log)


async def test_counting_game_with_mounted_objects():
    await pul.init()
    names = [f"node_{i:02d}" for i in range(6)]
    peers = [Peer(n, names) for n in names]
    await peers[0].yield_number()  # relays through every node, re-entrant async calls
    for name in names:
        log = await (await pul.resolve(name)).get_log()
        assert len(log) == len(names)
        for entry in log:
            assert entry["from"] == f"node_{entry['number'] - 1:02d}"
    listed = {a["name"] for a in await pul.get_system().all_named_actors()}
    assert {f"actors/{n}" for n in names} <= listed
    for n in names:
        pul.unmount(n)
    with pytest.raises(PulsingRuntimeError):
        await pul.resolve(names[0], timeout=0.05)


async def test_original_create_entry_point():
    loop = asyncio.get_running_loop()
    system = await ActorSystem.create(SystemConfig.standalone(), loop)
    try:
        ref = await system.spawn(_Echo(), name="echo")
        assert await ref.ask(41) == 41
        again = await system.resolve_named("echo")
        assert again.actor_id == ref.actor_id
    finally:
        await system.shutdown()


class _Echo(Actor):
    async def receive(self, msg):
        return msg


class _Tokenizer(Actor):
    """A protocol of typed JSON messages, with a streamed reply."""

    async def receive(self, msg):
        if msg.msg_type == "Split":
            text = msg.to_json()["text"]
            if not text:
                raise ValueError("empty text")
            stream, writer = StreamMessage.create("Token")

            async def produce():
                for word in text.split():
                    await writer.write({"token": word})
                await writer.close()

            asyncio.get_running_loop().create_task(produce())
            return stream
        if msg.msg_type == "Count":
            return Message.from_json("Counted", {"n": len(msg.to_json()["text"].split())})
        raise PulsingBusinessError(404, f"unknown message {msg.msg_type}")


async def test_message_protocol_with_streamed_reply():
    system = await pul.actor_system()
    try:
        ref = await system.spawn(_Tokenizer(), name="tok")
        counted = await ref.ask(Message.from_json("Count", {"text": "a b c"}))
        assert isinstance(counted, Message)
        assert (counted.msg_type, counted.to_json()) == ("Counted", {"n": 3})

        reply = await ref.ask(Message.from_json("Split", {"text": "to be or not"}))
        assert reply.is_stream
        tokens = [item["token"] async for item in reply.stream_reader()]
        assert tokens == ["to", "be", "or", "not"]

        with pytest.raises(PulsingBusinessError) as err:
            await ask_with_timeout(ref, Message.from_json("Split", {"text": ""}), timeout=5)
        assert err.value.code == 400 and "empty text" in str(err.value)
        with pytest.raises(PulsingBusinessError) as err:
            await ref.ask(Message.from_json("Nope", {}))
        assert err.value.code == 404
    finally:
        await system.shutdown()


async def test_ids_and_members_in_the_originals_forms():
    system = await pul.actor_system()
    try:
        ref = await system.spawn(_Echo(), name="e")
        members = await system.members()
        assert len(members) == 1 and members[0]["status"] == "Alive"
        # the original's streaming code compares str(member["node_id"]) with str(node_id.id)
        assert str(members[0]["node_id"]) == str(system.node_id.id)
        again = await system.refer(str(ref.actor_id))
        assert again.actor_id == ref.actor_id
        assert pul.ActorId(ref.actor_id.id) == ref.actor_id
        assert await again.ask("x") == "x"
    finally:
        await system.shutdown()
