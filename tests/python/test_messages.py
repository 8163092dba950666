"""Message and StreamMessage: construction, JSON, delivery, streaming replies."""

from __future__ import annotations

import asyncio

import pulsing as pul
import pytest
from pulsing.core import Actor, Message, StreamMessage
from pulsing.exceptions import PulsingError, PulsingRuntimeError


def test_from_json_round_trip():
    m = Message.from_json("Greet", {"name": "a", "n": [1, 2]})
    assert m.msg_type == "Greet"
    assert isinstance(m.payload, bytes)
    assert m.to_json() == {"name": "a", "n": [1, 2]}
    assert not m.is_stream


def test_from_json_rejects_non_json():
    with pytest.raises(TypeError):
        Message.from_json("X", {"s": {1, 2}})


def test_empty():
    m = Message.empty()
    assert m.msg_type == ""
    assert m.payload == b""
    assert not m.is_stream


def test_raw_payload_message():
    m = Message("Raw", b"\x00\x01")
    assert m.payload == b"\x00\x01"
    assert m == Message("Raw", b"\x00\x01")


def test_stream_reader_on_plain_message_fails():
    with pytest.raises(PulsingError):
        Message.from_json("X", 1).stream_reader()


def test_stream_message_create():
    msg, _writer = StreamMessage.create("Tokens")
    assert msg.is_stream
    assert msg.msg_type == "Tokens"
    with pytest.raises(PulsingRuntimeError):
        _ = msg.payload
    msg2, _ = StreamMessage.create("T", buffer_size=4)
    assert msg2.is_stream
    with pytest.raises(ValueError):
        StreamMessage.create("T", buffer_size=0)


async def test_stream_message_local_write_read():
    msg, writer = StreamMessage.create("T", buffer_size=2)

    async def produce():
        for i in range(10):
            await writer.write({"i": i})
        await writer.close()

    task = asyncio.create_task(produce())
    got = [x async for x in msg.stream_reader()]
    await task
    assert got == [{"i": i} for i in range(10)]


async def test_writer_calls_not_awaited():
    msg, writer = StreamMessage.create("T")
    writer.write(1)
    writer.write(2)
    writer.close()
    assert [x async for x in msg.stream_reader()] == [1, 2]


async def test_writer_error_after_items():
    msg, writer = StreamMessage.create("T")
    await writer.write("a")
    await writer.error("broken pipe")
    got = []
    with pytest.raises(PulsingError, match="broken pipe"):
        async for x in msg.stream_reader():
            got.append(x)
    assert got == ["a"]


async def test_write_after_close_fails():
    _msg, writer = StreamMessage.create("T")
    writer.close()
    with pytest.raises(PulsingRuntimeError):
        writer.write(1)


# ---- through actors ---------------------------------------------------------------------------


class MsgActor(Actor):
    def __init__(self):
        self.seen = []

    async def receive(self, msg):
        self.seen.append(msg)
        if isinstance(msg, Message):
            if msg.msg_type == "Stream":
                n = msg.to_json()["n"]
                stream_msg, writer = StreamMessage.create("Items", buffer_size=2)

                async def produce():
                    try:
                        for i in range(n):
                            await writer.write({"i": i})
                        await writer.close()
                    except Exception as e:  # noqa: BLE001
                        await writer.error(str(e))

                asyncio.create_task(produce())
                return stream_msg
            if msg.msg_type == "StreamFail":
                stream_msg, writer = StreamMessage.create("Items")
                writer.write(1)
                writer.error("stream failed")
                return stream_msg
            if msg.msg_type == "StreamSync":
                stream_msg, writer = StreamMessage.create("Items")
                for i in range(3):
                    writer.write(i)
                writer.close()
                return stream_msg
            return Message.from_json("Reply", {"echo": msg.to_json(), "type": msg.msg_type})
        return msg


@pytest.fixture
async def system():
    s = await pul.actor_system()
    yield s
    await s.shutdown()


async def test_message_arrives_as_message(system):
    a = MsgActor()
    ref = await system.spawn(a)
    reply = await ref.ask(Message.from_json("Ping", {"x": 1}))
    assert isinstance(a.seen[0], Message)
    assert a.seen[0].msg_type == "Ping"
    assert isinstance(reply, Message)
    assert reply.msg_type == "Reply"
    assert reply.to_json() == {"echo": {"x": 1}, "type": "Ping"}
    await ref.tell(Message.empty())
    assert await ref.ask(1) == 1
    assert a.seen[1] == Message.empty()


async def test_stream_message_reply(system):
    ref = await system.spawn(MsgActor())
    reply = await ref.ask(Message.from_json("Stream", {"n": 7}))
    assert isinstance(reply, Message) and reply.is_stream
    items = [x async for x in reply.stream_reader()]
    assert items == [{"i": i} for i in range(7)]


async def test_stream_message_written_before_return(system):
    ref = await system.spawn(MsgActor())
    reply = await ref.ask(Message.from_json("StreamSync", {}))
    assert [x async for x in reply.stream_reader()] == [0, 1, 2]


async def test_stream_message_error(system):
    ref = await system.spawn(MsgActor())
    reply = await ref.ask(Message.from_json("StreamFail", {}))
    got = []
    with pytest.raises(PulsingError, match="stream failed"):
        async for x in reply.stream_reader():
            got.append(x)
    assert got == [1]


async def test_stream_message_from_remote_method():
    @pul.remote
    class Gen:
        async def tokens(self, n):
            msg, writer = StreamMessage.create("Tok")

            async def produce():
                for i in range(n):
                    await writer.write(f"t{i}")
                await writer.close()

            asyncio.create_task(produce())
            return msg

    await pul.init()
    g = await Gen.spawn()
    reply = await g.tokens(3)
    assert [x async for x in reply.stream_reader()] == ["t0", "t1", "t2"]
    await pul.shutdown()


class _TokenGen(Actor):
    """A low-level actor whose receive is a generator: asks get a stream Message."""

    def __init__(self) -> None:
        self.told = []

    async def receive(self, msg):
        if msg == "fail":
            yield "a"
            raise ValueError("gen broke")
        for i in range(3):
            yield {"i": i}
        self.told.append(msg)


class _SyncGen(Actor):
    def receive(self, msg):
        yield from range(msg)


async def test_generator_receive_answers_a_stream_message():
    await pul.init()
    try:
        ref = await pul.spawn(_TokenGen())
        m = await ref.ask("go")
        assert isinstance(m, Message) and m.is_stream
        assert [x async for x in m.stream_reader()] == [{"i": 0}, {"i": 1}, {"i": 2}]
        m = await ref.ask("fail")
        got = []
        with pytest.raises(PulsingError, match="gen broke"):
            async for x in m.stream_reader():
                got.append(x)
        assert got == ["a"]
        assert await ref.ask("still") is not None  # the actor keeps serving
        s = await pul.spawn(_SyncGen())
        assert [x async for x in (await s.ask(4)).stream_reader()] == [0, 1, 2, 3]
        assert [x async for x in (await s.ask(0)).stream_reader()] == []
    finally:
        await pul.shutdown()
