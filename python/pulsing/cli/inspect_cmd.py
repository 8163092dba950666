"""`pulsing inspect cluster|actors|metrics|watch`: read a running cluster's REST endpoints
(/cluster/members, /actors, /metrics) through the runtime's own HTTP/2 client."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any

from pulsing.cli import CliError
from pulsing.cli._common import (
    add_target_args,
    first_answering,
    get_json,
    get_text,
    print_json,
    print_table,
    target_addrs,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("inspect", help="show the members, actors or metrics of a running cluster")
    isub = p.add_subparsers(dest="what", metavar="WHAT")
    isub.required = True
    for name, fn, helptext in (
        ("cluster", _cluster, "members as the first answering node sees them"),
        ("actors", _actors, "named actors of every live member"),
        ("metrics", _metrics, "Prometheus metrics of every live member"),
    ):
        q = isub.add_parser(name, help=helptext)
        add_target_args(q)
        q.add_argument("--json", action="store_true", help="print JSON instead of a table")
        if name == "actors":
            q.add_argument("--all", action="store_true", help="include system/ actors")
        q.set_defaults(func=lambda a, fn=fn: _run(fn, a))
    w = isub.add_parser("watch", help="print membership and actor changes as they happen")
    add_target_args(w)
    w.add_argument("--interval", type=float, default=1.0, help="seconds between polls (1)")
    w.add_argument("--count", type=int, default=0, help="stop after N polls (default: Ctrl-C)")
    w.add_argument("--all", action="store_true", help="include system/ actors")
    w.set_defaults(func=lambda a: _run(_watch, a))


def _run(fn: Any, args: argparse.Namespace) -> int:
    addrs = target_addrs(args)

    async def go() -> int:
        import pulsing as pul

        system = await pul.actor_system()  # no listener: a client only
        try:
            return await fn(system, addrs, args)
        finally:
            await system.shutdown()

    return asyncio.run(go())


def _alive(members: list[dict]) -> list[dict]:
    return [m for m in members if m.get("status") == "Alive" and m.get("addr")]


async def _cluster(system: Any, addrs: list[str], args: argparse.Namespace) -> int:
    via, members = await first_answering(system, addrs)
    if args.json:
        print_json({"via": via, "members": members})
        return 0
    rows = [
        (m.get("node_id"), m.get("addr"), m.get("status"), m.get("incarnation")) for m in members
    ]
    print_table(
        f"cluster via {via}: {len(members)} member(s)",
        ("node_id", "addr", "status", "incarnation"),
        rows,
    )
    return 0


async def _actors_of(system: Any, members: list[dict], show_all: bool) -> list[dict]:
    """Actor rows of every live member, queried in parallel; unreachable members are reported
    on stderr and skipped."""

    async def one(m: dict) -> list[dict]:
        try:
            acts = await get_json(system, m["addr"], "/actors")
        except CliError as e:
            print(f"pulsing: warning: {e}", file=sys.stderr)
            return []
        return [
            {
                "node_id": m["node_id"],
                "addr": m["addr"],
                "name": a.get("name"),
                "actor_id": a.get("actor_id"),
            }
            for a in acts
            if show_all or not (a.get("name") or "").startswith("system/")
        ]

    rows: list[dict] = []
    for part in await asyncio.gather(*(one(m) for m in _alive(members))):
        rows.extend(part)
    return rows


async def _actors(system: Any, addrs: list[str], args: argparse.Namespace) -> int:
    _via, members = await first_answering(system, addrs)
    rows = await _actors_of(system, members, args.all)
    if args.json:
        print_json(rows)
        return 0
    print_table(
        f"{len(rows)} actor(s) on {len(_alive(members))} live member(s)",
        ("node", "name", "actor_id"),
        [(r["addr"], r["name"] or "-", r["actor_id"]) for r in rows],
    )
    return 0


def parse_prometheus(text: str) -> dict[str, float]:
    """`name{labels}` -> value for every sample line of a Prometheus text exposition."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


async def _metrics(system: Any, addrs: list[str], args: argparse.Namespace) -> int:
    _via, members = await first_answering(system, addrs)
    per_node: dict[str, dict[str, float]] = {}
    for m in _alive(members):
        try:
            per_node[m["addr"]] = parse_prometheus(await get_text(system, m["addr"], "/metrics"))
        except CliError as e:
            print(f"pulsing: warning: {e}", file=sys.stderr)
    if args.json:
        print_json(per_node)
        return 0
    rows = []
    for addr, samples in per_node.items():
        for k, v in samples.items():
            rows.append((addr, k, f"{v:g}"))
    print_table(f"metrics of {len(per_node)} node(s)", ("node", "metric", "value"), rows)
    return 0


async def _watch(system: Any, addrs: list[str], args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    members_seen: dict[str, dict] = {}
    actors_seen: dict[tuple, dict] = {}
    reachable = True
    polls = 0

    def say(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    while not stop.is_set():
        try:
            via, members = await first_answering(system, addrs)
        except CliError as e:
            if reachable:
                say(f"! {e}")
            reachable = False
        else:
            if not reachable:
                say(f"* reachable again via {via}")
            reachable = True
            now = {m["node_id"]: m for m in members}
            for nid, m in now.items():
                old = members_seen.get(nid)
                if old is None:
                    say(f"+ member {m.get('addr') or '-'} {nid} {m.get('status')}")
                elif old.get("status") != m.get("status"):
                    say(f"~ member {m.get('addr') or '-'} {old.get('status')} -> {m.get('status')}")
            for nid, m in members_seen.items():
                if nid not in now:
                    say(f"- member {m.get('addr') or '-'} {nid}")
            members_seen = now
            acts = {
                (r["addr"], r["actor_id"]): r for r in await _actors_of(system, members, args.all)
            }
            for k, r in acts.items():
                if k not in actors_seen:
                    say(f"+ actor {r['name'] or '-'} on {r['addr']} ({r['actor_id']})")
            for k, r in actors_seen.items():
                if k not in acts:
                    say(f"- actor {r['name'] or '-'} on {r['addr']} ({r['actor_id']})")
            actors_seen = acts
        polls += 1
        if args.count and polls >= args.count:
            break
        try:
            await asyncio.wait_for(stop.wait(), args.interval)
        except asyncio.TimeoutError:
            pass
    return 0
