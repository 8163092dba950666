"""Start, drive and always clean up node processes (`cluster_node.py`) for tests and benchmarks.

    with Cluster() as c:                      # or the `cluster` pytest fixture
        nodes = c.start(3, spawn={1: ["Counter:counter"]})
        nodes[1].kill()                       # kill -9 (its whole process group)
        nodes[2].terminate()                  # SIGTERM: graceful leave, returns the exit code

Every node runs in its own session (process group) and dies with the process that started it
(PR_SET_PDEATHSIG); `Cluster.close()` (also at interpreter exit) SIGKILLs the group of every node
still running and reaps it. Loopback only, port 0. Node stderr goes to a temporary file whose tail
is shown when a node fails to start (`Node.log()`).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_SCRIPT = os.path.join(HERE, "cluster_node.py")

_live: set[Node] = set()


class NodeError(RuntimeError):
    pass


class Node:
    """A node process. `addr`, `node_id` (int) and `pid` are known once `wait_ready()` returned."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str]) -> None:
        self.label = label
        self.argv = argv
        # closed in close()
        self._log = tempfile.TemporaryFile(prefix=f"pulsing-{label}-")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,  # its own process group: killpg reaches anything it forks
        )
        _live.add(self)
        self._buf = b""
        self.addr: str | None = None
        self.node_id: int | None = None
        self.pid = self.proc.pid
        self.info: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Node({self.label}, addr={self.addr}, pid={self.pid}, alive={self.alive})"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _readline(self, deadline: float) -> dict[str, Any]:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NodeError(f"{self.label}: no answer in time\n{self.log()}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                if not self.alive:
                    raise NodeError(
                        f"{self.label} exited with {self.proc.returncode}\n{self.log()}"
                    )
                continue
            data = os.read(fd, 65536)
            if not data:
                self.proc.wait(timeout=5)
                raise NodeError(f"{self.label} exited with {self.proc.returncode}\n{self.log()}")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            return self._readline(deadline)  # not ours (a stray print): skip it

    def wait_ready(self, timeout: float = 60.0) -> Node:
        """Block until the node printed its address (or failed: NodeError with its log)."""
        info = self._readline(time.monotonic() + timeout)
        if "error" in info:
            try:
                self.proc.wait(timeout=5)  # let it finish writing its traceback
            except subprocess.TimeoutExpired:
                pass
            raise NodeError(f"{self.label} failed to start: {info['error']}\n{self.log()}")
        self.info = info
        self.addr = info["addr"]
        self.node_id = int(info["node_id"])
        return self

    def command(self, cmd: str, timeout: float = 10.0) -> dict[str, Any]:
        """Send one stdin command (`members`, `named`, `spawn C:n`) and return its JSON answer."""
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()
        return self._readline(time.monotonic() + timeout)

    def members(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """This node's membership view (list of dicts with node_id, addr, status)."""
        answer = self.command("members", timeout)
        if "members" not in answer:
            raise NodeError(f"{self.label}: members failed: {answer}")
        return answer["members"]

    def kill(self) -> None:
        """kill -9 the node's process group and reap it."""
        _killpg(self.proc, signal.SIGKILL)
        self.proc.wait()
        _live.discard(self)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM (graceful leave); wait for the exit and return the exit code. A node that
        does not exit within `timeout` is killed and NodeError raised."""
        if self.alive:
            _killpg(self.proc, signal.SIGTERM, group=False)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise NodeError(
                f"{self.label} did not exit within {timeout}s of SIGTERM\n{self.log()}"
            ) from None
        _killpg(self.proc, signal.SIGKILL)  # anything it left in its group
        _live.discard(self)
        return rc

    def log(self, tail: int = 4000) -> str:
        try:
            self._log.seek(0)
            text = self._log.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        return f"--- {self.label} stderr (tail) ---\n{text[-tail:]}"

    def close(self) -> None:
        if self.alive:
            _killpg(self.proc, signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        try:
            self._log.close()
        except OSError:
            pass
        _live.discard(self)


def _killpg(proc: subprocess.Popen, sig: int, group: bool = True) -> None:
    try:
        if group:
            os.killpg(proc.pid, sig)  # session leader: its pgid is its pid
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [HERE] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PUL_NODE_PARENT_PID"] = str(os.getpid())
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


class Cluster:
    """A set of node processes that are all killed by close() (a context manager)."""

    def __init__(
        self, *, fast: bool = True, tolerant: bool = False, env: dict[str, str] | None = None
    ) -> None:
        """fast: short membership timings (cluster_node.FAST_TIMING) instead of the defaults;
        tolerant: timings that tolerate a starved process (cluster_node.TOLERANT_TIMING)."""
        self.fast = fast
        self.tolerant = tolerant
        self.env = node_env(env)
        self.nodes: list[Node] = []

    def spawn_node(
        self,
        *,
        seeds: list[str] | None = None,
        spawn: list[str] | tuple[str, ...] = (),
        head: bool = False,
        head_addr: str | None = None,
        label: str | None = None,
        extra_args: list[str] | None = None,
    ) -> Node:
        """Start a node process without waiting for it (see Node.wait_ready)."""
        argv = [sys.executable, NODE_SCRIPT]
        if seeds:
            argv += ["--seeds", ",".join(seeds)]
        for s in spawn:
            argv += ["--spawn", s]
        if head:
            argv.append("--head")
        if head_addr:
            argv += ["--head-addr", head_addr]
        if self.tolerant:
            argv.append("--tolerant-timings")
        elif not self.fast:
            argv.append("--default-timings")
        argv += extra_args or []
        node = Node(label or f"node{len(self.nodes)}", argv, self.env)
        self.nodes.append(node)
        return node

    def start_node(self, timeout: float = 60.0, **kw: Any) -> Node:
        return self.spawn_node(**kw).wait_ready(timeout)

    def start(
        self,
        n: int,
        *,
        spawn: dict[int, list[str]] | None = None,
        head: bool = False,
        timeout: float = 60.0,
    ) -> list[Node]:
        """Start n nodes: node 0 first (the seed, or the head), then the others at once, seeded
        with node 0's address (or registered with it as head). Returns them in order."""
        spawn = spawn or {}
        first = self.start_node(spawn=spawn.get(0, ()), head=head, timeout=timeout)
        rest = []
        for i in range(1, n):
            if head:
                rest.append(self.spawn_node(head_addr=first.addr, spawn=spawn.get(i, ())))
            else:
                rest.append(self.spawn_node(seeds=[first.addr], spawn=spawn.get(i, ())))
        for node in rest:
            node.wait_ready(timeout)
        return [first, *rest]

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> Cluster:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(pred, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll pred() until it returns a truthy value (returned) or timeout (AssertionError)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = pred()
        except Exception as e:  # noqa: BLE001 - keep polling, report the last failure
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s (last: {last!r})")
        time.sleep(interval)


def statuses(members: list[dict[str, Any]]) -> dict[int, str]:
    """{node_id (int): status} from a members() list (node ids in any accepted form)."""
    from pulsing import NodeId

    return {int(NodeId(m["node_id"])): m["status"] for m in members}


@atexit.register
def _kill_all() -> None:
    for node in list(_live):
        node.close()
