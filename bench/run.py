"""Benchmark runner: runs every workload in its own process, interleaved, and prints a table.

    .venv/bin/python bench/run.py [--runs N] [--quick]     # in-process figures
    .venv/bin/python bench/run.py --remote [--runs N]      # cross-process figures only
    .venv/bin/python bench/run.py --all [--runs N]         # both

Figures, not pass/fail. Each workload runs `--runs` times (default 3), interleaving Pulsing and the
pure-Python reference so that machine noise hits both alike; the table shows the median and the
min-max. Results are written to bench/results/latest.json and local.md (remote: remote.json, remote.md; bench-compare owns latest.md).

The remote section (`bench_remote.py`) runs, in each round and in this order: the raw C TCP
ping-pong over loopback (the physical reference), the Python pair (ask p50/p99 at 1 and 64 in
flight, asks/s at 256, tells/s, stream items/s, 1 MiB and 64 MiB payloads), the C cross-process
bench, and five-process convergence and dead-node detection (memberlist default timings, then the
short test timings when the API accepts them). Ratios and the issue's targets are in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (label, workload, metric, unit, reference workload or None, better)
ROWS = [
    ("ask, sync method, sequential p50", "ask_seq_sync", "p50_us", "us", "ref_ask_seq", "low"),
    ("ask, sync method, sequential p99", "ask_seq_sync", "p99_us", "us", "ref_ask_seq", "low"),
    ("ask, async method, sequential p50", "ask_seq_async", "p50_us", "us", "ref_ask_seq", "low"),
    ("ask, many in flight", "ask_pipelined", "ops_per_s", "ops/s", "ref_ask_pipelined", "high"),
    ("tell", "tell", "ops_per_s", "ops/s", None, "high"),
    ("stream items", "stream", "items_per_s", "items/s", None, "high"),
    ("spawn", "spawn", "spawns_per_s", "spawns/s", None, "high"),
    ("memory per idle actor", "idle_memory", "bytes_per_actor", "bytes", None, "low"),
    ("Python -> C actor ask p50", "c_ask_seq", "p50_us", "us", None, "low"),
    ("Python -> C actor, many in flight", "c_ask_pipelined", "ops_per_s", "ops/s", None, "high"),
]


def run_py(workload: str, env: dict) -> dict | None:
    cmd = [sys.executable, os.path.join(HERE, "bench_local.py"), workload]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, json.JSONDecodeError, IndexError) as e:
        err = getattr(e, "stderr", "") or ""
        print(f"  {workload}: failed: {str(err).strip().splitlines()[-1:] or e}", file=sys.stderr)
        return None


def run_c(build_dir: str) -> list[dict]:
    exe = os.path.join(build_dir, "bench_c_actors")
    if not os.path.exists(exe):
        print(f"  C bench not built ({exe})", file=sys.stderr)
        return []
    out = subprocess.run([exe], capture_output=True, text=True, timeout=600)
    rows = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def run_json_lines(cmd: list[str], env: dict, timeout: float = 900) -> list[dict]:
    """Run a command, return every JSON object line it printed (errors reported, not raised)."""
    try:
        out = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.SubprocessError as e:
        print(f"  {os.path.basename(cmd[-1])}: {e}", file=sys.stderr)
        return []
    rows = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if out.returncode != 0:
        tail = (out.stderr or "").strip().splitlines()[-3:]
        print(f"  {' '.join(os.path.basename(c) for c in cmd[:3])}: exit {out.returncode}: "
              f"{' | '.join(tail)}", file=sys.stderr)
    return rows


def remote_round(build_dir: str, env: dict) -> dict:
    """One round of every cross-process measurement; a flat dict of figures."""
    fig: dict = {}
    py = [sys.executable, os.path.join(HERE, "bench_remote.py")]
    exe = os.path.join(build_dir, "tcp_pingpong")
    for r in run_json_lines([exe, "20000"], env) if os.path.exists(exe) else []:
        fig["tcp_p50_us"], fig["tcp_p99_us"] = r["p50_us"], r["p99_us"]
    for r in run_json_lines(py + ["pair"], env):
        for k, v in r.items():
            if not isinstance(v, dict):
                continue
            for m in ("p50_us", "p99_us", "ops_per_s", "items_per_s", "bytes_per_s"):
                if m in v:
                    fig[f"py_{k}_{m}"] = v[m]
    exe = os.path.join(build_dir, "bench_c_remote")
    n_c = env.get("BENCH_C_REMOTE_N", "200000")
    for r in run_json_lines([exe, n_c], env) if os.path.exists(exe) else []:
        b = r.get("bench", "")
        for m in ("p50_us", "p99_us", "asks_per_s", "msgs_per_s", "seconds", "bytes_per_s",
                  "cpu_us_caller", "cpu_us_host"):
            if m in r:
                fig[f"{b}_{m}"] = r[m]
    for mode, extra in (("default", ["--default-timings"]), ("fast", [])):
        for r in run_json_lines(py + ["cluster5", *extra], env):
            if r.get("timings") == "fast" and not r.get("fast_supported", True):
                continue
            for m in ("converge_s", "converge_from_launch_s", "dead_all_s", "dead_first_s"):
                if m in r:
                    fig[f"cluster5_{mode}_{m}"] = r[m]
            if "error" in r:
                print(f"  cluster5 ({mode}): {r['error']}", file=sys.stderr)
    return fig


# (label, figure key, unit, target text, check(value, figures) -> ratio text)
def _ratio_tcp(v, f):
    t = f.get("tcp_p50_us")
    return f"{v / t:.2f}x raw TCP" if t else ""


REMOTE_ROWS = [
    ("raw C TCP ping-pong p50 (reference)", "tcp_p50_us", "us", "", None),
    ("raw C TCP ping-pong p99", "tcp_p99_us", "us", "", None),
    ("Python ask p50, 1 in flight", "py_ask_1_p50_us", "us", "<= 1.5x raw", _ratio_tcp),
    ("Python ask p99, 1 in flight", "py_ask_1_p99_us", "us", "", None),
    ("Python ask p50, 64 in flight", "py_ask_64_p50_us", "us", "", None),
    ("Python ask p99, 64 in flight", "py_ask_64_p99_us", "us", "", None),
    ("Python asks/s, 64 in flight", "py_ask_64_ops_per_s", "asks/s", "", None),
    ("Python asks/s, 256 in flight", "py_ask_256_ops_per_s", "asks/s", ">= 50 k/s", None),
    ("Python tells/s", "py_tell_ops_per_s", "tells/s", "", None),
    ("Python stream items/s", "py_stream_items_per_s", "items/s", "", None),
    ("1 MiB numpy, request", "py_payload_1mib_send_bytes_per_s", "B/s", "", None),
    ("1 MiB numpy, reply", "py_payload_1mib_reply_bytes_per_s", "B/s", "", None),
    ("64 MiB numpy, request", "py_payload_64mib_send_bytes_per_s", "B/s", ">= 1 GB/s", None),
    ("64 MiB numpy, reply", "py_payload_64mib_reply_bytes_per_s", "B/s", ">= 1 GB/s", None),
    ("C ask p50, 1 in flight", "c_remote_ask_latency_p50_us", "us", "", _ratio_tcp),
    ("C ask p99, 1 in flight", "c_remote_ask_latency_p99_us", "us", "", None),
    ("C asks/s, 1024 in flight", "c_remote_ask_pipelined_asks_per_s", "msgs/s", ">= 500 k/s",
     None),
    ("C tells/s, windows of 1024", "c_remote_tell_msgs_per_s", "msgs/s", ">= 500 k/s", None),
    ("C asks: CPU per message, caller", "c_remote_ask_pipelined_cpu_us_caller", "us", "", None),
    ("C asks: CPU per message, host", "c_remote_ask_pipelined_cpu_us_host", "us", "", None),
    ("C tells: CPU per message, caller", "c_remote_tell_cpu_us_caller", "us", "", None),
    ("C tells: CPU per message, host", "c_remote_tell_cpu_us_host", "us", "", None),
    ("C 64 MiB segment, request", "c_remote_bulk_request_bytes_per_s", "B/s", "", None),
    ("C 64 MiB segment, reply", "c_remote_bulk_reply_bytes_per_s", "B/s", "", None),
    ("5 nodes converge after the last is up (default)", "cluster5_default_converge_s", "s", "",
     None),
    ("5 nodes converge from process launch (default)",
     "cluster5_default_converge_from_launch_s", "s", "", None),
    ("kill -9: Dead at every survivor (default)", "cluster5_default_dead_all_s", "s", "<= 5 s",
     None),
    ("kill -9: Dead at the first survivor (default)", "cluster5_default_dead_first_s", "s", "",
     None),
    ("5 nodes converge (test timings)", "cluster5_fast_converge_s", "s", "", None),
    ("kill -9: Dead at every survivor (test timings)", "cluster5_fast_dead_all_s", "s", "",
     None),
]


def fmt_remote(v: float, unit: str) -> str:
    if unit == "us":
        return f"{v:.2f} us" if v < 10 else f"{v:.1f} us"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "B/s":
        return f"{v / 1e9:.2f} GB/s" if v >= 1e9 else f"{v / 1e6:.0f} MB/s"
    return fmt(v, unit)


def remote_section(args, env: dict) -> None:
    rounds = []
    for r in range(args.runs):
        print(f"remote round {r + 1}/{args.runs}", file=sys.stderr)
        rounds.append(remote_round(args.build_dir, env))
    lines = ["| figure | median | min-max | target | ratio |", "|---|---|---|---|---|"]
    table = []
    medians = {}
    for key in {k for rnd in rounds for k in rnd}:
        vals = [rnd[key] for rnd in rounds if key in rnd]
        medians[key] = statistics.median(vals)
    for label, key, unit, target, ratio in REMOTE_ROWS:
        vals = [rnd[key] for rnd in rounds if key in rnd]
        if not vals:
            lines.append(f"| {label} | failed | | {target} | |")
            table.append({"label": label, "key": key, "failed": True})
            continue
        med = statistics.median(vals)
        rtxt = ratio(med, medians) if ratio else ""
        lines.append(f"| {label} | {fmt_remote(med, unit)} | {fmt_remote(min(vals), unit)} - "
                     f"{fmt_remote(max(vals), unit)} | {target} | {rtxt} |")
        table.append({"label": label, "key": key, "median": med, "min": min(vals),
                      "max": max(vals), "runs": len(vals)})
    print("\n".join(lines))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "remote.json"), "w") as f:
        json.dump({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "runs": args.runs, "rows": table, "raw": rounds}, f, indent=1)
    with open(os.path.join(HERE, "results", "remote.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def fmt(v: float, unit: str) -> str:
    if unit == "us":
        return f"{v:.2f} us"
    if unit == "bytes":
        return f"{v:,.0f} B"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M {unit.split('/')[0]}/s"
    if v >= 1e3:
        return f"{v / 1e3:.0f} k {unit.split('/')[0]}/s"
    return f"{v:.0f} {unit}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smaller workloads (smoke run)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "plain"))
    ap.add_argument("--remote", action="store_true", help="only the cross-process section")
    ap.add_argument("--all", action="store_true", help="in-process and cross-process sections")
    args = ap.parse_args()

    env = dict(os.environ)
    if args.quick:
        env.update(BENCH_SEQ_N="20000", BENCH_PIPE_N="20000", BENCH_STREAM_N="100000",
                   BENCH_SPAWN_N="2000", BENCH_REMOTE_SEQ_N="1000", BENCH_REMOTE_PIPE_N="5000",
                   BENCH_REMOTE_TELL_N="5000", BENCH_REMOTE_STREAM_N="20000",
                   BENCH_C_REMOTE_N="20000")
    if args.remote:
        remote_section(args, env)
        return

    workloads = []
    for _, w, _, _, ref, _ in ROWS:
        for x in (w, ref):
            if x and x not in workloads:
                workloads.append(x)

    results: dict[str, list[dict]] = {w: [] for w in workloads}
    for r in range(args.runs):
        print(f"run {r + 1}/{args.runs}", file=sys.stderr)
        for w in workloads:  # interleaved: every workload once per round
            res = run_py(w, env)
            if res is not None:
                results[w].append(res)
    c_rows = [run_c(args.build_dir) for _ in range(args.runs)]

    lines = ["| workload | Pulsing (median) | min-max | reference (median) | "
             "ratio (>1: Pulsing ahead) |",
             "|---|---|---|---|---|"]
    table = []
    for label, w, metric, unit, ref, better in ROWS:
        vals = [x[metric] for x in results.get(w, []) if metric in x]
        if not vals:
            lines.append(f"| {label} | failed | | | |")
            continue
        med = statistics.median(vals)
        row = {"label": label, "workload": w, "metric": metric, "median": med,
               "min": min(vals), "max": max(vals), "runs": len(vals)}
        ref_txt = ratio_txt = ""
        if ref:
            rvals = [x[metric] for x in results.get(ref, []) if metric in x]
            if rvals:
                rmed = statistics.median(rvals)
                row["reference_median"] = rmed
                # ratio > 1 means Pulsing is better, computed run by run then the median taken
                pairs = list(zip(vals, rvals))
                ratios = [(b / a if better == "low" else a / b) for a, b in pairs if a and b]
                row["ratio"] = statistics.median(ratios) if ratios else None
                ref_txt = fmt(rmed, unit)
                ratio_txt = f"{row['ratio']:.2f}x" if row["ratio"] else ""
        table.append(row)
        lines.append(f"| {label} | {fmt(med, unit)} | {fmt(min(vals), unit)} - "
                     f"{fmt(max(vals), unit)} | {ref_txt} | {ratio_txt} |")

    for name in sorted({k["bench"] for rows in c_rows for k in rows if "bench" in k}):
        entries = [k for rows in c_rows for k in rows if k.get("bench") == name]
        for key in sorted(entries[0]):
            if key == "bench" or not isinstance(entries[0][key], (int, float)):
                continue
            vals = [e[key] for e in entries if key in e]
            lines.append(f"| C: {name} {key} | {statistics.median(vals):,.2f} | "
                         f"{min(vals):,.2f} - {max(vals):,.2f} | | |")
            table.append({"label": f"C: {name} {key}", "median": statistics.median(vals),
                          "min": min(vals), "max": max(vals)})

    print("\n".join(lines))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "latest.json"), "w") as f:
        json.dump({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "runs": args.runs, "rows": table, "raw": results, "c_raw": c_rows}, f,
                  indent=1)
    with open(os.path.join(HERE, "results", "local.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if args.all:
        print()
        remote_section(args, env)


if __name__ == "__main__":
    main()
