"""Benchmark runner: runs every workload in its own process, interleaved, and prints a table.

    .venv/bin/python bench/run.py [--runs N] [--quick]

Figures, not pass/fail. Each workload runs `--runs` times (default 3), interleaving Pulsing and the
pure-Python reference so that machine noise hits both alike; the table shows the median and the
min-max. Results are written to bench/results/latest.json.
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
    args = ap.parse_args()

    env = dict(os.environ)
    if args.quick:
        env.update(BENCH_SEQ_N="20000", BENCH_PIPE_N="20000", BENCH_STREAM_N="100000",
                   BENCH_SPAWN_N="2000")

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
    with open(os.path.join(HERE, "results", "latest.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
