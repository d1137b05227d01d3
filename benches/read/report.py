#!/usr/bin/env python3
"""Turn one run directory of run.sh into the markdown report.

Usage: report.py RUN_DIR > report.md

RUN_DIR holds:
  wrk_<server>_<query>_r<round>.json   the BENCH_JSON line of each measured wrk run (or
                                       {"failed": "..."}), rounds numbered from 1
  verify.json                 findings of verify.py
  meta.json                   machine, versions, settings, memory, start-up times
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from report_common import load, median  # noqa: E402

QUERIES = [
    ("pk_lookup", "POST query, `id eq <random 1..1M>`"),
    ("indexed_page", "POST query, `category eq <random of 8>`, page_size 100, page 1..50"),
    ("group_by", "POST query, group_by country, count + sum(amount), all 1M rows"),
    ("plain_page", "POST query, no predicates, page_size 100, page 1..1000"),
    ("deep_page", "POST query, no predicates, page_size 100, page 1000"),
    ("filter_order", "POST query, `category eq <random of 8>`, order_by amount desc, page_size 50"),
    ("topk_order", "POST query, order_by amount desc, page_size 50 (top 50 of 1M rows)"),
    ("key_desc", "POST query, order_by id desc, page_size 50"),
]
SERVERS = [("strata", "Strata"), ("datap", "datap-rs")]



def ok(r) -> bool:
    return bool(r) and "failed" not in r


def errors(rounds) -> int:
    return sum(sum(r[k] for k in ("non2xx", "connect_err", "read_err", "write_err", "timeout_err"))
               for r in rounds if ok(r))


def err_text(rounds) -> str:
    rounds = [r for r in rounds if r is not None]
    if not rounds:
        return "not run"
    if not all(ok(r) for r in rounds):
        return "FAILED"
    if errors(rounds) == 0:
        return "0"
    parts = []
    for k in ("non2xx", "connect_err", "read_err", "write_err", "timeout_err"):
        n = sum(r[k] for r in rounds)
        if n:
            parts.append(f"{n} {k.replace('_err', '').replace('non2xx', 'non-2xx')}")
    return f"**{', '.join(parts)}** of {sum(r['requests'] for r in rounds)}"


def clean(r) -> bool:
    """A run that ran and answered every request: only such a run's figures count (wrk counts
    a failed request in its throughput; a failure is reported as one, never as throughput)."""
    return ok(r) and errors([r]) == 0


def num(rounds, key, fmt):
    """The median over the clean rounds of `key`; FAILED when no round was clean."""
    values = [r[key] for r in rounds if clean(r)]
    if values:
        return format(median(values), fmt)
    return "FAILED" if any(r is not None for r in rounds) else "—"


def paired(a_rounds, b_rounds):
    """The ratio a/b of each round in which both ran clean, in round order."""
    return [a["rps"] / b["rps"] for a, b in zip(a_rounds, b_rounds)
            if clean(a) and clean(b) and b["rps"] > 0]


def mib(kb):
    return "—" if kb is None else f"{kb / 1024:.0f} MiB"


def main() -> None:
    run_dir = sys.argv[1]
    meta = load(os.path.join(run_dir, "meta.json")) or {}
    verify = load(os.path.join(run_dir, "verify.json")) or []
    rounds = int(meta.get("rounds") or 1)
    runs = {
        # One entry per round, None where that run did not happen.
        (s, q): [load(os.path.join(run_dir, f"wrk_{s}_{q}_r{i}.json")) for i in range(1, rounds + 1)]
        for s, _ in SERVERS
        for q, _ in QUERIES + [("health", "")]
    }
    out = []
    w = out.append

    w(f"# Read benchmark: Strata vs datap-rs 0.8.6 — {meta.get('date', '?')}")
    w("")
    w(f"- Machine: {meta.get('nproc', '?')} cores (`nproc`), {meta.get('cpu', '?')}, "
      f"{meta.get('mem', '?')} RAM, kernel `{meta.get('kernel', '?')}`")
    w(f"- Strata: {meta.get('strata_version', '?')}")
    w(f"- datap-rs: {meta.get('datap_version', '?')}")
    w(f"- Load: `{meta.get('wrk_version', 'wrk')}`, `wrk -t2 -c8 -d{meta.get('duration', '?')}s` per "
      f"query and server, after a {meta.get('warmup', '?')} s warm-up run; one server loaded at a time, "
      "both servers and wrk on the same machine (numbers are relative)")
    w(f"- Rounds: {rounds}. Each round runs every query on both servers one right after the other "
      "(who goes first alternates) and Strata's `/health` right after its key lookups. Figures "
      "are medians over the rounds; a ratio is the median of the rounds' ratios, because the "
      "machine's speed drifts by tens of percent within minutes")
    w(f"- Data: {meta.get('data', '?')}")
    w(f"- Load average: {meta.get('loadavg', '?')}")
    w("")
    w("## Throughput and latency")
    w("")
    w("| query | Strata req/s | p50 ms | p99 ms | datap-rs req/s | p50 ms | p99 ms "
      "| ratio (Strata / datap-rs) | ratio by round | errors Strata / datap-rs |")
    w("|---|--:|--:|--:|--:|--:|--:|--:|---|---|")

    def by_round(ratios, f):
        return ", ".join(format(r, f) for r in ratios) or "—"

    ratios = {}
    for q, _ in QUERIES:
        s, d = runs[("strata", q)], runs[("datap", q)]
        rs = paired(s, d)
        ratios[q] = median(rs) if rs else None
        w(f"| {q} | {num(s, 'rps', ',.0f')} | {num(s, 'p50_ms', '.2f')} | {num(s, 'p99_ms', '.2f')} "
          f"| {num(d, 'rps', ',.0f')} | {num(d, 'p50_ms', '.2f')} | {num(d, 'p99_ms', '.2f')} "
          f"| {'—' if ratios[q] is None else f'{ratios[q]:.2f}x'} | {by_round(rs, '.2f')} "
          f"| {err_text(s)} / {err_text(d)} |")
    h = runs[("strata", "health")]
    w(f"| health (Strata `GET /health`, the HTTP ceiling) | {num(h, 'rps', ',.0f')} "
      f"| {num(h, 'p50_ms', '.2f')} | {num(h, 'p99_ms', '.2f')} | — | — | — | — "
      f"| {by_round([r['rps'] for r in h if ok(r)], ',.0f')} req/s | {err_text(h)} / — |")
    w("")
    of_health = paired(runs[("strata", "pk_lookup")], h)
    pk_of_health = median(of_health) if of_health else None
    if pk_of_health is not None:
        w(f"pk_lookup on Strata is **{pk_of_health:.0%}** of Strata's `/health` throughput "
          f"(median; by round: {by_round(of_health, '.0%')}).")
        w("")
    w("Queries (same request sequence for both servers: per-thread fixed seeds):")
    w("")
    for q, desc in QUERIES:
        w(f"- `{q}`: {desc}")
    w("- `health`: `GET /health` on Strata only")
    w("")

    w("## Resident memory after load")
    w("")
    w("| server | process | VmRSS when ready | VmRSS after all runs | of which anonymous / file-backed | VmHWM (peak) | ready after |")
    w("|---|---|--:|--:|--:|--:|--:|")
    mem = meta.get("memory", {})
    for s, label in SERVERS:
        m = mem.get(s)
        if not m:
            continue
        w(f"| {label} | {m.get('process', '?')} | {mib(m.get('rss_ready_kb'))} "
          f"| {mib(m.get('rss_after_kb'))} "
          f"| {mib(m.get('anon_after_kb'))} / {mib(m.get('file_after_kb'))} "
          f"| {mib(m.get('hwm_kb'))} "
          f"| {m.get('ready_s', '?')} s |")
    rss_ratio = None
    if mem.get("strata", {}).get("rss_after_kb") and mem.get("datap", {}).get("rss_after_kb"):
        rss_ratio = mem["strata"]["rss_after_kb"] / mem["datap"]["rss_after_kb"]
        w("")
        w(f"Strata / datap-rs resident memory after load: **{rss_ratio:.2f}x**.")
    w("")
    stats = load(os.path.join(run_dir, "strata_cache_stats.json"))
    try:
        entry = next(d for d in stats["datasets"] if d["dataset"] == "orders")
        w(f"Strata's own accounting of the resident dataset (`/api/v1/cache/stats`): "
          f"{entry['bytes'] / 2**20:.0f} MiB for `orders` ({entry['residency']}).")
        w("")
    except Exception:
        pass
    w("Strata's number is the single `strata up` process, which runs all three daemons "
      "(queryd, storaged, compactord) in one process; datap-rs's is its Python process "
      "(interpreter + the Rust extension). File-backed pages are mostly each program's "
      "machine code that has run (Strata's binary, datap-rs's extension module). "
      "\"Ready\": datap-rs dataset `published`; Strata's dataset is pinned, so queryd loads "
      "it at start as datap-rs does, and is ready at `residency: memory` in "
      "`/api/v1/cache/stats`. The measured Strata process is "
      "a restart over its store: the first start, which imports the Parquet file into the "
      "store (a one-time step of dataset creation), is not the serving steady state.")
    if meta.get("strata_import_hwm_kb"):
        w("")
        w(f"First start (one-time import by storaged, then load): peak VmHWM "
          f"{meta['strata_import_hwm_kb'] / 1024:.0f} MiB.")
    w("")

    w("## Targets (8 connections)")
    w("")
    w("| target | measured | result |")
    w("|---|--:|---|")

    def verdict(value, ok, involved):
        if value is None:
            return "MISS (not measured)"
        v = "PASS" if ok else "MISS"
        errs = sum(errors(runs.get(k, [])) for k in involved)
        bad = [f["check"] for f in verify if not f["ok"] and f["kind"] in {k[1] for k in involved}]
        flags = []
        if errs:
            flags.append(f"{errs} failed requests")
        if bad:
            flags.append("verification mismatch")
        return v + (f" — **flagged: {'; '.join(flags)}**" if flags else "")

    def fmt(v, f):
        return "—" if v is None else f.format(v)

    # Issue 18's targets, against datap-rs configured as its users would (indexed on the key
    # and the filter columns).
    targets = [
        ("pk_lookup ≥ 80% of Strata /health", fmt(pk_of_health, "{:.0%}"),
         verdict(pk_of_health, (pk_of_health or 0) >= 0.8,
                 [("strata", "pk_lookup"), ("strata", "health")])),
        ("indexed_page ≥ 2x datap-rs", fmt(ratios["indexed_page"], "{:.2f}x"),
         verdict(ratios["indexed_page"], (ratios["indexed_page"] or 0) >= 2,
                 [("strata", "indexed_page"), ("datap", "indexed_page")])),
        ("group_by ≥ 4x datap-rs", fmt(ratios["group_by"], "{:.2f}x"),
         verdict(ratios["group_by"], (ratios["group_by"] or 0) >= 4,
                 [("strata", "group_by"), ("datap", "group_by")])),
        ("filter_order ≥ 2x datap-rs, no failed request", fmt(ratios["filter_order"], "{:.2f}x"),
         verdict(ratios["filter_order"], (ratios["filter_order"] or 0) >= 2,
                 [("strata", "filter_order"), ("datap", "filter_order")])),
        ("resident memory after load ≤ 0.35x datap-rs", fmt(rss_ratio, "{:.2f}x"),
         verdict(rss_ratio, rss_ratio is not None and rss_ratio <= 0.35, [])),
    ]
    for name, measured, result in targets:
        w(f"| {name} | {measured} | {result} |")
    w("")
    w("pk_lookup, plain_page, deep_page, topk_order and key_desc have no target against "
      "datap-rs here (issue 18 sets top-K and key-descending targets against DuckDB on "
      "TPC-H lineitem); they are reported for context.")
    w("")

    w("## Correctness check (before timing)")
    w("")
    w("One fixed request per query, sent with curl to each server; each answer must be HTTP 200 "
      "and match both the other server and the truth computed from the Parquet file with pyarrow "
      "(group-by compared sorted by country, sums to a relative 1e-9).")
    w("")
    if not verify:
        w("- not run")
    for f in verify:
        w(f"- `{f['kind']}` {f['check']}: {'ok' if f['ok'] else '**MISMATCH**'}")
        for p in f["problems"]:
            w(f"  - `{p[:1500]}`")
    w("")

    flagged = [(s, q, i + 1, r) for (s, q), rs in runs.items() for i, r in enumerate(rs)
               if r is not None and (not ok(r) or errors([r]))]
    if flagged:
        w("## Runs with errors")
        w("")
        for s, q, i, r in flagged:
            if not ok(r):
                w(f"- {s} {q} round {i}: wrk failed: {r['failed']}")
            else:
                w(f"- {s} {q} round {i}: {err_text([r])} (req/s above counts them)")
        samples = meta.get("error_samples", {})
        for key, text in samples.items():
            w(f"- sample answer for {key}: `{text[:1000]}`")
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
