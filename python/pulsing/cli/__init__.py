"""The `pulsing` command: inspect a running cluster, host an actor, load-test a method.

    pulsing inspect cluster|actors|metrics (--seeds h:p[,..] | --endpoint h:p) [--json]
    pulsing inspect watch (--seeds ... | --endpoint ...) [--interval S]
    pulsing actor module.Class [--addr h:p] [--seeds ...] [--name x] [-- ctor args]
    pulsing bench --endpoint h:p --actor name --method m [--concurrency N] [--duration S]

Errors the user can cause (unreachable node, unknown actor, class that cannot be imported) end
the command with one line on stderr and exit status 1; usage errors likewise with status 2. Set
PULSING_DEBUG=1 for the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

__all__ = ["CliError", "main"]


class CliError(Exception):
    """An error to report as one line (`pulsing: error: <message>`) and exit 1."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line too (exit status 2, as argparse does)."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see '{self.prog} --help')")
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    from pulsing.cli import actor_cmd, bench_cmd, inspect_cmd

    p = _Parser(prog="pulsing", description="Pulsing command-line tools.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    inspect_cmd.add_parser(sub)
    actor_cmd.add_parser(sub)
    bench_cmd.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" belongs to the hosted actor's constructor (pulsing actor).
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = _parser().parse_args(argv)
    args.extra = extra
    try:
        return int(args.func(args) or 0)
    except CliError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:
        if os.environ.get("PULSING_DEBUG"):
            raise
        _fail(f"{type(e).__name__}: {e}")
    return 1


def _fail(msg: str) -> None:
    first = msg.strip().splitlines()[0] if msg.strip() else "failed"
    print(f"pulsing: error: {first}", file=sys.stderr, flush=True)
