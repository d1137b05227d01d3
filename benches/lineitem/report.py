#!/usr/bin/env python3
"""Turn one run directory of lineitem/run.sh into the markdown report.

Usage: report.py RUN_DIR > report.md

RUN_DIR holds results.json (driver.py), meta.json (run.sh) and strata_cache_stats.json.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from report_common import load, median  # noqa: E402

REQUESTS = [
    ("q1_group_by", "Q1-like: `l_shipdate <= 1998-09-02`, group by returnflag, linestatus; "
     "sum(quantity), sum(extendedprice), avg(discount), count"),
    ("topk_order", "order by `l_extendedprice` desc, 50 rows (top 50 of 6M)"),
    ("key_desc", "order by the key (`l_orderkey`, `l_linenumber`) descending, 50 rows"),
    ("filter_order", "`l_shipmode = <random of 7>`, order by `l_extendedprice` desc, 50 rows"),
    ("key_lookup", "`l_orderkey = k AND l_linenumber = n`, a random existing key"),
]
# Issue 18's targets against DuckDB's in-memory table (median of the rounds' ratios).
LATENCY_TARGETS = {"topk_order": 1.5, "key_desc": 1.5}
MEMORY_TARGET = 1.2


def fmt_ms(v):
    return "—" if v is None else f"{v:.2f}"


def main():
    run_dir = sys.argv[1]
    res = load(os.path.join(run_dir, "results.json")) or {}
    meta = load(os.path.join(run_dir, "meta.json")) or {}
    stats = load(os.path.join(run_dir, "strata_cache_stats.json")) or {}
    out = [f"# lineitem SF{meta.get('scale', '?')}: Strata vs DuckDB in process ({meta.get('date', '?')})", ""]
    out += [
        f"- machine: {meta.get('nproc')} cores, {meta.get('cpu')}",
        f"- data: {meta.get('data')}",
        f"- Strata: {meta.get('strata_version')}; import and first load "
        f"{meta.get('strata_import_s')} s (peak {int(meta.get('strata_import_hwm_kb', 0)) // 1024} MiB); "
        f"in memory {meta.get('strata_ready_s')} s after a restart",
        f"- DuckDB {res.get('memory', {}).get('duckdb', {}).get('version')} in process, default settings "
        f"(threads = {res.get('memory', {}).get('duckdb', {}).get('threads')}); table loaded with "
        f"`CREATE TABLE … AS SELECT * FROM read_parquet(…)` in "
        f"{res.get('memory', {}).get('duckdb', {}).get('load_s')} s",
        f"- {res.get('rounds')} paired rounds × {res.get('reps')} requests per side; a round's "
        "figure is the median latency of its requests, run one at a time (Strata over HTTP on "
        "one kept-alive connection, DuckDB in process); the ratio is the median of the rounds' "
        "ratios",
        "",
        "## Latency",
        "",
        "| request | Strata ms | DuckDB table ms | DuckDB Parquet ms | Strata / DuckDB table | "
        "Strata / DuckDB Parquet | failed | answers |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    ratios = {}
    for name, _ in REQUESTS:
        r = res.get("requests", {}).get(name)
        if not r:
            out.append(f"| {name} | not run | | | | | | |")
            continue
        s, t, p = r["strata_ms"], r["duck_table_ms"], r["duck_parquet_ms"]
        rt = [a / b for a, b in zip(s, t) if a is not None and b]
        rp = [a / b for a, b in zip(s, p) if a is not None and b]
        ratios[name] = median(rt) if rt and r["failures"] == 0 else None
        wrong = res.get("correct", {}).get(name)
        out.append(
            f"| {name} | {fmt_ms(median([v for v in s if v is not None]) if any(v is not None for v in s) else None)} "
            f"| {fmt_ms(median(t))} | {fmt_ms(median(p))} "
            f"| {f'{median(rt):.2f}x' if rt else 'FAILED'} | {f'{median(rp):.2f}x' if rp else 'FAILED'} "
            f"| {r['failures']} | {'**' + wrong + '**' if wrong else 'equal to DuckDB'} |"
        )
    out += ["", "| request | what |", "|---|---|"]
    out += [f"| {n} | {d} |" for n, d in REQUESTS]

    mem = res.get("memory", {})
    duck = mem.get("duckdb", {})
    strata_kb = mem.get("strata_after_kb") or mem.get("strata_ready_kb") or 0
    duck_kb = duck.get("rss_after_runs_kb") or duck.get("rss_after_load_kb") or 0
    used = stats.get("used_bytes")
    out += [
        "",
        "## Resident memory",
        "",
        "| | Strata (`strata up`: queryd, storaged, compactord) | DuckDB (Python process) |",
        "|---|--:|--:|",
        f"| process VmRSS with the table loaded, after the runs | {strata_kb // 1024} MiB | {duck_kb // 1024} MiB |",
        f"| process VmRSS before the table | — | {duck.get('rss_before_kb', 0) // 1024} MiB |",
        f"| the table as the engine counts it | {used // 1048576 if used else '?'} MiB (cache `used_bytes`) "
        f"| {(duck.get('in_memory_table_bytes') or 0) // 1048576} MiB (`duckdb_memory()` IN_MEMORY_TABLE) |",
        "",
    ]
    mem_ratio = strata_kb / duck_kb if duck_kb else None
    out += ["## Targets (issue 18)", "", "| target | measured | result |", "|---|--:|---|"]
    for name, limit in LATENCY_TARGETS.items():
        v = ratios.get(name)
        out.append(f"| {name} ≤ {limit}x DuckDB's in-memory time | "
                   f"{'FAILED' if v is None else f'{v:.2f}x'} | "
                   f"{'PASS' if v is not None and v <= limit else 'MISS'} |")
    out.append(f"| resident memory ≤ {MEMORY_TARGET}x DuckDB's (whole processes) | "
               f"{'?' if mem_ratio is None else f'{mem_ratio:.2f}x'} | "
               f"{'PASS' if mem_ratio is not None and mem_ratio <= MEMORY_TARGET else 'MISS'} |")
    wrong = {k: v for k, v in res.get("correct", {}).items() if v}
    out += ["", "## Answers", ""]
    out += [f"- **{k}**: {v}" for k, v in wrong.items()] or [
        "Every request answered the same on Strata and DuckDB's table (checked once before timing)."]
    print("\n".join(out))


if __name__ == "__main__":
    main()
