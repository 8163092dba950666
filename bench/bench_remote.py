"""Cross-process benchmarks: Python calls between two node processes on 127.0.0.1, cluster
convergence and failure detection with five processes. Prints one JSON object per workload.

    python bench/bench_remote.py pair       # ask p50/p99 at 1 and 64 in flight, asks/s at 256
                                            # in flight, tells/s, stream items/s, 1 MiB and
                                            # 64 MiB numpy payloads (request and reply)
    python bench/bench_remote.py cluster5   # 5 processes: time to converge, then kill -9 one
                                            # and time until every survivor reports it Dead
    python bench/bench_remote.py cluster5 --default-timings   # memberlist LAN timings

`bench/run.py --remote` runs these together with the raw TCP ping-pong (bench/c/tcp_pingpong.c)
and the C cross-process bench (bench/c/bench_c_remote.c) and prints the table with the ratios.
This process is one node (the caller); the other node is `tests/python/cluster_node.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))

from cluster_harness import Cluster, statuses
from cluster_node import FAST_TIMING, timing_kwargs

N_SEQ = int(os.environ.get("BENCH_REMOTE_SEQ_N", "5000"))
N_PIPE = int(os.environ.get("BENCH_REMOTE_PIPE_N", "50000"))
N_TELL = int(os.environ.get("BENCH_REMOTE_TELL_N", "50000"))
N_STREAM = int(os.environ.get("BENCH_REMOTE_STREAM_N", "200000"))


def pct(samples: list[float]) -> dict:
    s = sorted(samples)
    n = len(s)
    return {"p50_us": s[n // 2] * 1e6, "p99_us": s[min(n - 1, n * 99 // 100)] * 1e6, "n": n}


async def latency_at(call, in_flight: int, total: int) -> dict:
    """`in_flight` workers each making sequential calls; per-call latency and total rate."""
    samples: list[float] = []
    per = max(1, total // in_flight)
    clock = time.perf_counter

    async def worker():
        for _ in range(per):
            t0 = clock()
            await call()
            samples.append(clock() - t0)

    await asyncio.gather(*[worker() for _ in range(in_flight)])  # warm-up round
    samples.clear()
    t0 = clock()
    await asyncio.gather(*[worker() for _ in range(in_flight)])
    dt = clock() - t0
    return {**pct(samples), "in_flight": in_flight, "ops_per_s": len(samples) / dt}


async def bandwidth(call, nbytes: int, seconds: float = 2.0, max_n: int = 200) -> dict:
    await call()  # warm-up (connection window, buffers)
    n, t0 = 0, time.perf_counter()
    while n < max_n and (n < 3 or time.perf_counter() - t0 < seconds):
        await call()
        n += 1
    dt = time.perf_counter() - t0
    return {"bytes": nbytes, "calls": n, "bytes_per_s": nbytes * n / dt, "s_per_call": dt / n}


async def pair(args) -> dict:
    import numpy as np
    import pulsing as pul
    from cluster_actors import Echo, Streamer

    out: dict = {}
    with Cluster(fast=not args.default_timings) as cluster:
        node = cluster.start_node(spawn=["Echo:echo", "Streamer:streamer", "TellSink:sink"])
        kw = {} if args.default_timings else timing_kwargs(pul.init, FAST_TIMING)
        await pul.init(addr="127.0.0.1:0", seeds=[node.addr], **kw)
        try:
            echo = await Echo.resolve("echo", timeout=30)
            streamer = await Streamer.resolve("streamer", timeout=30)

            # one call at a time: a small value there and back
            await latency_at(lambda: echo.echo(1), 1, 500)
            out["ask_1"] = await latency_at(lambda: echo.echo(1), 1, N_SEQ)
            out["ask_64"] = await latency_at(lambda: echo.echo(1), 64, N_PIPE // 2)
            out["ask_256"] = await latency_at(lambda: echo.echo(1), 256, N_PIPE)

            # tells: awaited until handed over, then wait for the sink to have counted them
            sink = await pul.resolve("sink", timeout=30)
            base = await sink.ask("count")
            t0 = time.perf_counter()
            for i in range(N_TELL):
                await sink.tell(i)
            while await sink.ask("count") < base + N_TELL:
                await asyncio.sleep(0.001)
            out["tell"] = {"ops_per_s": N_TELL / (time.perf_counter() - t0), "n": N_TELL}

            # stream items across the processes
            async for _ in streamer.sync_tokens(10000):
                pass
            t0, count = time.perf_counter(), 0
            async for _ in streamer.sync_tokens(N_STREAM):
                count += 1
            out["stream"] = {"items_per_s": count / (time.perf_counter() - t0), "n": count}

            # payloads: numpy arrays out of band, request direction and reply direction
            for label, n in (("1mib", 1 << 20), ("64mib", 64 << 20)):
                arr = np.ones(n, dtype=np.uint8)
                out[f"payload_{label}_send"] = await bandwidth(lambda a=arr: echo.nbytes(a), n)
                out[f"payload_{label}_reply"] = await bandwidth(lambda n=n: echo.blob(n), n)
                del arr
        finally:
            await pul.shutdown()
    return out


def cluster5(args) -> dict:
    """Five node processes: convergence time, then kill -9 one and time every survivor's
    verdict. Views are read through the nodes' stdin (`members`), polled every 20 ms."""
    import pulsing as pul

    out: dict = {
        "timings": "default" if args.default_timings else "fast",
        "fast_supported": bool(timing_kwargs(pul.init, FAST_TIMING)),
    }
    if not args.default_timings and not out["fast_supported"]:
        return out  # the same as the default-timings run
    with Cluster(fast=not args.default_timings) as cluster:
        first = cluster.start_node()
        t_launch = time.monotonic()  # includes starting 4 Python processes
        rest = [cluster.spawn_node(seeds=[first.addr]) for _ in range(4)]
        for n in rest:
            n.wait_ready()
        nodes = [first, *rest]
        ids = {n.node_id for n in nodes}
        t0 = time.monotonic()  # every process is up and has started joining
        pending = set(range(5))
        seen_at = {}
        while pending and time.monotonic() - t0 < 120:
            for i in list(pending):
                view = statuses(nodes[i].members())
                if all(view.get(x) == "Alive" for x in ids):
                    pending.discard(i)
                    seen_at[i] = time.monotonic() - t0
            time.sleep(0.02)
        if pending:
            out["error"] = "no convergence within 120 s"
            return out
        out["converge_s"] = max(seen_at.values())
        out["converge_from_launch_s"] = out["converge_s"] + (t0 - t_launch)

        victim, survivors = nodes[2], [n for n in nodes if n is not nodes[2]]
        time.sleep(1.0)  # a settled cluster
        t_kill = time.monotonic()
        victim.kill()
        verdict: dict[str, float] = {}
        while len(verdict) < len(survivors) and time.monotonic() - t_kill < 120:
            for n in survivors:
                if n.label in verdict:
                    continue
                st = statuses(n.members()).get(victim.node_id, "absent")
                if st in ("Dead", "absent"):
                    verdict[n.label] = time.monotonic() - t_kill
            time.sleep(0.02)
        if len(verdict) < len(survivors):
            out["error"] = f"only {sorted(verdict)} declared the killed node dead within 120 s"
            return out
        out["dead_all_s"] = max(verdict.values())
        out["dead_first_s"] = min(verdict.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=["pair", "cluster5"])
    ap.add_argument(
        "--default-timings",
        action="store_true",
        help="memberlist LAN timings instead of the short test timings",
    )
    args = ap.parse_args()
    if args.workload == "pair":
        res = asyncio.run(pair(args))
    else:
        res = cluster5(args)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
