"""TopicBroker: the actor that fans a topic's messages out to its subscribers (internal)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pulsing.core import remote

if TYPE_CHECKING:
    from pulsing.core import ActorRef, ActorSystem

__all__ = ["TopicBroker"]

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 3  # a subscriber failing this many times in a row is dropped
REF_TTL_SECONDS = 60.0  # re-resolve a subscriber's name after this long
DEFAULT_FANOUT_TIMEOUT = 30.0
BEST_EFFORT_TIMEOUT = 5.0  # per subscriber, in best-effort mode


async def _ask(ref: ActorRef, msg: Any) -> Any:
    # A real task around the ask, whatever awaitable ask() returns: asyncio.wait() refuses
    # objects that look like coroutines.
    return await ref.ask(msg)


@dataclass
class _Subscriber:
    subscriber_id: str
    actor_name: str
    node_id: Any = None
    subscribed_at: float = field(default_factory=time.time)
    ref: ActorRef | None = field(default=None, repr=False)
    ref_resolved_at: float = 0.0
    messages_delivered: int = 0
    messages_failed: int = 0
    consecutive_failures: int = 0


@remote
class TopicBroker:
    """Fans messages of one topic out to subscriber actors, found by name.

    Messages go to each subscriber in publish order: fan-outs run one at a time (a FIFO lock
    taken first thing by each publish, and async methods start in arrival order).

    Args:
        topic: topic name.
        actor_system: the system the broker runs in, used to resolve subscribers.
    """

    def __init__(self, topic: str, actor_system: ActorSystem) -> None:
        self.topic = topic
        self.system = actor_system
        self._subscribers: dict[str, _Subscriber] = {}
        self._fanout_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._total_published = 0
        self._total_delivered = 0
        self._total_failed = 0

    def metadata(self) -> dict[str, str]:
        return {
            "type": "topic_broker",
            "topic": self.topic,
            "subscriber_count": str(len(self._subscribers)),
        }

    def on_stop(self) -> None:
        for task in self._background:
            task.cancel()

    # ---- subscriptions ----

    def subscribe(self, subscriber_id: str, actor_name: str, node_id: Any = None) -> dict:
        """Deliver this topic to the actor `actor_name` (on `node_id`, when given) under
        `subscriber_id`. Returns ``{"success": True, "topic": ...}`` (``"already": True`` when
        the id was subscribed)."""
        if not subscriber_id or not actor_name:
            raise ValueError("Missing subscriber_id or actor_name")
        if subscriber_id in self._subscribers:
            return {"success": True, "already": True}
        self._subscribers[subscriber_id] = _Subscriber(subscriber_id, actor_name, node_id)
        logger.debug("TopicBroker[%s] +subscriber %s", self.topic, subscriber_id)
        return {"success": True, "topic": self.topic}

    def unsubscribe(self, subscriber_id: str) -> dict:
        """Stop delivering to `subscriber_id`; ``{"success": False}`` when it was unknown."""
        if not subscriber_id:
            raise ValueError("Missing subscriber_id")
        if self._subscribers.pop(subscriber_id, None) is None:
            return {"success": False}
        logger.debug("TopicBroker[%s] -subscriber %s", self.topic, subscriber_id)
        return {"success": True}

    def get_stats(self) -> dict:
        """``{"topic", "subscriber_count", "total_published", "total_delivered",
        "total_failed"}``."""
        return {
            "topic": self.topic,
            "subscriber_count": len(self._subscribers),
            "total_published": self._total_published,
            "total_delivered": self._total_delivered,
            "total_failed": self._total_failed,
        }

    # ---- publishing ----

    async def publish(
        self,
        payload: Any,
        mode: str = "fire_and_forget",
        sender_id: str | None = None,
        timeout: float = DEFAULT_FANOUT_TIMEOUT,
    ) -> dict:
        """Deliver `payload` to every subscriber except `sender_id`.

        `mode`: ``"fire_and_forget"`` (enqueue to each, no ack), ``"wait_all_acks"`` (wait for
        every subscriber's ack, at most `timeout`), ``"wait_any_ack"`` (return at the first
        ack; the others still get the message), ``"best_effort"`` (ack each in turn, record
        failures). Returns ``{"success", "delivered", "failed", "subscriber_count"}`` plus
        ``"failed_subscribers"`` in the ack modes.
        """
        if mode not in ("fire_and_forget", "wait_all_acks", "wait_any_ack", "best_effort"):
            raise ValueError(f"Unknown mode: {mode}")
        async with self._fanout_lock:
            self._total_published += 1
            targets = [
                s for sid, s in self._subscribers.items() if not (sender_id and sid == sender_id)
            ]
            if not targets:
                return {"success": True, "delivered": 0, "failed": 0, "subscriber_count": 0}
            envelope = {
                "topic": self.topic,
                "payload": payload,
                "sender_id": sender_id,
                "timestamp": time.time(),
            }
            if mode == "fire_and_forget":
                result = await self._fanout_tell(targets, envelope)
            elif mode == "best_effort":
                result = await self._fanout_best_effort(targets, envelope, timeout)
            else:
                result = await self._fanout_ask(targets, envelope, mode == "wait_all_acks", timeout)
        self._total_delivered += result["delivered"]
        self._total_failed += result["failed"]
        result["subscriber_count"] = len(self._subscribers)
        return result

    async def _resolve(self, sub: _Subscriber) -> ActorRef | None:
        now = time.monotonic()
        if sub.ref is not None and now - sub.ref_resolved_at < REF_TTL_SECONDS:
            return sub.ref
        try:
            if sub.node_id is not None:
                sub.ref = await self.system.resolve(sub.actor_name, node_id=sub.node_id)
            else:
                sub.ref = await self.system.resolve(sub.actor_name)
            sub.ref_resolved_at = now
        except Exception as e:  # noqa: BLE001 - an unreachable subscriber is a failed delivery
            logger.warning("TopicBroker[%s] cannot resolve %s: %s", self.topic, sub.actor_name, e)
            sub.ref = None
        return sub.ref

    def _succeeded(self, sub: _Subscriber) -> None:
        sub.messages_delivered += 1
        sub.consecutive_failures = 0

    def _failed(self, sub: _Subscriber) -> None:
        sub.messages_failed += 1
        sub.consecutive_failures += 1
        sub.ref = None  # resolve again next time
        dead = sub.consecutive_failures >= MAX_CONSECUTIVE_FAILURES
        if dead and self._subscribers.get(sub.subscriber_id) is sub:
            del self._subscribers[sub.subscriber_id]
            logger.warning(
                "TopicBroker[%s] dropped subscriber %s after %d failures",
                self.topic,
                sub.subscriber_id,
                sub.consecutive_failures,
            )

    async def _fanout_tell(self, targets: list[_Subscriber], envelope: dict) -> dict:
        delivered = failed = 0
        for sub in targets:
            ref = await self._resolve(sub)
            try:
                if ref is None:
                    raise LookupError(sub.actor_name)
                sent = ref.tell(envelope)
                if inspect.isawaitable(sent):  # a coroutine: awaits room in the mailbox
                    await sent
            except Exception:  # noqa: BLE001 - counted as a failed delivery
                failed += 1
                self._failed(sub)
            else:
                delivered += 1
                self._succeeded(sub)
        return {"success": True, "delivered": delivered, "failed": failed}

    async def _fanout_best_effort(
        self, targets: list[_Subscriber], envelope: dict, timeout: float
    ) -> dict:
        delivered = 0
        failed_ids: list[str] = []
        per_call = min(timeout, BEST_EFFORT_TIMEOUT) if timeout else BEST_EFFORT_TIMEOUT
        for sub in targets:
            ref = await self._resolve(sub)
            try:
                if ref is None:
                    raise LookupError(sub.actor_name)
                await asyncio.wait_for(ref.ask(envelope), per_call)
            except Exception:  # noqa: BLE001 - counted as a failed delivery
                failed_ids.append(sub.subscriber_id)
                self._failed(sub)
            else:
                delivered += 1
                self._succeeded(sub)
        return {
            "success": True,
            "delivered": delivered,
            "failed": len(failed_ids),
            "failed_subscribers": failed_ids,
        }

    async def _fanout_ask(
        self, targets: list[_Subscriber], envelope: dict, wait_all: bool, timeout: float
    ) -> dict:
        failed_ids: list[str] = []
        calls: dict[asyncio.Task[Any], _Subscriber] = {}
        for sub in targets:
            ref = await self._resolve(sub)
            if ref is None:
                failed_ids.append(sub.subscriber_id)
                self._failed(sub)
                continue
            calls[asyncio.ensure_future(_ask(ref, envelope))] = sub
        delivered = 0
        pending = set(calls)
        deadline = asyncio.get_running_loop().time() + (timeout or DEFAULT_FANOUT_TIMEOUT)
        while pending:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            done, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                sub = calls[task]
                if task.exception() is None:
                    delivered += 1
                    self._succeeded(sub)
                else:
                    failed_ids.append(sub.subscriber_id)
                    self._failed(sub)
            if not wait_all and delivered:
                break
        if pending and not wait_all and delivered:
            # The message is on its way to the others; account for their acks later.
            for task in pending:
                self._background.add(task)
                task.add_done_callback(self._late_ack(calls[task]))
        else:
            for task in pending:  # timed out
                task.cancel()
                sub = calls[task]
                failed_ids.append(sub.subscriber_id)
                self._failed(sub)
        return {
            "success": delivered > 0 or not failed_ids,
            "delivered": delivered,
            "failed": len(failed_ids),
            "failed_subscribers": failed_ids,
        }

    def _late_ack(self, sub: _Subscriber) -> Any:
        def done(task: asyncio.Task[Any]) -> None:
            self._background.discard(task)
            if task.cancelled() or task.exception() is not None:
                self._total_failed += 1
                self._failed(sub)
            else:
                self._total_delivered += 1
                self._succeeded(sub)

        return done
