"""Workloads shared by every system in `make bench-compare`.

One table, one source of truth: the harness (`run.py`), the Pulsing-API driver (`wl_pulsing.py`,
which drives both this project and the original Rust Pulsing 0.1.2) and the Ray driver
(`wl_ray.py`) all read their sizes, counts and concurrency from here, so every system runs the
same work. Pure Python, no imports beyond the standard library: each driver runs in its own
virtual environment.

Protocol between the harness and a driver:
    <python> bench/compare/wl_<driver>.py <workload> [--quick]
runs ONE workload once in a fresh process (warm-up included and excluded from the figures) and
prints, as its last line on stdout, one JSON object:
    {"workload": "...", "system": "...", <metric>: <number>, ...}
or, when the system cannot do the workload,
    {"workload": "...", "system": "...", "unsupported": "<one-line reason>"}
A non-zero exit or no JSON line is reported as "failed" in the table (never hidden).
Drivers may add "note": "<text>" (e.g. Ray runs "in-process" actors in worker processes).
"""

# workload -> (description, {metric: (unit, better)}), in table order
WORKLOADS = {
    "ask_sync": ("in-process ask, sync method, 1 in flight",
                 {"p50_us": ("us", "low"), "p99_us": ("us", "low"), "ops_per_s": ("ops/s", "high")}),
    "ask_async": ("in-process ask, async method, 1 in flight",
                  {"p50_us": ("us", "low"), "p99_us": ("us", "low"), "ops_per_s": ("ops/s", "high")}),
    "tell": ("in-process tell (fire and forget), then one ask to flush",
             {"ops_per_s": ("ops/s", "high")}),
    "stream_local": ("in-process stream items/s (async generator)",
                     {"items_per_s": ("items/s", "high")}),
    "remote_ask_1": ("cross-process ask, 1 in flight",
                     {"p50_us": ("us", "low"), "p99_us": ("us", "low")}),
    "remote_ask_64": ("cross-process ask, 64 in flight",
                      {"p50_us": ("us", "low"), "p99_us": ("us", "low"), "ops_per_s": ("ops/s", "high")}),
    "remote_tput_256": ("cross-process asks/s, 256 in flight",
                        {"ops_per_s": ("ops/s", "high")}),
    "remote_stream": ("cross-process stream items/s",
                      {"items_per_s": ("items/s", "high")}),
    "payload_1mib": ("1 MiB numpy array to a remote actor and back",
                     {"req_gb_per_s": ("GB/s", "high"), "reply_gb_per_s": ("GB/s", "high")}),
    "payload_64mib": ("64 MiB numpy array to a remote actor and back",
                      {"req_gb_per_s": ("GB/s", "high"), "reply_gb_per_s": ("GB/s", "high")}),
    "spawn": ("spawn rate (actors/s)", {"spawns_per_s": ("spawns/s", "high")}),
    "idle_memory": ("RSS per idle actor", {"bytes_per_actor": ("bytes", "low")}),
    "init_ready": ("init() to first answered ask", {"ms": ("ms", "low")}),
    "resolve": ("named resolve latency", {"p50_us": ("us", "low"), "p99_us": ("us", "low")}),
    "stress": ("many actors, many callers, mixed ask and stream",
               {"p50_us": ("us", "low"), "p99_us": ("us", "low"), "ops_total": ("ops", "high"),
                "ops_per_s": ("ops/s", "high")}),
    "convergence_5": ("5 node processes converge (Pulsing only)", {"s": ("s", "low")}),
    "dead_detect": ("kill -9 declared Dead by every survivor (Pulsing only)", {"s": ("s", "low")}),
}

# sizes and counts (the --quick values in brackets are for smoke tests only, never published)
ASK_N = 20_000            # sequential asks measured (after WARMUP)
WARMUP = 2_000
TELL_N = 100_000
STREAM_ITEMS = 100_000
REMOTE_ASK_N = 5_000
REMOTE_INFLIGHT_N = 20_000
INFLIGHT_SMALL = 64
INFLIGHT_LARGE = 256
PAYLOAD_1MIB = 1 << 20
PAYLOAD_1MIB_N = 200
PAYLOAD_64MIB = 64 << 20
PAYLOAD_64MIB_N = 10
SPAWN_N = 2_000
IDLE_ACTORS = 2_000
RESOLVE_N = 2_000
STRESS_ACTORS = 200
STRESS_CALLERS = 64
STRESS_SECONDS = 10.0
STRESS_STREAM_EVERY = 10   # one call in ten is a stream of STRESS_STREAM_ITEMS items
STRESS_STREAM_ITEMS = 10
QUICK_DIVISOR = 20         # --quick divides counts (not payload sizes) by this
# A measured phase also stops after this many seconds (its warm-up after a quarter of it), so a
# system that is orders of magnitude slower (e.g. 40 ms per cross-process ask) still finishes
# within the harness's per-process timeout; drivers report the count they reached as "n".
# (--quick divides it too.) Added after the first version of this file: drivers that ignore it
# simply run their full counts.
PHASE_BUDGET_S = 10.0

RUNS_DEFAULT = 5
SYSTEMS = ("pulsing", "pulsing-0.1.2", "ray-2.60.0")
