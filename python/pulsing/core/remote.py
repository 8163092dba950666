"""@remote classes and the proxies that call them.

`@pulsing.remote` turns a class into an `ActorClass`: `await Cls.spawn(...)` creates an actor
running an instance of it and returns a typed `ActorProxy`. On a proxy, a plain `def` method
returns a `CallFuture` (already complete when the actor was idle); an `async def` method, a
generator or any call on an untyped proxy returns an `AsyncCall`, which can be awaited for the
final value or iterated with `async for` for the items of a stream.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import uuid
from typing import Any, Generic, TypeVar

from pulsing.core import system as _sys
from pulsing.core.system import (
    GEN,
    SYNC,
    ActorRef,
    ActorSystem,
    _done_future,
    _Policy,
)
from pulsing.exceptions import PulsingRuntimeError

logger = logging.getLogger("pulsing")

T = TypeVar("T")

__all__ = [
    "ActorClass",
    "ActorProxy",
    "AsyncCall",
    "as_any",
    "mount",
    "proxy_for",
    "remote",
    "resolve",
    "unmount",
]

_actor_class_registry: dict[str, type] = {}

PLACEMENT_SERVICE = "system/placement"
_PLACEMENT_DEADLINE_MS = 30_000  # import + constructor on the other node


class PlacementService:
    """`system/placement`, on every node with a listener: builds the actors other nodes place
    here (`spawn(placement=...)`). The class is imported by module and qualname (it must be
    importable on this node), constructed with the arguments sent, and spawned with the name
    and the supervision options of its @remote decorator; the answer is the new actor id.
    Failures come back typed: an unimportable class is a PulsingRuntimeError, a constructor
    that rejects its arguments a PulsingBusinessError, a taken name a PulsingRuntimeError."""

    def __init__(self, system: ActorSystem) -> None:
        self._system = system

    async def spawn(
        self, module: str, qualname: str, args: tuple, kwargs: dict, name: str | None
    ) -> int:
        import importlib

        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except Exception as e:  # noqa: BLE001
            raise PulsingRuntimeError(
                f"placement: cannot import {module}.{qualname} on node "
                f"{self._system.node_id}: {type(e).__name__}: {e}"
            ) from None
        if not isinstance(obj, ActorClass):
            if not isinstance(obj, type):
                raise PulsingRuntimeError(f"placement: {module}.{qualname} is not a class")
            obj = ActorClass(obj)
        args, kwargs = with_system(self._system, args, kwargs)
        proxy = await obj.local(self._system, *args, name=name, **kwargs)
        return proxy.ref._id


GATEWAY_SERVICE = "system/gateway"


class GatewayService:
    """`system/gateway`, on every node with a listener: what an out-of-cluster client
    (`pulsing.connect.Connect`) asks of the node it uses as its gateway. Its calls to actors do
    not come here: they are addressed to the actor and the node forwards them (the client routes
    every node's actors to its gateway)."""

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._placement = PlacementService(system)

    async def pull(self, token: int):
        """The items of a stream Message this node answered to a caller on another node
        (`ActorSystem._export_stream`): the caller's node pulls them as a stream call."""
        reader = self._system._claim_export(token)
        try:
            async for item in reader:
                yield item
        finally:
            reader.cancel()

    async def resolve(self, name: str, node_id: int | None, timeout: float | None) -> int:
        """The actor id of a live instance of `name` (round-robin, or the one on `node_id`)."""
        ref = await self._system.resolve(name, node_id=node_id, timeout=timeout)
        return ref._id

    async def spawn(
        self, module: str, qualname: str, args: tuple, kwargs: dict, name: str | None
    ) -> int:
        """Create an actor on this node (as placement does); its actor id."""
        return await self._placement.spawn(module, qualname, args, kwargs, name)

    async def gateways(self) -> list[str]:
        """The addresses of the cluster's Alive nodes, this one first."""
        me = self._system.addr
        out = [me] if me else []
        for m in await self._system.members():
            if m["status"] == "Alive" and m["addr"] and m["addr"] not in out:
                out.append(m["addr"])
        return out


# A constructor argument that stands for the actor system of the node the actor is built on
# (placement replaces it there), for runtime classes that need their system, such as a topic
# broker.
THIS_SYSTEM = _sys.Constant("THIS_SYSTEM")


def with_system(system: ActorSystem, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """`args`/`kwargs` with THIS_SYSTEM replaced by `system`."""
    args = tuple(system if a is THIS_SYSTEM else a for a in args)
    kwargs = {k: system if v is THIS_SYSTEM else v for k, v in kwargs.items()}
    return args, kwargs


def start_placement_service(system: ActorSystem) -> None:
    """Register `system/placement` and `system/gateway` on a node that has a listener."""
    system._spawn_cell(PlacementService(system), None, True, PLACEMENT_SERVICE, allow_system=True)
    cell = system._spawn_cell(
        GatewayService(system), None, True, GATEWAY_SERVICE, allow_system=True
    )
    system._stream_service = cell.ref._id


def _public_methods(cls: type) -> tuple[list[str], set[str], set[str]]:
    """Public method names, those that are `async def` (or async generators), and the plain
    (sync) generator methods."""
    methods: list[str] = []
    async_methods: set[str] = set()
    gen_methods: set[str] = set()
    for name, member in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        raw = inspect.getattr_static(cls, name, None)
        func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
        if not (inspect.isfunction(func) or inspect.ismethoddescriptor(func)):
            continue
        if not callable(member):
            continue
        methods.append(name)
        if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
            async_methods.add(name)
        elif inspect.isgeneratorfunction(func):
            gen_methods.add(name)
    return methods, async_methods, gen_methods


# ---------------------------------------------------------------------------------------------
# Calls
# ---------------------------------------------------------------------------------------------


class AsyncCall:
    """A call whose kind is a stream, an `async def` method, or unknown (untyped proxy).

    `await call` gives the final value (an async generator is consumed; a plain generator
    method's call is a `_GenCall`, whose await gives an iterator over the items);
    `async for item in call` gives the items as they are produced (a plain value is one item).
    It is also a coroutine-like object, so `asyncio.create_task(call)` works."""

    __slots__ = ("_args", "_coro", "_kwargs", "_name", "_ref")

    def __init__(self, ref: ActorRef, name: str, args: tuple, kwargs: dict) -> None:
        self._ref = ref
        self._name = name
        self._args = args
        self._kwargs = kwargs
        self._coro = None

    async def _result(self) -> Any:
        ref = self._ref
        cell = ref._cell
        if cell is not None:
            if cell.stopped:
                raise cell._stopped_error()
            return await cell.call_async(self._name, self._args, self._kwargs)
        return await ref._system._core_call(ref._id, self._name, self._args, self._kwargs)

    def _start(self) -> Any:
        ref = self._ref
        if ref._cell is None:
            # Through the core the call's CallFuture is itself the awaitable (and coroutine):
            # no coroutine frame in between.
            return ref._system._core_call(ref._id, self._name, self._args, self._kwargs)
        return self._result()

    def __await__(self):
        if self._coro is None:
            self._coro = self._start()
        return self._coro.__await__()

    def send(self, value: Any) -> Any:
        if self._coro is None:
            self._coro = self._start()
        return self._coro.send(value)

    def throw(self, *exc: Any) -> Any:
        if self._coro is None:
            self._coro = self._start()
        return self._coro.throw(*exc)

    def close(self) -> None:
        if self._coro is not None:
            self._coro.close()

    def __aiter__(self) -> _StreamIter:
        return _StreamIter(self)

    def __repr__(self) -> str:
        return f"<AsyncCall {self._name} on {self._ref!r}>"


async def _open_items(call: AsyncCall) -> _StreamIter:
    it = _StreamIter(call)
    await it._open()
    return it


class _GenCall(AsyncCall):
    """A call of a plain (sync) generator method: `await call` gives an async iterator over its
    items, as the original Pulsing does (`async for x in await proxy.gen()`); `async for x in
    call` works as for every stream. The stream is opened by the await, so the call takes its
    place in the actor's mailbox then."""

    __slots__ = ()

    def _start(self) -> Any:
        return _open_items(self)


class _AnyCall(AsyncCall):
    """A call of an untyped proxy on another node: the method's kind is known there only. Awaited,
    it asks for the value; a plain generator method answers GEN_STREAM without running, and the
    await opens the stream instead (as `_GenCall`)."""

    __slots__ = ()

    def _start(self) -> Any:
        # The CallFuture stays the awaitable (no coroutine frame, no task under gather); the
        # drain turns a GEN_STREAM answer into the stream through `_on_gen_stream`.
        ref = self._ref
        fut = ref._system._core_call(ref._id, self._name, self._args, self._kwargs, _sys._PROBE)
        fut._on_gen_stream = self._items
        return fut

    def _items(self) -> _StreamIter:
        it = _StreamIter(self)
        it._open_remote()
        return it


class _StreamIter:
    """Iterates the items of an AsyncCall; dropping it (break) closes the producer."""

    __slots__ = ("__weakref__", "_call", "_src")

    def __init__(self, call: AsyncCall) -> None:
        self._call = call
        self._src = None

    def __aiter__(self) -> _StreamIter:
        return self

    def _open_remote(self) -> Any:
        # another node (or a system reached through the core): items as they arrive
        call = self._call
        ref = call._ref
        self._src = ref._system._core_stream(ref._id, call._name, call._args, call._kwargs)
        return self._src

    async def _open(self) -> Any:
        call = self._call
        cell = call._ref._cell
        if cell is None:
            return self._open_remote()
        if cell.stopped:
            raise cell._stopped_error()
        self._src = await cell.open_stream(call._name, call._args, call._kwargs)
        return self._src

    async def __anext__(self) -> Any:
        src = self._src
        if src is None:
            src = await self._open()
            if self._call._ref._cell is None:
                return await src.__anext__()
        try:
            return await src.__anext__()
        except asyncio.CancelledError:
            src.close()
            raise

    async def aclose(self) -> None:
        if self._src is not None:
            self._src.close()

    def __del__(self) -> None:
        src = self._src
        if src is not None and not src.done:
            src.close()


class _Method:
    """`proxy.name`: call it, or `await` it to read a plain attribute. `gen`: whether the proxy's
    class says this is a plain generator method; None for an untyped proxy (for an actor on this
    node the cell knows)."""

    __slots__ = ("_gen", "_name", "_ref")

    def __init__(self, ref: ActorRef, name: str, gen: bool | None = False) -> None:
        self._ref = ref
        self._name = name
        self._gen = gen

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ref = self._ref
        cell = ref._cell
        gen = self._gen
        if cell is not None:
            if cell.stopped:
                return _done_future(cell.loop, cell._stopped_error())
            kind = cell.kind(self._name)
            if kind == SYNC:
                return cell.call_sync(self._name, args, kwargs)
            gen = kind == GEN
        if gen:
            return _GenCall(ref, self._name, args, kwargs)
        if gen is None:
            return _AnyCall(ref, self._name, args, kwargs)
        return AsyncCall(ref, self._name, args, kwargs)

    def __await__(self):
        return AsyncCall(self._ref, self._name, (), {}).__await__()

    def __repr__(self) -> str:
        return f"<method {self._name} of {self._ref!r}>"


# ---------------------------------------------------------------------------------------------
# Proxies
# ---------------------------------------------------------------------------------------------


class ActorProxy:
    """Calls methods of an actor: `await proxy.method(...)`, `async for x in proxy.stream()`.

    Typed (built from a class: only its public methods) or untyped (`method_names=None`: any
    name is forwarded, `await proxy.attr` reads a plain attribute)."""

    def __init__(
        self,
        actor_ref: ActorRef,
        method_names: list[str] | None = None,
        async_methods: set[str] | None = None,
        gen_methods: set[str] | None = None,
    ) -> None:
        self._ref = actor_ref
        self._method_names = set(method_names) if method_names is not None else None
        self._async_methods = set(async_methods) if async_methods is not None else None
        self._gen_methods = frozenset(gen_methods) if gen_methods else frozenset()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"Cannot access private attribute: {name}")
        names = self.__dict__.get("_method_names")
        if names is not None and name not in names:
            raise AttributeError(f"No method '{name}'")
        gen = None if names is None else name in self.__dict__["_gen_methods"]
        method = _Method(self.__dict__["_ref"], name, gen)
        self.__dict__[name] = method  # later lookups skip __getattr__
        return method

    @property
    def ref(self) -> ActorRef:
        """The underlying ActorRef."""
        return self._ref

    def as_any(self) -> ActorProxy:
        """An untyped proxy on the same actor."""
        return ActorProxy(self._ref)

    def as_type(self, cls: Any) -> ActorProxy:
        """A typed proxy on the same actor."""
        return proxy_for(self._ref, cls)

    @classmethod
    def from_ref(
        cls,
        actor_ref: ActorRef,
        methods: list[str] | None = None,
        async_methods: set[str] | None = None,
    ) -> ActorProxy:
        return cls(actor_ref, methods, async_methods)

    def __repr__(self) -> str:
        kind = "typed" if self._method_names is not None else "any"
        return f"ActorProxy({self._ref!r}, {kind})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorProxy) and other._ref == self._ref

    def __hash__(self) -> int:
        return hash(self._ref)

    def __reduce__(self):
        methods = sorted(self._method_names) if self._method_names is not None else None
        gens = set(self._gen_methods) or None
        return (ActorProxy, (self._ref, methods, self._async_methods, gens))


class _ResolvedProxy(ActorProxy):
    """What `pulsing.resolve(name)` returns: an untyped proxy that also answers the ActorRef
    API (`ask`, `tell`, `actor_id`, `as_type`), as the original's resolve returned a ref."""

    @property
    def actor_id(self):
        return self._ref.actor_id

    def ask(self, msg: Any) -> Any:
        return self._ref.ask(msg)

    def tell(self, msg: Any) -> Any:
        return self._ref.tell(msg)


def proxy_for(ref: ActorRef, cls: Any) -> ActorProxy:
    """A typed proxy on `ref` for the public methods of `cls` (a class or an ActorClass)."""
    if isinstance(cls, ActorClass):
        return cls._proxy(ref)
    if not isinstance(cls, type):
        raise TypeError(f"as_type expects a class, not {type(cls).__name__}")
    return ActorProxy(ref, *_public_methods(cls))


def as_any(ref: ActorRef) -> ActorProxy:
    """An untyped proxy on `ref` that forwards any method call."""
    return ActorProxy(getattr(ref, "ref", ref))


# ---------------------------------------------------------------------------------------------
# delayed()
# ---------------------------------------------------------------------------------------------


class _DelayedCallProxy:
    """`self.delayed(seconds).method(*args)`: an asyncio.Task that sends the call to the actor
    itself after the delay (cancel the task to cancel the call)."""

    __slots__ = ("_delay", "_ref")

    def __init__(self, ref: ActorRef, delay: float) -> None:
        self._ref = ref
        self._delay = max(0.0, float(delay))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def caller(*args: Any, **kwargs: Any) -> asyncio.Task:
            return asyncio.ensure_future(self._send(name, args, kwargs))

        return caller

    async def _send(self, name: str, args: tuple, kwargs: dict) -> None:
        await asyncio.sleep(self._delay)
        cell = self._ref._cell
        if cell is None or cell.stopped:
            return
        await cell._enqueue((_sys._CALL, name, args, kwargs, None, _sys._VALUE))


def inject_delayed(instance: Any, ref: ActorRef) -> None:
    try:
        instance.delayed = lambda seconds: _DelayedCallProxy(ref, seconds)
    except (AttributeError, TypeError):
        logger.debug("cannot add delayed() to %s", type(instance).__name__)


# ---------------------------------------------------------------------------------------------
# @remote
# ---------------------------------------------------------------------------------------------


def _system_or_global(system: ActorSystem | None) -> ActorSystem:
    if system is not None:
        return system
    from pulsing.core import get_system

    return get_system()


class ActorClass(Generic[T]):
    """A class decorated with @remote: `spawn`, `resolve`, `local`, `proxy`; calling it builds a
    plain local instance."""

    def __init__(
        self,
        cls: type,
        restart_policy: str = "never",
        max_restarts: int = 3,
        min_backoff: float = 0.1,
        max_backoff: float = 30.0,
    ) -> None:
        if not isinstance(cls, type):
            raise TypeError(f"@remote decorates classes, not {type(cls).__name__}")
        self._cls = cls
        self._policy = _Policy(restart_policy, max_restarts, min_backoff, max_backoff)
        self._restart_policy = self._policy.policy
        self._max_restarts = max_restarts
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._class_name = f"{cls.__module__}.{cls.__qualname__}"
        self._methods, self._async_methods, self._gen_methods = _public_methods(cls)
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__
        self.__doc__ = cls.__doc__
        self.__wrapped__ = cls
        _actor_class_registry[self._class_name] = cls

    def __call__(self, *args: Any, **kwargs: Any) -> T:
        """A plain local instance (not an actor)."""
        return self._cls(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<ActorClass {self._class_name}>"

    def _proxy(self, ref: ActorRef) -> ActorProxy:
        return ActorProxy(ref, self._methods, self._async_methods, self._gen_methods)

    async def spawn(
        self,
        *args: Any,
        system: ActorSystem | None = None,
        name: str | None = None,
        public: bool | None = None,
        placement: Any = None,
        **kwargs: Any,
    ) -> ActorProxy:
        """Create an actor running `cls(*args, **kwargs)` and return a typed proxy.

        `name` makes it resolvable (a short name means "actors/<name>"); without one a name is
        generated. Constructor arguments are passed by reference (not copied). `placement`:
        None/"local" here; "remote" or a node id places it on another node of the cluster."""
        system = _system_or_global(system)
        if placement not in (None, "local"):
            return await self._spawn_placed(system, placement, args, kwargs, name)
        return await self.local(system, *args, name=name, public=public, **kwargs)

    async def _spawn_placed(
        self, system: ActorSystem, placement: Any, args: tuple, kwargs: dict, name: str | None
    ) -> ActorProxy:
        """Create the actor on another node through its `system/placement` service."""
        from pulsing.core.ids import NodeId

        me = system.node_id.id
        if placement == "remote":
            peers = system._alive_peers()
            if not peers:
                raise PulsingRuntimeError(
                    "spawn(placement='remote'): no other Alive member in the cluster"
                )
            n = system._rr.get("system/placement", 0)
            system._rr["system/placement"] = n + 1
            target = peers[n % len(peers)]
        else:
            try:
                target = NodeId(placement).id
            except (TypeError, ValueError):
                raise ValueError(
                    f"placement must be None, 'local', 'remote' or a node id, not {placement!r}"
                ) from None
            if target == me:
                return await self.local(system, *args, name=name, **kwargs)
            members = {int(m["node_id"]): m["status"] for m in await system.members()}
            if members.get(target) != "Alive":
                raise PulsingRuntimeError(
                    f"placement: node {NodeId(target)} is not an Alive member "
                    f"({members.get(target, 'unknown')})"
                )
        call = (
            _sys._CALL_TAG,
            "spawn",
            (self._cls.__module__, self._cls.__qualname__, args, kwargs, name),
            {},
            _sys._VALUE,
        )
        actor_id = await system._core_ask(
            0,
            _sys._RawPickled(call),
            deadline_ms=_PLACEMENT_DEADLINE_MS,
            named=(target, PLACEMENT_SERVICE),
        )
        return self._proxy(ActorRef(system, actor_id, None))

    async def local(
        self,
        system: ActorSystem,
        *args: Any,
        name: str | None = None,
        public: bool | None = None,
        **kwargs: Any,
    ) -> ActorProxy:
        """Create the actor on `system` (this node)."""
        cell = self._spawn_cell(system, args, kwargs, name)
        await system._await_start(cell)
        return self._proxy(cell.ref)

    def _spawn_cell(self, system: ActorSystem, args: tuple, kwargs: dict, name: str | None):
        system._check_open()
        if name is None:
            name = f"actors/{self._cls.__name__}_{uuid.uuid4().hex[:8]}"
        cls = self._cls
        instance = cls(*args, **kwargs)
        factory = None
        if self._policy.policy != "never":

            def factory() -> Any:
                return cls(*args, **kwargs)

        return system._spawn_cell(instance, factory, True, name, self._policy)

    async def remote(
        self,
        system: ActorSystem,
        *args: Any,
        name: str | None = None,
        public: bool | None = None,
        **kwargs: Any,
    ) -> ActorProxy:
        """Create the actor on another node of the cluster (this node when it is alone)."""
        return await self._spawn_placed(system, "remote", args, kwargs, name)

    def proxy(self, actor_ref: ActorRef) -> ActorProxy:
        """A typed proxy on an existing ActorRef."""
        return self._proxy(actor_ref)

    async def resolve(
        self,
        name: str,
        *,
        system: ActorSystem | None = None,
        node_id: Any = None,
        timeout: float | None = None,
    ) -> ActorProxy:
        """The actor named `name` as a typed proxy, waiting up to `timeout` seconds for it."""
        system = _system_or_global(system)
        ref = await system.resolve(name, node_id=node_id, timeout=timeout)
        return self._proxy(ref)


def remote(
    cls: type | None = None,
    *,
    restart_policy: str = "never",
    max_restarts: int = 3,
    min_backoff: float = 0.1,
    max_backoff: float = 30.0,
) -> Any:
    """Make a class an actor class: `@remote` or `@remote(restart_policy="on_failure", ...)`.

    restart_policy: "never" (default), "on_failure" (or "on-failure"), "always"; a system-class
    failure restarts the actor (constructor re-run) after a backoff doubling from min_backoff up
    to max_backoff, at most max_restarts times within a minute."""

    def wrap(c: type) -> ActorClass:
        return ActorClass(c, restart_policy, max_restarts, min_backoff, max_backoff)

    if cls is None:
        return wrap
    return wrap(cls)


# ---------------------------------------------------------------------------------------------
# resolve, mount
# ---------------------------------------------------------------------------------------------


async def resolve(
    name: str,
    *,
    cls: Any = None,
    node_id: Any = None,
    timeout: float | None = None,
) -> ActorProxy:
    """The actor named `name` on the global system: an untyped proxy (which also has `ask`,
    `tell` and `actor_id`), or a typed one when `cls` is given."""
    from pulsing.core import get_system

    ref = await get_system().resolve(name, node_id=node_id, timeout=timeout)
    if cls is not None:
        return proxy_for(ref, cls)
    return _ResolvedProxy(ref)


def _run_on_home(system: ActorSystem, fn: Any) -> Any:
    """Run fn() on the system's home loop thread and return its result (blocking if needed)."""
    loop = system._loop
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if (
        running is loop
        or not loop.is_running()
        or getattr(loop, "_thread_id", None) == threading.get_ident()
    ):
        return fn()
    done = threading.Event()
    box: list = []

    def call() -> None:
        try:
            box.append((True, fn()))
        except BaseException as e:  # noqa: BLE001
            box.append((False, e))
        done.set()

    loop.call_soon_threadsafe(call)
    if not done.wait(30):
        raise PulsingRuntimeError("mount: the Pulsing loop did not answer within 30 s")
    ok, value = box[0]
    if not ok:
        raise value
    return value


def mount(instance: Any, *, name: str, public: bool = True) -> None:
    """Attach an existing object to the global system as an actor named `name` (synchronous,
    callable from `__init__`); its public methods become callable through proxies."""
    from pulsing.core import _global_system

    system = _global_system()
    if system is None:
        raise PulsingRuntimeError(
            "Pulsing not initialized. Please call await pul.init() before mount()."
        )
    _run_on_home(system, lambda: system._spawn_cell(instance, None, True, name))


def unmount(name: str) -> None:
    """Detach an object mounted with `mount` (its name can be used again)."""
    from pulsing.core import _global_system

    system = _global_system()
    if system is None:
        return

    def do() -> None:
        cell = system._find_cell(name)
        if cell is not None:
            r = system._stop_cell_now(cell, "unmounted")
            if r is not None:
                system._loop.create_task(r)

    _run_on_home(system, do)
