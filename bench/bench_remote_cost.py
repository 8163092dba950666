"""Where a cross-process Python ask spends its time: per thread of both processes, CPU time,
context switches and (with --perf, when `perf` can read tracepoints) syscalls per ask.

    python bench/bench_remote_cost.py [--in-flight 1 256] [--n 3000] [--perf]

This process is the caller node, the other is `tests/python/cluster_node.py` hosting `Echo`, as
in `bench_remote.py pair`. The counters are read from /proc/<pid>/task/*/{stat,status} around
one `latency_at` (its warm-up round and its measured round, 2n asks in all). CPU time
has the kernel's tick resolution (10 ms over the run). Figures are per ask. See
docs/design/threads.md ("Where a remote ask spends its time").
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))

from bench_remote import latency_at
from cluster_harness import Cluster
from cluster_node import FAST_TIMING, timing_kwargs

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
EVENTS = (
    "raw_syscalls:sys_enter,syscalls:sys_enter_write,syscalls:sys_enter_writev,"
    "syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl"
)


def threads(pid: int) -> dict[int, tuple[float, int]]:
    """tid -> (CPU seconds, context switches)."""
    out = {}
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        tid = int(stat.split("/")[4])
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) * TICK_S
            ctx = 0
            with open(stat[: -len("stat")] + "status") as f:
                for line in f:
                    if "ctxt_switches" in line:
                        ctx += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out[tid] = (cpu, ctx)
    return out


def perf_start(pids: list[int], path: str):
    cmd = ["perf", "stat", "-x,", "--per-thread", "-e", EVENTS, "-o", path, "-p"]
    cmd.append(",".join(map(str, pids)))
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc


def perf_stop(proc, path: str) -> dict[int, dict[str, float]]:
    proc.send_signal(signal.SIGINT)
    proc.wait()
    rows: dict[int, dict[str, float]] = {}
    with open(path) as lines:
        for line in lines:
            f = line.strip().split(",")
            if len(f) < 4 or not f[1].replace(".", "").isdigit():
                continue
            tid = int(f[0].rsplit("-", 1)[1])
            rows.setdefault(tid, {})[f[3].split(":")[-1].replace("sys_enter_", "")] = float(f[1])
    return rows


async def measure(echo, node_pid: int, in_flight: int, n: int, use_perf: bool) -> dict:
    pids = {"caller": os.getpid(), "server": node_pid}
    before = {name: threads(pid) for name, pid in pids.items()}
    perf = perf_start(list(pids.values()), "/tmp/pulsing_cost_perf.txt") if use_perf else None
    res = await latency_at(lambda: echo.echo(1), in_flight, n)
    syscalls = perf_stop(perf, "/tmp/pulsing_cost_perf.txt") if perf else {}
    after = {name: threads(pid) for name, pid in pids.items()}
    asks = 2 * res["n"]  # latency_at runs a warm-up round of the same size first
    rows = []
    for name, pid in pids.items():
        for tid, (cpu1, ctx1) in sorted(after[name].items()):
            cpu0, ctx0 = before[name].get(tid, (0.0, 0))
            if cpu1 - cpu0 < 2 * TICK_S:
                continue  # an idle helper thread
            row = {
                "process": name,
                "thread": "home loop" if tid == pid else f"core thread? (tid {tid})",
                "cpu_us_per_ask": round((cpu1 - cpu0) * 1e6 / asks, 2),
                "ctx_switches_per_ask": round((ctx1 - ctx0) / asks, 3),
            }
            for k, v in syscalls.get(tid, {}).items():
                row[f"{k}_per_ask"] = round(v / asks, 3)
            rows.append(row)
    return {
        "in_flight": in_flight,
        "asks": asks,
        "p50_us": round(res["p50_us"], 1),
        "ops_per_s": round(res["ops_per_s"]),
        "threads": rows,
    }


async def main(args) -> None:
    import pulsing as pul
    from cluster_actors import Echo

    with Cluster(fast=True) as cluster:
        node = cluster.start_node(spawn=["Echo:echo"])
        await pul.init(
            addr="127.0.0.1:0", seeds=[node.addr], **timing_kwargs(pul.init, FAST_TIMING)
        )
        try:
            echo = await Echo.resolve("echo", timeout=30)
            for k in args.in_flight:
                n = args.n if k == 1 else args.n * 10
                print(json.dumps(await measure(echo, node.pid, k, n, args.perf)), flush=True)
        finally:
            await pul.shutdown()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--in-flight", type=int, nargs="+", default=[1, 256])
    ap.add_argument("--n", type=int, default=3000, help="asks at 1 in flight (x10 above)")
    ap.add_argument("--perf", action="store_true", help="syscalls per ask through perf stat")
    asyncio.run(main(ap.parse_args()))
