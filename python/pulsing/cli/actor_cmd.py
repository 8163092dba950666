"""`pulsing actor module.Class`: run a node hosting one actor until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib
import os
import signal
import sys
from typing import Any

from pulsing.cli import CliError
from pulsing.cli._common import check_addr


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "actor",
        help="run a node hosting one actor",
        description="Run a node hosting one actor of module.Class until SIGINT/SIGTERM (a second "
        "signal forces exit). The first line on stdout is 'pulsing: node HOST:PORT (node id ID) "
        "hosting NAME'. Arguments after '--' go to the constructor: '--key value' as keyword "
        "arguments (values read as Python literals when they parse, else as strings), bare "
        "values as positional arguments.",
    )
    p.add_argument("cls", metavar="module.Class", help="the actor class (also module:Class)")
    p.add_argument("--addr", default="127.0.0.1:0", help="listen address (127.0.0.1:0)")
    p.add_argument("--seeds", default="", help="comma-separated host:port of nodes to join")
    p.add_argument("--name", default=None, help="actor name (default: the class name)")
    p.set_defaults(func=run)


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_ctor_args(tokens: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """['--size', '3', '--verbose', 'x'] -> (['x'], {'size': 3, 'verbose': True})."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.startswith("--") and len(t) > 2:
            key, eq, val = t[2:].partition("=")
            key = key.replace("-", "_")
            if not key.isidentifier():
                raise CliError(f"bad constructor argument {t!r}")
            if eq:
                kwargs[key] = _literal(val)
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                kwargs[key] = _literal(tokens[i + 1])
                i += 1
            else:
                kwargs[key] = True
        else:
            args.append(_literal(t))
        i += 1
    return args, kwargs


def load_class(spec: str) -> Any:
    """Import module.Class (or module:Class); CliError with the reason when it cannot."""
    mod_name, sep, attr = spec.partition(":")
    if not sep:
        mod_name, _, attr = spec.rpartition(".")
    if not mod_name or not attr:
        raise CliError(f"cannot import {spec!r}: expected module.Class")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - ImportError, SyntaxError, errors at import time
        raise CliError(f"cannot import {spec!r}: {type(e).__name__}: {e}") from None
    obj = mod
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"cannot import {spec!r}: module {mod_name!r} has no {attr!r}") from None
    if not isinstance(obj, type) and not hasattr(obj, "spawn"):
        raise CliError(f"{spec!r} is not a class")
    return obj


async def _spawn(system: Any, cls: Any, name: str, args: list, kwargs: dict) -> Any:
    import pulsing as pul
    from pulsing.core import Actor
    from pulsing.core.remote import ActorClass

    if isinstance(cls, type) and issubclass(cls, Actor):
        return await system.spawn(cls(*args, **kwargs), name=name)
    if not isinstance(cls, ActorClass):
        cls = pul.remote(cls)
    return await cls.spawn(*args, system=system, name=name, **kwargs)


def run(args: argparse.Namespace) -> int:
    addr = check_addr(args.addr, listen=True)
    seeds = [check_addr(s) for s in args.seeds.split(",") if s.strip()]
    cls = load_class(args.cls)
    ctor_args, ctor_kwargs = parse_ctor_args(args.extra)
    name = args.name or getattr(cls, "__name__", None) or args.cls.rpartition(".")[2]
    return asyncio.run(_serve(addr, seeds, cls, name, ctor_args, ctor_kwargs))


async def _serve(addr: str, seeds: list[str], cls: Any, name: str, a: list, kw: dict) -> int:
    import pulsing as pul
    from pulsing.exceptions import PulsingError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            print("pulsing: second signal, exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        system = await pul.init(addr, seeds=seeds or None)
    except PulsingError as e:
        raise CliError(f"cannot start a node on {addr}: {e}") from None
    try:
        try:
            proxy = await _spawn(system, cls, name, a, kw)
        except PulsingError as e:
            raise CliError(f"cannot create {name!r}: {e}") from None
        except Exception as e:  # noqa: BLE001 - the user's constructor
            raise CliError(f"cannot create {name!r}: {type(e).__name__}: {e}") from None
        full = name if "/" in name else f"actors/{name}"
        print(
            f"pulsing: node {system.addr} (node id {int(system.node_id):032x}) hosting {full}",
            flush=True,
        )
        del proxy
        await stop.wait()
    finally:
        await pul.shutdown()
    print("pulsing: node stopped", file=sys.stderr, flush=True)
    return 0
