"""The `pulsing` command driven as a user would: subprocesses against a real node on loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIRST_LINE = re.compile(
    r"^pulsing: node (127\.0\.0\.1:\d+) \(node id ([0-9a-f]{32})\) hosting (\S+)$"
)

_procs: list[subprocess.Popen] = []


def _cmd() -> list[str]:
    script = Path(sys.executable).with_name("pulsing")
    if script.exists():
        return [str(script)]
    found = shutil.which("pulsing")
    return [found] if found else [sys.executable, "-m", "pulsing"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env.pop("PULSING_DEBUG", None)
    return env


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*_cmd(), *args], env=_env(), check=False, capture_output=True, text=True, timeout=timeout
    )


def start_node(*args: str) -> tuple[subprocess.Popen, str, str]:
    """Start `pulsing actor ...`; returns (process, addr, first line)."""
    p = subprocess.Popen(
        [*_cmd(), "actor", *args],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _procs.append(p)
    line: list[str] = []
    t = threading.Thread(target=lambda: line.append(p.stdout.readline()), daemon=True)
    t.start()
    t.join(20)
    if not line or not line[0]:
        p.kill()
        _, err = p.communicate(timeout=10)
        pytest.fail(f"node did not start: {err}")
    m = FIRST_LINE.match(line[0].strip())
    assert m, line[0]
    return p, m.group(1), line[0].strip()


@pytest.fixture(scope="module", autouse=True)
def _kill_all():
    yield
    for p in _procs:
        if p.poll() is None:
            p.kill()
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            print(f"process {p.pid} did not exit after SIGKILL", file=sys.stderr)
    _procs.clear()


@pytest.fixture(scope="module")
def node():
    _p, addr, first = start_node("cli_actors.Echo", "--addr", "127.0.0.1:0", "--name", "x")
    return addr, first


def dead_addr() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0, r
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("pulsing: error: "), lines
    return lines[0]


def test_first_line(node):
    _addr, first = node
    assert first.endswith("hosting actors/x")


def test_inspect_cluster(node):
    addr, first = node
    r = run("inspect", "cluster", "--endpoint", addr)
    assert r.returncode == 0, r.stderr
    assert addr in r.stdout and "Alive" in r.stdout and "NODE_ID" in r.stdout
    assert FIRST_LINE.match(first).group(2) in r.stdout
    r = run("inspect", "cluster", "--endpoint", addr, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["via"] == addr
    me = [m for m in doc["members"] if m["addr"] == addr]
    assert me and me[0]["status"] == "Alive"


def test_inspect_seeds_first_that_answers(node):
    addr, _ = node
    r = run("inspect", "cluster", "--seeds", f"{dead_addr()},{addr}", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["via"] == addr


def test_inspect_actors(node):
    addr, _ = node
    r = run("inspect", "actors", "--endpoint", addr)
    assert r.returncode == 0, r.stderr
    assert "actors/x" in r.stdout and "system/" not in r.stdout
    r = run("inspect", "actors", "--endpoint", addr, "--json", "--all")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    names = {row["name"] for row in rows if row["addr"] == addr}
    assert "actors/x" in names and any(n and n.startswith("system/") for n in names)


def test_inspect_metrics(node):
    addr, _ = node
    r = run("inspect", "metrics", "--endpoint", addr)
    assert r.returncode == 0, r.stderr
    assert "pulsing_actors" in r.stdout
    r = run("inspect", "metrics", "--endpoint", addr, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[addr]["pulsing_actors"] >= 1


def test_inspect_watch(node):
    addr, _ = node
    r = run("inspect", "watch", "--endpoint", addr, "--count", "2", "--interval", "0.1")
    assert r.returncode == 0, r.stderr
    assert f"+ member {addr}" in r.stdout and "+ actor actors/x" in r.stdout


def test_bench(node):
    addr, _ = node
    r = run(
        "bench",
        "--endpoint",
        addr,
        "--actor",
        "x",
        "--method",
        "ping",
        "--args",
        "[7]",
        "--concurrency",
        "4",
        "--duration",
        "1",
    )
    assert r.returncode == 0, r.stderr
    assert "throughput" in r.stdout and "p50" in r.stdout and "p99" in r.stdout
    assert "histogram" in r.stdout and "#" in r.stdout
    m = re.search(r"(\d+) calls in [\d.]+s with concurrency 4, 0 errors", r.stdout)
    assert m and int(m.group(1)) > 0, r.stdout
    # stderr is not a terminal: no progress line.
    assert r.stderr == ""


def test_unreachable_endpoint():
    line = one_line_error(run("inspect", "cluster", "--endpoint", dead_addr()))
    assert "cannot reach" in line
    line = one_line_error(run("bench", "--endpoint", dead_addr(), "--actor", "x", "--method", "m"))
    assert "cannot reach" in line


def test_wrong_actor_name(node):
    addr, _ = node
    line = one_line_error(
        run("bench", "--endpoint", addr, "--actor", "nope", "--method", "ping", "--duration", "1")
    )
    assert "nope" in line


def test_wrong_method(node):
    addr, _ = node
    line = one_line_error(
        run("bench", "--endpoint", addr, "--actor", "x", "--method", "nometh", "--duration", "1")
    )
    assert "nometh" in line


def test_usage_errors_are_one_line():
    r = run("inspect", "cluster")
    assert r.returncode == 2
    line = one_line_error(r)
    assert "--endpoint" in line and "pulsing inspect cluster --help" in line
    r = run("bench", "--endpoint", "nohostport", "--actor", "x", "--method", "m")
    assert "bad address" in one_line_error(r)


def test_class_cannot_be_imported():
    line = one_line_error(run("actor", "no_such_module_xyz.Class", "--addr", "127.0.0.1:0"))
    assert "no_such_module_xyz" in line
    line = one_line_error(run("actor", "cli_actors.Missing", "--addr", "127.0.0.1:0"))
    assert "Missing" in line


def test_sigterm_stops_node_cleanly():
    p, addr, first = start_node("cli_actors.Plain", "--addr", "127.0.0.1:0", "--name", "plain")
    assert first.endswith("hosting actors/plain")
    r = run("inspect", "actors", "--endpoint", addr, "--json")
    assert any(row["name"] == "actors/plain" for row in json.loads(r.stdout))
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "Traceback" not in err


def test_ctor_args():
    p, addr, _ = start_node(
        "cli_actors.Echo", "--addr", "127.0.0.1:0", "--name", "greeter", "--", "--greeting", "yo"
    )
    r = run(
        "bench",
        "--endpoint",
        addr,
        "--actor",
        "greeter",
        "--method",
        "hello",
        "--duration",
        "0.2",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["errors"] == 0
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=20)
    assert p.returncode == 0


def test_parse_ctor_args():
    from pulsing.cli.actor_cmd import parse_ctor_args

    assert parse_ctor_args(["--size", "3", "--name=a b", "--verbose", "--x-y", "[1]", "pos"]) == (
        ["pos"],
        {"size": 3, "name": "a b", "verbose": True, "x_y": [1]},
    )


def test_python_dash_m(node):
    addr, _ = node
    r = subprocess.run(
        [sys.executable, "-m", "pulsing", "inspect", "cluster", "--endpoint", addr],
        env=_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert addr in r.stdout


def _run_on_pty(argv, env, pty_stream):
    """Run a CLI command with `pty_stream` ("stdout" or "stderr") on a pseudo-terminal and the
    other stream piped; return (returncode, what the terminal got, what the pipe got)."""
    import pty

    master, slave = pty.openpty()
    try:
        on_pty = pty_stream == "stdout"
        p = subprocess.Popen(
            argv,
            env=env,
            stdout=slave if on_pty else subprocess.PIPE,
            stderr=subprocess.PIPE if on_pty else slave,
        )
        _procs.append(p)
        os.close(slave)
        slave = -1
        out, err = p.communicate(timeout=30)
        piped = err if on_pty else out
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return p.returncode, seen, piped


def test_bench_progress_line_on_a_terminal(node):
    addr, _ = node
    rc, err, out = _run_on_pty(
        [*_cmd(), "bench", "--endpoint", addr, "--actor", "x", "--method", "ping"]
        + ["--concurrency", "2", "--duration", "1"],
        _env(),
        "stderr",
    )
    out = out.decode()
    assert rc == 0, err
    assert b"\r[#" in err and b"calls" in err, err
    assert "throughput" in out


def test_two_nodes_actors_of_every_member(node):
    addr, _ = node
    p, addr2, _ = start_node(
        "cli_actors.Plain", "--addr", "127.0.0.1:0", "--seeds", addr, "--name", "second"
    )
    deadline = time.monotonic() + 20
    while True:
        r = run("inspect", "actors", "--endpoint", addr, "--json")
        assert r.returncode == 0, r.stderr
        where = {row["name"]: row["addr"] for row in json.loads(r.stdout)}
        if where.get("actors/second") == addr2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert where.get("actors/x") == addr and where.get("actors/second") == addr2, where
    r = run("inspect", "cluster", "--endpoint", addr2, "--json")
    alive = {m["addr"] for m in json.loads(r.stdout)["members"] if m["status"] == "Alive"}
    assert {addr, addr2} <= alive
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=20)
    assert p.returncode == 0


# ---- tables: rich on a terminal, plain text otherwise ----------------------------------------

TABLE_ROWS = [
    ("4f1c0de2a9b84c7e8d21f0a3b5c6d7e8", "127.0.0.1:8001", "Alive", 0),
    ("0a9b8c7d6e5f40312a1b2c3d4e5f6a7b", "127.0.0.1:8002", "Suspect", 3),
    ("ffeeddccbbaa99887766554433221100", "127.0.0.1:8003", None, 12),
]
TABLE_HEADERS = ("node_id", "addr", "status", "incarnation")
PLAIN = """\
3 member(s)
NODE_ID                           ADDR            STATUS   INCARNATION
4f1c0de2a9b84c7e8d21f0a3b5c6d7e8  127.0.0.1:8001  Alive    0
0a9b8c7d6e5f40312a1b2c3d4e5f6a7b  127.0.0.1:8002  Suspect  3
ffeeddccbbaa99887766554433221100  127.0.0.1:8003           12
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _Out:
    """A stdout stand-in that says whether it is a terminal."""

    def __init__(self, tty: bool) -> None:
        import io

        self.buf = io.StringIO()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> int:
        return self.buf.write(s)

    def flush(self) -> None:
        pass

    @property
    def encoding(self) -> str:
        return "utf-8"


def _table(monkeypatch, tty: bool) -> str:
    from pulsing.cli._common import print_table

    out = _Out(tty)
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps cells to the terminal's width
    print_table("3 member(s)", TABLE_HEADERS, TABLE_ROWS)
    monkeypatch.undo()
    return out.buf.getvalue()


def _rich_cells(text: str) -> tuple[str, list[list[str]]]:
    """The title and the rows (header first) of a table rich drew with box characters."""
    lines = [ANSI.sub("", ln) for ln in text.splitlines()]
    title = lines[0].strip()
    rows = [
        [c.strip() for c in re.split(r"[│┃]", ln)[1:-1]]
        for ln in lines[1:]
        if ln.strip().startswith(("│", "┃"))
    ]
    return title, rows


def test_table_rich_on_a_terminal(monkeypatch):
    pytest.importorskip("rich", reason="make install puts rich in the test venv")
    text = _table(monkeypatch, tty=True)
    assert any(ch in text for ch in "┏━┃│└"), text  # drawn by rich, not the plain layout
    title, rows = _rich_cells(text)
    assert title == "3 member(s)"
    # the same data as the plain table: every header, every cell, in order
    assert rows[0] == list(TABLE_HEADERS)
    assert rows[1:] == [["" if c is None else str(c) for c in r] for r in TABLE_ROWS]


def test_table_plain_when_not_a_terminal(monkeypatch):
    assert _table(monkeypatch, tty=False) == PLAIN  # rich installed or not


def test_table_plain_on_a_terminal_without_rich(monkeypatch):
    for mod in ("rich", "rich.console", "rich.table"):
        monkeypatch.setitem(sys.modules, mod, None)  # import raises ImportError
    from pulsing.cli._common import print_table

    out = _Out(tty=True)
    monkeypatch.setattr(sys, "stdout", out)
    print_table("3 member(s)", TABLE_HEADERS, TABLE_ROWS)
    monkeypatch.undo()
    assert out.buf.getvalue() == PLAIN


def test_table_plain_empty(monkeypatch):
    from pulsing.cli._common import print_table

    out = _Out(tty=False)
    monkeypatch.setattr(sys, "stdout", out)
    print_table("", ("name",), [])
    monkeypatch.undo()
    assert out.buf.getvalue() == "NAME\n(none)\n"


def test_inspect_cluster_on_a_terminal_is_a_rich_table(node):
    """End to end: on a terminal the command draws a rich table with the members it prints as
    plain text when piped."""
    pytest.importorskip("rich", reason="make install puts rich in the test venv")
    addr, first = node
    node_id = FIRST_LINE.match(first).group(2)
    env = _env()
    env["COLUMNS"] = "200"
    rc, out, err = _run_on_pty([*_cmd(), "inspect", "cluster", "--endpoint", addr], env, "stdout")
    assert rc == 0, err
    title, rows = _rich_cells(out.decode("utf-8", "replace"))
    # (other tests of this module join the node too: count what is there)
    assert title == f"cluster via {addr}: {len(rows) - 1} member(s)"
    assert rows[0] == ["node_id", "addr", "status", "incarnation"]
    assert [node_id, addr, "Alive"] in [r[:3] for r in rows[1:]]
    piped = run("inspect", "cluster", "--endpoint", addr)
    assert piped.returncode == 0, piped.stderr
    assert "│" not in piped.stdout
    assert re.search(rf"^{node_id}\s+{re.escape(addr)}\s+Alive\b", piped.stdout, re.MULTILINE)
