"""Actor systems: the actors of one node, their mailboxes, and the paths a call takes.

A system is one `_core.CoreSystem` (the C core: its thread, the actor table, names, the bridge)
plus its home loop and a cell per Python actor. A call from the home loop to a Python actor of the
same system never enters the core (the local fast path): when the actor is idle a plain `def`
method runs on the caller's stack and the call returns a completed future. Otherwise the call
waits in the actor's bounded mailbox, which `_Cell._drain` empties in order on a later loop turn.
See docs/design/python-runtime.md.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pickle
import random
import time
import types
from collections import deque
from typing import Any

from pulsing import _core
from pulsing.core import errors as _errors
from pulsing.core import zerocopy as _zc
from pulsing.core.ids import ActorId, NodeId
from pulsing.core.messaging import Message, StreamMessage
from pulsing.exceptions import PulsingError, PulsingRuntimeError

logger = logging.getLogger("pulsing")

_get_running_loop = asyncio.events._get_running_loop
_current_task = asyncio.current_task

# Kinds of a method of an actor's instance.
SYNC, ASYNC, GEN, AGEN, ATTR, MISSING = range(6)
# Envelopes in a mailbox: (op, name, args, kwargs, fut, mode).
_CALL, _MSG = 0, 1
# What the caller wants from a call: the value, or a stream source.
_VALUE, _STREAM = 0, 1
# A value call from a caller that does not know the method's kind (an untyped proxy on another
# node): a plain generator method answers GEN_STREAM without running, and the caller opens a
# stream call instead (`await proxy.gen()` is then an iterator over the items, as for typed ones).
_PROBE = 8
# Mode bit of an envelope whose arguments were just unpickled from a message (nobody else holds
# them): delivering it needs no copy of them (a 64 MiB argument is not copied once more).
_FRESH = 2
# Mode bit of a call whose caller is on another node: its result is only pickled into the reply
# (the pickle is the copy), so it is not copied first (a 64 MiB result is not copied once more).
_WIRE = 4

PICKLE_TYPE = "pulsing/pickle"  # msg_type of a pickled Python payload through the core
_CALL_TAG = "__pulsing_call__"

# Direct calls on the caller's stack before the loop must get a turn: at ~1 us each, at most
# about half a millisecond of other tasks waiting.
_BUDGET = 512
_RESTART_WINDOW_S = 60.0
_NAME_RELEASE_WAIT_S = 1.0  # how long a spawn waits for the core to release a stopped name

_IMMUTABLE = frozenset({int, float, str, bytes, bool, type(None), complex, ActorId, NodeId})
_live_systems: set = set()  # every system not yet shut down (tests assert it empties)


# ---------------------------------------------------------------------------------------------
# Call futures
# ---------------------------------------------------------------------------------------------


class CallFuture(asyncio.Future):
    """The result of an ask: an asyncio future that is also a coroutine-like object.

    Being a Future, `asyncio.gather`/`wait_for` take it as is (no task per call); implementing
    `send`/`throw`/`close` makes it a `collections.abc.Coroutine`, so `asyncio.create_task`
    accepts it too. `async for` over it yields the single value."""

    def send(self, value: Any) -> Any:
        if self.done():
            raise StopIteration(self.result())
        self._asyncio_future_blocking = True
        return self

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None:
            val = typ if isinstance(typ, BaseException) else typ()
        if isinstance(val, asyncio.CancelledError):
            self.cancel()
        raise val

    def close(self) -> None:
        pass

    def __aiter__(self):
        return _single(self)


async def _single(awaitable):
    yield await awaitable


def _done_future(loop: asyncio.AbstractEventLoop, exc: BaseException) -> CallFuture:
    fut = CallFuture(loop=loop)
    fut.set_exception(exc)
    return fut


# ---------------------------------------------------------------------------------------------
# Copy semantics
# ---------------------------------------------------------------------------------------------


def copy_one(value: Any, what: str = "value", wire: Any = False) -> Any:
    """What the receiver gets for `value`: itself when immutable, else a copy (pickle
    protocol 5 round trip); a `__zerocopy__` object travels as its descriptor. With `wire` (a
    result that only goes into a reply to another node) the value pickled for the reply at once
    (`_WireResult`): the reply's pickle is the copy, taken before the actor runs again, so a
    later message that mutates the value cannot change the reply (its large buffers go out of
    band from their own memory, as for requests)."""
    t = type(value)
    if t in _IMMUTABLE or t is Message:
        return value
    m = _zc.mode()
    if m != "off" or t is _zc.ZeroCopyDescriptor:
        if t is _zc.ZeroCopyDescriptor:
            return _zc.transfer(value)
        if m == "force" and t in (list, dict, tuple, set, frozenset):
            pass  # containers are framing, not payload objects
        else:
            desc = _zc.prepare(value, m)
            if desc is not None:
                return _zc.transfer(desc)
    if wire:
        return _WireResult(_encode(value, what))
    try:
        return _core.copy_value(value)
    except TypeError as e:
        raise _errors.serialization_error(value, e, what) from e
    except (pickle.PicklingError, AttributeError, RecursionError) as e:
        raise _errors.serialization_error(value, e, what) from e


def copy_args(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    for a in args:
        if type(a) not in _IMMUTABLE:
            args = tuple([copy_one(x, "argument") for x in args])
            break
    if kwargs:
        kwargs = {k: copy_one(v, "argument") for k, v in kwargs.items()}
    return args, kwargs


# ---------------------------------------------------------------------------------------------
# Cells: one per Python actor
# ---------------------------------------------------------------------------------------------


def _method_kind(instance: Any, name: str) -> int:
    attr = inspect.getattr_static(type(instance), name, None)
    if attr is None:
        try:
            value = getattr(instance, name)
        except AttributeError:
            return MISSING
        return SYNC if callable(value) else ATTR
    func = attr
    if isinstance(attr, (staticmethod, classmethod)):
        func = attr.__func__
    elif isinstance(attr, property):
        return ATTR
    if inspect.isasyncgenfunction(func):
        return AGEN
    if inspect.iscoroutinefunction(func):
        return ASYNC
    if inspect.isgeneratorfunction(func):
        return GEN
    if callable(func):
        return SYNC
    return ATTR


class _Policy:
    __slots__ = ("max_backoff", "max_restarts", "min_backoff", "policy")

    def __init__(self, policy: str, max_restarts: int, min_backoff: float, max_backoff: float):
        p = (policy or "never").replace("-", "_").lower()
        if p not in ("never", "on_failure", "always"):
            raise ValueError(
                f"restart_policy must be 'never', 'on_failure' or 'always', not {policy!r}"
            )
        if max_restarts < 0:
            raise ValueError("max_restarts must be >= 0")
        if min_backoff < 0 or max_backoff < 0:
            raise ValueError("backoff must be >= 0")
        self.policy = p
        self.max_restarts = int(max_restarts)
        self.min_backoff = float(min_backoff)
        self.max_backoff = max(float(max_backoff), float(min_backoff))


_NEVER = _Policy("never", 0, 0.1, 30.0)


class _Cell:
    """A Python actor: its instance, its mailbox and its state."""

    __slots__ = (
        "__weakref__",
        "aid",
        "blocked",
        "capacity",
        "factory",
        "id",
        "inline",
        "instance",
        "kinds",
        "loop",
        "name",
        "overflow",
        "policy",
        "queue",
        "receive",
        "receive_async",
        "ref",
        "restart_times",
        "scheduled",
        "stop_cancelled",
        "stopped",
        "system",
        "tasks",
        "wrapped",
    )

    def __init__(
        self,
        system: ActorSystem,
        instance: Any,
        factory: Any,
        wrapped: bool,
        policy: _Policy,
        capacity: int,
    ) -> None:
        self.system = system
        self.loop = system._loop
        self.id = 0
        self.aid: ActorId | None = None
        self.name: str | None = None
        self.factory = factory
        self.wrapped = wrapped
        self.kinds: dict[str, int] = {}
        self.queue: deque = deque()
        self.overflow: deque = deque()
        self.capacity = capacity
        self.blocked = 0  # > 0 while starting, restarting or awaiting a serial receive
        self.scheduled = False
        self.stopped: str | None = None  # the reason once stopped
        self.policy = policy
        self.restart_times: deque = deque()
        self.tasks: set = set()
        # Callers' tasks awaiting user code of this actor on their own stack (the fast path
        # of async methods and streams): a stop cancels them and they fail with the stopped
        # error, never hang.
        self.inline: dict = {}
        self.stop_cancelled: set = set()
        self.ref: ActorRef | None = None
        self._set_instance(instance)

    def _set_instance(self, instance: Any) -> None:
        self.instance = instance
        self.kinds = {}
        recv = getattr(instance, "receive", None)
        self.receive = recv if callable(recv) else None
        self.receive_async = self.receive is not None and (
            inspect.iscoroutinefunction(recv)
            or inspect.isasyncgenfunction(recv)
            or inspect.isgeneratorfunction(recv)
        )

    # ---- kinds ----

    def kind(self, name: str) -> int:
        k = self.kinds.get(name)
        if k is None:
            if name.startswith("_"):
                return MISSING
            k = _method_kind(self.instance, name)
            if k in (ATTR, MISSING):
                return k  # instance attributes may change; don't cache
            self.kinds[name] = k
        return k

    # ---- the fast path ----

    def call_sync(self, name: str, args: tuple, kwargs: dict) -> CallFuture:
        """Call a plain `def` method; runs at once when the actor is idle."""
        loop = self.loop
        fut = CallFuture(loop=loop)
        if self.queue or self.blocked or self.stopped or _get_running_loop() is not loop:
            self._enqueue((_CALL, name, args, kwargs, fut, _VALUE))
            return fut
        system = self.system
        if system._budget <= 0:
            # The loop must get a turn: run now, but resolve on the next turn so that the
            # caller's await yields.
            self._run_direct(name, args, kwargs, _Deferred(system, fut), fut)
            return fut
        system._budget -= 1
        if system._budget == 0:
            loop.call_soon(system._refill)
        self._run_direct(name, args, kwargs, fut, fut)
        return fut

    def _run_direct(self, name: str, args: tuple, kwargs: dict, sink: Any, fut: Any) -> None:
        """Run a plain `def` method on the caller's stack; its outcome goes to `sink` (the
        caller's future, or a _Deferred that resolves `fut` on the next loop turn)."""
        try:
            args, kwargs = copy_args(args, kwargs)
            method = getattr(self.instance, name)
        except BaseException as e:  # noqa: BLE001
            sink.set_exception(e if isinstance(e, PulsingError) else self._classify(e, name))
            return
        try:
            result = method(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - every failure goes to the caller
            self._fail(sink, e, name)
            return
        if type(result) not in _IMMUTABLE and _is_deferred_result(result):
            self._finish_later(result, sink, fut, name)
            return
        try:
            sink.set_result(copy_one(result, "result"))
        except PulsingError as e:
            sink.set_exception(e)

    def _finish_later(self, result: Any, fut: Any, caller_fut: Any, name: str) -> None:
        """A plain `def` returned a coroutine or a generator (a decorated async method, say):
        finish it as a task, like the queued path does."""
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            coro = self._finish_stream(result, fut, name)
        else:
            coro = self._finish_awaitable(result, fut, name)
        self._spawn_task(coro, caller_fut)

    async def call_async(self, name: str, args: tuple, kwargs: dict) -> Any:
        """Await an `async def` method (or anything else) for its value."""
        if self.queue or self.blocked or self.stopped or _get_running_loop() is not self.loop:
            fut = CallFuture(loop=self.loop)
            self._enqueue((_CALL, name, args, kwargs, fut, _VALUE))
            return await fut
        args, kwargs = copy_args(args, kwargs)
        kind = self.kind(name)
        if kind in (GEN, AGEN):
            src = self._open_stream(name, args, kwargs, kind)
            return await src.consume()
        task = None
        try:
            value = self._lookup(name, kind)
            if kind == ATTR:
                return copy_one(value, "result")
            result = value(*args, **kwargs)
            if inspect.isawaitable(result):
                # What _inline does, spelled out here: this is the hot path of async methods.
                task = _current_task()
                inline = self.inline
                inline[task] = inline.get(task, 0) + 1
                try:
                    result = await result
                finally:
                    n = inline.pop(task, 1) - 1
                    if n:
                        inline[task] = n
                if self.stop_cancelled and task in self.stop_cancelled:
                    self.stop_cancelled.discard(task)  # user code swallowed the cancellation
                    _uncancel(task)
            elif inspect.isgenerator(result) or inspect.isasyncgen(result):
                return await _Source(self, name, result).consume()
        except asyncio.CancelledError:
            if self.stop_cancelled and task in self.stop_cancelled:
                self.stop_cancelled.discard(task)
                _uncancel(task)
                raise self._stopped_error() from None
            raise
        except BaseException as e:  # noqa: BLE001
            raise self._failure(e, name) from None
        return copy_one(result, "result")

    async def _inline(self, aw: Any) -> Any:
        """Await user code of this actor in the caller's task. If the actor stops meanwhile,
        the task is cancelled and the call fails with the stopped error."""
        task = _current_task()
        inline = self.inline
        inline[task] = inline.get(task, 0) + 1
        try:
            value = await aw
        except asyncio.CancelledError:
            if task in self.stop_cancelled:
                self.stop_cancelled.discard(task)
                _uncancel(task)
                raise self._stopped_error() from None
            raise
        finally:
            n = inline.pop(task, 1) - 1
            if n:
                inline[task] = n
        if task in self.stop_cancelled:  # user code swallowed the cancellation
            self.stop_cancelled.discard(task)
            _uncancel(task)
        return value

    def _cancel_inline(self) -> None:
        try:
            current = asyncio.current_task()
        except RuntimeError:
            current = None
        for task in list(self.inline):
            if task is not current and task is not None and not task.done():
                self.stop_cancelled.add(task)
                task.cancel()

    async def open_stream(self, name: str, args: tuple, kwargs: dict) -> _Source:
        """Start a call whose items the caller will pull."""
        if self.queue or self.blocked or self.stopped or _get_running_loop() is not self.loop:
            fut = CallFuture(loop=self.loop)
            self._enqueue((_CALL, name, args, kwargs, fut, _STREAM))
            return await fut
        args, kwargs = copy_args(args, kwargs)
        return self._open_stream(name, args, kwargs, self.kind(name))

    def _open_stream(self, name: str, args: tuple, kwargs: dict, kind: int) -> _Source:
        try:
            value = self._lookup(name, kind)
            if kind == ATTR:
                return _Source(self, name, None, single=copy_one(value, "result"))
            result = value(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001
            raise self._failure(e, name) from None
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            return _Source(self, name, result)
        return _Source(self, name, None, pending=result)

    def _lookup(self, name: str, kind: int) -> Any:
        if kind == MISSING or name.startswith("_"):
            raise AttributeError(f"No method '{name}' on actor {self.name or self.aid}")
        return getattr(self.instance, name)

    def ask_msg(self, msg: Any) -> CallFuture:
        """A low-level ask: the message goes to `receive` (copied unless immutable)."""
        if self.receive is not None and not self.receive_async:
            # A plain `def receive` takes the same direct path as a proxy's `def` method.
            return self.call_sync("receive", (msg,), {})
        loop = self.loop
        fut = CallFuture(loop=loop)
        try:
            msg = copy_one(msg, "message")
        except PulsingError as e:
            fut.set_exception(e)
            return fut
        self._enqueue((_MSG, None, msg, None, fut, _VALUE))
        return fut

    def tell_msg(self, msg: Any) -> Any:
        msg = copy_one(msg, "message")
        return self._enqueue((_MSG, None, msg, None, None, _VALUE))

    # ---- the mailbox ----

    def _enqueue(self, env: tuple) -> Any:
        """Queue an envelope; returns an awaitable that completes once it is admitted."""
        if self.stopped:
            fut = env[4]
            err = self._stopped_error()
            if fut is not None and not fut.done():
                fut.set_exception(err)
                return _ADMITTED
            raise err
        if len(self.queue) < self.capacity and not self.overflow:
            self.queue.append(env)
            admitted = _ADMITTED
        elif env[4] is not None:
            # Full: the message waits for room (held, never dropped); an ask's caller already
            # waits on its result, so it needs no admission future.
            self.overflow.append((env, None))
            admitted = _ADMITTED
        else:
            admitted = self.loop.create_future()  # a tell: awaiting it waits for room
            self.overflow.append((env, admitted))
        if not self.scheduled and not self.blocked:
            self.scheduled = True
            if _get_running_loop() is self.loop:
                self.loop.call_soon(self._drain)
            else:
                self.loop.call_soon_threadsafe(self._drain)
        return admitted

    def _admit(self) -> None:
        while self.overflow and len(self.queue) < self.capacity:
            env, admitted = self.overflow.popleft()
            self.queue.append(env)
            if admitted is not None and not admitted.done():
                admitted.set_result(None)

    def _kick(self) -> None:
        if (self.queue or self.overflow) and not self.scheduled and not self.blocked:
            self.scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Deliver queued messages in order until one needs awaiting (serial receive)."""
        self.scheduled = False
        queue = self.queue
        while queue and not self.blocked and not self.stopped:
            env = queue.popleft()
            if self.overflow:
                self._admit()
            op, name, args, kwargs, fut, mode = env
            if fut is not None and fut.done():
                continue  # the caller went away
            if op == _CALL:
                self._deliver_call(name, args, kwargs, fut, mode)
            else:
                self._deliver_msg(args, fut)
        if self.overflow and not self.blocked:
            self._admit()
            self._kick()

    def _deliver_call(self, name: str, args: tuple, kwargs: dict, fut: Any, mode: int) -> None:
        kind = self.kind(name)
        if mode == _STREAM:
            try:
                src = self._open_stream(name, *copy_args(args, kwargs), kind)
            except BaseException as e:  # noqa: BLE001
                _set_exc(fut, e)
                return
            _set_res(fut, src)
            return
        if kind == SYNC:
            try:
                if not mode & _FRESH:
                    args, kwargs = copy_args(args, kwargs)
                method = self._lookup(name, kind)
            except BaseException as e:  # noqa: BLE001
                _set_exc(fut, e if isinstance(e, PulsingError) else self._classify(e, name))
                return
            try:
                result = method(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001
                self._fail(fut, e, name)
                return
            if type(result) not in _IMMUTABLE and _is_deferred_result(result):
                self._finish_later(result, fut, fut, name)
                return
            try:
                _set_res(fut, copy_one(result, "result", mode & _WIRE))
            except PulsingError as e:
                _set_exc(fut, e)
            return
        # async methods, generators consumed for their final value, attributes: as a task,
        # so the mailbox is free at once.
        self._spawn_task(self._run_value(name, args, kwargs, fut, mode & (_FRESH | _WIRE)), fut)

    async def _run_value(
        self, name: str, args: tuple, kwargs: dict, fut: Any, fresh: int = 0
    ) -> None:
        try:
            if not fresh & _FRESH:
                args, kwargs = copy_args(args, kwargs)
            kind = self.kind(name)
            if kind in (GEN, AGEN):
                result = await self._open_stream(name, args, kwargs, kind).consume()
            else:
                value = self._lookup(name, kind)
                if kind == ATTR:
                    result = value
                else:
                    result = value(*args, **kwargs)
                    if inspect.isawaitable(result):
                        result = await result
            _set_res(fut, copy_one(result, "result", fresh & _WIRE))
        except asyncio.CancelledError:
            self._cancelled(fut)
        except BaseException as e:  # noqa: BLE001
            self._fail(fut, e, name)

    async def _finish_stream(self, gen: Any, fut: Any, name: str) -> None:
        try:
            _set_res(fut, await _Source(self, name, gen).consume())
        except asyncio.CancelledError:
            self._cancelled(fut)
        except BaseException as e:  # noqa: BLE001
            _set_exc(fut, e if getattr(e, "_pulsing_failure", False) else self._failure(e, name))

    async def _finish_awaitable(self, aw: Any, fut: Any, name: str) -> None:
        try:
            result = await aw
            _set_res(fut, copy_one(result, "result"))
        except asyncio.CancelledError:
            self._cancelled(fut)
        except BaseException as e:  # noqa: BLE001
            self._fail(fut, e, name)

    def _deliver_msg(self, msg: Any, fut: Any) -> None:
        if self.receive is None:
            dispatched = self._dispatch_wire_call(msg, fut)
            if not dispatched:
                _set_exc(
                    fut,
                    PulsingRuntimeError(
                        f"actor {self.name or self.aid} has no receive(); call its methods "
                        "through a proxy"
                    ),
                )
            return
        try:
            result = self.receive(msg)
        except BaseException as e:  # noqa: BLE001
            self._fail(fut, e, "receive")
            return
        if inspect.isawaitable(result):
            # receive is serial: the next message waits until this one is done.
            self.blocked += 1
            self._spawn_task(self._finish_serial(result, fut), fut)
            return
        if inspect.isasyncgen(result) or inspect.isgenerator(result):
            # A generator receive answers a stream Message of its items (as the original);
            # a tell runs it for its effects.
            _set_res(fut, self._stream_message(result, fut is not None))
            return
        try:
            _set_res(fut, copy_one(result, "result"))
        except PulsingError as e:
            _set_exc(fut, e)

    def _stream_message(self, gen: Any, answer: bool) -> Message | None:
        """The items of a generator `receive` returned, as a stream Message fed by a task
        (each item copied); an error of the generator ends the stream after the items before
        it. Without `answer` (a tell) the items are dropped."""
        msg, writer = StreamMessage.create("Stream") if answer else (None, None)

        async def items() -> Any:
            try:
                if inspect.isasyncgen(gen):
                    async for item in gen:
                        yield copy_one(item, "stream item")
                else:
                    for item in gen:
                        yield copy_one(item, "stream item")
                        await asyncio.sleep(0)  # a long sync generator lets the loop run
            finally:
                close = getattr(gen, "aclose", None)
                await close() if close is not None else gen.close()

        self._spawn_task(_feed(writer, items(), lambda e: self._failure(e, "receive")), None)
        return msg

    def _dispatch_wire_call(self, msg: Any, fut: Any) -> bool:
        # The original Pulsing's call dict, for programs that built it by hand.
        if isinstance(msg, dict) and isinstance(msg.get("__pulsing__"), dict):
            call = msg["__pulsing__"].get("call")
            data = msg.get("user_data") or {}
            if isinstance(call, str):
                self._deliver_call(
                    call, tuple(data.get("args", ())), dict(data.get("kwargs", {})), fut, _VALUE
                )
                return True
        return False

    async def _finish_serial(self, aw: Any, fut: Any) -> None:
        try:
            result = await aw
            _set_res(fut, copy_one(result, "result"))
        except asyncio.CancelledError:
            self._cancelled(fut)
        except BaseException as e:  # noqa: BLE001
            self._fail(fut, e, "receive")
        finally:
            self.blocked -= 1
            self._kick()

    def _cancelled(self, fut: Any) -> None:
        """The work of a call was cancelled: by its caller, or by a stop (then the caller
        gets the stopped error, not a cancellation it did not ask for)."""
        if fut is None or fut.done():
            return
        if self.stopped:
            fut.set_exception(self._stopped_error())
        else:
            fut.cancel()

    def _spawn_task(self, coro: Any, fut: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if fut is not None:
            # A caller that goes away cancels the work.
            fut.add_done_callback(lambda f, t=task: t.cancel() if f.cancelled() else None)

    # ---- failures and supervision ----

    def _classify(self, e: BaseException, name: str) -> PulsingError:
        return _errors.classify(e, name, self.name)

    def _failure(self, e: BaseException, name: str) -> BaseException:
        """Classify a failure of user code and start supervision; returns what to raise."""
        if isinstance(e, asyncio.CancelledError):
            return e
        if getattr(e, "_pulsing_failure", False):
            return e
        err = self._classify(e, name)
        if err is not e:
            err.__cause__ = e
        try:
            err._pulsing_failure = True
        except AttributeError:
            pass
        if self.policy.policy != "never" and _errors.triggers_restart(err):
            self._restart(err)
        return err

    def _fail(self, fut: Any, e: BaseException, name: str) -> None:
        _set_exc(fut, self._failure(e, name))

    def _restart(self, err: BaseException) -> None:
        if self.stopped or self.blocked >= 1 << 20:
            return
        now = time.monotonic()
        times = self.restart_times
        while times and now - times[0] > _RESTART_WINDOW_S:
            times.popleft()
        pol = self.policy
        if len(times) >= pol.max_restarts:
            logger.warning(
                "actor %s: giving up after %d restarts (%s)", self.name or self.aid, len(times), err
            )
            self.loop.create_task(
                self.system._stop_cell(
                    self, f"stopped after too many restarts ({pol.max_restarts}): {err}"
                )
            )
            return
        times.append(now)
        backoff = min(pol.max_backoff, pol.min_backoff * (2 ** (len(times) - 1)))
        backoff *= random.uniform(0.75, 1.25)
        self.blocked += 1 << 20  # restarting: the mailbox holds its mail
        logger.info("actor %s: restarting in %.3fs after: %s", self.name or self.aid, backoff, err)
        handle = self.loop.call_later(backoff, self._do_restart)
        self.tasks.add(handle)

    def _do_restart(self) -> None:
        self.tasks = {t for t in self.tasks if not isinstance(t, asyncio.TimerHandle)}
        if self.stopped:
            return
        old = self.instance
        try:
            if self.factory is not None:
                instance = self.factory()
                if getattr(instance, "receive", None) is None and not self.wrapped:
                    raise TypeError("the factory did not return an actor")
            else:
                instance = old
        except BaseException as e:  # noqa: BLE001
            self.blocked -= 1 << 20
            self._restart(self._classify(e, "__init__"))
            return
        if instance is not old:
            try:
                on_stop = getattr(old, "on_stop", None)
                if callable(on_stop):
                    r = on_stop()
                    if inspect.isawaitable(r):
                        self.loop.create_task(_log_errors(r, "on_stop"))
            except Exception:
                logger.exception("on_stop of the failed instance raised")
        self._set_instance(instance)
        self.system._inject(self)
        self.blocked -= 1 << 20
        self._start()

    def _start(self) -> None:
        """Run on_start before the first message (sync inline; async blocks the mailbox)."""
        on_start = getattr(self.instance, "on_start", None)
        if callable(on_start):
            try:
                r = on_start(self.aid)
            except Exception:
                logger.exception("on_start of actor %s raised", self.name or self.aid)
                r = None
            if inspect.isawaitable(r):
                self.blocked += 1
                task = self.loop.create_task(self._finish_start(r))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                return
        self._kick()

    async def _finish_start(self, aw: Any) -> None:
        try:
            await aw
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("on_start of actor %s raised", self.name or self.aid)
        finally:
            self.blocked -= 1
            self._kick()

    def _stopped_error(self) -> PulsingRuntimeError:
        return PulsingRuntimeError(f"Actor {self.name or self.aid} {self.stopped or 'stopped'}")

    def fail_pending(self, err: BaseException) -> None:
        for env in self.queue:
            _set_exc(env[4], err)
        self.queue.clear()
        for env, admitted in self.overflow:
            _set_exc(env[4], err)
            if admitted is not None and not admitted.done():
                admitted.set_exception(err)
                admitted.exception()  # a tell nobody awaits must not warn
        self.overflow.clear()

    # ---- messages through the core (C actors, other systems, later the network) ----

    def handle_core(self, msg_type: str, payload: memoryview, reply: Any, segs: tuple = ()) -> None:
        try:
            if msg_type == PICKLE_TYPE:
                obj = _loads(self.system, payload, segs)
            else:
                obj = Message(msg_type, payload)
        except Exception as e:  # noqa: BLE001
            if reply is not None:
                reply.error(_errors.RUNTIME, f"cannot decode message: {e}")
            return
        if reply is None:
            try:
                if isinstance(obj, tuple) and len(obj) == 5 and obj[0] == _CALL_TAG:
                    self._enqueue((_CALL, obj[1], obj[2], obj[3], None, _VALUE | _FRESH))
                else:
                    self._enqueue((_MSG, None, obj, None, None, _VALUE))
            except PulsingError:
                pass
            return
        fut = CallFuture(loop=self.loop)
        if isinstance(obj, tuple) and len(obj) == 5 and obj[0] == _CALL_TAG:
            _, name, args, kwargs, mode = obj
            if mode == _STREAM:
                self._spawn_task(_stream_to_core(self, name, args, kwargs, reply), None)
                return
            if mode == _PROBE and not self.stopped and self.kind(name) == GEN:
                fut.set_result(GEN_STREAM)
                _reply_from_future(fut, reply, self.system)
                return
            wire = _WIRE if reply.remote else 0
            env = (_CALL, name, args, kwargs, fut, _VALUE | _FRESH | wire)
        else:
            env = (_MSG, None, obj, None, fut, _VALUE)
        if self.queue or self.overflow or self.scheduled or self.blocked or self.stopped:
            self._enqueue(env)
        else:
            # An idle cell: deliver now, in this drain of the bridge, rather than one loop turn
            # later; a sync method's reply then goes out in the same pass (threads.md).
            self.queue.append(env)
            try:
                self._drain()
            finally:
                if not fut.done():  # still running (a task), or _drain raised: answer later
                    fut.add_done_callback(lambda f: _reply_from_future(f, reply, self.system))
                    reply.on_cancel(fut.cancel)
            if fut.done():
                _reply_from_future(fut, reply, self.system)
            return
        fut.add_done_callback(lambda f: _reply_from_future(f, reply, self.system))
        # A caller that gives up (cancel, deadline, a reset HTTP/2 stream) cancels the work.
        reply.on_cancel(fut.cancel)


class _Deferred:
    """Stands in for a future and resolves it on the next loop turn (all the futures deferred
    in one turn are resolved by one callback)."""

    __slots__ = ("fut", "system")

    def __init__(self, system: ActorSystem, fut: asyncio.Future) -> None:
        self.system = system
        self.fut = fut

    def done(self) -> bool:
        return self.fut.done()

    def set_result(self, value: Any) -> None:
        self.system._defer(self.fut, value, None)

    def set_exception(self, exc: BaseException) -> None:
        self.system._defer(self.fut, None, exc)


class _Admitted:
    """The awaitable a tell returns when its message is in the mailbox already."""

    __slots__ = ()

    def __await__(self):
        return None
        yield  # pragma: no cover


_ADMITTED = _Admitted()


def _set_res(fut: Any, value: Any) -> None:
    if fut is not None and not fut.done():
        fut.set_result(value)


def _set_exc(fut: Any, exc: BaseException) -> None:
    if fut is not None and not fut.done():
        fut.set_exception(exc)


_DEFERRED_TYPES = (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)


def _is_deferred_result(result: Any) -> bool:
    """True when a plain `def` returned something to await or iterate, not a value."""
    return isinstance(result, _DEFERRED_TYPES) or inspect.isawaitable(result)


def _uncancel(task: Any) -> None:
    uncancel = getattr(task, "uncancel", None)  # 3.11+
    if uncancel is not None:
        uncancel()


async def _log_errors(aw: Any, what: str) -> None:
    try:
        await aw
    except Exception:
        logger.exception("%s raised", what)


# Buffers at least this large (numpy arrays, bytearrays, PickleBuffer-aware objects) leave the
# pickle stream and travel as out-of-band segments of the message, written to the socket from
# their own memory; smaller ones stay in band (cheaper than the bookkeeping).
_OOB_MIN = 64 * 1024


class _WireResult:
    """A result already encoded for the reply to another node (see copy_one)."""

    __slots__ = ("enc",)

    def __init__(self, enc: tuple[str, Any]) -> None:
        self.enc = enc


def _encode(value: Any, what: str = "value") -> tuple[str, Any]:
    """(msg_type, payload) for a value sent through the core: a pickle (protocol 5) whose large
    buffers are out of band, payload = [pickle, *buffers], or a Message's own type and bytes."""
    if type(value) is _RawPickled:
        value = value.value
    elif isinstance(value, Message) and not value.is_stream:
        return value.msg_type, value.payload
    bufs: list = []

    def out_of_band(pb: pickle.PickleBuffer) -> bool:
        with memoryview(pb) as m:
            if m.nbytes < _OOB_MIN or not m.contiguous:
                return True  # in band
        bufs.append(pb)
        return False

    try:
        head = pickle.dumps(value, protocol=5, buffer_callback=out_of_band)
    except Exception as e:
        raise _errors.serialization_error(value, e, what) from e
    if bufs:
        return PICKLE_TYPE, [head, *bufs]
    return PICKLE_TYPE, head


# The system whose message is being unpickled: an ActorRef in it binds to that system (several
# nodes may share a process). pickle.loads is synchronous on the home loop, so a plain slot will do.
_decoding: list = [None]


def _loads(system: Any, payload: Any, segs: tuple) -> Any:
    prev = _decoding[0]
    _decoding[0] = system
    try:
        return pickle.loads(payload, buffers=segs)
    finally:
        _decoding[0] = prev


def _decode(msg_type: str, payload: bytes, segs: tuple = (), system: Any = None) -> Any:
    if msg_type == PICKLE_TYPE:
        return _loads(system, payload, segs)
    if segs:
        payload = b"".join([payload, *segs])
    return Message(msg_type, payload)


def _send_error(target: Any, err: PulsingError) -> None:
    """Answer a core caller (a Reply or a StreamWriter) with the structured fields of err."""
    kind, message, code, details, recoverable, duration_ms, type_name = _errors.to_fields(err)
    target.error(
        kind,
        message,
        code=code,
        details=details,
        recoverable=recoverable,
        duration_ms=duration_ms,
        type_name=type_name,
    )


def _reply_from_future(fut: asyncio.Future, reply: Any, system: Any = None) -> None:
    try:
        if fut.cancelled():
            reply.abandon()
            return
        exc = fut.exception()
        if exc is None:
            try:
                res = fut.result()
                if type(res) is Message and res.is_stream and system is not None:
                    res = system._export_stream(res)
                reply.send(*(res.enc if type(res) is _WireResult else _encode(res)))
                if system is not None and system._pump is None and system._pumping:
                    system._pump_take()  # replied by this loop: it may read the next requests
                return
            except PulsingError as e:
                exc = e
        err = exc if isinstance(exc, PulsingError) else _errors.classify(exc, "ask", None)
        _send_error(reply, err)
    except _core.CoreError:
        pass  # the system closed or the caller went away


async def _stream_to_core(cell: _Cell, name: str, args: tuple, kwargs: dict, reply: Any) -> None:
    writer = None
    src = None
    try:
        src = await cell.open_stream(name, args, kwargs)
        writer = reply.stream()
        async for item in src:
            mt, payload = _encode(item)
            while not writer.push(mt, payload):
                room = cell.loop.create_future()
                writer.on_writable(lambda r=room: r.done() or r.set_result(None))
                await room
        writer.end()
    except _core.CoreError:
        return  # the consumer went away (finally closes the producer)
    except BaseException as e:
        err = e if isinstance(e, PulsingError) else _errors.classify(e, name, cell.name)
        try:
            _send_error(reply if writer is None else writer, err)
        except (_core.CoreError, RuntimeError):
            pass
        if isinstance(e, asyncio.CancelledError):
            raise
    finally:
        if src is not None and not src.done:
            src.close()  # a cancelled consumer closes the generator now, not at GC


# ---------------------------------------------------------------------------------------------
# Stream sources: what a caller pulls items from
# ---------------------------------------------------------------------------------------------


class _Source:
    """The producing side of a stream call, pulled by the caller: a sync or async generator
    (each item copied), or a single value / awaitable that arrives as one item."""

    __slots__ = ("cell", "done", "final", "gen", "is_async", "name", "pending", "single")

    _NOTHING = object()

    def __init__(
        self, cell: _Cell, name: str, gen: Any, single: Any = _NOTHING, pending: Any = _NOTHING
    ) -> None:
        self.cell = cell
        self.name = name
        self.gen = gen
        self.is_async = inspect.isasyncgen(gen)
        self.single = single
        self.pending = pending
        self.done = False
        self.final = None

    def __aiter__(self) -> _Source:
        return self

    async def __anext__(self) -> Any:
        if self.done:
            raise StopAsyncIteration
        cell = self.cell
        if cell.stopped:
            self.close()
            raise cell._stopped_error()
        gen = self.gen
        if gen is None:
            self.done = True
            if self.pending is not _Source._NOTHING:
                value = self.pending
                self.pending = _Source._NOTHING
                try:
                    if inspect.isawaitable(value):
                        value = await cell._inline(value)
                except asyncio.CancelledError:
                    raise
                except BaseException as e:  # noqa: BLE001
                    raise self.cell._failure(e, self.name) from None
                self.final = value = copy_one(value, "result")
                return value
            if self.single is not _Source._NOTHING:
                self.final = self.single
                return self.single
            raise StopAsyncIteration
        try:
            if self.is_async:
                item = await cell._inline(gen.__anext__())
            else:
                item = next(gen)
        except StopIteration as stop:
            self.done = True
            self.final = copy_one(stop.value, "result")
            raise StopAsyncIteration from None
        except StopAsyncIteration:
            self.done = True
            raise
        except asyncio.CancelledError:
            self.done = True
            raise
        except BaseException as e:  # noqa: BLE001
            self.done = True
            raise self.cell._failure(e, self.name) from None
        return copy_one(item, "stream item")

    async def consume(self) -> Any:
        """Run to the end; the final value (a generator's return value, or the single value)."""
        last = None
        async for last in self:
            pass
        if self.gen is None:
            return last
        return self.final

    def close(self) -> None:
        """Stop the producer (the caller went away or broke out of its loop)."""
        if self.done:
            return
        self.done = True
        gen = self.gen
        if gen is None:
            p = self.pending
            if inspect.iscoroutine(p):
                p.close()
            return
        try:
            if self.is_async:
                loop = self.cell.loop
                if not loop.is_closed():
                    loop.create_task(_aclose(gen))
            else:
                gen.close()
        except Exception:
            logger.debug("closing stream %s failed", self.name, exc_info=True)


async def _aclose(gen: Any) -> None:
    try:
        await gen.aclose()
    except Exception:
        logger.debug("aclose of a stream failed", exc_info=True)


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


class ActorRef:
    """A reference to an actor, local or not: `ask`, `tell`, `as_any`, `as_type`."""

    __slots__ = ("_cell", "_id", "_system")

    def __init__(self, system: ActorSystem, actor_id: int, cell: _Cell | None) -> None:
        self._system = system
        self._id = actor_id
        self._cell = cell

    @property
    def actor_id(self) -> ActorId:
        return ActorId(self._id)

    @property
    def system(self) -> ActorSystem:
        return self._system

    def is_local(self) -> bool:
        """True when the actor lives in this process's system (not on another node)."""
        return self._cell is not None or (self._id >> 64) == (self._system._node_id.id >> 64)

    def ask(self, msg: Any) -> CallFuture:
        """Send `msg` and await the reply (cancellable: a cancelled ask cancels the work)."""
        cell = self._cell
        if cell is not None:
            if cell.stopped:
                return _done_future(cell.loop, cell._stopped_error())
            return cell.ask_msg(msg)
        return self._system._core_ask(self._id, msg)

    def tell(self, msg: Any) -> Any:
        """Send `msg` without waiting for a reply; awaiting it waits until it is queued."""
        cell = self._cell
        if cell is not None:
            if cell.stopped:
                return _done_future(cell.loop, cell._stopped_error())
            try:
                return cell.tell_msg(msg)
            except PulsingError as e:
                return _done_future(cell.loop, e)
        return self._system._core_tell(self._id, msg)

    def as_any(self):
        """An untyped proxy that forwards any method call."""
        from pulsing.core.remote import ActorProxy

        return ActorProxy(self)

    def as_type(self, cls: Any):
        """A typed proxy for the methods of `cls` (a class or an @remote class)."""
        from pulsing.core.remote import proxy_for

        return proxy_for(self, cls)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        name = self._cell.name if self._cell is not None else None
        where = "" if self.is_local() else ", remote"
        return f"ActorRef({ActorId(self._id)}{', ' + name if name else ''}{where})"

    def __reduce__(self):
        return (_unpickle_ref, (self._id, self._system._node_id.id))


def _unpickle_ref(actor_id: int, home: int | None = None) -> ActorRef:
    """Rebuild a ref in the system that decodes the message carrying it; for a local copy
    (copy semantics), in the system the original belonged to."""
    from pulsing.core import _global_system, _systems_for_loop

    system = _decoding[0]
    if system is not None and not system._closed:
        return ActorRef(system, actor_id, system._cells.get(actor_id))
    live = _systems_for_loop()
    for system in live:
        if system._node_id.id == home and not system._closed:
            return ActorRef(system, actor_id, system._cells.get(actor_id))
    for system in live:
        cell = system._cells.get(actor_id)
        if cell is not None:
            return ActorRef(system, actor_id, cell)
    system = _global_system()
    if system is None:
        raise PulsingRuntimeError("cannot rebuild an ActorRef: no actor system")
    return ActorRef(system, actor_id, None)


# ---------------------------------------------------------------------------------------------
# The system
# ---------------------------------------------------------------------------------------------


class ActorSystem:
    """An actor system: the actors of one node and the way to reach the others."""

    def __init__(
        self,
        *,
        addr: str | None = None,
        mailbox_capacity: int = 256,
        seeds: list[str] | None = None,
        head_addr: str | None = None,
        is_head_node: bool = False,
        timing: dict[str, int] | None = None,
        remote_deadline_ms: int = 0,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        try:
            self._core = _core.CoreSystem(
                mailbox_capacity=mailbox_capacity,
                listen_addr=addr,
                seeds=list(seeds or ()),
                head_addr=head_addr,
                is_head_node=is_head_node,
                timing=timing,
                remote_deadline_ms=remote_deadline_ms,
            )
        except _core.CoreError as e:
            if e.code == _core.EADDR:
                raise PulsingRuntimeError(f"{e.args[0]} (is the port in use?)", cause=e) from None
            if addr is not None and e.code == _core.EINVAL:
                raise PulsingRuntimeError(
                    f"cannot start a node on {addr!r}: {e.args[0]} (this build may lack the "
                    "network transport)",
                    cause=e,
                ) from None
            raise _errors.from_core_error(e, "actor system") from None
        loop.add_reader(self._core.fileno(), self._core.drain)
        self._pump: tuple | None = None  # (fd, token): a connection this loop reads itself
        self._pumping = os.environ.get("PULSING_PUMP", "1") != "0"
        self._complete_ask = self._complete  # one bound method for every ask
        self._rr: dict = {}  # round-robin counters: resolve per name, placement
        self._mailbox_capacity = mailbox_capacity
        self._cells: dict[int, _Cell] = {}
        self._names: dict[str, _Cell] = {}
        self._budget = _BUDGET
        self._deferred: list = []
        self._releasing: dict[int, str | None] = {}  # stopped, not yet released by the core
        self._closed = False
        self._addr = self._core.addr
        self._node_id = NodeId(self._core.node_id)
        self._queue_api = None
        self._topic_api = None
        # Stream messages answered to callers on other nodes, until the caller pulls them
        # (token -> (reader, expiry handle)); the actor that serves the pulls (system/gateway).
        self._exports: dict[int, tuple] = {}
        self._stream_service: int | None = None
        _live_systems.add(self)

    # ---- identity ----

    @property
    def node_id(self) -> NodeId:
        return self._node_id

    @property
    def addr(self) -> str | None:
        """ "host:port" this node listens on, or None for a single process with no listener."""
        return self._addr

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def queue(self):
        """Distributed queue API: `await system.queue.write(topic)` / `.read(topic)`."""
        if self._queue_api is None:
            from pulsing.streaming import QueueAPI

            self._queue_api = QueueAPI(self)
        return self._queue_api

    @property
    def topic(self):
        """Pub/sub API: `await system.topic.write(topic)` / `.read(topic)`."""
        if self._topic_api is None:
            from pulsing.streaming import TopicAPI

            self._topic_api = TopicAPI(self)
        return self._topic_api

    def _refill(self) -> None:
        self._budget = _BUDGET

    def _defer(self, fut: asyncio.Future, value: Any, exc: BaseException | None) -> None:
        if not self._deferred:
            self._loop.call_soon(self._flush_deferred)
        self._deferred.append((fut, value, exc))

    def _flush_deferred(self) -> None:
        batch, self._deferred = self._deferred, []
        for fut, value, exc in batch:
            if not fut.done():
                if exc is None:
                    fut.set_result(value)
                else:
                    fut.set_exception(exc)

    def _check_open(self) -> None:
        if self._closed:
            raise PulsingRuntimeError("Actor system is shut down")

    async def http_get(
        self, addr: str, path: str, *, timeout: float | None = 5.0
    ) -> tuple[int, bytes]:
        """GET a node's REST endpoint (`/health`, `/cluster/members`, `/actors`, `/metrics`) over
        the runtime's own HTTP/2 client; works without a listener. Returns (HTTP status, body).
        Raises `PulsingRuntimeError` when the node cannot be reached or does not answer within
        `timeout` seconds (None: no limit)."""
        self._check_open()
        fut = self._loop.create_future()
        timeout_ms = max(1, int(timeout * 1000)) if timeout else 0
        try:
            self._core.http_get(addr, path, fut, timeout_ms)
        except ValueError as e:
            raise PulsingRuntimeError(f"GET http://{addr}{path}: {e}", cause=e) from None
        try:
            status, body = await fut
        except _core.CoreError as e:
            raise PulsingRuntimeError(f"GET http://{addr}{path}: {e.args[0]}", cause=e) from None
        return int(status), body

    def _core_system(self) -> Any:
        """The underlying `_core.CoreSystem` (benchmarks and tests)."""
        return self._core

    # ---- spawning ----

    async def spawn(
        self,
        actor: Any,
        *,
        name: str | None = None,
        public: bool | None = None,
        restart_policy: str = "never",
        max_restarts: int = 3,
        min_backoff: float = 0.1,
        max_backoff: float = 30.0,
    ) -> ActorRef:
        """Spawn `actor` (an object with `receive`, or with a restart policy a factory that
        builds one) and return its ActorRef. The object itself is used, not a copy."""
        policy = _Policy(restart_policy, max_restarts, min_backoff, max_backoff)
        if policy.policy != "never" and name is None:
            raise PulsingRuntimeError(
                "Anonymous actors do not support supervision/restart. Provide a name to "
                "enable supervision, or set restart_policy='never'."
            )
        factory = None
        instance = actor
        if isinstance(actor, type) or (
            callable(actor) and not callable(getattr(actor, "receive", None))
        ):
            factory = actor  # a class or a factory function: restarts call it again
            instance = actor()
        if not callable(getattr(instance, "receive", None)):
            raise TypeError(
                f"cannot spawn {type(instance).__name__}: an actor needs a receive(msg) method "
                "(or use @pulsing.remote on the class)"
            )
        cell = self._spawn_cell(instance, factory, False, name, policy)
        await self._await_start(cell)
        return cell.ref

    def _spawn_cell(
        self,
        instance: Any,
        factory: Any,
        wrapped: bool,
        name: str | None,
        policy: _Policy = _NEVER,
        allow_system: bool = False,
    ) -> _Cell:
        """Register a Python actor synchronously (the core checks and takes the name)."""
        self._check_open()
        cell = _Cell(self, instance, factory, wrapped, policy, self._mailbox_capacity)
        actor_id = None
        for _ in range(2):
            try:
                actor_id = self._core.register(
                    name,
                    cell.handle_core,
                    allow_system=allow_system,
                    on_stop=self._released,
                    segments=True,
                )
                break
            except ValueError as e:
                raise ValueError(f"Invalid actor name {name!r}: {e}") from None
            except _core.CoreError as e:
                if e.code != _core.EEXIST:
                    raise _errors.from_core_error(e, "spawn") from None
                normalized = _core.normalize_name(name, True)
                if not self._wait_name_released(normalized):
                    raise PulsingRuntimeError(f"Actor name '{normalized}' already exists") from None
        if actor_id is None:
            raise PulsingRuntimeError(
                f"Actor name '{_core.normalize_name(name, True)}' already exists"
            )
        cell.id = actor_id
        cell.aid = ActorId(actor_id)
        cell.name = _core.normalize_name(name, True) if name is not None else None
        cell.ref = ActorRef(self, actor_id, cell)
        self._cells[actor_id] = cell
        if cell.name is not None:
            self._names[cell.name] = cell
        self._inject(cell)
        cell._start()
        return cell

    def _released(self, actor_id: int) -> None:
        """The core is done with a stopped Python actor (its name is free)."""
        self._releasing.pop(actor_id, None)

    def _is_releasing(self, actor_id: int | None) -> bool:
        return actor_id is not None and actor_id in self._releasing

    def _wait_name_released(self, normalized: str) -> bool:
        """A stopped actor's name is released by the core thread a moment after `stop`
        returns; wait for that (briefly, without the loop) so the name can be reused at
        once. False when the name belongs to a live actor."""
        deadline = time.monotonic() + _NAME_RELEASE_WAIT_S
        while True:
            core_id = self._core.lookup(normalized)
            if core_id is None:
                return True
            if core_id not in self._releasing:
                return False
            if time.monotonic() >= deadline:
                return False
            time.sleep(0)

    async def _await_start(self, cell: _Cell) -> None:
        for t in list(cell.tasks):
            if isinstance(t, asyncio.Task):
                try:
                    await asyncio.shield(t)
                except Exception:
                    logger.debug("on_start task failed", exc_info=True)

    def _inject(self, cell: _Cell) -> None:
        if cell.wrapped:
            from pulsing.core.remote import inject_delayed

            inject_delayed(cell.instance, cell.ref)

    # ---- finding actors ----

    def _cell_by_name(self, name: str) -> _Cell | None:
        return self._names.get(_core.normalize_name(name, True))

    def refer_sync(self, actor_id: Any) -> ActorRef:
        aid = ActorId(actor_id).id
        return ActorRef(self, aid, self._cells.get(aid))

    async def refer(self, actor_id: ActorId | int | str) -> ActorRef:
        """A reference to the actor with this id (its calls fail at once if it is gone)."""
        self._check_open()
        return self.refer_sync(actor_id)

    async def actor_ref(self, actor_id: ActorId | int | str) -> ActorRef:
        return await self.refer(actor_id)

    async def resolve(
        self, name: str, *, node_id: Any = None, timeout: float | None = None
    ) -> ActorRef:
        """The actor registered under `name` anywhere in the cluster (round-robin among its
        live instances, or the one on `node_id`), waiting up to `timeout` seconds for it to
        appear. Raises PulsingRuntimeError once the timeout has passed."""
        self._check_open()
        normalized = _core.normalize_name(name, True)
        want_node = NodeId(node_id).id if node_id is not None else None
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            ref = self._pick_instance(normalized, want_node)
            if ref is not None:
                return ref
            if deadline is None or time.monotonic() >= deadline:
                where = f" on node {NodeId(want_node)}" if want_node is not None else ""
                raise PulsingRuntimeError(f"Actor '{normalized}' not found{where}")
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            self._check_open()

    def _pick_instance(self, normalized: str, want_node: int | None) -> ActorRef | None:
        me = self._node_id.id
        if want_node is None or want_node == me:
            cell = self._names.get(normalized)
            if cell is not None and not cell.stopped and want_node == me:
                return cell.ref
        live = []
        for node, actor_id in self._core.resolve_name(normalized):
            if want_node is not None and node != want_node:
                continue
            if node == me:
                cell = self._cells.get(actor_id)
                if cell is not None:
                    if cell.stopped:
                        continue
                elif actor_id in self._releasing:
                    continue
            live.append(actor_id)
        if not live:
            return None
        if len(live) == 1:
            actor_id = live[0]
        else:
            n = self._rr.get(normalized, 0)
            self._rr[normalized] = n + 1
            actor_id = live[n % len(live)]
        return ActorRef(self, actor_id, self._cells.get(actor_id))

    resolve_named = resolve

    async def stop(self, target: Any) -> None:
        """Stop an actor by name (short names allowed), ActorRef, proxy or id: on_stop runs,
        queued calls fail, the name can be used again."""
        self._check_open()
        cell = self._find_cell(target)
        if cell is None:
            if isinstance(target, str):
                core_id = self._core.lookup(target)
                if core_id is not None and core_id not in self._releasing:
                    self._core.stop(core_id)
                    return
            raise PulsingRuntimeError(f"Actor {target!r} not found")
        await self._stop_cell(cell, "stopped")

    def _find_cell(self, target: Any) -> _Cell | None:
        if isinstance(target, str):
            try:
                return self._cell_by_name(target)
            except ValueError:
                try:
                    return self._cells.get(ActorId(target).id)
                except ValueError:
                    return None
        ref = getattr(target, "ref", target)
        if isinstance(ref, ActorRef):
            return self._cells.get(ref._id)
        try:
            return self._cells.get(ActorId(target).id)
        except (TypeError, ValueError):
            return None

    def _stop_cell_now(self, cell: _Cell, reason: str) -> Any:
        """Stop an actor at once; returns the awaitable of an async on_stop (or None)."""
        if cell.stopped:
            return None
        cell.stopped = reason
        self._cells.pop(cell.id, None)
        if cell.name is not None and self._names.get(cell.name) is cell:
            del self._names[cell.name]
        self._releasing[cell.id] = cell.name
        try:
            self._core.unregister(cell.id)
        except _core.CoreError:
            self._releasing.pop(cell.id, None)
        cell.fail_pending(cell._stopped_error())
        for t in list(cell.tasks):
            t.cancel()
        cell._cancel_inline()
        on_stop = getattr(cell.instance, "on_stop", None)
        if callable(on_stop):
            try:
                r = on_stop()
            except Exception:
                logger.exception("on_stop of actor %s raised", cell.name or cell.aid)
                return None
            if inspect.isawaitable(r):
                return _log_errors(r, f"on_stop of actor {cell.name or cell.aid}")
        return None

    async def _stop_cell(self, cell: _Cell, reason: str) -> None:
        r = self._stop_cell_now(cell, reason)
        if r is not None:
            await r

    # ---- introspection ----

    async def members(self) -> list[dict[str, Any]]:
        """The nodes of the cluster as this node sees them, itself first: dicts with node_id
        (str of the int), addr ("host:port", None without a listener), status ("Alive",
        "Suspect" or "Dead"; a node that left gracefully is "Dead" with left=True) and
        incarnation."""
        self._check_open()
        out = []
        for node, addr, status, inc in self._core.members():
            out.append(
                {
                    "node_id": str(node),
                    "addr": addr or None,
                    "status": "Dead" if status == "Left" else status,
                    "left": status == "Left",
                    "incarnation": inc,
                }
            )
        return out

    def _alive_peers(self) -> list[int]:
        me = self._node_id.id
        return [n for n, _a, st, _i in self._core.members() if n != me and st == "Alive"]

    def local_actor_names(self) -> list[str]:
        """The names of this node's named actors (with their `actors/` or `system/` prefix)."""
        self._check_open()
        return sorted(self._names)

    async def get_named_instances(self, name: str) -> list[dict[str, Any]]:
        """The instances of `name` across the cluster, one dict per node: node_id, addr,
        status (of the node), actor_id, and class for an instance on this node."""
        self._check_open()
        full = _core.normalize_name(name, True)
        nodes = {n: (addr or None, "Dead" if st == "Left" else st) for n, addr, st, _i in
                 self._core.members()}
        out = []
        for nm, node, actor_id in self._core.named_actors():
            if nm != full:
                continue
            addr, status = nodes.get(node, (None, "Dead"))
            row = {
                "node_id": str(node),
                "addr": addr,
                "status": status,
                "actor_id": str(ActorId(actor_id)),
            }
            cell = self._cells.get(actor_id)
            if cell is not None:
                row["class"] = type(cell.instance).__name__
            out.append(row)
        return out

    async def all_named_actors(self) -> list[dict[str, Any]]:
        """Every named actor of the cluster (one entry per instance): name, node_id, actor_id
        and instances (how many nodes host that name). `system/` services are left out."""
        self._check_open()
        me = self._node_id.id
        rows = []
        for name, node, actor_id in self._core.named_actors():
            if name.startswith("system/"):
                continue
            if node == me and actor_id not in self._cells and actor_id in self._releasing:
                continue
            rows.append((name, node, actor_id))
        counts: dict[str, int] = {}
        for name, _n, _a in rows:
            counts[name] = counts.get(name, 0) + 1
        out = [
            {
                "name": name,
                "node_id": str(node),
                "actor_id": str(ActorId(actor_id)),
                "instances": counts[name],
            }
            for name, node, actor_id in rows
        ]
        out.sort(key=lambda d: (d["name"], d["node_id"]))
        return out

    async def list_actors(self) -> list[dict[str, Any]]:
        """The actors of this node (named and anonymous)."""
        return [
            {"actor_id": str(c.aid), "name": c.name, "class": type(c.instance).__name__}
            for c in self._cells.values()
        ]

    # ---- stream messages answered to other nodes ----

    def _export_stream(self, msg: Message) -> Any:
        """A stream Message sent to another node (an answer, or a message asked or told): its
        reader is kept here under a token, and the other node gets a `_StreamExport` naming the
        token and the actor that serves it (`system/gateway`'s `pull`); unpickled there, it
        becomes a stream Message again, fed by a stream call of `pull`. Unclaimed, it is
        dropped after `_EXPORT_TTL_S` (its writer then fails)."""
        if self._stream_service is None:
            raise PulsingRuntimeError(
                "a stream Message can go to another node only from a node with an address "
                "(its items are pulled from there)"
            )
        reader = msg.stream_reader()
        token = random.getrandbits(63)
        while token in self._exports:
            token = random.getrandbits(63)
        handle = self._loop.call_later(_EXPORT_TTL_S, self._drop_export, token)
        self._exports[token] = (reader, handle)
        return _StreamExport(msg.msg_type, token, self._stream_service)

    def _drop_export(self, token: int) -> None:
        entry = self._exports.pop(token, None)
        if entry is not None:
            entry[0].cancel()

    def _claim_export(self, token: int) -> Any:
        entry = self._exports.pop(token, None)
        if entry is None:
            raise PulsingRuntimeError("stream message not found (expired, or already read)")
        entry[1].cancel()
        return entry[0]

    # ---- calls through the core ----

    def _core_ask(
        self, actor_id: int, msg: Any, deadline_ms: int = 0, named: tuple | None = None
    ) -> CallFuture:
        """Ask through the core: an actor of another node (or a C actor, or another system),
        or with `named=(node_id, name)` the instance of a name on a node."""
        fut = CallFuture(loop=self._loop)
        if self._closed:
            fut.set_exception(PulsingRuntimeError("Actor system is shut down"))
            return fut
        try:
            if type(msg) is Message and msg.is_stream:
                msg = self._export_stream(msg)  # its items are pulled from this node
            mt, payload = _encode(msg)
        except PulsingError as e:
            fut.set_exception(e)
            return fut
        # The core resolves `fut` itself through _complete_ask when the reply drains, and a
        # cancelled `fut` cancels the core call (the extension hooks its done callback).
        try:
            if named is not None:
                self._core.ask_named(
                    named[0], named[1], mt, payload, fut, deadline_ms, True, self._complete_ask
                )
            else:
                self._core.ask(actor_id, mt, payload, fut, deadline_ms, True, self._complete_ask)
        except _core.CoreError as e:
            fut.set_exception(_errors.from_core_error(e, "ask"))
            return fut
        if self._pump is None and self._pumping:
            self._pump_take()  # a lone ask this loop wrote itself: it may read the reply too
        return fut

    # ---- pumping: this loop reads the replies of its lone asks ----

    def _pump_take(self) -> None:
        """After a call or reply this loop wrote itself: watch the connection it went out on, if
        the core offers it (docs/design/threads.md, "Pumping"), so that this loop reads what
        comes back instead of the core thread, which would then have to wake it."""
        p = self._core.pump_fd()
        if p is not None:
            self._pump_start(p)

    def _pump_start(self, p: tuple) -> None:
        if _get_running_loop() is not self._loop:
            # made from another thread (a loop's reader is for the loop's own thread): no pump
            self._core.pump_stop(p[1])
            os.close(p[0])
            return
        try:
            self._loop.add_reader(p[0], self._pump_ready)
        except Exception:  # noqa: BLE001 - no pumping then; the core thread reads
            logger.debug("cannot watch a pumped connection", exc_info=True)
            self._core.pump_stop(p[1])
            os.close(p[0])
            return
        self._pump = p

    def _pump_ready(self) -> None:
        p = self._pump
        if p is None:
            return
        r = self._core.pump(p[1])
        if r > 0:
            self._core.drain()  # the completions it queued, now (no wake-up through the fd)
        elif r < 0:
            # EAGAIN: the core thread runs (it reads the connection again; asking at once
            # would keep it from running); ECLOSED: over. Either way: stop watching.
            self._pump_end()

    def _pump_end(self) -> None:
        p, self._pump = self._pump, None
        if p is None:
            return
        try:
            self._loop.remove_reader(p[0])
        except Exception:  # noqa: BLE001
            logger.debug("remove_reader of a pumped connection failed", exc_info=True)
        self._core.pump_stop(p[1])  # a no-op once the core is closed
        os.close(p[0])

    def _complete(self, fut: asyncio.Future, ok: bool, value: Any) -> None:
        """Resolve an ask's future from the core's completion: (type, bytes, segments) or a
        CoreError. Called by the bridge's drain only while `fut` is not done."""
        if not ok:
            fut.set_exception(_errors.from_core_error(value, "ask"))
            return
        try:
            result = _decode(*value, system=self)
        except Exception as exc:  # noqa: BLE001
            fut.set_exception(PulsingRuntimeError(f"cannot decode reply: {exc}", exc))
            return
        if result is GEN_STREAM:
            # A _PROBE call of a plain generator method: the caller's future gets the stream
            # (the untyped proxy set `_on_gen_stream`; see _AnyCall).
            try:
                result = fut._on_gen_stream()
            except Exception as exc:  # noqa: BLE001
                fut.set_exception(exc)
                return
        fut.set_result(result)

    def _core_tell(self, actor_id: int, msg: Any) -> Any:
        fut = CallFuture(loop=self._loop)
        try:
            self._check_open()
            if type(msg) is Message and msg.is_stream:
                msg = self._export_stream(msg)
            self._core.tell(actor_id, *_encode(msg))
            fut.set_result(None)
        except _core.CoreError as e:
            fut.set_exception(_errors.from_core_error(e, "tell"))
        except PulsingError as e:
            fut.set_exception(e)
        return fut

    def _core_call(
        self, actor_id: int, name: str, args: tuple, kwargs: dict, mode: int = _VALUE
    ) -> CallFuture:
        return self._core_ask(actor_id, _RawPickled((_CALL_TAG, name, args, kwargs, mode)))

    def _core_stream(self, actor_id: int, name: str, args: tuple, kwargs: dict) -> _CoreStream:
        """A streamed method call through the core: items as they arrive."""
        self._check_open()
        return _CoreStream(self, actor_id, name, args, kwargs)

    # ---- shutdown ----

    async def shutdown(self) -> None:
        """Stop every actor (on_stop runs), fail calls in flight, release the core."""
        if self._closed:
            return
        for cell in list(self._cells.values()):
            cell.stopped = None
            try:
                await self._stop_cell(cell, "stopped: the actor system shut down")
            except Exception:
                logger.exception("stopping actor %s failed", cell.name or cell.aid)
        self._closed = True
        self._pump_end()
        try:
            self._loop.remove_reader(self._core.fileno())
        except Exception:
            logger.debug("remove_reader failed", exc_info=True)
        self._core.close()
        _live_systems.discard(self)

    def _abandon(self) -> None:
        """Release a system whose loop is gone (it was never shut down)."""
        if self._closed:
            return
        self._closed = True
        for cell in list(self._cells.values()):
            cell.stopped = "stopped: the actor system was abandoned"
            cell.queue.clear()
            cell.overflow.clear()
        self._cells.clear()
        self._names.clear()
        p, self._pump = self._pump, None
        if p is not None:
            os.close(p[0])  # the loop is gone: nothing to unregister from
        try:
            self._core.close()
        except Exception:
            logger.debug("closing an abandoned system failed", exc_info=True)
        _live_systems.discard(self)

    def __repr__(self) -> str:
        return f"ActorSystem(node_id={self._node_id}, addr={self._addr})"


class _CoreStream:
    """The consuming end of a stream call through the core (`async for` over a method of an
    actor of another node): items are queued as the core delivers them and decoded when
    taken; an error arrives after the items before it; `close()` (early break, cancellation,
    garbage collection) cancels the call, and with it the remote generator.

    Backpressure: the extension counts the items the core handed over and the consumer has not
    taken (`StreamCall.taken()`); at 64 it pauses the call (the core stops returning HTTP/2
    window, so the producer is held), at 16 it resumes. Items already on their way when it
    paused still arrive (at most one stream window of bytes)."""

    __slots__ = ("__weakref__", "_call", "_end", "_items", "_name", "_system", "_waiter", "done")

    _EOF = object()

    def __init__(
        self, system: ActorSystem, actor_id: int, name: str, args: tuple, kwargs: dict
    ) -> None:
        self._system = system
        self._name = name
        self._items: deque = deque()
        self._end: Any = None
        self._waiter: asyncio.Future | None = None
        self.done = False
        mt, payload = _encode(_RawPickled((_CALL_TAG, name, args, kwargs, _STREAM)))
        try:
            self._call = system._core.ask_stream(
                actor_id, mt, payload, self._on_item, 0, True, flow=True
            )
        except _core.CoreError as e:
            self._call = None
            self._end = e

    def _on_item(self, msg_type: Any, payload: Any, err: Any, segs: tuple = ()) -> None:
        if msg_type is None:
            self._end = err if err is not None else _CoreStream._EOF
        else:
            self._items.append((msg_type, payload, segs))
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def __aiter__(self) -> _CoreStream:
        return self

    async def __anext__(self) -> Any:
        while not self._items and self._end is None:
            if self._system._closed:
                self.close()
                raise PulsingRuntimeError("Actor system is shut down")
            self._waiter = self._system._loop.create_future()
            try:
                await self._waiter
            except asyncio.CancelledError:
                self.close()
                raise
            finally:
                self._waiter = None
        if self._items:
            mt, payload, segs = self._items.popleft()
            self._call.taken()
            try:
                return _decode(mt, payload, segs, self._system)
            except Exception as e:  # noqa: BLE001
                self.close()
                raise PulsingRuntimeError(f"cannot decode stream item: {e}", e) from None
        self.done = True
        end = self._end
        if end is _CoreStream._EOF:
            raise StopAsyncIteration
        raise _errors.from_core_error(end, self._name)

    def close(self) -> None:
        """Stop consuming: the producer sees its stream cancelled."""
        self.done = True
        self._items.clear()
        call = self._call
        if call is not None and not call.done:
            try:
                call.cancel()
            except Exception:
                logger.debug("cancelling a stream call failed", exc_info=True)


_EXPORT_TTL_S = 60.0


class _StreamExport:
    """A stream Message on its way to another node (see ActorSystem._export_stream)."""

    __slots__ = ("msg_type", "service", "token")

    def __init__(self, msg_type: str, token: int, service: int) -> None:
        self.msg_type = msg_type
        self.token = token
        self.service = service

    def __reduce__(self):
        return (_import_stream, (self.msg_type, self.token, self.service))


def _import_stream(msg_type: str, token: int, service: int) -> Message:
    """Unpickled on the caller's node: a stream Message fed by pulling the items from the
    node that answered it."""
    system = _decoding[0]
    if system is None:
        raise PulsingRuntimeError("a stream Message arrived outside an actor system")
    msg, writer = StreamMessage.create(msg_type)
    src = system._core_stream(service, "pull", (token,), {})

    async def items() -> Any:
        try:
            async for item in src:
                yield item
        finally:
            src.close()  # an early end (the reader went away) cancels the pull

    system._loop.create_task(_feed(writer, items(), lambda e: e))
    return msg


async def _feed(writer: Any, items: Any, error_of: Any) -> None:
    """Write `items` (an async iterator) into a stream message's writer (None: drop them),
    then close it; an error ends the stream with `error_of(e)` after the items before it. A
    reader that went away stops the feed (and closes `items`)."""
    try:
        async for item in items:
            if writer is not None:
                if writer._ch.cancelled:
                    break
                await writer.write(item)
        if writer is not None:
            writer.close()
    except asyncio.CancelledError:
        if writer is not None:
            writer.error(PulsingRuntimeError("stream cancelled (its producer was stopped)"))
        raise
    except BaseException as e:  # noqa: BLE001
        if writer is not None and writer._ch.cancelled:
            return  # nobody reads any more: the write failed, or the producer after it
        err = error_of(e)
        if writer is not None:
            writer.error(err)
    finally:
        await items.aclose()


class Constant:
    """A named constant that unpickles as itself on any node (`is` holds after a round trip)."""

    __slots__ = ("name",)
    _by_name: dict[str, Constant] = {}

    def __init__(self, name: str) -> None:
        self.name = name
        Constant._by_name[name] = self

    def __reduce__(self):
        return (_constant, (self.name,))

    def __repr__(self) -> str:
        return self.name


def _constant(name: str) -> Constant:
    return Constant._by_name[name]


# The answer to a `_PROBE` call of a plain generator method (see `_PROBE`).
GEN_STREAM = Constant("GEN_STREAM")


class _RawPickled:
    """A call envelope that travels pickled through the core."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value
