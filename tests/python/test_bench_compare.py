"""bench/compare/run.py without running anything: driver output parsing, aggregation over runs
(medians, min–max, run-by-run ratios) and the Markdown table, on synthetic per-run results.
No peer is installed and no chart is drawn."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPARE = os.path.join(ROOT, "bench", "compare")


@pytest.fixture(scope="module")
def harness():
    sys.path.insert(0, COMPARE)
    try:
        spec = importlib.util.spec_from_file_location(
            "bench_compare_run", os.path.join(COMPARE, "run.py")
        )
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(COMPARE)


OURS, ORIG, RAY = "pulsing", "pulsing-0.1.2", "ray-2.60.0"


def ok(run, wl, system, **metrics):
    return {"run": run, "workload": wl, "system": system, "status": "ok", "metrics": metrics}


def records():
    recs = []
    ours_p50 = [2.0, 4.0, 3.0]
    orig_p50 = [20.0, 8.0, None]  # run 3 failed
    for run in (1, 2, 3):
        recs.append(
            ok(run, "ask_sync", OURS, p50_us=ours_p50[run - 1], p99_us=10.0, ops_per_s=1000.0 * run)
        )
        if orig_p50[run - 1] is None:
            recs.append(
                {
                    "run": run,
                    "workload": "ask_sync",
                    "system": ORIG,
                    "status": "failed",
                    "reason": "exit 1: RuntimeError: boom",
                }
            )
        else:
            recs.append(
                ok(run, "ask_sync", ORIG, p50_us=orig_p50[run - 1], p99_us=5.0, ops_per_s=500.0)
            )
        recs.append(
            {
                "run": run,
                "workload": "ask_sync",
                "system": RAY,
                "status": "ok",
                "metrics": {"p50_us": 100.0, "p99_us": 200.0, "ops_per_s": 100.0},
                "note": "actors in worker processes",
            }
        )
        recs.append(ok(run, "convergence_5", OURS, s=0.5))
        recs.append(ok(run, "convergence_5", ORIG, s=1.0))
        recs.append(
            {
                "run": run,
                "workload": "convergence_5",
                "system": RAY,
                "status": "unsupported",
                "reason": "no membership view in Ray",
            }
        )
    return recs


def test_parse_output(harness):
    p = harness.parse_output
    assert p('noise\n{"workload": "x", "system": "s", "p50_us": 1.5, "n": 3}\n', "", 0) == {
        "status": "ok",
        "metrics": {"p50_us": 1.5, "n": 3},
    }
    r = p('{"workload": "x", "system": "s", "unsupported": "no members()"}', "", 0)
    assert r == {"status": "unsupported", "reason": "no members()"}
    r = p('{"workload": "x", "system": "s", "p50_us": 1}', "Traceback\nValueError: bad", 1)
    assert r["status"] == "failed" and r["reason"] == "exit 1: ValueError: bad"
    r = p("", "", 0)
    assert r["status"] == "failed" and "no JSON line" in r["reason"]
    # ports vary between runs: the same failure reads the same
    a = p("", "Error: pool exhausted for 127.0.0.1:41234", 1)["reason"]
    b = p("", "Error: pool exhausted for 127.0.0.1:38000", 1)["reason"]
    assert a == b == "exit 1: Error: pool exhausted for 127.0.0.1:<port>"
    assert p('{"workload": "x", "system": "s", "ms": 2, "note": "n"}', "", 0)["note"] == "n"


def test_summary_medians_and_run_by_run_ratios(harness):
    s = harness.summarize(records(), [OURS, ORIG, RAY], ["ask_sync", "convergence_5"])
    ours = s["ask_sync"]["systems"][OURS]
    assert ours["ok"] == 3 and ours["failed"] == 0
    assert ours["metrics"]["p50_us"] == {"median": 3.0, "min": 2.0, "max": 4.0, "n": 3}
    assert ours["metrics"]["ops_per_s"]["median"] == 2000.0
    orig = s["ask_sync"]["systems"][ORIG]
    assert (orig["ok"], orig["failed"], orig["runs"]) == (2, 1, 3)
    assert orig["reasons"] == ["exit 1: RuntimeError: boom"]
    assert orig["metrics"]["p50_us"] == {"median": 14.0, "min": 8.0, "max": 20.0, "n": 2}
    # latency: peer/ours per run where both succeeded (runs 1 and 2): 20/2 = 10, 8/4 = 2
    vs = s["ask_sync"]["vs"][ORIG]["p50_us"]
    assert vs["runs"] == [10.0, 2.0] and vs["median"] == 6.0
    # not the ratio of the medians (14 / 3)
    assert vs["median"] != pytest.approx(14.0 / 3.0)
    # p99 lower is better: ours 10 vs 5 -> 0.5 (behind)
    assert s["ask_sync"]["vs"][ORIG]["p99_us"]["median"] == 0.5
    # throughput: ours/peer per run: 1000/500, 2000/500
    assert s["ask_sync"]["vs"][ORIG]["ops_per_s"]["runs"] == [2.0, 4.0]
    assert s["ask_sync"]["vs"][RAY]["ops_per_s"]["runs"] == [10.0, 20.0, 30.0]
    assert s["ask_sync"]["systems"][RAY]["notes"] == ["actors in worker processes"]
    ray = s["convergence_5"]["systems"][RAY]
    assert ray["unsupported"] == 3 and ray["metrics"] == {}
    assert s["convergence_5"]["vs"][RAY] == {}
    assert s["convergence_5"]["vs"][ORIG]["s"]["median"] == 2.0


def test_markdown_shows_every_row(harness):
    systems = [OURS, ORIG, RAY]
    s = harness.summarize(records(), systems, ["ask_sync", "convergence_5"])
    md = harness.markdown(
        s, systems, {"when": "now", "runs": 3, "command": "run.py --runs 3", "machine": "test"}
    )
    assert "unsupported: no membership view in Ray" in md
    assert "1 of 3 runs failed: exit 1: RuntimeError: boom" in md
    assert "| 3 µs (2 µs – 4 µs) |" in md
    assert "6.00× (2 runs)" in md
    assert "0.50× (3 runs)" not in md  # p99 vs the original: only the 2 paired runs
    assert "0.50× (2 runs)" in md
    assert "actors in worker processes" in md
    rows = [ln for ln in md.splitlines() if ln.startswith(("| ask_sync", "| convergence_5"))]
    assert len(rows) == 2


def test_missing_or_failed_everywhere(harness):
    recs = [
        {
            "run": r,
            "workload": "tell",
            "system": RAY,
            "status": "failed",
            "reason": "driver missing",
        }
        for r in (1, 2)
    ]
    recs += [ok(r, "tell", OURS, ops_per_s=10.0) for r in (1, 2)]
    s = harness.summarize(recs, [OURS, RAY], ["tell"])
    md = harness.markdown(s, [OURS, RAY], {})
    assert "failed (2/2): driver missing" in md
    assert s["tell"]["vs"][RAY] == {}


def test_run_one_reports_a_missing_driver(harness, monkeypatch):
    monkeypatch.setitem(harness.SYSTEMS, RAY, ("/nonexistent/python", "no_such_driver.py", None))
    assert harness.run_one(RAY, "tell", True, 5.0) == {
        "status": "failed",
        "reason": "driver missing",
    }


def test_units(harness):
    f = harness.fmt
    assert f(1.54, "us") == "1.54 µs"
    assert f(1450.0, "us") == "1.45 ms"
    assert f(562_000.0, "ops/s") == "562 k/s"
    assert f(2_520_000.0, "items/s") == "2.52 M/s"
    assert f(0.89, "GB/s") == "890 MB/s"
    assert f(9000.0, "bytes") == "9 kB"
    assert f(17477, "ops") == "17.5 k"
    assert f(525.0, "ops/s") == "525/s"
    assert f(94_432_000.0, "bytes") == "94.4 MB"
    assert f(9292.0, "ms") == "9.29 s"


def test_load_records_reads_every_run_file(harness, tmp_path):
    import json

    recs = records()[:4]
    for r in recs:
        (tmp_path / f"run{r['run']}_{r['workload']}_{r['system']}.json").write_text(json.dumps(r))
    (tmp_path / "summary.json").write_text("{}")
    got = harness.load_records(str(tmp_path))
    assert sorted(got, key=json.dumps) == sorted(recs, key=json.dumps)
