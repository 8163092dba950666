"""Topics (publish/subscribe): writers publish through the topic's broker actor, and every
started reader gets each message through its own subscriber actor, which runs its callbacks."""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from pulsing.core import Actor
from pulsing.exceptions import PulsingRuntimeError

from .manager import get_topic_broker, subscriber_actor_name

if TYPE_CHECKING:
    from pulsing.core import ActorProxy, ActorRef, ActorSystem

__all__ = [
    "MessageCallback",
    "PublishMode",
    "PublishResult",
    "TopicReader",
    "TopicWriter",
    "read_topic",
    "subscribe_to_topic",
    "write_topic",
]

logger = logging.getLogger(__name__)

DEFAULT_PUBLISH_TIMEOUT = 30.0
_SPAWN_RETRIES = 20  # about 1.5 s in all

MessageCallback = Callable[[Any], Awaitable[Any] | Any]


class PublishMode(Enum):
    """How `TopicWriter.publish` delivers and what it waits for."""

    FIRE_AND_FORGET = "fire_and_forget"
    """Hand the message to every subscriber's mailbox; do not wait for the callbacks."""
    WAIT_ALL_ACKS = "wait_all_acks"
    """Wait until every subscriber ran its callbacks (or the timeout)."""
    WAIT_ANY_ACK = "wait_any_ack"
    """Wait until one subscriber ran its callbacks; the others still get the message."""
    BEST_EFFORT = "best_effort"
    """Deliver to each subscriber in turn with a short timeout, recording failures."""


@dataclass
class PublishResult:
    """Outcome of a publish.

    Attributes:
        success: False only when an ack mode got no ack at all while some delivery failed.
        delivered: subscribers that got the message (acked, in the ack modes).
        failed: subscribers that could not be reached or did not ack in time.
        subscriber_count: subscribers of the topic after this publish.
        failed_subscribers: ids of the failed subscribers (ack and best-effort modes).
    """

    success: bool
    delivered: int
    failed: int
    subscriber_count: int
    failed_subscribers: list[str] | None = None


async def subscribe_to_topic(
    system: ActorSystem,
    topic: str,
    subscriber_id: str,
    actor_name: str,
    node_id: Any = None,
) -> dict:
    """Subscribe an existing actor named `actor_name` to `topic` (it receives envelopes
    ``{"topic", "payload", "sender_id", "timestamp"}``); `TopicReader` does this for you."""
    broker = await get_topic_broker(system, topic)
    return await broker.subscribe(subscriber_id, actor_name, node_id)


class TopicWriter:
    """Publishing handle returned by `write_topic`."""

    def __init__(self, system: ActorSystem, topic: str, writer_id: str | None = None) -> None:
        self._system = system
        self._topic = topic
        self._writer_id = writer_id or f"writer_{uuid.uuid4().hex[:8]}"
        self._broker: ActorProxy | None = None

    @property
    def topic(self) -> str:
        """Topic name."""
        return self._topic

    @property
    def writer_id(self) -> str:
        """This writer's id (a reader with the same id does not get its messages)."""
        return self._writer_id

    async def _broker_ref(self) -> ActorProxy:
        if self._broker is None:
            self._broker = await get_topic_broker(self._system, self._topic)
        return self._broker

    async def publish(
        self,
        message: Any,
        mode: PublishMode = PublishMode.FIRE_AND_FORGET,
        timeout: float | None = None,
    ) -> PublishResult:
        """Publish `message` (any picklable object) to the topic's current subscribers.

        Messages from one writer reach each subscriber in publish order. `timeout` (default
        30 s) bounds the whole publish, acks included.

        Raises:
            asyncio.TimeoutError: the broker did not answer within `timeout`.
        """
        if not isinstance(mode, PublishMode):
            mode = PublishMode(mode)
        effective = timeout if timeout is not None else DEFAULT_PUBLISH_TIMEOUT
        broker = await self._broker_ref()
        data = await asyncio.wait_for(
            broker.publish(message, mode=mode.value, sender_id=self._writer_id, timeout=effective),
            timeout=effective,
        )
        return PublishResult(
            success=data.get("success", False),
            delivered=data.get("delivered", 0),
            failed=data.get("failed", 0),
            subscriber_count=data.get("subscriber_count", 0),
            failed_subscribers=data.get("failed_subscribers"),
        )

    async def stats(self) -> dict[str, Any]:
        """Topic statistics: ``{"topic", "subscriber_count", "total_published",
        "total_delivered", "total_failed"}``."""
        broker = await self._broker_ref()
        return await broker.get_stats()


class _SubscriberActor(Actor):
    """Runs a reader's callbacks, one message at a time, in arrival order."""

    def __init__(self, callbacks: list[MessageCallback]) -> None:
        self._callbacks = callbacks  # the reader's list: callbacks added later are seen

    async def receive(self, msg: Any) -> Any:
        payload = msg.get("payload", msg) if isinstance(msg, dict) else msg
        for callback in list(self._callbacks):
            try:
                result = callback(payload)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("topic callback %r failed", callback)
        return {"ack": True}


class TopicReader:
    """Subscription handle returned by `read_topic`.

    Example::

        reader = await read_topic(system, "events")

        @reader.on_message
        async def handle(msg):
            print(msg)

        await reader.start()
    """

    def __init__(self, system: ActorSystem, topic: str, reader_id: str | None = None) -> None:
        self._system = system
        self._topic = topic
        self._reader_id = reader_id or f"reader_{uuid.uuid4().hex[:8]}"
        self._callbacks: list[MessageCallback] = []
        self._subscriber_ref: ActorRef | None = None
        self._started = False
        self._lock = asyncio.Lock()

    @property
    def topic(self) -> str:
        """Topic name."""
        return self._topic

    @property
    def reader_id(self) -> str:
        """This reader's id (its subscription's id at the broker)."""
        return self._reader_id

    @property
    def is_started(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._started

    def on_message(self, callback: MessageCallback) -> MessageCallback:
        """Decorator: register `callback` (sync or async, called with each message)."""
        self._callbacks.append(callback)
        return callback

    def add_callback(self, callback: MessageCallback) -> None:
        """Register `callback` (sync or async, called with each message)."""
        self._callbacks.append(callback)

    def remove_callback(self, callback: MessageCallback) -> bool:
        """Unregister `callback`; False when it was not registered."""
        try:
            self._callbacks.remove(callback)
        except ValueError:
            return False
        return True

    async def start(self) -> None:
        """Start receiving: spawn this reader's subscriber actor and subscribe it. Idempotent.

        Raises:
            ValueError: no callback registered.
        """
        async with self._lock:
            if self._started:
                return
            if not self._callbacks:
                raise ValueError("at least one callback required")
            name = subscriber_actor_name(self._topic, self._reader_id)
            self._subscriber_ref = await self._spawn_subscriber(name)
            try:
                broker = await get_topic_broker(self._system, self._topic)
                await broker.subscribe(self._reader_id, name, self._system.node_id)
            except BaseException:
                self._subscriber_ref = None
                await self._system.stop(name)
                raise
            self._started = True
            logger.debug("TopicReader[%s] started on %s", self._reader_id, self._topic)

    async def _spawn_subscriber(self, name: str) -> ActorRef:
        # A name freed by stop() may take a moment to be free again (the runtime releases it
        # asynchronously), so a quick stop()/start() retries for a short while before giving up.
        delay = 0.005
        for _ in range(_SPAWN_RETRIES):
            try:
                return await self._system.spawn(
                    _SubscriberActor(self._callbacks), name=name, public=True
                )
            except PulsingRuntimeError as e:
                if "already exists" not in str(e):
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        return await self._system.spawn(_SubscriberActor(self._callbacks), name=name, public=True)

    async def stop(self) -> None:
        """Stop receiving: unsubscribe and stop the subscriber actor. Idempotent."""
        async with self._lock:
            if not self._started:
                return
            self._started = False
            name = subscriber_actor_name(self._topic, self._reader_id)
            try:
                broker = await get_topic_broker(self._system, self._topic)
                await broker.unsubscribe(self._reader_id)
            except Exception as e:  # noqa: BLE001 - stopping must not fail on a gone broker
                logger.warning("TopicReader[%s] unsubscribe failed: %s", self._reader_id, e)
            try:
                await self._system.stop(name)
            except Exception as e:  # noqa: BLE001 - already stopped (system shutdown...)
                logger.debug("TopicReader[%s] stop failed: %s", self._reader_id, e)
            self._subscriber_ref = None

    async def stats(self) -> dict[str, Any]:
        """Topic statistics (see `TopicWriter.stats`)."""
        broker = await get_topic_broker(self._system, self._topic)
        return await broker.get_stats()


async def write_topic(system: ActorSystem, topic: str, writer_id: str | None = None) -> TopicWriter:
    """Open `topic` for publishing.

    Example::

        writer = await write_topic(system, "events")
        await writer.publish({"type": "user_login"})
    """
    return TopicWriter(system, topic, writer_id)


async def read_topic(
    system: ActorSystem,
    topic: str,
    reader_id: str | None = None,
    auto_start: bool = False,
) -> TopicReader:
    """Open `topic` for reading; register callbacks, then `start()` (or pass `auto_start`,
    which needs callbacks registered already — hence rarely useful)."""
    reader = TopicReader(system, topic, reader_id)
    if auto_start:
        await reader.start()
    return reader
