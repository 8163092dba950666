"""Pulsing demo: a small chat service made of actors, in one process.

Shows sync and async methods, a stream of tokens, an error caught by its type, and a restart
after a crash. Run with `make demo` (or `.venv/bin/python examples/demo.py`).
"""

from __future__ import annotations

import asyncio

import pulsing as pul
from pulsing.exceptions import PulsingBusinessError, PulsingSystemError


@pul.remote
class SessionStore:
    """Keeps chat histories. Plain `def` methods run one message at a time."""

    def __init__(self) -> None:
        self.sessions: dict[str, list[str]] = {}

    def append(self, session: str, line: str) -> int:
        if not line.strip():
            raise ValueError("empty message")  # reaches the caller as a business error
        self.sessions.setdefault(session, []).append(line)
        return len(self.sessions[session])

    def history(self, session: str) -> list[str]:
        return self.sessions.get(session, [])


@pul.remote
class Model:
    """A toy language model: an async method and a token stream."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def complete(self, prompt: str) -> str:
        await asyncio.sleep(0.01)  # pretend to think; other calls are served meanwhile
        return f"{self.name} says: {prompt[::-1]}"

    async def generate(self, prompt: str, n: int):
        for i, word in enumerate((prompt + " and so on").split()[:n]):
            await asyncio.sleep(0.005)
            yield f"<{i}:{word}>"


@pul.remote(restart_policy="on_failure", max_restarts=3, min_backoff=0.05, max_backoff=0.5)
class FlakyCache:
    """Crashes on a poisoned key; supervision restarts it with a fresh, empty cache."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def put(self, key: str, value: str) -> int:
        if key == "poison":
            raise RuntimeError("cache corrupted by a poisoned key")
        self.items[key] = value
        return len(self.items)

    def size(self) -> int:
        return len(self.items)


async def main() -> None:
    await pul.init()
    print("== Pulsing demo: one process, a few actors ==")

    store = await SessionStore.spawn(name="store")
    model = await Model.spawn("toy-1", name="model")
    cache = await FlakyCache.spawn(name="cache")

    # sync methods
    for line in ("hello", "how are you?"):
        n = await store.append("alice", line)
        print(f"store.append -> {n} line(s) for alice")

    # async method, called concurrently
    answers = await asyncio.gather(model.complete("abc"), model.complete("pulsing"))
    print("model.complete x2 ->", answers)

    # a stream of tokens
    print("model.generate ->", end=" ", flush=True)
    async for token in model.generate("actors stream their tokens to the caller", 6):
        print(token, end=" ", flush=True)
    print()

    # an error caught by type, with its fields
    try:
        await store.append("alice", "   ")
    except PulsingBusinessError as e:
        print(f"caught PulsingBusinessError: code={e.code} message={e.message!r}")

    # a crash, then a restart with fresh state
    await cache.put("a", "1")
    print("cache size before the crash:", await cache.size())
    try:
        await cache.put("poison", "x")
    except PulsingSystemError as e:
        print(f"caught PulsingSystemError: {e} (recoverable={e.recoverable})")
    print("cache size after the restart:", await cache.size(), "(constructor re-ran)")

    # the same actors, found by name
    again = await SessionStore.resolve("store")
    print("resolved 'store', alice's history:", await again.history("alice"))

    await pul.shutdown()
    print("== done ==")


if __name__ == "__main__":
    asyncio.run(main())
