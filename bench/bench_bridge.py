"""The core -> Python bridge alone: pulsing._core with the built-in C actors, no package code.

    .venv/bin/python bench/bench_bridge.py [--n N] [--window W] [--runs R]

Prints one line per figure (median of R runs, min-max) and a JSON object last:
- ask_pipelined: asks to the C echo actor with W in flight, completions/s end to end
  (Python builds the message, core thread answers, bridge resolves the future, task wakes);
- ask_batch: N asks issued at once then awaited together (the bridge's best case: few
  wake-ups, one drain per large batch);
- stream_items: items/s of one stream from the C 'streamer' (one on_item call per item, no
  per-item future);
- ask_seq: round-trip latency of one ask at a time (p50/p99, microseconds);
- fwd_seq: one ask to the C 'forwarder', which asks a Python actor registered with the core
  and relays its reply: core -> Python delivery and the Reply path, two bridge crossings;
- issue_us / drain_us: the home thread's own cost per ask, split: `CoreSystem.ask()` (build the
  message, register the cancel hook, pul_ask) and, with the reader removed and every completion
  already queued, `drain()` per completion (resolve the future; no task wakes up);
- wakeups/push: eventfd writes per queued completion in the pipelined run (coalescing);
- ask_seq_spin: ask_seq again with the home loop spinning up to 50 us (CoreSystem.spin, GIL
  released) before it would sleep in epoll_wait: what the Python-side wake-up costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import struct
import sys
import time

from pulsing import _core


class Bridge:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.sys = _core.CoreSystem()
        self.fd = self.sys.fileno()
        self.loop.add_reader(self.fd, self.sys.drain)
        self.echo = self.sys.spawn_builtin("echo")
        self.streamer = self.sys.spawn_builtin("streamer")
        self.py = self.sys.register(None, lambda t, p, r: r.send(t, p))
        self.fwd = self.sys.spawn_builtin("forwarder")
        self.fwd_payload = self.py.to_bytes(16, "big") + b"x"

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        self.sys.close()

    def ask(self) -> asyncio.Future:
        fut = self.loop.create_future()
        self.sys.ask(self.echo, "bench", b"x", fut)
        return fut

    def ask_fwd(self) -> asyncio.Future:
        fut = self.loop.create_future()
        self.sys.ask(self.fwd, "bench", self.fwd_payload, fut)
        return fut


async def ask_pipelined(b: Bridge, n: int, window: int) -> dict:
    sem = asyncio.Semaphore(window)
    done = 0
    finished = b.loop.create_future()

    def on_done(_f: asyncio.Future) -> None:
        nonlocal done
        sem.release()
        done += 1
        if done == n:
            finished.set_result(None)

    s0 = b.sys.bridge_stats()
    t0 = time.perf_counter()
    for _ in range(n):
        await sem.acquire()
        b.ask().add_done_callback(on_done)
    await finished
    dt = time.perf_counter() - t0
    s1 = b.sys.bridge_stats()
    pushes = s1["pushes"] - s0["pushes"]
    wakeups = s1["wakeups"] - s0["wakeups"]
    return {"ops_per_s": n / dt, "wakeups_per_push": wakeups / max(pushes, 1)}


async def ask_batch(b: Bridge, n: int) -> dict:
    t0 = time.perf_counter()
    futs = [b.ask() for _ in range(n)]
    await asyncio.gather(*futs)
    return {"ops_per_s": n / (time.perf_counter() - t0)}


async def stream_items(b: Bridge, n: int) -> dict:
    end = b.loop.create_future()
    count = 0

    def on_item(t, payload, err):
        nonlocal count
        if t is not None:
            count += 1
        elif not end.done():
            end.set_result(err)

    t0 = time.perf_counter()
    b.sys.ask_stream(b.streamer, "s", struct.pack("<I", n), on_item)
    err = await end
    dt = time.perf_counter() - t0
    if err is not None or count != n:
        raise SystemExit(f"stream failed: {err!r} after {count} items")
    return {"items_per_s": n / dt}


async def ask_seq(b: Bridge, n: int, call=None) -> dict:
    call = call or b.ask
    lat = []
    for _ in range(200):  # warm-up
        await call()
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        lat.append(time.perf_counter() - t0)
    lat.sort()
    return {
        "p50_us": lat[len(lat) // 2] * 1e6,
        "p99_us": lat[int(len(lat) * 0.99)] * 1e6,
    }


class SpinSelector:
    """Wraps the loop's selector: before sleeping, spin on the bridge for a while."""

    def __init__(self, inner, core: _core.CoreSystem, spin_us: float) -> None:
        self.inner, self.core, self.spin_us = inner, core, spin_us

    def select(self, timeout=None):
        if (timeout is None or timeout > 0) and self.core.spin(self.spin_us):
            return self.inner.select(0)
        return self.inner.select(timeout)

    def __getattr__(self, name):
        return getattr(self.inner, name)


async def split_costs(b: Bridge, n: int) -> dict:
    futs = [b.loop.create_future() for _ in range(n)]
    b.loop.remove_reader(b.fd)
    try:
        base = b.sys.bridge_stats()["pushes"]
        t0 = time.perf_counter()
        for f in futs:
            b.sys.ask(b.echo, "bench", b"x", f)
        t1 = time.perf_counter()
        while b.sys.bridge_stats()["pushes"] < base + n:
            time.sleep(0.001)  # noqa: ASYNC251 - on purpose: the loop must not drain
        t2 = time.perf_counter()
        b.sys.drain()
        t3 = time.perf_counter()
    finally:
        b.loop.add_reader(b.fd, b.sys.drain)
    assert all(f.done() for f in futs)
    return {"issue_us": (t1 - t0) * 1e6 / n, "drain_us": (t3 - t2) * 1e6 / n}


async def one_run(n: int, window: int) -> dict:
    b = Bridge()
    try:
        r: dict = {}
        c = await split_costs(b, n)
        r["issue_us_per_ask"] = c["issue_us"]
        r["drain_us_per_completion"] = c["drain_us"]
        p = await ask_pipelined(b, n, window)
        r["ask_pipelined_ops_per_s"] = p["ops_per_s"]
        r["wakeups_per_push"] = p["wakeups_per_push"]
        r["ask_batch_ops_per_s"] = (await ask_batch(b, n))["ops_per_s"]
        r["stream_items_per_s"] = (await stream_items(b, n * 5))["items_per_s"]
        s = await ask_seq(b, n // 10)
        r["ask_seq_p50_us"] = s["p50_us"]
        r["ask_seq_p99_us"] = s["p99_us"]
        s = await ask_seq(b, n // 10, b.ask_fwd)
        r["fwd_seq_p50_us"] = s["p50_us"]
        r["fwd_seq_p99_us"] = s["p99_us"]
        inner = b.loop._selector  # bench-only hack: asyncio has no hook for this
        b.loop._selector = SpinSelector(inner, b.sys, 50.0)
        try:
            s = await ask_seq(b, n // 10)
        finally:
            b.loop._selector = inner
        r["ask_seq_spin_p50_us"] = s["p50_us"]
        r["ask_seq_spin_p99_us"] = s["p99_us"]
        return r
    finally:
        b.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    runs = [asyncio.run(one_run(args.n, args.window)) for _ in range(args.runs)]
    out = {}
    for key in runs[0]:
        vals = [r[key] for r in runs]
        med = statistics.median(vals)
        out[key] = med
        print(f"{key:28s} {med:14,.3f}   (min {min(vals):,.3f}, max {max(vals):,.3f})")
    out.update({"n": args.n, "window": args.window, "runs": args.runs, "python": sys.version})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
