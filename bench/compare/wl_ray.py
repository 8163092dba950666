"""Ray driver for `make bench-compare`: the workloads of params.py written against Ray's own API.

    bench/.peers/ray-2.60.0/bin/python bench/compare/wl_ray.py <workload> [--quick]

Runs ONE workload once in this fresh process and prints one JSON object as the last stdout line
(protocol in params.py). Written the way a fair Ray user would: `ray.init(num_cpus=2,
include_dashboard=False)`, `@ray.remote` actors called with `.remote()` and `ray.get` (or `await`
of the ObjectRef from async code), async actors for the async workloads, streaming generators
(`num_returns="streaming"`) for streams, named actors and `ray.get_actor` for resolve. Where Ray
offers two ways (async or threaded actor, `await` or `ray.get` of a ref), the faster one on this
machine is used, and the comment there says by how much.

What differs from the Pulsing drivers, and is said in each result's "note":
- Ray actors always live in worker processes; the "in-process" workloads measure the nearest Ray
  equivalent, the driver calling an actor (the same path as the cross-process ones).
- Ray has no tell: `.remote()` with the ObjectRef dropped, then one `ray.get` to flush.
- Each actor is a process (~80 MB RSS): spawn, idle_memory and stress run at most MAX_ACTORS
  actors, reported as "count".
- convergence_5 and dead_detect are Pulsing's SWIM membership; Ray's membership is its GCS.

Every run gets its own Ray temp dir; after `ray.shutdown()` the driver waits for every process
Ray started (raylet, gcs_server, agents, workers) to exit, kills by pid any still alive after
10 s and reports that count as "leftover_killed" (never silently).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import params as P

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np
import ray

SYSTEM = f"ray-{ray.__version__}"
IN_PROCESS_NOTE = "Ray actors run in worker processes (driver -> actor call)"

# Each Ray actor is its own worker process: ~95 MB RSS (~48 MB PSS) and 0.25-1 s of start-up on
# this 2-core machine, and each idle one still uses a few % of a core. params' 2,000 actors would
# need ~190 GB RSS. 200 fit in memory but took 190 s to spawn (2026-11-22, machine shared);
# 100 is the largest round count that keeps a run to a minute or two.
MAX_ACTORS = 100
MEM_PER_ACTOR = 64 << 20  # budget per actor process (measured PSS ~42-51 MB)
MEM_RESERVE = 4 << 30  # what a run leaves free for everyone else on the machine

UNSUPPORTED = {
    "convergence_5": "Pulsing-only: SWIM membership of 5 node processes; Ray's membership is its "
    "central GCS, not comparable",
    "dead_detect": "Pulsing-only: SWIM failure detection; Ray's node liveness is GCS heartbeats "
    "to a central head, not comparable",
}


# ---------------------------------------------------------------------------------------------
# actors


@ray.remote
class SyncActor:
    """Plain (threadless) actor: methods run one at a time in submission order."""

    def __init__(self, reply_bytes: int = 0):
        self.n = 0
        self.buf = np.ones(reply_bytes, dtype=np.uint8) if reply_bytes else None

    def ping(self, x):
        return x

    def tell(self, x):
        self.n += 1

    def count(self):
        return self.n

    def nbytes(self, a):
        return a.nbytes

    def reply(self):
        return self.buf

    def pid(self):
        return os.getpid()

    @ray.method(num_returns="streaming")
    def stream(self, n):
        # not `yield from range(n)`: Ray drives the generator with send(), which a range
        # iterator does not have
        for i in range(n):  # noqa: UP028
            yield i


@ray.remote
class AsyncActor:
    """Async actor (Ray's recommended form for concurrency: one event loop, many calls)."""

    async def ping(self, x):
        return x

    def pid(self):
        return os.getpid()

    @ray.method(num_returns="streaming")
    async def stream(self, n):
        for i in range(n):
            yield i


# ---------------------------------------------------------------------------------------------
# helpers


def pct(samples_ns: list[int]) -> dict:
    """p50/p99 in microseconds, same index rule as bench/bench_local.py."""
    s = sorted(samples_ns)
    n = len(s)
    return {
        "p50_us": s[min(n - 1, int(0.50 * n))] / 1e3,
        "p99_us": s[min(n - 1, int(0.99 * n))] / 1e3,
    }


def scaled(n: int, quick: bool) -> int:
    return max(1, n // P.QUICK_DIVISOR) if quick else n


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def actor_count(n: int, quick: bool) -> tuple[int, str]:
    """How many actors to run instead of params' n, and the note that says why (or "")."""
    wanted = scaled(n, quick)
    used = scaled(min(n, MAX_ACTORS), quick)
    note = ""
    if used < wanted:
        note = (
            f"{used} actors, not params' {wanted}: each Ray actor is a worker process "
            f"(~95 MB RSS, 0.25-1 s to start); {wanted} do not fit a run of a minute or two "
            f"on this 2-core 24 GiB machine"
        )
    # the machine is shared: never take it below MEM_RESERVE
    fit = (mem_available() - MEM_RESERVE) // MEM_PER_ACTOR
    if fit < used:
        used = max(1, fit)
        note = (
            f"{used} actors, not params' {wanted}: limited by MemAvailable at start "
            f"({MEM_PER_ACTOR >> 20} MiB budgeted per actor process, "
            f"{MEM_RESERVE >> 30} GiB kept free)"
        )
    return used, note


def init_ray(tmp: str) -> None:
    # address="local": always a fresh instance of our own, never a cluster found on the machine
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=tmp,
        log_to_driver=False,
        namespace="bench-compare",
    )


def proc_children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def proc_start(pid: int) -> str | None:
    """Start time and state of pid, or None if gone; a zombie counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return None
    fields = st[st.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def descendants() -> dict[int, str]:
    """Every live process below this one (raylet, gcs_server, agents, workers) with its start."""
    kids = proc_children()
    out: dict[int, str] = {}
    todo = list(kids.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        start = proc_start(pid)
        if start is not None:
            out[pid] = start
        todo.extend(kids.get(pid, []))
    return out


def reap(procs: dict[int, str], grace_s: float = 10.0) -> int:
    """Waits for the processes Ray started to exit; kills by pid those still alive after grace."""
    deadline = time.monotonic() + grace_s
    alive = dict(procs)
    while alive and time.monotonic() < deadline:
        alive = {p: s for p, s in alive.items() if proc_start(p) == s}
        if alive:
            time.sleep(0.1)
    killed = 0
    for pid, start in alive.items():
        if proc_start(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
                print(f"wl_ray: killed leftover Ray process {pid}", file=sys.stderr)
            except ProcessLookupError:
                pass
    return killed


def rss_pss(pid: int) -> tuple[int, int]:
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    return rss, pss


def spawn_ready(cls, n: int) -> list:
    actors = [cls.remote() for _ in range(n)]
    ray.get([a.ping.remote(0) for a in actors])
    return actors


# ---------------------------------------------------------------------------------------------
# workloads: each returns the metrics dict (plus "note"/"count" when relevant)


def seq_asks(a, n: int) -> dict:
    for i in range(P.WARMUP if n >= P.WARMUP else max(1, n // 10)):
        ray.get(a.ping.remote(i))
    lat = []
    clock = time.perf_counter_ns
    t0 = clock()
    for i in range(n):
        t = clock()
        ray.get(a.ping.remote(i))
        lat.append(clock() - t)
    el = (clock() - t0) / 1e9
    return {**pct(lat), "ops_per_s": n / el}


async def seq_asks_async(a, n: int) -> dict:
    for i in range(P.WARMUP if n >= P.WARMUP else max(1, n // 10)):
        await a.ping.remote(i)
    lat = []
    clock = time.perf_counter_ns
    t0 = clock()
    for i in range(n):
        t = clock()
        await a.ping.remote(i)
        lat.append(clock() - t)
    el = (clock() - t0) / 1e9
    return {**pct(lat), "ops_per_s": n / el}


async def in_flight(a, conc: int, total: int) -> dict:
    """`conc` coroutines each making sequential awaited calls: per-call latency, total rate."""
    lat: list[int] = []
    clock = time.perf_counter_ns
    per = max(1, total // conc)

    async def worker():
        for i in range(per):
            t = clock()
            await a.ping.remote(i)
            lat.append(clock() - t)

    t0 = clock()
    await asyncio.gather(*(worker() for _ in range(conc)))
    el = (clock() - t0) / 1e9
    return {**pct(lat), "ops_per_s": len(lat) / el}


def wl_ask_sync(q):
    a = SyncActor.remote()
    return {**seq_asks(a, scaled(P.ASK_N, q)), "note": IN_PROCESS_NOTE}


def wl_ask_async(q):
    a = AsyncActor.remote()
    r = asyncio.run(seq_asks_async(a, scaled(P.ASK_N, q)))
    return {**r, "note": IN_PROCESS_NOTE + "; async actor, driver awaits the ObjectRef"}


def wl_tell(q):
    n = scaled(P.TELL_N, q)
    a = SyncActor.remote()
    warm = scaled(P.WARMUP, q)
    for i in range(warm):
        a.tell.remote(i)
    assert ray.get(a.count.remote()) == warm
    t0 = time.perf_counter()
    for i in range(n):
        a.tell.remote(i)
    got = ray.get(a.count.remote())
    el = time.perf_counter() - t0
    if got != warm + n:
        raise RuntimeError(f"tell: actor counted {got - warm} of {n}")
    return {
        "ops_per_s": n / el,
        "note": IN_PROCESS_NOTE + "; no tell in Ray: .remote() with the ref dropped, "
        "then one ray.get to flush (included)",
    }


def stream_sync(a, n: int) -> float:
    for ref in a.stream.remote(max(10, n // 10)):  # warm-up
        ray.get(ref)
    t0 = time.perf_counter()
    got = 0
    for ref in a.stream.remote(n):
        ray.get(ref)
        got += 1
    el = time.perf_counter() - t0
    if got != n:
        raise RuntimeError(f"stream: {got} of {n} items")
    return n / el


def wl_stream_local(q):
    # The driver ray.get()s each item: on this machine that is 1.3-1.4x faster than `async for`
    # + `await` of each ref, for either actor kind (the actor side is the workload's async one).
    a = AsyncActor.remote()
    ips = stream_sync(a, scaled(P.STREAM_ITEMS, q))
    return {
        "items_per_s": ips,
        "note": IN_PROCESS_NOTE + "; async actor, async-generator method, "
        "num_returns='streaming', driver ray.get()s each item ref",
    }


def wl_remote_stream(q):
    a = SyncActor.remote()
    ips = stream_sync(a, scaled(P.STREAM_ITEMS, q))
    return {
        "items_per_s": ips,
        "note": "generator method, num_returns='streaming', driver ray.get()s each item ref",
    }


def wl_remote_ask_1(q):
    a = SyncActor.remote()
    r = seq_asks(a, scaled(P.REMOTE_ASK_N, q))
    del r["ops_per_s"]
    return {
        **r,
        "note": "driver -> actor worker process on one node (every Ray call crosses processes)",
    }


def inflight_workload(q, conc: int) -> dict:
    # A threaded actor: for this trivial method it answered 1.3-1.6x more calls/s than an async
    # actor with the same max_concurrency (3 runs each, 64 in flight, same driver).
    a = SyncActor.options(max_concurrency=conc).remote()
    ray.get(a.ping.remote(0))

    async def run():
        await in_flight(a, conc, scaled(P.WARMUP, q))
        return await in_flight(a, conc, scaled(P.REMOTE_INFLIGHT_N, q))

    r = asyncio.run(run())
    r["note"] = (
        f"threaded actor, max_concurrency={conc}; {conc} driver coroutines each "
        "awaiting one call at a time"
    )
    return r


def wl_remote_ask_64(q):
    return inflight_workload(q, P.INFLIGHT_SMALL)


def wl_remote_tput_256(q):
    r = inflight_workload(q, P.INFLIGHT_LARGE)
    return {"ops_per_s": r["ops_per_s"], "note": r["note"]}


def payload(size: int, n: int) -> dict:
    arr = np.ones(size, dtype=np.uint8)
    a = SyncActor.remote(size)
    ray.get(a.ping.remote(0))
    for _ in range(2):  # warm-up
        assert ray.get(a.nbytes.remote(arr)) == size
        assert ray.get(a.reply.remote()).nbytes == size
    t0 = time.perf_counter()
    for _ in range(n):
        if ray.get(a.nbytes.remote(arr)) != size:
            raise RuntimeError("request: wrong size at the actor")
    req = size * n / (time.perf_counter() - t0) / 1e9
    t0 = time.perf_counter()
    for _ in range(n):
        if ray.get(a.reply.remote()).nbytes != size:
            raise RuntimeError("reply: wrong size at the driver")
    rep = size * n / (time.perf_counter() - t0) / 1e9
    return {
        "req_gb_per_s": req,
        "reply_gb_per_s": rep,
        "note": "array passed as the argument each call / returned by the actor; Ray puts "
        "it in its shared-memory object store, the reply is a zero-copy read-only view",
    }


def wl_payload_1mib(q):
    return payload(P.PAYLOAD_1MIB, scaled(P.PAYLOAD_1MIB_N, q))


def wl_payload_64mib(q):
    return payload(P.PAYLOAD_64MIB, scaled(P.PAYLOAD_64MIB_N, q))


def wl_spawn(q):
    n, note = actor_count(P.SPAWN_N, q)
    warm = spawn_ready(SyncActor, 1)
    t0 = time.perf_counter()
    actors = spawn_ready(SyncActor, n)
    el = time.perf_counter() - t0
    del actors, warm
    r = {"spawns_per_s": n / el, "count": n}
    r["note"] = "unnamed actors, counted when each answered a first call" + (
        "; " + note if note else ""
    )
    return r


def wl_idle_memory(q):
    n, note = actor_count(P.IDLE_ACTORS, q)
    actors = spawn_ready(SyncActor, n)
    pids = ray.get([a.pid.remote() for a in actors])
    if len(set(pids)) != n:
        raise RuntimeError(f"idle_memory: {len(set(pids))} worker pids for {n} actors")
    time.sleep(1.0)
    rss = pss = 0
    for pid in pids:
        r, p = rss_pss(pid)
        rss += r
        pss += p
    return {
        "bytes_per_actor": rss / n,
        "pss_bytes_per_actor": pss / n,
        "count": n,
        "note": "each actor is a worker process: sum of their VmRSS / count (RSS counts "
        "shared libraries in every process; PSS shares them out)" + ("; " + note if note else ""),
    }


@ray.remote
class Creator:
    """Creates the named actor, so that the driver's first lookup cannot come from its cache."""

    def make(self, name):
        self.target = SyncActor.options(name=name).remote()
        return ray.get(self.target.ping.remote(0))


def resolve_lat(name: str, n: int) -> list[int]:
    for _ in range(max(1, n // 10)):  # warm-up
        ray.get_actor(name)
    lat = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t = clock()
        ray.get_actor(name)
        lat.append(clock() - t)
    return lat


def wl_resolve(q):
    # The published figure resolves an actor another process named (the reason to resolve at
    # all); an actor this driver created itself resolves from its core worker's cache, ~10x
    # faster, reported as "own_p50_us"/"own_p99_us".
    n = scaled(P.RESOLVE_N, q)
    creator = Creator.remote()
    ray.get(creator.make.remote("resolve-target"))
    r = pct(resolve_lat("resolve-target", n))
    own = SyncActor.options(name="resolve-own").remote()
    ray.get(own.ping.remote(0))
    o = pct(resolve_lat("resolve-own", n))
    return {
        **r,
        "own_p50_us": o["p50_us"],
        "own_p99_us": o["p99_us"],
        "note": "ray.get_actor(name) of an actor named by another actor (a GCS lookup each "
        "time); own_*: of an actor the driver created (answered from its cache)",
    }


async def stress_run(actors, callers: int, seconds: float, warm_s: float) -> dict:
    lat: list[int] = []
    counts = {"asks": 0, "streams": 0, "items": 0}
    clock = time.perf_counter_ns
    measuring = False
    stop_at = 0.0

    async def caller(k: int):
        rng = random.Random(k)
        i = 0
        while time.monotonic() < stop_at:
            a = actors[rng.randrange(len(actors))]
            i += 1
            t = clock()
            if i % P.STRESS_STREAM_EVERY == 0:
                got = 0
                async for ref in a.stream.remote(P.STRESS_STREAM_ITEMS):
                    await ref
                    got += 1
                if got != P.STRESS_STREAM_ITEMS:
                    raise RuntimeError(f"stress: stream gave {got} items")
                kind = "streams"
            else:
                await a.ping.remote(i)
                kind = "asks"
            if measuring:
                lat.append(clock() - t)
                counts[kind] += 1
                if kind == "streams":
                    counts["items"] += P.STRESS_STREAM_ITEMS

    stop_at = time.monotonic() + warm_s
    await asyncio.gather(*(caller(k) for k in range(callers)))
    measuring = True
    t0 = time.monotonic()
    stop_at = t0 + seconds
    await asyncio.gather(*(caller(1000 + k) for k in range(callers)))
    el = time.monotonic() - t0
    ops = counts["asks"] + counts["streams"]
    return {
        **pct(lat),
        "ops_total": ops,
        "ops_per_s": ops / el,
        "asks": counts["asks"],
        "streams": counts["streams"],
        "stream_items": counts["items"],
        "seconds": el,
    }


def wl_stress(q):
    n, note = actor_count(P.STRESS_ACTORS, q)
    # plain actors: 1.6-1.7x the ops/s of async actors here (2 runs each, --quick)
    actors = spawn_ready(SyncActor, n)
    seconds = P.STRESS_SECONDS / 5 if q else P.STRESS_SECONDS
    r = asyncio.run(stress_run(actors, P.STRESS_CALLERS, seconds, 1.0))
    r["count"] = n
    r["note"] = (
        f"{n} actors, {P.STRESS_CALLERS} driver coroutines, random actor per "
        f"call, one call in {P.STRESS_STREAM_EVERY} a stream of "
        f"{P.STRESS_STREAM_ITEMS} items; an op is one call (a whole stream counts once)"
        + ("; " + note if note else "")
    )
    return r


# init_ready is measured in main(): ray.init itself is part of it
WORKLOADS = {name[3:]: fn for name, fn in globals().items() if name.startswith("wl_")}


def main() -> int:
    if (
        len(sys.argv) < 2
        or sys.argv[1] not in P.WORKLOADS
        or any(a != "--quick" for a in sys.argv[2:])
    ):
        print(f"usage: {sys.argv[0]} <{'|'.join(P.WORKLOADS)}> [--quick]", file=sys.stderr)
        return 2
    name, quick = sys.argv[1], "--quick" in sys.argv[2:]
    out: dict = {"workload": name, "system": SYSTEM}
    if name in UNSUPPORTED:
        out["unsupported"] = UNSUPPORTED[name]
        print(json.dumps(out), flush=True)
        return 0
    tmp = tempfile.mkdtemp(prefix="wlray", dir="/tmp")
    procs: dict[int, str] = {}
    ok = False
    try:
        t0 = time.perf_counter()
        init_ray(tmp)
        if name == "init_ready":
            a = SyncActor.remote()
            ray.get(a.ping.remote(0))
            res = {
                "ms": (time.perf_counter() - t0) * 1e3,
                "note": "from before ray.init (import excluded) to the first answer of a new actor",
            }
        else:
            res = WORKLOADS[name](quick)
        out.update(res)
        ok = True
    finally:
        procs = descendants()
        try:
            ray.shutdown()
        finally:
            killed = reap(procs)
            if killed:
                out["leftover_killed"] = killed
            if ok:
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                print(f"wl_ray: Ray logs kept in {tmp}", file=sys.stderr)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
