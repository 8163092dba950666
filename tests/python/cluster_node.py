"""One node of a test cluster, as its own process.

    python cluster_node.py [--seeds A,B] [--spawn Class:name ...] [--head | --head-addr A]
                           [--bind 127.0.0.1:0] [--tolerant-timings | --default-timings]

Starts `pul.init(addr=..., seeds=...)` (short membership timings, or timings that tolerate a
starved process with --tolerant-timings, or the defaults with --default-timings; only when the
API accepts them), spawns the named actors (classes from `cluster_actors`), prints ONE JSON
line on stdout `{"addr": ..., "node_id": ..., "pid": ...}` and serves until SIGTERM, SIGINT,
"quit" on stdin or EOF on stdin, then shuts down gracefully (leave message) and exits 0.

Commands on stdin, one per line, each answered by one JSON line on stdout:
    members    -> {"members": [...]}          this node's membership view
    named      -> {"named": [...]}            all_named_actors() as this node sees it
    spawn C:n  -> {"spawned": n}
    quit       -> graceful shutdown
A failure at start prints {"error": "..."} and exits 1. The process dies with its parent
(PR_SET_PDEATHSIG), so a crashed test runner leaves no node behind.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import inspect
import json
import os
import signal
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def _die_with_parent() -> None:
    """SIGKILL this process when the process that started it goes away (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    expected = os.environ.get("PUL_NODE_PARENT_PID")
    if expected and os.getppid() != int(expected):
        os._exit(3)  # the parent died before prctl took effect


# Short membership timings for tests (docs/design/membership.md): failures are detected in a
# couple of seconds instead of ~5-25 s. Only passed when the API accepts them.
FAST_TIMING = {
    "probe_interval_ms": 200,
    "probe_timeout_ms": 100,
    "gossip_interval_ms": 50,
    "suspicion_mult": 3,
    "push_pull_interval_ms": 2000,
    "join_retry_ms": 100,
    "dead_reclaim_ms": 60000,
    "heartbeat_interval_ms": 200,
    "heartbeat_timeout_ms": 1500,
}


# Timings that tolerate a process starved of CPU for seconds (a loaded test machine): memberlist's
# LAN probe pair and a long suspicion, so a live node is declared Dead only after ~7 s of
# silence; dissemination stays fast, so joins and names converge quickly. For tests that are not
# about failure detection (cluster_util.TOLERANT is the in-process twin).
TOLERANT_TIMING = {
    "probe_interval_ms": 1000,
    "probe_timeout_ms": 500,
    "gossip_interval_ms": 50,
    "suspicion_mult": 6,
    "push_pull_interval_ms": 2000,
    "join_retry_ms": 100,
    "dead_reclaim_ms": 60000,
    "heartbeat_interval_ms": 200,
    "heartbeat_timeout_ms": 10000,
}


def timing_kwargs(fn, timing: dict) -> dict:
    """The keyword arguments that carry membership timings, if `fn` (pul.init) accepts any."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    for key in ("timing", "cluster_timing", "membership"):
        if key in params:
            return {key: dict(timing)}
    return {k: v for k, v in timing.items() if k in params}


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


async def _spawn(spec: str) -> str:
    import cluster_actors
    import pulsing as pul

    cls_name, _, name = spec.partition(":")
    if cls_name in cluster_actors.LOW_LEVEL:
        await pul.spawn(cluster_actors.LOW_LEVEL[cls_name](), name=name or None)
        return name
    cls = cluster_actors.CLASSES[cls_name]
    await cls.spawn(name=name or None)
    return name


async def main(args: argparse.Namespace) -> int:
    import pulsing as pul

    kwargs: dict = {}
    if args.seeds:
        kwargs["seeds"] = [s for s in args.seeds.split(",") if s]
    if args.head:
        kwargs["is_head_node"] = True
    if args.head_addr:
        kwargs["head_addr"] = args.head_addr
    if not args.default_timings:
        timing = TOLERANT_TIMING if args.tolerant_timings else FAST_TIMING
        kwargs.update(timing_kwargs(pul.init, timing))
    try:
        bind = None if args.bind == "none" else args.bind  # "none": one process (self-test)
        system = await pul.init(addr=bind, **kwargs)
        for spec in args.spawn:
            await _spawn(spec)
    except Exception as e:  # noqa: BLE001 - reported to the harness
        _emit({"error": f"{type(e).__name__}: {e}"})
        traceback.print_exc()
        try:
            await pul.shutdown()
        except Exception:  # noqa: BLE001, S110 - the error above is what matters
            pass
        return 1

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def command(line: str) -> None:
        cmd, _, arg = line.strip().partition(" ")
        try:
            if cmd == "members":
                _emit({"members": await system.members()})
            elif cmd == "named":
                _emit({"named": await system.all_named_actors()})
            elif cmd == "spawn":
                _emit({"spawned": await _spawn(arg)})
            elif cmd == "quit":
                stop.set()
            elif cmd:
                _emit({"error": f"unknown command {cmd!r}"})
        except Exception as e:  # noqa: BLE001
            _emit({"error": f"{type(e).__name__}: {e}"})

    buf = b""

    def on_stdin() -> None:
        nonlocal buf
        try:
            data = os.read(sys.stdin.fileno(), 65536)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(sys.stdin.fileno())
            stop.set()  # the harness went away or closed our stdin: leave
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            loop.create_task(command(line.decode()))

    if not args.ignore_stdin:
        loop.add_reader(sys.stdin.fileno(), on_stdin)

    _emit({"addr": system.addr, "node_id": str(int(system.node_id)), "pid": os.getpid()})
    await stop.wait()
    await pul.shutdown()
    return 0


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default="127.0.0.1:0")
    ap.add_argument("--seeds", default="")
    ap.add_argument("--spawn", action="append", default=[], metavar="Class:name")
    ap.add_argument("--head", action="store_true", help="head-node mode: this node is the head")
    ap.add_argument("--head-addr", default=None, help="head-node mode: the head's address")
    ap.add_argument("--default-timings", action="store_true")
    ap.add_argument("--tolerant-timings", action="store_true")
    ap.add_argument("--ignore-stdin", action="store_true")
    return ap.parse_args(argv)


if __name__ == "__main__":
    _die_with_parent()
    sys.exit(asyncio.run(main(parse_args())))
