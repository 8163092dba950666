"""Topics: publish modes, callbacks, ordering, subscription lifecycle."""

from __future__ import annotations

import asyncio
from typing import Any

import pulsing as pul
import pytest
from pulsing.streaming import (
    PublishMode,
    PublishResult,
    TopicReader,
    TopicWriter,
    read_topic,
    write_topic,
)


@pytest.fixture
async def system():
    s = await pul.actor_system()
    yield s
    await s.shutdown()


async def reader_with_list(system, topic: str, **kwargs: Any) -> tuple[TopicReader, list[Any]]:
    got: list[Any] = []
    reader = await read_topic(system, topic, **kwargs)
    reader.add_callback(got.append)
    await reader.start()
    return reader, got


async def test_publish_modes_enum():
    assert {m.name for m in PublishMode} == {
        "FIRE_AND_FORGET",
        "WAIT_ALL_ACKS",
        "WAIT_ANY_ACK",
        "BEST_EFFORT",
    }
    r = PublishResult(success=True, delivered=1, failed=0, subscriber_count=1)
    assert r.failed_subscribers is None


async def test_no_subscribers(system):
    writer = await write_topic(system, "t_empty")
    assert isinstance(writer, TopicWriter)
    for mode in PublishMode:
        result = await writer.publish("hello", mode=mode)
        assert (result.success, result.delivered, result.failed, result.subscriber_count) == (
            True,
            0,
            0,
            0,
        )


async def test_wait_all_acks_runs_callbacks_first(system):
    r1, got1 = await reader_with_list(system, "t_all")
    r2, got2 = await reader_with_list(system, "t_all")
    writer = await write_topic(system, "t_all")
    result = await writer.publish({"n": 1}, mode=PublishMode.WAIT_ALL_ACKS)
    assert result.success
    assert result.delivered == 2
    assert result.failed == 0
    assert result.subscriber_count == 2
    assert result.failed_subscribers == []
    assert got1 == [{"n": 1}]
    assert got2 == [{"n": 1}]
    await r1.stop()
    await r2.stop()


async def test_fire_and_forget_delivers_in_order(system):
    reader, got = await reader_with_list(system, "t_ff")
    writer = await write_topic(system, "t_ff")
    for i in range(50):
        result = await writer.publish(i)
        assert result.delivered == 1
    # an acked publish after them arrives after them
    await writer.publish("end", mode=PublishMode.WAIT_ALL_ACKS)
    assert got == [*range(50), "end"]
    await reader.stop()


async def test_wait_any_ack_and_best_effort(system):
    _, got1 = await reader_with_list(system, "t_modes")
    _, got2 = await reader_with_list(system, "t_modes")
    writer = await write_topic(system, "t_modes")
    result = await writer.publish("any", mode=PublishMode.WAIT_ANY_ACK)
    assert result.success
    assert result.delivered >= 1
    assert result.subscriber_count == 2
    result = await writer.publish("best", mode=PublishMode.BEST_EFFORT)
    assert (result.success, result.delivered, result.failed) == (True, 2, 0)
    assert result.failed_subscribers == []
    await writer.publish("sync", mode=PublishMode.WAIT_ALL_ACKS)
    assert got1 == ["any", "best", "sync"]
    assert got2 == ["any", "best", "sync"]


async def test_sync_async_and_raising_callbacks(system):
    reader = await read_topic(system, "t_cb")
    calls: list[str] = []

    @reader.on_message
    def first(msg):
        calls.append(f"sync:{msg}")

    @reader.on_message
    def broken(msg):
        raise RuntimeError("callback failure")

    @reader.on_message
    async def last(msg):
        await asyncio.sleep(0)
        calls.append(f"async:{msg}")

    assert first is not None and callable(last)
    await reader.start()
    writer = await write_topic(system, "t_cb")
    result = await writer.publish("m", mode=PublishMode.WAIT_ALL_ACKS)
    assert result.delivered == 1 and result.failed == 0
    assert calls == ["sync:m", "async:m"]
    await reader.stop()


async def test_add_remove_callback(system):
    reader = await read_topic(system, "t_rm")
    a: list[Any] = []
    b: list[Any] = []
    reader.add_callback(a.append)
    reader.add_callback(b.append)
    await reader.start()
    writer = await write_topic(system, "t_rm")
    await writer.publish(1, mode=PublishMode.WAIT_ALL_ACKS)
    assert reader.remove_callback(b.append) is True
    assert reader.remove_callback(b.append) is False
    await writer.publish(2, mode=PublishMode.WAIT_ALL_ACKS)
    assert a == [1, 2]
    assert b == [1]
    await reader.stop()


async def test_start_stop_idempotent(system):
    reader = await read_topic(system, "t_life", reader_id="r1")
    assert reader.reader_id == "r1"
    assert reader.topic == "t_life"
    with pytest.raises(ValueError, match="callback"):
        await reader.start()
    got: list[Any] = []
    reader.add_callback(got.append)
    await reader.start()
    await reader.start()
    assert reader.is_started
    writer = await write_topic(system, "t_life")
    assert (await writer.publish("a", mode=PublishMode.WAIT_ALL_ACKS)).subscriber_count == 1
    await reader.stop()
    await reader.stop()
    assert not reader.is_started
    result = await writer.publish("b", mode=PublishMode.WAIT_ALL_ACKS)
    assert result.subscriber_count == 0
    assert got == ["a"]
    # and it can start again
    await reader.start()
    await writer.publish("c", mode=PublishMode.WAIT_ALL_ACKS)
    assert got == ["a", "c"]
    await reader.stop()


async def test_auto_start_and_writer_exclusion(system):
    got: list[Any] = []
    reader = TopicReader(system, "t_auto", reader_id="same")
    reader.add_callback(got.append)
    await reader.start()
    other = await read_topic(system, "t_auto", reader_id="other")
    with pytest.raises(ValueError):
        await read_topic(system, "t_auto", auto_start=True)  # no callback yet
    assert not other.is_started
    writer = await write_topic(system, "t_auto", writer_id="same")
    assert writer.writer_id == "same"
    result = await writer.publish("x", mode=PublishMode.WAIT_ALL_ACKS)
    assert result.delivered == 0  # a writer does not hear itself
    assert got == []
    await reader.stop()


async def test_stats(system):
    reader, _ = await reader_with_list(system, "t_stats")
    writer = await write_topic(system, "t_stats")
    await writer.publish(1, mode=PublishMode.WAIT_ALL_ACKS)
    await writer.publish(2, mode=PublishMode.WAIT_ALL_ACKS)
    stats = await writer.stats()
    assert stats["topic"] == "t_stats"
    assert stats["subscriber_count"] == 1
    assert stats["total_published"] == 2
    assert stats["total_delivered"] == 2
    assert stats["total_failed"] == 0
    assert await reader.stats() == stats
    await reader.stop()


async def test_vanished_subscriber_is_counted_then_dropped(system):
    await reader_with_list(system, "t_gone", reader_id="gone")
    # the subscriber actor disappears without unsubscribing
    await system.stop("_topic_sub_t_gone_gone")
    writer = await write_topic(system, "t_gone")
    result = await writer.publish("x", mode=PublishMode.BEST_EFFORT)
    assert (result.delivered, result.failed) == (0, 1)
    assert result.failed_subscribers == ["gone"]
    for _ in range(3):
        await writer.publish("x", mode=PublishMode.BEST_EFFORT)
    assert (await writer.stats())["subscriber_count"] == 0


async def test_system_topic_api(system):
    got: list[Any] = []
    reader = await system.topic.read("t_api", reader_id="r")
    reader.add_callback(got.append)
    await reader.start()
    writer = await system.topic.write("t_api")
    await writer.publish({"k": "v"}, mode=PublishMode.WAIT_ALL_ACKS)
    assert got == [{"k": "v"}]
    await reader.stop()


async def test_wait_any_ack_still_delivers_to_slow_subscribers(system):
    release = asyncio.Event()
    slow_got: list[Any] = []

    async def slow(msg):
        await release.wait()
        slow_got.append(msg)

    slow_reader = await read_topic(system, "t_any_slow")
    slow_reader.add_callback(slow)
    await slow_reader.start()
    _, fast_got = await reader_with_list(system, "t_any_slow")
    writer = await write_topic(system, "t_any_slow")
    result = await writer.publish("first", mode=PublishMode.WAIT_ANY_ACK)
    assert result.success and result.delivered == 1
    assert fast_got == ["first"]
    assert slow_got == []
    release.set()
    result = await writer.publish("second", mode=PublishMode.WAIT_ALL_ACKS)
    assert result.delivered == 2
    assert slow_got == ["first", "second"]
    assert fast_got == ["first", "second"]
