"""Side-by-side benchmarks (`make bench-compare`): this project, the original Pulsing 0.1.2, Ray.

    .venv/bin/python bench/compare/run.py [--runs 5] [--workloads a,b] [--systems s,t] [--quick]

Installs each peer in its own virtual environment under `bench/.peers/` (once; a stamp file
records what was installed), then runs every workload of `params.py` as its own process,
interleaved (for each run: for each workload: ours, original, Ray), with a per-process timeout
(a hang is reported as failed and its process group killed). Raw results go to
`bench/results/compare/<UTC timestamp>/`; the table to `bench/results/latest.md`, the summary to
`bench/results/latest-compare.json`, the charts (PNG) beside them. A system that cannot do a
workload, or fails at it, is a visible row, never a hidden one. Design: docs/design/bench-compare.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import params

OURS = "pulsing"
PEERS_DIR = os.path.join(BENCH, ".peers")
RESULTS = os.path.join(BENCH, "results")

# system -> (interpreter, driver, pip requirements of its peer venv or None for the project's own)
SYSTEMS = {
    "pulsing": (os.path.join(ROOT, ".venv", "bin", "python"), "wl_pulsing.py", None),
    "pulsing-0.1.2": (
        os.path.join(PEERS_DIR, "pulsing-0.1.2", "bin", "python"),
        "wl_pulsing.py",
        ["pulsing==0.1.2", "numpy"],
    ),
    "ray-2.60.0": (
        os.path.join(PEERS_DIR, "ray-2.60.0", "bin", "python"),
        "wl_ray.py",
        ["ray==2.60.0", "numpy"],
    ),
}
assert tuple(SYSTEMS) == params.SYSTEMS
COLOURS = {"pulsing": "#1f77b4", "pulsing-0.1.2": "#ff7f0e", "ray-2.60.0": "#2ca02c"}
LABELS = {
    "pulsing": "Pulsing (this project)",
    "pulsing-0.1.2": "Pulsing 0.1.2 (Rust original)",
    "ray-2.60.0": "Ray 2.60.0",
}
STAMP = ".bench-compare.stamp"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- peers ---------------------------------------------------------------------------------


def ensure_peer(system: str) -> str | None:
    """Create the peer's venv and pip-install its packages unless the stamp says they are there.
    Returns None when ready, else a one-line reason (e.g. PyPI unreachable)."""
    _, _, reqs = SYSTEMS[system]
    if reqs is None:
        return None
    venv = os.path.join(PEERS_DIR, system)
    stamp = os.path.join(venv, STAMP)
    want = " ".join(reqs)
    try:
        with open(stamp) as f:
            if f.read().strip() == want:
                return None
    except OSError:
        pass
    log(f"bench-compare: installing {want} into {os.path.relpath(venv, ROOT)} (once)")
    os.makedirs(PEERS_DIR, exist_ok=True)
    base = getattr(sys, "_base_executable", None) or sys.executable
    steps = [
        [base, "-m", "venv", venv],
        [
            os.path.join(venv, "bin", "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *reqs,
        ],
    ]
    for cmd in steps:
        p = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if p.returncode != 0:
            lines = [
                ln
                for ln in (p.stderr + p.stdout).splitlines()
                if ln.strip() and not ln.startswith("WARNING: Location")
            ]
            tail = lines[-1] if lines else f"exit {p.returncode}"
            hint = ""
            if any(
                k in (p.stderr + p.stdout)
                for k in (
                    "No matching distribution",
                    "Could not find a version",
                    "NewConnectionError",
                    "Temporary failure in name resolution",
                    "Network is unreachable",
                )
            ):
                hint = " (is PyPI reachable from this machine?)"
            return f"could not install {want}{hint}: {tail}"
    with open(stamp, "w") as f:
        f.write(want + "\n")
    return None


# ---- running one workload ------------------------------------------------------------------


def parse_output(stdout: str, stderr: str, returncode: int) -> dict:
    """The driver's verdict: {"status": "ok", "metrics": {...}} / unsupported / failed."""
    result = None
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                result = None
            break
    # ephemeral ports vary from run to run: without them equal reasons collapse into one
    err_lines = [
        re.sub(r"(\d+\.\d+\.\d+\.\d+):\d+", r"\1:<port>", ln.strip())
        for ln in stderr.splitlines()
        if ln.strip()
    ]
    if returncode != 0 or result is None:
        why = err_lines[-1] if err_lines else "no output"
        what = f"exit {returncode}" if returncode != 0 else "no JSON line"
        return {"status": "failed", "reason": f"{what}: {why}"[:200]}
    out: dict = {"status": "ok"}
    if "note" in result:
        out["note"] = str(result["note"])
    if "unsupported" in result:
        out["status"] = "unsupported"
        out["reason"] = str(result["unsupported"])
        return out
    out["metrics"] = {
        k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return out


def run_one(system: str, workload: str, quick: bool, timeout: float) -> dict:
    py, driver, _ = SYSTEMS[system]
    path = os.path.join(HERE, driver)
    if not os.path.exists(path):
        return {"status": "failed", "reason": "driver missing"}
    if not os.path.exists(py):
        return {"status": "failed", "reason": f"interpreter missing: {os.path.relpath(py, ROOT)}"}
    cmd = [py, path, workload] + (["--quick"] if quick else [])
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        rec = parse_output(out, err, proc.returncode)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        rec = {"status": "failed", "reason": f"timeout: no result within {timeout:g} s"}
    finally:
        kill_group(proc.pid)  # whatever the driver left behind in its group
    rec["wall_s"] = round(time.monotonic() - t0, 3)
    if rec["status"] == "failed":
        rec["stderr_tail"] = err[-4000:]
    return rec


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ---- aggregation (pure functions: tests/python/test_bench_compare.py) ------------------------


def advantage(ours: float, other: float, better: str) -> float | None:
    """How many times ours is ahead: ours/other for higher-is-better metrics, other/ours for
    lower-is-better ones; > 1 means ours is ahead."""
    if better == "high":
        return ours / other if other else None
    return other / ours if ours else None


def summarize(records: list[dict], systems: list[str], workloads: list[str]) -> dict:
    """records: {"run", "workload", "system", "status", "metrics"?, "reason"?, "note"?}.
    For each workload and system: runs ok/unsupported/failed, reasons, and per metric the
    median, min and max over the ok runs; for each other system the per-run advantage of ours
    (only runs where both are ok) and its median."""
    out: dict = {}
    for wl in workloads:
        desc, metrics = params.WORKLOADS[wl]
        entry: dict = {"description": desc, "systems": {}, "vs": {}}
        by_sys: dict[str, dict[int, dict]] = {}
        for s in systems:
            recs = {r["run"]: r for r in records if r["workload"] == wl and r["system"] == s}
            by_sys[s] = recs
            counts = {
                k: sum(1 for r in recs.values() if r["status"] == k)
                for k in ("ok", "unsupported", "failed")
            }
            reasons = sorted(
                {
                    r.get("reason", "")
                    for r in recs.values()
                    if r["status"] != "ok" and r.get("reason")
                }
            )
            notes = sorted({r["note"] for r in recs.values() if r.get("note")})
            stats = {}
            for m in metrics:
                vals = [
                    r["metrics"][m]
                    for r in recs.values()
                    if r["status"] == "ok" and m in r.get("metrics", {})
                ]
                if vals:
                    stats[m] = {
                        "median": statistics.median(vals),
                        "min": min(vals),
                        "max": max(vals),
                        "n": len(vals),
                    }
            entry["systems"][s] = {
                "runs": len(recs),
                **counts,
                "reasons": reasons,
                "notes": notes,
                "metrics": stats,
            }
        if OURS in systems:
            for s in systems:
                if s == OURS:
                    continue
                per_metric = {}
                for m, (_unit, better) in metrics.items():
                    ratios = []
                    for run, r in sorted(by_sys[OURS].items()):
                        o = by_sys[s].get(run)
                        if (
                            r["status"] == "ok"
                            and o is not None
                            and o["status"] == "ok"
                            and m in r.get("metrics", {})
                            and m in o.get("metrics", {})
                        ):
                            a = advantage(r["metrics"][m], o["metrics"][m], better)
                            if a is not None:
                                ratios.append(a)
                    if ratios:
                        per_metric[m] = {"median": statistics.median(ratios), "runs": ratios}
                entry["vs"][s] = per_metric
        out[wl] = entry
    return out


def fmt(value: float, unit: str) -> str:
    def g(x: float) -> str:
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"

    if unit == "us":
        if value >= 1e6:
            return f"{value / 1e6:.3g} s"
        return f"{g(value / 1000)} ms" if value >= 1000 else f"{g(value)} µs"
    if unit == "ms" and value >= 1000:
        return f"{value / 1000:.3g} s"
    if unit in ("ops/s", "items/s", "spawns/s", "ops"):
        suffix = "" if unit == "ops" else unit[unit.index("/") :]
        for div, p in ((1e6, "M"), (1e3, "k")):
            if value >= div:
                return f"{g(value / div)} {p}{suffix}"
        return f"{g(value)}{suffix}" if suffix else g(value)
    if unit == "bytes":
        if value >= 1e6:
            return f"{value / 1e6:.3g} MB"
        return f"{g(value / 1000)} kB" if value >= 1000 else f"{g(value)} B"
    if unit == "GB/s":
        return f"{value * 1000:.3g} MB/s" if value < 1 else f"{value:.3g} GB/s"
    return f"{g(value)} {unit}"


def ratio(x: float) -> str:
    return f"{x:.0f}×" if x >= 100 else f"{x:.2f}×"


def cell(st: dict, metric: str, unit: str, first: bool) -> str:
    m = st["metrics"].get(metric)
    if m is None:
        if st["runs"] == 0:
            return "not run"
        if not first:
            return "—"
        if st["unsupported"] and not st["failed"]:
            return "unsupported: " + "; ".join(st["reasons"])
        return f"failed ({st['failed']}/{st['runs']}): " + "; ".join(st["reasons"])
    txt = f"{fmt(m['median'], unit)} ({fmt(m['min'], unit)} – {fmt(m['max'], unit)})"
    bad = st["failed"] + st["unsupported"]
    if bad and first:
        txt += f"; {bad} of {st['runs']} runs failed: " + "; ".join(st["reasons"])
    return txt


def markdown(summary: dict, systems: list[str], meta: dict) -> str:
    others = [s for s in systems if s != OURS] if OURS in systems else []
    lines = [
        "# bench-compare: Pulsing (this project) side by side with its peers",
        "",
        (
            f"{meta.get('when', '')}, {meta.get('runs_done', meta.get('runs', '?'))} of "
            f"{meta.get('runs', '?')} runs done, interleaved"
            f"{' (--quick: smoke-test counts, not for publishing)' if meta.get('quick') else ''}. "
            f"Command: `{meta.get('command', '')}`"
        ),
        "",
        f"Machine: {meta.get('machine', '')}",
        "",
        (
            "Each cell: median (min – max) over the runs that succeeded. The ratio columns are "
            "computed run by run (ours and the peer of the same run) and their median is shown; "
            "> 1 means ours is ahead (ours/peer for throughput, peer/ours for latency, time and "
            "memory)."
        ),
        "",
    ]
    head = ["workload", "metric"] + [LABELS.get(s, s) for s in systems]
    head += [f"ours vs {s} (×)" for s in others]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    notes = []
    for wl, entry in summary.items():
        metrics = params.WORKLOADS[wl][1]
        for i, (m, (unit, better)) in enumerate(metrics.items()):
            row = [
                f"{wl}: {entry['description']}" if i == 0 else "",
                f"{m} ({'↓' if better == 'low' else '↑'})",
            ]
            for s in systems:
                row.append(cell(entry["systems"][s], m, unit, i == 0))
            for s in others:
                v = entry["vs"].get(s, {}).get(m)
                row.append(f"{ratio(v['median'])} ({len(v['runs'])} runs)" if v else "—")
            lines.append("| " + " | ".join(x.replace("|", "/") for x in row) + " |")
        for s in systems:
            for n in entry["systems"][s]["notes"]:
                notes.append(f"- {wl}, {s}: {n}")
    if notes:
        lines += ["", "Notes from the drivers:", ""] + notes
    return "\n".join(lines) + "\n"


# ---- charts --------------------------------------------------------------------------------


def charts(summary: dict, systems: list[str], outdir: str) -> list[str]:
    """latency.png (p50/p99 per workload), throughput.png (rates per workload), cost.png (time
    and memory); one colour per system, error bars min–max, n/a where a system has no figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {
        "latency": lambda m, u: u == "us",
        "throughput": lambda m, u: u in ("ops/s", "items/s", "spawns/s", "GB/s"),
        "cost": lambda m, u: u in ("bytes", "ms", "s"),
    }
    written = []
    for name, pick in groups.items():
        panels = []
        for wl, entry in summary.items():
            ms = [(m, u) for m, (u, _b) in params.WORKLOADS[wl][1].items() if pick(m, u)]
            if ms:
                panels.append((wl, entry, ms))
        if not panels:
            continue
        cols = 4
        rows = (len(panels) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
        width = 0.8 / max(1, len(systems))
        for ax, (wl, entry, ms) in zip(axes.flat, panels):
            scale = {"us": 1.0}
            unit = ms[0][1]
            vals_all = []
            for j, s in enumerate(systems):
                st = entry["systems"][s]
                for i, (m, u) in enumerate(ms):
                    x = i + (j - (len(systems) - 1) / 2) * width
                    v = st["metrics"].get(m)
                    if v is None:
                        ax.text(
                            x,
                            0,
                            "n/a",
                            rotation=90,
                            ha="center",
                            va="bottom",
                            fontsize=7,
                            color=COLOURS.get(s, "grey"),
                            transform=ax.get_xaxis_transform(),
                        )
                        continue
                    k = scale.get(u, 1.0)
                    med = v["median"] * k
                    vals_all += [v["min"] * k, v["max"] * k]
                    ax.bar(
                        x,
                        med,
                        width,
                        color=COLOURS.get(s, "grey"),
                        yerr=[[med - v["min"] * k], [v["max"] * k - med]],
                        capsize=2,
                        label=LABELS.get(s, s) if i == 0 else None,
                    )
            ax.set_xticks(range(len(ms)))
            ax.set_xticklabels([m for m, _ in ms], fontsize=8)
            ax.set_title(wl, fontsize=9)
            ax.set_ylabel("µs" if unit == "us" else unit, fontsize=8)
            pos = [v for v in vals_all if v > 0]
            if pos and max(pos) / min(pos) > 10:
                ax.set_yscale("log")
            ax.tick_params(which="both", labelsize=7)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS.get(s, "grey")) for s in systems]
        fig.legend(
            handles,
            [LABELS.get(s, s) for s in systems],
            loc="upper center",
            ncol=len(systems),
            fontsize=9,
        )
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        path = os.path.join(outdir, f"{name}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def load_records(outdir: str) -> list[dict]:
    """Every per-(run, workload, system) result written so far in `outdir`."""
    recs = []
    for name in sorted(os.listdir(outdir)):
        if name.startswith("run") and name.endswith(".json"):
            with open(os.path.join(outdir, name)) as f:
                recs.append(json.load(f))
    return recs


def publish(records, systems, workloads, meta, outdir, with_charts: bool) -> str:
    """Write the summary, table and charts of the runs so far (after every run, so an
    interrupted session still leaves its complete runs published). Returns the table."""
    meta = {**meta, "runs_done": max((r["run"] for r in records), default=0)}
    summary = summarize(records, systems, workloads)
    md = markdown(summary, systems, meta)
    with open(os.path.join(outdir, "records.json"), "w") as f:
        json.dump(records, f, indent=1)
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump({"meta": meta, "summary": summary}, f, indent=1)
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(md)
    shutil.copy(os.path.join(outdir, "table.md"), os.path.join(RESULTS, "latest.md"))
    shutil.copy(os.path.join(outdir, "summary.json"), os.path.join(RESULTS, "latest-compare.json"))
    if with_charts:
        try:
            for p in charts(summary, systems, outdir):
                shutil.copy(p, os.path.join(RESULTS, "compare-" + os.path.basename(p)))
        except ImportError:
            log(
                "bench-compare: matplotlib is not installed: no charts "
                "(`make bench-compare` installs it)"
            )
    return md


# ---- main ----------------------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=params.RUNS_DEFAULT)
    ap.add_argument(
        "--workloads", default=",".join(params.WORKLOADS), help="comma-separated (default: all)"
    )
    ap.add_argument(
        "--systems", default=",".join(params.SYSTEMS), help="comma-separated (default: all)"
    )
    ap.add_argument("--quick", action="store_true", help="smoke-test counts (never publish)")
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per process (default 300, 120 with --quick)",
    )
    ap.add_argument("--no-charts", action="store_true")
    ap.add_argument(
        "--render",
        metavar="DIR",
        help="run nothing: rebuild the table and charts from the per-run files in DIR "
        "(an interrupted session's last, partial run included)",
    )
    args = ap.parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    systems = [s for s in args.systems.split(",") if s]
    for w in workloads:
        if w not in params.WORKLOADS:
            ap.error(f"unknown workload {w!r} (known: {', '.join(params.WORKLOADS)})")
    for s in systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r} (known: {', '.join(SYSTEMS)})")
    timeout = args.timeout or (120.0 if args.quick else 300.0)
    if args.render:
        records = load_records(args.render)
        with open(os.path.join(args.render, "summary.json")) as f:
            meta = json.load(f)["meta"]
        print(
            publish(
                records, meta["systems"], meta["workloads"], meta, args.render, not args.no_charts
            )
        )
        return 0

    peer_error = {}
    for s in systems:
        why = ensure_peer(s)
        if why:
            log(f"bench-compare: {s}: {why}")
            peer_error[s] = why

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    outdir = os.path.join(RESULTS, "compare", stamp)
    os.makedirs(outdir, exist_ok=True)
    command = "bench/compare/run.py " + " ".join(sys.argv[1:])
    meta = {
        "when": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "runs": args.runs,
        "quick": args.quick,
        "command": command.strip(),
        "machine": machine(),
        "workloads": workloads,
        "systems": systems,
        "dir": outdir,
    }
    records = []
    t_all = time.monotonic()
    for run in range(1, args.runs + 1):
        t_run = time.monotonic()
        for wl in workloads:
            for s in systems:
                if s in peer_error:
                    rec = {"status": "failed", "reason": f"peer not installed: {peer_error[s]}"}
                else:
                    rec = run_one(s, wl, args.quick, timeout)
                rec = {"run": run, "workload": wl, "system": s, **rec}
                records.append(rec)
                with open(os.path.join(outdir, f"run{run}_{wl}_{s}.json"), "w") as f:
                    json.dump(rec, f, indent=1)
        done = [r for r in records if r["run"] == run]
        counts = {
            k: sum(1 for r in done if r["status"] == k) for k in ("ok", "unsupported", "failed")
        }
        log(
            f"bench-compare: run {run}/{args.runs} done in {time.monotonic() - t_run:.0f} s "
            f"({counts['ok']} ok, {counts['unsupported']} unsupported, {counts['failed']} failed; "
            f"{time.monotonic() - t_all:.0f} s so far)"
        )
        if run < args.runs:
            publish(records, systems, workloads, meta, outdir, not args.no_charts)

    md = publish(records, systems, workloads, meta, outdir, not args.no_charts)
    print(md)
    log(
        f"bench-compare: raw results in {os.path.relpath(outdir, ROOT)}, "
        f"table in bench/results/latest.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
