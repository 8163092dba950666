"""Shared pieces of the CLI: endpoint arguments, REST reads through the runtime's HTTP/2 client,
and tables (rich when installed and stdout is a terminal, plain text otherwise)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from pulsing.cli import CliError

REST_TIMEOUT = 3.0


def add_target_args(p: argparse.ArgumentParser) -> None:
    """--seeds / --endpoint (one of them is required)."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--seeds", help="comma-separated host:port list; the first that answers is used")
    g.add_argument("--endpoint", help="host:port of one node")


def check_addr(addr: str, *, listen: bool = False) -> str:
    """Validate "host:port" (IPv6 as "[addr]:port"; port 0 only when `listen`); raises
    CliError."""
    host, sep, port = addr.strip().rpartition(":")
    lo = 0 if listen else 1
    if not sep or not host or not port.isdigit() or not lo <= int(port) < 65536:
        raise CliError(f"bad address {addr!r} (expected host:port)")
    return addr.strip()


def target_addrs(args: argparse.Namespace) -> list[str]:
    raw = args.endpoint if args.endpoint else args.seeds
    addrs = [check_addr(a) for a in raw.split(",") if a.strip()]
    if not addrs:
        raise CliError("no address given")
    return addrs


async def _get(system: Any, addr: str, path: str) -> bytes:
    """GET a REST endpoint's body; CliError when the node cannot be reached or answers non-200."""
    from pulsing.core.errors import failure_reason
    from pulsing.exceptions import PulsingRuntimeError

    try:
        status, body = await system.http_get(addr, path, timeout=REST_TIMEOUT)
    except PulsingRuntimeError as e:
        raise CliError(f"cannot reach node {addr}: {failure_reason(e)}") from None
    if status != 200:
        raise CliError(f"node {addr} answered {status} to GET {path}")
    return body


async def get_json(system: Any, addr: str, path: str) -> Any:
    """GET a JSON endpoint; CliError when the node cannot be reached or answers non-200."""
    body = await _get(system, addr, path)
    try:
        return json.loads(body)
    except ValueError:
        raise CliError(f"node {addr} sent malformed JSON for GET {path}") from None


async def get_text(system: Any, addr: str, path: str) -> str:
    return (await _get(system, addr, path)).decode("utf-8", "replace")


async def first_answering(system: Any, addrs: Sequence[str]) -> tuple[str, list[dict]]:
    """The first address whose /cluster/members answers, and that member list."""
    errors = []
    for a in addrs:
        try:
            return a, await get_json(system, a, "/cluster/members")
        except CliError as e:
            errors.append(str(e))
    if len(errors) == 1:
        raise CliError(errors[0])
    raise CliError(f"none of the seeds answered ({'; '.join(errors)})")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table on stdout: rich when installed and stdout is a terminal, plain text otherwise."""
    cells = [[("" if c is None else str(c)) for c in r] for r in rows]
    if sys.stdout.isatty():
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            pass
        else:
            t = Table(title=title)
            for h in headers:
                t.add_column(h)
            for r in cells:
                t.add_row(*r)
            Console().print(t)
            return
    widths = [len(h) for h in headers]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    out = [title] if title else []
    out.append("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    for r in cells:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if not cells:
        out.append("(none)")
    print("\n".join(out), flush=True)
