"""Where queue buckets and topic brokers live: their names and get-or-create.

Each bucket of a queue and each topic broker is one named actor, so any node finds it with a
name lookup: ``bucket_<topic>_<i>`` and ``_topic_broker_<topic>`` (the names of the original
Pulsing, under the default ``actors/`` namespace). A topic that would make an invalid actor name
(characters outside ``[A-Za-z0-9_-/]``, empty segments, too long) is mapped to a valid name plus a
hash of the topic, the same on every node.

Get-or-create resolves the name and spawns the actor through the public API when nobody has it;
when two callers race, the loser of the spawn (name taken) resolves again. In a cluster a bucket
or a broker is spawned on its owner node, chosen by rendezvous hashing of its name over the Alive
members, so nodes that ask for the same one at the same time (before either's name has reached
the other) collide on one node, and one of them resolves the other's, instead of each keeping
one of its own and splitting the queue (or the topic's subscribers).
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING, Any

from pulsing.exceptions import PulsingError

if TYPE_CHECKING:
    from pulsing.core import ActorProxy, ActorSystem

__all__ = [
    "actor_name",
    "bucket_actor_name",
    "get_bucket_ref",
    "get_topic_broker",
    "subscriber_actor_name",
    "topic_broker_name",
]

logger = logging.getLogger(__name__)

_VALID_NAME = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_NAME_MAX = 255  # PUL_NAME_MAX, counting the implicit "actors/" prefix
_SANITIZED_KEEP = 160
# How long a spawn that lost a name race waits for the winner's entry to be visible.
_RACE_RESOLVE_TIMEOUT = 5.0


def actor_name(raw: str) -> str:
    """`raw` itself when it is a valid actor name; otherwise a valid, deterministic name made
    of its valid characters and a hash of `raw` (distinct raws give distinct names)."""
    full = len(raw) if "/" in raw else len(raw) + len("actors/")
    if _VALID_NAME.fullmatch(raw) and full <= _NAME_MAX and not raw.startswith("system/"):
        return raw
    digest = hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    stem = _INVALID_CHARS.sub("_", raw)[:_SANITIZED_KEEP].strip("_") or "t"
    return f"{stem}-h{digest}"


def bucket_actor_name(topic: str, bucket_id: int) -> str:
    """Actor name of bucket `bucket_id` of queue `topic`."""
    return actor_name(f"bucket_{topic}_{bucket_id}")


def topic_broker_name(topic: str) -> str:
    """Actor name of the broker of topic `topic`."""
    return actor_name(f"_topic_broker_{topic}")


def subscriber_actor_name(topic: str, reader_id: str) -> str:
    """Actor name of the subscriber actor of reader `reader_id` on `topic`."""
    return actor_name(f"_topic_sub_{topic}_{reader_id}")


async def _lookup(cls: Any, name: str, system: ActorSystem, timeout: float | None) -> Any:
    """A typed proxy on the actor named `name`, or None when there is none (yet)."""
    try:
        return await cls.resolve(name, system=system, timeout=timeout)
    except PulsingError:
        return None


def owner_node(system: ActorSystem, name: str) -> int | None:
    """The Alive member that should host `name` (rendezvous hashing: the highest hash of name
    and node id), or None when this node is alone."""
    nodes = [n for n, _a, st, _i in system._core.members() if st == "Alive"]
    if len(nodes) < 2:
        return None

    def weight(node: int) -> int:
        h = hashlib.blake2b(f"{name}@{node}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "big")

    return max(nodes, key=weight)


async def get_or_create(
    cls: Any, name: str, system: ActorSystem, *args: Any, placed: bool = False, **kwargs: Any
) -> ActorProxy:
    """A typed proxy on the `cls` actor named `name`, spawned with `args`/`kwargs` when no such
    actor exists: on this node, or with `placed` on the name's owner node (`owner_node`; its
    arguments must then pickle and `cls` be importable there, else it is spawned here).
    Concurrent callers end up with the same actor. An argument `THIS_SYSTEM` becomes the
    system of the node that builds the actor."""
    from pulsing.core.remote import with_system

    proxy = await _lookup(cls, name, system, 0)
    if proxy is not None:
        return proxy
    owner = owner_node(system, name) if placed else None
    if owner is not None and owner != system.node_id.id:
        try:
            return await cls.spawn(*args, system=system, name=name, placement=owner, **kwargs)
        except PulsingError as e:
            # Taken there already (its name has not reached us yet: wait for it), or the owner
            # cannot build it (the class or an argument is not importable there, the node just
            # died: build it here).
            taken = "already exists" in str(e)
            proxy = await _lookup(cls, name, system, _RACE_RESOLVE_TIMEOUT if taken else 0)
            if proxy is not None:
                return proxy
            logger.debug("placing %s on its owner failed (%s); spawning it here", name, e)
    args, kwargs = with_system(system, args, kwargs)
    try:
        return await cls.spawn(*args, system=system, name=name, **kwargs)
    except PulsingError:
        # Most likely someone spawned it between our lookup and our spawn: use theirs.
        proxy = await _lookup(cls, name, system, _RACE_RESOLVE_TIMEOUT)
        if proxy is not None:
            logger.debug("lost the race for %s, using the existing actor", name)
            return proxy
        raise


async def get_bucket_ref(
    system: ActorSystem,
    topic: str,
    bucket_id: int,
    batch_size: int = 100,
    storage_path: str | None = None,
    backend: str | type | None = None,
    backend_options: dict[str, Any] | None = None,
) -> ActorProxy:
    """A typed proxy on bucket `bucket_id` of queue `topic`, created when missing.

    A new bucket stores its records at ``<storage_path>/bucket_<i>`` (default
    ``./queue_storage/<topic>/bucket_<i>``) with `backend` (default ``"memory"``). An existing
    bucket is used as it is, whatever backend it was created with.
    """
    from .backend import get_backend_class
    from .storage import BucketStorage

    backend_class = get_backend_class(backend if backend is not None else "memory")
    base = storage_path if storage_path else f"./queue_storage/{topic}"
    return await get_or_create(
        BucketStorage,
        bucket_actor_name(topic, bucket_id),
        system,
        bucket_id,
        f"{base}/bucket_{bucket_id}",
        batch_size,
        backend_class,
        dict(backend_options or {}),
        placed=True,
    )


async def get_topic_broker(system: ActorSystem, topic: str) -> ActorProxy:
    """A typed proxy on the broker of `topic`, created (on its owner node) when missing."""
    from .broker import TopicBroker

    from pulsing.core.remote import THIS_SYSTEM

    return await get_or_create(
        TopicBroker, topic_broker_name(topic), system, topic, THIS_SYSTEM, placed=True
    )
