"""`pulsing bench`: call one method of a named actor with N concurrent callers for S seconds
and report throughput, latency percentiles and a histogram."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import sys
import time
from typing import Any

from pulsing.cli import CliError
from pulsing.cli._common import check_addr, get_json


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="load-test a method of a named actor in a running cluster",
        description="Join the cluster of --endpoint as a node (listening on the interface that "
        "faces the endpoint, port 0), resolve --actor by name and call --method with "
        "--concurrency callers for --duration seconds. A progress line goes to stderr when it is "
        "a terminal; the report (throughput, p50/p90/p99/max, histogram) to stdout.",
    )
    p.add_argument("--endpoint", required=True, help="host:port of a node of the cluster")
    p.add_argument("--actor", required=True, help="actor name (x or actors/x)")
    p.add_argument("--method", required=True, help="method to call")
    p.add_argument("--args", default="[]", help="JSON list of positional arguments ([])")
    p.add_argument("--concurrency", type=int, default=1, help="concurrent callers (1)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of load (5)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _local_host(endpoint: str) -> str:
    """The address of the interface that routes to endpoint (no packet is sent)."""
    host = endpoint.rpartition(":")[0].strip("[]")
    try:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            local = s.getsockname()[0]
    except OSError:
        return "0.0.0.0"
    return f"[{local}]" if ":" in local else local


def run(args: argparse.Namespace) -> int:
    endpoint = check_addr(args.endpoint)
    if args.concurrency < 1:
        raise CliError("--concurrency must be at least 1")
    if not args.duration > 0:
        raise CliError("--duration must be positive")
    try:
        call_args = json.loads(args.args)
    except ValueError as e:
        raise CliError(f"--args is not JSON: {e}") from None
    if not isinstance(call_args, list):
        raise CliError("--args must be a JSON list")
    report = asyncio.run(_bench(endpoint, args, call_args))
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(_format(report), flush=True)
    return 0 if report["calls"] > 0 else 1


async def _find_actor(system: Any, endpoint: str, name: str) -> None:
    """CliError at once unless a live member lists the actor (quicker and clearer than waiting
    for resolve to time out)."""
    members = await get_json(system, endpoint, "/cluster/members")
    full = name if "/" in name else f"actors/{name}"
    for m in members:
        if m.get("status") != "Alive" or not m.get("addr"):
            continue
        try:
            acts = await get_json(system, m["addr"], "/actors")
        except CliError:
            continue
        if any(a.get("name") == full for a in acts):
            return
    raise CliError(f"no actor named {full!r} in the cluster of {endpoint}")


async def _bench(endpoint: str, args: argparse.Namespace, call_args: list) -> dict:
    import pulsing as pul
    from pulsing.exceptions import PulsingError

    probe = await pul.actor_system()
    try:
        await _find_actor(probe, endpoint, args.actor)
    finally:
        await probe.shutdown()
    try:
        system = await pul.actor_system(f"{_local_host(endpoint)}:0", seeds=[endpoint])
    except PulsingError as e:
        raise CliError(f"cannot start a node to join {endpoint}: {e}") from None
    try:
        try:
            ref = await system.resolve(args.actor, timeout=10.0)
        except PulsingError as e:
            raise CliError(f"cannot resolve actor {args.actor!r}: {e}") from None
        proxy = ref.as_any()
        # One call first: a wrong method name fails here, with the actor's message.
        try:
            await getattr(proxy, args.method)(*call_args)
        except PulsingError as e:
            raise CliError(f"{args.actor}.{args.method}() failed: {e}") from None
        return await _load(proxy, args, call_args)
    finally:
        await system.shutdown()


async def _load(proxy: Any, args: argparse.Namespace, call_args: list) -> dict:
    lat: list[float] = []
    errors: dict[str, int] = {}
    start = time.perf_counter()
    end = start + args.duration

    async def caller() -> None:
        method = getattr(proxy, args.method)
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                await method(*call_args)
            except Exception as e:  # noqa: BLE001 - counted, the load goes on
                key = f"{type(e).__name__}: {e}"[:120]
                errors[key] = errors.get(key, 0) + 1
                continue
            lat.append(time.perf_counter() - t0)

    async def progress() -> None:
        width = 30
        while True:
            now = time.perf_counter()
            frac = min(1.0, (now - start) / args.duration)
            done = int(frac * width)
            rate = len(lat) / max(now - start, 1e-9)
            sys.stderr.write(
                f"\r[{'#' * done}{'.' * (width - done)}] {now - start:5.1f}/{args.duration:g}s "
                f"{len(lat):>9} calls {rate:>10.0f}/s"
            )
            sys.stderr.flush()
            if frac >= 1.0:
                return
            await asyncio.sleep(0.2)

    bar = asyncio.ensure_future(progress()) if sys.stderr.isatty() else None
    await asyncio.gather(*(caller() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - start
    if bar is not None:
        bar.cancel()
        sys.stderr.write("\n")
    lat.sort()
    return {
        "actor": args.actor,
        "method": args.method,
        "concurrency": args.concurrency,
        "duration_s": round(elapsed, 3),
        "calls": len(lat),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "throughput": len(lat) / elapsed if elapsed > 0 else 0.0,
        "latency_ms": {
            "p50": _pct(lat, 50) * 1e3,
            "p90": _pct(lat, 90) * 1e3,
            "p99": _pct(lat, 99) * 1e3,
            "max": (lat[-1] if lat else 0.0) * 1e3,
        },
        "histogram": _histogram(lat),
    }


def _pct(sorted_lat: list[float], p: float) -> float:
    if not sorted_lat:
        return 0.0
    k = max(0, math.ceil(p / 100 * len(sorted_lat)) - 1)
    return sorted_lat[k]


def _histogram(sorted_lat: list[float]) -> list[dict]:
    """Counts per power-of-two bucket of milliseconds (upper bounds), empty edges trimmed."""
    if not sorted_lat:
        return []
    bounds = [1e-6 * 2**i for i in range(40)]  # seconds: 1 µs .. ~6 days
    counts = [0] * len(bounds)
    i = 0
    for v in sorted_lat:
        while i < len(bounds) - 1 and v > bounds[i]:
            i += 1
        counts[i] += 1
    lo = next(j for j, c in enumerate(counts) if c)
    hi = max(j for j, c in enumerate(counts) if c)
    return [{"le_ms": bounds[j] * 1e3, "count": counts[j]} for j in range(lo, hi + 1)]


def _format(r: dict) -> str:
    lm = r["latency_ms"]
    out = [
        (
            f"{r['actor']}.{r['method']}: {r['calls']} calls in {r['duration_s']:.2f}s with "
            f"concurrency {r['concurrency']}, {r['errors']} errors"
        ),
        f"throughput  {r['throughput']:.1f} calls/s",
        (
            f"latency ms  p50 {lm['p50']:.3f}  p90 {lm['p90']:.3f}  p99 {lm['p99']:.3f}  "
            f"max {lm['max']:.3f}"
        ),
    ]
    for kind, n in r["error_kinds"].items():
        out.append(f"error x{n}: {kind}")
    hist = r["histogram"]
    if hist:
        out.append("histogram (ms, upper bound):")
        top = max(h["count"] for h in hist)
        for h in hist:
            bar = "#" * max(1 if h["count"] else 0, round(40 * h["count"] / top))
            out.append(f"  <= {h['le_ms']:>10.3f} | {bar:<40} {h['count']}")
    return "\n".join(out)
