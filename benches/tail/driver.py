#!/usr/bin/env python3
"""Driver of the tail benchmark (benches/tail/run.sh): key lookups at a fixed load, in paired
windows of the same length, one idle and one across a compaction, ROUNDS times.

Usage:
  driver.py --queryd URL --compactord URL --token TOKEN --queryd-pid P --wrk-script FILE
            --out OUT.json [--rows N] [--share PCT] [--rounds R] [--window-s S]
            [--compact-at-s S] [--connections C] [--threads T]

Each round:
  1. posts PCT% of the rows as deltas (updates, deletes, inserts: benches/compact/driver.py's
     `build_deltas`, seed = round) through queryd, and waits 2 s;
  2. idle window: wrk (pk_lookup of benches/read/wrk/query.lua) for --window-s seconds;
  3. compaction window: the same wrk run; --compact-at-s seconds in, a compaction on compactord;
     the window must see queryd answer the compacted version (else the round is a failure).
     queryd's peak RSS (VmHWM, reset before the window) against its RSS before the window;
  4. checks the answer: the count at the compacted version is the model's (the set of live
     ids, following every posted row).
wrk's failed requests (non-2xx, socket errors, timeouts) are reported as failures, never as
throughput. The ratio of a round is its compaction window's p99 over its idle window's p99.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compact"))
import driver as cd  # noqa: E402  (benches/compact/driver.py: deltas, /proc readings)


def wrk(a, seconds):
    cmd = ["wrk", f"-t{a.threads}", f"-c{a.connections}", f"-d{seconds}s", "--timeout", "30s",
           "-s", a.wrk_script, f"{a.queryd}", "--", "pk_lookup"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wrk_result(proc):
    out, _ = proc.communicate()
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            r = json.loads(line[len("BENCH_JSON "):])
            r["failed"] = (r["non2xx"] + r["connect_err"] + r["read_err"] + r["write_err"]
                           + r["timeout_err"])
            return r
    raise cd.Failed(f"wrk printed no result: {out[-2000:]}")


def metric(url, name):
    conn = cd.connect(url)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def count_at(url, version):
    q = cd.connect(url)
    _, data = cd.request(q, "POST", cd.COUNT_PATH, json.dumps({"min_version": version}).encode(),
                         {"Content-Type": "application/json"})
    return json.loads(data)["count"]


def post_deltas(a, seed):
    d = cd.build_deltas(a.rows, a.share, 10_000, 0.10, 0.05, seed)
    q = cd.connect(a.queryd)
    headers = {"X-Admin-Token": a.token, "Content-Type": cd.ARROW}
    version = None
    for body in d["bodies"]:
        _, data = cd.request(q, "POST", cd.DELTAS_PATH, body, headers)
        version = json.loads(data)["version"]
    return d, version


def round_(a, n, live):
    d, version = post_deltas(a, n)
    # The model: rounds reuse ids (the inserts of every round are the same new ids, and a
    # round may update or delete what an earlier one deleted), so it follows each posted row.
    for t in d["tables"]:
        for k, op in zip(t.column("id").to_pylist(), t.column("_op").to_pylist()):
            (live.discard if op == 1 else live.add)(k)
    time.sleep(2)
    out = {"round": n, "delta_rows": d["n"], "version_before": version}

    out["idle"] = wrk_result(wrk(a, a.window_s))
    time.sleep(1)

    steady = cd.proc_status(a.queryd_pid)
    cd.reset_peak(a.queryd_pid)
    carried = metric(a.queryd, "strata_compactions_carried_total")
    builds = metric(a.queryd, "strata_state_builds_total")
    load = wrk(a, a.window_s)
    t_window = time.perf_counter()
    time.sleep(a.compact_at_s)
    c = cd.connect(a.compactord, timeout=3600)
    t0 = time.perf_counter()
    _, data = cd.request(c, "POST", cd.COMPACT_PATH, b"", {"X-Admin-Token": a.token})
    run = json.loads(data)
    out["compact_s"] = time.perf_counter() - t0
    if run.get("outcome") != "committed":
        raise cd.Failed(f"round {n}: compaction {run}")
    out["version"] = run["version"]
    # When queryd serves the compacted version (its notification, or its poll).
    switched = None
    while time.perf_counter() - t0 < a.window_s:
        if cd.cache_entry(a.queryd).get("version", 0) >= run["version"]:
            switched = time.perf_counter() - t0
            break
        time.sleep(0.02)
    out["switch_s"] = switched
    out["during"] = wrk_result(load)
    out["window_end_s"] = time.perf_counter() - t_window
    peak = cd.proc_status(a.queryd_pid)
    out["queryd_steady_mib"] = steady.get("VmRSS", 0) / 1024
    out["queryd_peak_mib"] = peak.get("VmHWM", 0) / 1024
    out["carried"] = (metric(a.queryd, "strata_compactions_carried_total") or 0) - (carried or 0)
    out["builds"] = (metric(a.queryd, "strata_state_builds_total") or 0) - (builds or 0)
    out["residency"] = cd.cache_entry(a.queryd).get("residency")
    problems = []
    if switched is None:
        problems.append("queryd did not serve the compacted version within the window")
    got = count_at(a.queryd, run["version"])
    if got != len(live):
        problems.append(f"count {got} at the compacted version, expected {len(live)}")
    out["problems"] = problems
    out["ratio"] = out["during"]["p99_ms"] / out["idle"]["p99_ms"] if out["idle"]["p99_ms"] else None
    print(f"round {n}: p99 idle {out['idle']['p99_ms']:.1f} ms, during compaction "
          f"{out['during']['p99_ms']:.1f} ms ({out['ratio']:.2f}x); failed {out['idle']['failed']}"
          f"/{out['during']['failed']}; carried {out['carried']:.0f}, builds {out['builds']:.0f}; "
          f"queryd {out['queryd_steady_mib']:.0f} -> peak {out['queryd_peak_mib']:.0f} MiB"
          + (f"; PROBLEMS {problems}" if problems else ""), file=sys.stderr)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queryd", required=True)
    p.add_argument("--compactord", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--queryd-pid", type=int, required=True)
    p.add_argument("--wrk-script", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--share", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window-s", type=int, default=15)
    p.add_argument("--compact-at-s", type=float, default=3)
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    rounds, live = [], set(range(1, a.rows + 1))
    try:
        for n in range(1, a.rounds + 1):
            rounds.append(round_(a, n, live))
    except cd.Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        rounds.append({"failed": str(e)})
    ratios = [r["ratio"] for r in rounds if r.get("ratio") is not None]
    summary = {"median_ratio": statistics.median(ratios) if ratios else None,
               "rounds": rounds, "args": vars(a)}
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
