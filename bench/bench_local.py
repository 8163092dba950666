"""In-process benchmarks: Pulsing (Python caller -> Python actor) and the pure-Python reference.

Run one workload per process: `python bench/bench_local.py <workload>`; prints one JSON object.
Workloads: ref_ask_seq, ref_ask_pipelined, ask_seq_sync, ask_seq_async, ask_pipelined, tell,
stream, spawn, idle_memory, c_ask_seq, c_ask_pipelined.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SEQ_N = int(os.environ.get("BENCH_SEQ_N", "200000"))
PIPE_N = int(os.environ.get("BENCH_PIPE_N", "200000"))
PIPE_WINDOW = int(os.environ.get("BENCH_PIPE_WINDOW", "1000"))
STREAM_N = int(os.environ.get("BENCH_STREAM_N", "1000000"))
SPAWN_N = int(os.environ.get("BENCH_SPAWN_N", "20000"))


class Counter:
    def __init__(self) -> None:
        self.value = 0

    def incr(self, n=1):
        self.value += n
        return self.value

    async def aincr(self, n=1):
        self.value += n
        return self.value

    def tokens(self, n):
        for i in range(n):
            yield i


def percentiles(samples_ns: list[int]) -> dict:
    samples_ns.sort()
    n = len(samples_ns)

    def q(p: float) -> float:
        return samples_ns[min(n - 1, int(p * n))] / 1000.0

    return {"p50_us": q(0.50), "p99_us": q(0.99), "n": n}


async def seq_latency(call, n: int) -> dict:
    for _ in range(min(n // 10, 20000)):  # warm-up
        await call()
    samples = [0] * n
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        await call()
        samples[i] = clock() - t0
    return percentiles(samples)


async def pipelined(call, n: int, window: int) -> dict:
    # `window` calls in flight: issue them all, then await each (asyncio.gather would add its
    # own per-future callback, which costs more than the calls being measured).
    async def batch(k):
        futs = [call() for _ in range(k)]
        for f in futs:
            await f

    await batch(min(window, n))  # warm-up
    t0 = time.perf_counter()
    done = 0
    while done < n:
        k = min(window, n - done)
        await batch(k)
        done += k
    dt = time.perf_counter() - t0
    return {"ops_per_s": n / dt, "n": n, "window": window}


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def run(workload: str) -> dict:
    if workload.startswith("ref_"):
        from reference_actor import RefActor

        actor = RefActor(Counter())
        call = lambda: actor.ask("incr", 1)  # noqa: E731
        if workload == "ref_ask_seq":
            return await seq_latency(call, SEQ_N)
        return await pipelined(call, PIPE_N, PIPE_WINDOW)

    import pulsing as pul

    await pul.init()
    try:
        Remote = pul.remote(Counter)
        if workload in ("ask_seq_sync", "ask_seq_async", "ask_pipelined", "tell", "stream"):
            c = await Remote.spawn(name="bench_counter")
        if workload == "ask_seq_sync":
            return await seq_latency(lambda: c.incr(1), SEQ_N)
        if workload == "ask_seq_async":
            return await seq_latency(lambda: c.aincr(1), SEQ_N)
        if workload == "ask_pipelined":
            return await pipelined(lambda: c.incr(1), PIPE_N, PIPE_WINDOW)
        if workload == "tell":
            ref = c.ref
            n = PIPE_N
            t0 = time.perf_counter()
            for _ in range(n):
                await ref.tell(None)
            await c.incr(0)  # everything before it has been handled
            dt = time.perf_counter() - t0
            return {"ops_per_s": n / dt, "n": n}
        if workload == "stream":
            async for _ in c.tokens(10000):  # warm-up
                pass
            t0 = time.perf_counter()
            count = 0
            async for _ in c.tokens(STREAM_N):
                count += 1
            dt = time.perf_counter() - t0
            return {"items_per_s": count / dt, "n": count}
        if workload == "spawn":
            t0 = time.perf_counter()
            for i in range(SPAWN_N):
                await Remote.spawn(name=f"s{i}")
            dt = time.perf_counter() - t0
            return {"spawns_per_s": SPAWN_N / dt, "n": SPAWN_N}
        if workload == "idle_memory":
            gc.collect()
            before = rss_kb()
            keep = [await Remote.spawn() for _ in range(SPAWN_N)]
            gc.collect()
            after = rss_kb()
            return {"bytes_per_actor": (after - before) * 1024 / len(keep), "n": len(keep)}
        if workload in ("c_ask_seq", "c_ask_pipelined"):
            core = pul.get_system()._core_system()
            echo = core.spawn_builtin("echo")
            loop = asyncio.get_running_loop()

            def call():
                fut = loop.create_future()
                core.ask(echo, "bench", b"x", fut)
                return fut

            if workload == "c_ask_seq":
                return await seq_latency(call, SEQ_N // 4)
            return await pipelined(call, PIPE_N, PIPE_WINDOW)
        raise SystemExit(f"unknown workload {workload}")
    finally:
        await pul.shutdown()


if __name__ == "__main__":
    result = asyncio.run(run(sys.argv[1]))
    result["workload"] = sys.argv[1]
    print(json.dumps(result))
