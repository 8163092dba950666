"""Pulsing cluster demo: three node processes on localhost, actors placed on different nodes,
tokens streaming across nodes, one node killed and the others noticing it.

Run with `make demo` (or `.venv/bin/python examples/cluster_demo.py`). The demo process itself
joins the cluster as a fourth member to drive it. Every node process it starts is killed when
it exits, whatever the reason (Ctrl-C included).
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import json
import os
import select
import signal
import subprocess
import sys
import time

import pulsing as pul
from pulsing.exceptions import PulsingError

HERE = os.path.dirname(os.path.abspath(__file__))

# Short membership timings (docs/design/membership.md) so a dead node is noticed in about a
# second or two; passed only when this build's init() accepts them.
FAST_TIMING = {
    "probe_interval_ms": 200,
    "probe_timeout_ms": 100,
    "gossip_interval_ms": 50,
    "suspicion_mult": 3,
    "push_pull_interval_ms": 2000,
    "join_retry_ms": 100,
}


def timing_kwargs(fn) -> dict:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    for key in ("timing", "cluster_timing", "membership"):
        if key in params:
            return {key: dict(FAST_TIMING)}
    return {k: v for k, v in FAST_TIMING.items() if k in params}


# ---- the actors ---------------------------------------------------------------------------------


def here() -> str:
    """The label of the node this code runs on (set in each node's environment)."""
    return os.environ.get("PULSING_DEMO_NODE", "driver")


@pul.remote
class SessionStore:
    """Chat histories, one message at a time."""

    def __init__(self) -> None:
        self.sessions: dict[str, list[str]] = {}

    def append(self, session: str, line: str) -> int:
        self.sessions.setdefault(session, []).append(line)
        return len(self.sessions[session])

    def history(self, session: str) -> list[str]:
        return self.sessions.get(session, [])

    def node(self) -> str:
        return here()


@pul.remote
class Model:
    """A toy language model that streams its tokens."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def generate(self, prompt: str, n: int):
        for i, word in enumerate((prompt + " and so on and so forth").split()[:n]):
            await asyncio.sleep(0.05)
            yield f"{word}@{here()}"

    def node(self) -> str:
        return here()


@pul.remote
class Chat:
    """Glues the others together from a third node: resolves the model and the store by name,
    relays the model's tokens as they come and saves the reply."""

    async def say(self, session: str, prompt: str):
        model = await Model.resolve("model", timeout=10)
        store = await SessionStore.resolve("store", timeout=10)
        await store.append(session, f"user: {prompt}")
        words = []
        async for token in model.generate(prompt, 8):
            words.append(token)
            yield token
        await store.append(session, "bot: " + " ".join(words))

    async def members(self) -> list[dict]:
        return await pul.get_system().members()

    def node(self) -> str:
        return here()


# ---- node processes -------------------------------------------------------------------------------


async def node_main(label: str, seeds: list[str]) -> None:
    """A node process: join, print its address as one JSON line, serve until SIGTERM/EOF."""
    system = await pul.init(addr="127.0.0.1:0", seeds=seeds or None, **timing_kwargs(pul.init))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)  # EOF: the driver is gone
    print(json.dumps({"addr": system.addr, "node_id": str(int(system.node_id))}), flush=True)
    await stop.wait()
    await pul.shutdown()


class NodeProc:
    def __init__(self, label: str, seeds: list[str]) -> None:
        self.label = label
        env = dict(os.environ, PULSING_DEMO_NODE=label, PULSING_DEMO_PARENT=str(os.getpid()))
        env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--node", label, *seeds],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.addr = ""
        self.node_id = 0

    def wait_ready(self, timeout: float = 60.0) -> NodeProc:
        deadline, buf = time.monotonic() + timeout, b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"node {self.label} did not start (exit {self.proc.poll()})")
            if select.select([fd], [], [], 0.2)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise RuntimeError(f"node {self.label} exited before it was ready")
                buf += chunk
        info = json.loads(buf.split(b"\n", 1)[0])
        self.addr, self.node_id = info["addr"], int(info["node_id"])
        return self

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def terminate(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


# ---- the driver -----------------------------------------------------------------------------------


def table(members: list[dict], labels: dict[int, str]) -> str:
    rows = sorted(members, key=lambda m: labels.get(int(pul.NodeId(m["node_id"])), "?"))
    return "\n".join(
        f"    {labels.get(int(pul.NodeId(m['node_id'])), '?'):7} {m['addr']:22} {m['status']}"
        for m in rows
    )


async def view_of(system, chat_on: dict[str, object], labels) -> dict[str, dict[str, str]]:
    """{observer: {member label: status}} for the driver and each node that hosts a Chat."""
    views = {"driver": await system.members()}
    for label, chat in chat_on.items():
        try:
            views[label] = await asyncio.wait_for(chat.members(), 5)
        except (PulsingError, asyncio.TimeoutError):
            continue
    return {
        who: {labels.get(int(pul.NodeId(m["node_id"])), "?"): m["status"] for m in ms}
        for who, ms in views.items()
    }


async def drive(nodes: dict[str, NodeProc]) -> None:
    system = await pul.init(
        addr="127.0.0.1:0", seeds=[nodes["node-a"].addr], **timing_kwargs(pul.init)
    )
    try:
        await steps(system, nodes)
    finally:
        await pul.shutdown()


async def steps(system, nodes: dict[str, NodeProc]) -> None:
    labels = {n.node_id: label for label, n in nodes.items()}
    labels[int(system.node_id)] = "driver"

    print("\n1. the cluster forms through the seed node-a")
    t0 = time.monotonic()
    while len([m for m in await system.members() if m["status"] == "Alive"]) < 4:
        if time.monotonic() - t0 > 30:
            raise RuntimeError("the cluster did not converge in 30 s")
        await asyncio.sleep(0.1)
    print(f"   all 4 members Alive after {time.monotonic() - t0:.2f} s; members():")
    print(table(await system.members(), labels))

    print("\n2. actors placed on different nodes (spawn(placement=node_id))")
    store = await SessionStore.spawn(name="store", placement=nodes["node-c"].node_id)
    model = await Model.spawn("toy-1", name="model", placement=nodes["node-b"].node_id)
    chat_a = await Chat.spawn(name="chat-a", placement=nodes["node-a"].node_id)
    chat_c = await Chat.spawn(name="chat-c", placement=nodes["node-c"].node_id)
    for name, proxy in (("store", store), ("model", model), ("chat-a", chat_a), ("chat-c", chat_c)):
        print(f"   {name:7} runs on {await proxy.node()}")

    print("\n3. tokens streaming across nodes: model@node-b -> chat@node-a -> driver")
    print("   ", end="", flush=True)
    async for token in chat_a.say("alice", "actors talk across processes"):
        print(token, end=" ", flush=True)
    print()
    print(f"   store@node-c now holds: {await store.history('alice')}")

    fast = (
        "short membership timings (probe every 200 ms)"
        if timing_kwargs(pul.init)
        else ("the default membership timings")
    )
    print(f"\n4. kill -9 node-b (it hosts the model); the demo runs with {fast}")
    watchers = {"node-a": chat_a, "node-c": chat_c}
    t_kill = time.monotonic()
    nodes["node-b"].kill()
    noticed: dict[str, float] = {}
    while len(noticed) < 3 and time.monotonic() - t_kill < 60:
        for who, view in (await view_of(system, watchers, labels)).items():
            if who not in noticed and view.get("node-b", "Dead") == "Dead":
                noticed[who] = time.monotonic() - t_kill
                print(f"   {who} declares node-b Dead after {noticed[who]:.2f} s")
        await asyncio.sleep(0.05)
    try:
        await Model.resolve("model", timeout=0.5)
        print("   (the name 'model' is still visible)")
    except PulsingError as e:
        print(f"   resolve('model') now fails: {type(e).__name__}: {e}")
    try:
        await asyncio.wait_for(model.node(), 10)
    except (PulsingError, asyncio.TimeoutError) as e:
        print(f"   the old model proxy fails: {type(e).__name__}")

    print("\n5. the survivors keep working: a new model on node-c, the same chat")
    await Model.spawn("toy-2", name="model", placement=nodes["node-c"].node_id)
    print("   ", end="", flush=True)
    async for token in chat_a.say("alice", "still here after a crash"):
        print(token, end=" ", flush=True)
    print()
    print("   members() after:")
    print(table(await system.members(), labels))


def driver_main() -> int:
    nodes: dict[str, NodeProc] = {}

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        print("== Pulsing cluster demo: three node processes on 127.0.0.1 ==")
        a = NodeProc("node-a", []).wait_ready()
        nodes["node-a"] = a
        nodes["node-b"] = NodeProc("node-b", [a.addr])
        nodes["node-c"] = NodeProc("node-c", [a.addr])
        for label in ("node-b", "node-c"):
            nodes[label].wait_ready()
        for label, n in nodes.items():
            print(f"   started {label}: pid {n.proc.pid}, listening on {n.addr}")
        asyncio.run(drive(nodes))
        print("\n6. graceful shutdown: node-a and node-c leave")
        for label in ("node-a", "node-c"):
            nodes[label].terminate()
            print(f"   {label} exited with {nodes[label].proc.returncode}")
        print("== done ==")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the demo explains and exits nonzero
        print(f"\ncluster demo failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        for n in nodes.values():
            n.kill()


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != int(os.environ.get("PULSING_DEMO_PARENT", os.getppid())):
        os._exit(3)


if __name__ == "__main__":
    # Run as the module `cluster_demo` so the actor classes have the same import path in the
    # driver and in every node (placement re-creates them by that path).
    sys.path.insert(0, HERE)
    import cluster_demo

    if len(sys.argv) > 2 and sys.argv[1] == "--node":
        _die_with_parent()
        try:
            asyncio.run(cluster_demo.node_main(sys.argv[2], sys.argv[3:]))
        except Exception as e:  # noqa: BLE001 - one line for the driver's terminal
            print(f"{sys.argv[2]}: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)
    else:
        sys.exit(cluster_demo.driver_main())
