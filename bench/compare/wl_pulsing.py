"""Pulsing-API driver of `make bench-compare`: one workload, once, in this process.

    <python> bench/compare/wl_pulsing.py <workload> [--quick]

The same script drives this project (run with the project's `.venv/bin/python`) and the original
Rust Pulsing 0.1.2 (run with `bench/.peers/pulsing-0.1.2/bin/python`) through the documented Python
API only (`import pulsing as pul`, `@pul.remote`, `spawn`, `resolve`, `init(addr=, seeds=)`,
`members()`): whichever `pulsing` the interpreter has installed is the system measured. Nothing is
imported from the repository's `python/` directory by path. The last line on stdout is the JSON
result described in `params.py`.

Cross-process workloads start node processes with this same script and interpreter
(`--serve`), bound to 127.0.0.1 with ephemeral ports; they are killed in a `finally` and die with
this process (PR_SET_PDEATHSIG), and the harness kills the whole process group on a timeout.

After printing its result the driver leaves with `os._exit` (both systems alike): the original
0.1.2 segfaults in interpreter teardown after `shutdown()`, which is not part of any workload.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import params
import pulsing as pul

Q = 1  # count divisor (--quick sets params.QUICK_DIVISOR)


def n_(count: int) -> int:
    return max(1, count // Q)


def budget() -> float:
    """Seconds a measured phase may take (params.PHASE_BUDGET_S)."""
    return getattr(params, "PHASE_BUDGET_S", 1e9) / Q


def over(t_start: float, share: float = 1.0) -> bool:
    return time.perf_counter() - t_start > budget() * share


def system_name() -> str:
    """`pulsing` for this project, `pulsing-<version>` for a released original."""
    try:
        from importlib.metadata import version

        v = version("pulsing")
    except ImportError:
        v = getattr(pul, "__version__", "?")
    return "pulsing-0.1.2" if v == "0.1.2" else "pulsing"


class Unsupported(Exception):
    """The system cannot do this workload (API missing); the message is the one-line reason."""


# ---- actors (the same classes in the caller and in node processes) --------------------------


@pul.remote
class Echo:
    def __init__(self) -> None:
        self.blobs: dict[int, object] = {}

    def echo(self, x):
        return x

    async def aecho(self, x):
        return x

    def ping(self) -> int:
        return 1

    def nbytes(self, arr) -> int:
        return int(arr.nbytes)

    def blob(self, n: int):
        import numpy as np

        arr = self.blobs.get(n)
        if arr is None:
            arr = self.blobs[n] = np.ones(n, dtype=np.uint8)
        return arr

    async def anbytes(self, arr) -> int:
        return self.nbytes(arr)

    async def ablob(self, n: int):
        return self.blob(n)

    async def stream(self, n: int):
        for i in range(n):
            yield i


class Sink(pul.Actor):
    """Low-level actor for tells: counts messages, answers "count"."""

    def __init__(self) -> None:
        self.n = 0

    def receive(self, msg):
        if msg == "count":
            return self.n
        self.n += 1
        return None


# ---- measuring helpers ---------------------------------------------------------------------


def pct(samples: list[float]) -> dict:
    s = sorted(samples)
    n = len(s)
    return {"p50_us": s[n // 2] * 1e6, "p99_us": s[min(n - 1, n * 99 // 100)] * 1e6}


async def maybe_await(x):
    if hasattr(x, "__await__"):
        return await x
    return x


async def sequential(call, warmup: int, n: int) -> dict:
    """`n` calls one after the other (fewer if the phase budget runs out)."""
    clock = time.perf_counter
    t_start = clock()
    for _ in range(warmup):
        await call()
        if over(t_start, 0.25):
            break
    samples = []
    t_start = clock()
    for _ in range(n):
        t0 = clock()
        await call()
        samples.append(clock() - t0)
        if over(t_start):
            break
    dt = clock() - t_start
    return {**pct(samples), "ops_per_s": len(samples) / dt, "n": len(samples)}


async def in_flight(call, width: int, total: int, warmup: int) -> dict:
    """`width` workers each making sequential calls: per-call latency and total rate."""
    clock = time.perf_counter
    samples: list[float] = []

    async def worker(k: int, record: bool, t_start: float, share: float):
        for _ in range(k):
            t0 = clock()
            await call()
            if record:
                samples.append(clock() - t0)
            if over(t_start, share):
                break

    t0 = clock()
    await asyncio.gather(*[worker(max(1, warmup // width), False, t0, 0.25) for _ in range(width)])
    per = max(1, total // width)
    t0 = clock()
    await asyncio.gather(*[worker(per, True, t0, 1.0) for _ in range(width)])
    dt = clock() - t0
    return {**pct(samples), "ops_per_s": len(samples) / dt, "n": len(samples)}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---- node processes ------------------------------------------------------------------------


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Node:
    """A `--serve` node process; commands and answers are JSON lines on its stdin/stdout."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.addr: str | None = None

    def read(self, timeout: float = 60.0) -> dict:
        # the harness has its own per-process timeout; this one only turns a dead node into an error
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"node process exited (status {self.proc.poll()})")
        obj = json.loads(line)
        if "error" in obj:
            raise RuntimeError(f"node: {obj['error']}")
        return obj

    def cmd(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.read()

    def started(self) -> Node:
        self.addr = self.read()["addr"]
        return self

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def stop_all(nodes: list[Node]) -> None:
    for n in nodes:
        with contextlib.suppress(OSError):
            n.kill()


async def serve(args) -> None:
    """Node process: init (at once, or on "init" from stdin with --wait-init), spawn the bench
    actors, print {"addr": ...}, then answer "members" lines until EOF or "quit"."""
    _die_with_parent()
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue = asyncio.Queue()

    def reader():
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.strip())
        loop.call_soon_threadsafe(lines.put_nowait, "quit")

    threading.Thread(target=reader, daemon=True).start()

    def emit(obj):
        sys.stdout.write(json.dumps(obj, default=str) + "\n")
        sys.stdout.flush()

    if args.wait_init:
        emit({"imported": True})
        while (await lines.get()) != "init":
            pass
    seeds = [s for s in args.seeds.split(",") if s] if args.seeds else None
    try:
        system = await pul.init(addr="127.0.0.1:0", seeds=seeds)
        if args.actors:
            await Echo.spawn(name="echo")
            for i in range(args.stress_actors):
                await Echo.spawn(name=f"stress_{i}")
    except Exception as e:  # noqa: BLE001
        emit({"error": f"{type(e).__name__}: {e}"})
        os._exit(1)
    emit({"addr": system.addr, "pid": os.getpid()})
    while True:
        line = await lines.get()
        if line == "quit":
            break
        if line == "members":
            try:
                ms = await maybe_await(system.members())
                emit({"members": [{"addr": m.get("addr"), "status": m.get("status")} for m in ms]})
            except Exception as e:  # noqa: BLE001
                emit({"error": f"members(): {type(e).__name__}: {e}"})
    await pul.shutdown()


# ---- workloads -----------------------------------------------------------------------------


async def wl_ask(method: str) -> dict:
    await pul.init()
    e = await Echo.spawn()
    call = getattr(e, method)
    return await sequential(lambda: call(1), n_(params.WARMUP), n_(params.ASK_N))


async def wl_tell() -> dict:
    await pul.init()
    ref = await pul.spawn(Sink())
    t0 = time.perf_counter()
    warm = 0
    while warm < n_(params.WARMUP) and not over(t0, 0.25):
        await maybe_await(ref.tell(warm))
        warm += 1
    await ref.ask("count")
    n = 0
    t0 = time.perf_counter()
    while n < n_(params.TELL_N) and not over(t0):
        await maybe_await(ref.tell(n))
        n += 1
    got = await ref.ask("count")  # answered after every tell before it
    dt = time.perf_counter() - t0
    if got != n + warm:
        raise RuntimeError(f"sink counted {got} of {n + warm} tells")
    return {"ops_per_s": n / dt, "n": n}


async def drain(agen, share: float | None = None) -> int:
    """Consume a stream; with `share`, stop early (break) once that share of the budget is
    spent."""
    k = 0
    t0 = time.perf_counter()
    async for _ in agen:
        k += 1
        if share is not None and k % 64 == 0 and over(t0, share):
            break
    return k


async def stream_rate(e) -> dict:
    await drain(e.stream(n_(params.WARMUP)), 0.25)
    n = n_(params.STREAM_ITEMS)
    t0 = time.perf_counter()
    got = await drain(e.stream(n), 1.0)
    dt = time.perf_counter() - t0
    if got != n and not over(t0):
        raise RuntimeError(f"stream gave {got} of {n} items")
    return {"items_per_s": got / dt, "n": got}


async def wl_stream_local() -> dict:
    await pul.init()
    return await stream_rate(await Echo.spawn())


async def with_server(body, *extra: str):
    """Start one node process hosting Echo as "echo", join it from here, run body(echo).

    Cross-process calls go to `async def` methods: in 0.1.2 a cross-process call to a plain `def`
    method fails on the caller's side (the pickled reply arrives as a raw Message and
    `Message.to_json()` raises "expected value at line 1 column 1"); async methods work there, and
    every system is measured on the same methods."""
    node = Node("--actors", *extra)
    try:
        node.started()
        await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
        try:
            echo = await Echo.resolve("echo", timeout=30)
            return await body(echo)
        finally:
            await pul.shutdown()
    finally:
        stop_all([node])


async def wl_remote_ask_1() -> dict:
    async def body(e):
        r = await sequential(lambda: e.aecho(1), n_(params.WARMUP), n_(params.REMOTE_ASK_N))
        return {"p50_us": r["p50_us"], "p99_us": r["p99_us"]}

    return await with_server(body)


async def wl_remote_ask_64() -> dict:
    async def body(e):
        return await in_flight(
            lambda: e.aecho(1),
            params.INFLIGHT_SMALL,
            n_(params.REMOTE_INFLIGHT_N),
            n_(params.WARMUP),
        )

    return await with_server(body)


async def wl_remote_tput_256() -> dict:
    async def body(e):
        r = await in_flight(
            lambda: e.aecho(1),
            params.INFLIGHT_LARGE,
            n_(params.REMOTE_INFLIGHT_N),
            n_(params.WARMUP),
        )
        return {"ops_per_s": r["ops_per_s"]}

    return await with_server(body)


async def wl_remote_stream() -> dict:
    return await with_server(stream_rate)


def payload(size: int, count: int):
    async def body(e):
        import numpy as np

        arr = np.ones(size, dtype=np.uint8)
        out = {}
        for key, call in (
            ("req_gb_per_s", lambda: e.anbytes(arr)),
            ("reply_gb_per_s", lambda: e.ablob(size)),
        ):
            r = await call()  # warm-up: connection windows, buffers, the reply array
            if key == "req_gb_per_s" and r != size:
                raise RuntimeError(f"actor saw {r} bytes of {size}")
            n = 0
            t0 = time.perf_counter()
            while n < n_(count) and not over(t0):
                r = await call()
                n += 1
            dt = time.perf_counter() - t0
            if key == "reply_gb_per_s" and getattr(r, "nbytes", None) != size:
                raise RuntimeError("reply of the wrong size")
            out[key] = size * n / dt / 1e9
            out["n_" + key.split("_")[0]] = n
        return out

    return lambda: with_server(body)


async def wl_spawn() -> dict:
    await pul.init()
    keep = [await Echo.spawn() for _ in range(n_(params.WARMUP) // 10)]
    n = 0
    t0 = time.perf_counter()
    while n < n_(params.SPAWN_N) and not over(t0):
        keep.append(await Echo.spawn())
        n += 1
    dt = time.perf_counter() - t0
    await keep[-1].ping()
    return {"spawns_per_s": n / dt, "n": n}


async def wl_idle_memory() -> dict:
    await pul.init()
    warm = await Echo.spawn()
    await warm.ping()
    gc.collect()
    before = rss_bytes()
    n = n_(params.IDLE_ACTORS)
    actors = [await Echo.spawn() for _ in range(n)]
    for a in actors:  # every actor has started and answered once
        await a.ping()
    gc.collect()
    await asyncio.sleep(0.2)
    return {"bytes_per_actor": (rss_bytes() - before) / n}


async def wl_init_ready() -> dict:
    t0 = time.perf_counter()  # pulsing is already imported: import time is not counted
    await pul.init()
    e = await Echo.spawn()
    await e.ping()
    return {"ms": (time.perf_counter() - t0) * 1e3}


async def wl_resolve() -> dict:
    """Resolve a name that lives on the other node process (the cluster-wide registry)."""

    async def body(_e):
        return await sequential(
            lambda: Echo.resolve("echo", timeout=30), n_(params.WARMUP) // 10, n_(params.RESOLVE_N)
        )

    r = await with_server(body)
    return {"p50_us": r["p50_us"], "p99_us": r["p99_us"]}


async def wl_stress() -> dict:
    """STRESS_ACTORS actors on the node process, STRESS_CALLERS concurrent callers here for
    STRESS_SECONDS; every STRESS_STREAM_EVERY-th call is a stream of STRESS_STREAM_ITEMS items
    (its latency: until the last item), the others asks."""
    n_actors = n_(params.STRESS_ACTORS)
    seconds = params.STRESS_SECONDS / Q

    async def body(_e):
        actors = [await Echo.resolve(f"stress_{i}", timeout=30) for i in range(n_actors)]
        clock = time.perf_counter
        samples: list[float] = []
        stop = [False]

        async def caller(c: int):
            k = c
            while not stop[0]:
                a = actors[k % n_actors]
                t0 = clock()
                if k % params.STRESS_STREAM_EVERY == 0:
                    got = await drain(a.stream(params.STRESS_STREAM_ITEMS))
                    if got != params.STRESS_STREAM_ITEMS:
                        raise RuntimeError(f"stress stream gave {got} items")
                else:
                    await a.aecho(k)
                samples.append(clock() - t0)
                k += params.STRESS_CALLERS

        for a in actors:  # warm-up: every actor answered once
            await a.aecho(0)

        async def timer():
            await asyncio.sleep(seconds)
            stop[0] = True

        t0 = clock()
        await asyncio.gather(timer(), *[caller(c) for c in range(params.STRESS_CALLERS)])
        dt = clock() - t0
        return {**pct(samples), "ops_total": len(samples), "ops_per_s": len(samples) / dt}

    return await with_server(body, "--stress-actors", str(n_actors))


async def members_of(node: Node) -> dict[str, str]:
    return {m["addr"]: m["status"] for m in node.cmd("members")["members"]}


async def check_members_api() -> None:
    s = await pul.init()
    if not hasattr(s, "members"):
        raise Unsupported("the system has no members()")
    await pul.shutdown()


def cluster5() -> tuple[list[Node], float]:
    """Five node processes with the system's default timings. The first is up before the clock
    starts; the other four have imported pulsing and are told to init at t0 (start-up of the
    interpreter not counted). Returns the nodes and the seconds until every view has all five
    Alive (views polled every 20 ms through stdin)."""
    nodes = [Node().started()]
    try:
        rest = [Node("--wait-init", "--seeds", nodes[0].addr) for _ in range(4)]
        nodes += rest
        for n in rest:
            n.read()  # {"imported": true}
        t0 = time.monotonic()
        for n in rest:
            n.proc.stdin.write("init\n")
            n.proc.stdin.flush()
        for n in rest:
            n.started()
        addrs = {n.addr for n in nodes}
        pending = set(range(5))
        while pending:
            for i in list(pending):
                view = {m["addr"]: m["status"] for m in nodes[i].cmd("members")["members"]}
                if all(view.get(a) == "Alive" for a in addrs):
                    pending.discard(i)
            if pending:
                time.sleep(0.02)
        return nodes, time.monotonic() - t0
    except BaseException:
        stop_all(nodes)
        raise


async def wl_convergence_5() -> dict:
    await check_members_api()
    nodes, s = cluster5()
    stop_all(nodes)
    return {"s": s}


async def wl_dead_detect() -> dict:
    await check_members_api()
    nodes, _ = cluster5()
    try:
        await asyncio.sleep(1.0)  # a settled cluster
        victim = nodes[2]
        survivors = [n for n in nodes if n is not victim]
        t0 = time.monotonic()
        victim.kill()  # SIGKILL
        pending = set(range(len(survivors)))
        while pending:
            for i in list(pending):
                view = {m["addr"]: m["status"] for m in survivors[i].cmd("members")["members"]}
                if view.get(victim.addr, "absent") in ("Dead", "absent"):
                    pending.discard(i)
            if pending:
                await asyncio.sleep(0.02)
        return {"s": time.monotonic() - t0}
    finally:
        stop_all(nodes)


WORKLOADS = {
    "ask_sync": lambda: wl_ask("echo"),
    "ask_async": lambda: wl_ask("aecho"),
    "tell": wl_tell,
    "stream_local": wl_stream_local,
    "remote_ask_1": wl_remote_ask_1,
    "remote_ask_64": wl_remote_ask_64,
    "remote_tput_256": wl_remote_tput_256,
    "remote_stream": wl_remote_stream,
    "payload_1mib": payload(params.PAYLOAD_1MIB, params.PAYLOAD_1MIB_N),
    "payload_64mib": payload(params.PAYLOAD_64MIB, params.PAYLOAD_64MIB_N),
    "spawn": wl_spawn,
    "idle_memory": wl_idle_memory,
    "init_ready": wl_init_ready,
    "resolve": wl_resolve,
    "stress": wl_stress,
    "convergence_5": wl_convergence_5,
    "dead_detect": wl_dead_detect,
}
assert set(WORKLOADS) == set(params.WORKLOADS)


async def run(workload: str) -> dict:
    try:
        return await WORKLOADS[workload]()
    finally:
        await pul.shutdown()


def main() -> None:
    global Q
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", nargs="?", choices=sorted(WORKLOADS))
    ap.add_argument("--quick", action="store_true", help="counts / QUICK_DIVISOR (smoke test)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--wait-init", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seeds", default="", help=argparse.SUPPRESS)
    ap.add_argument("--actors", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stress-actors", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args))
        sys.stdout.flush()
        os._exit(0)
    if not args.workload:
        ap.error("a workload is required")
    if args.quick:
        Q = params.QUICK_DIVISOR
    out = {"workload": args.workload, "system": system_name()}
    try:
        out.update(asyncio.run(run(args.workload)))
    except Unsupported as e:
        out["unsupported"] = str(e)
    except AttributeError as e:  # an API this system does not have
        out["unsupported"] = f"AttributeError: {e}"
    print(json.dumps(out), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
