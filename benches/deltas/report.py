#!/usr/bin/env python3
"""Turn one run directory of benches/deltas/run.sh into the markdown report.

Usage: report.py RUN_DIR > report.md

RUN_DIR holds (each written by run.sh or driver.py; missing files are reported as not run):
  ingest_<format>_<batch>_<clients>.json   driver.py ingest
  visible_0.json, visible_loaded.json      driver.py visible (fresh store; after the levels)
  fill_<level>.json                        driver.py fill (posting the rows of a level)
  level_<level>.json                       VmRSS, served version, manifests and delta files
  wrk_<level>_<query>.json                 BENCH_JSON line of each wrk run
  log_findings.txt                         WARN/ERROR lines of the strata logs
  meta.json                                machine, versions, settings
"""

import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from report_common import load, log_findings, median  # noqa: E402

QUERIES = ["pk_lookup", "indexed_page"]



def f(v, fmt):
    return "—" if v is None else format(v, fmt)


def reload_ms(d, label, versions):
    """queryd's (re)load time per new version during LABEL, from the metrics before and after."""
    try:
        before, after = [list(map(float, l.split())) for l in open(os.path.join(d, f"{label}.reload"))][:2]
    except (OSError, ValueError):
        return None
    if not versions:
        return None
    return (after[0] - before[0]) / versions * 1e3


def errors(r):
    if not r or "failed" in r:
        return 0
    return sum(r[k] for k in ("non2xx", "connect_err", "read_err", "write_err", "timeout_err"))


def main():
    d = sys.argv[1]
    meta = load(os.path.join(d, "meta.json")) or {}
    out = []
    w = out.append
    w(f"# Delta benchmark: Strata — {meta.get('date', '?')}")
    w("")
    w(f"- Machine: {meta.get('nproc', '?')} cores (`nproc`), {meta.get('cpu', '?')}, "
      f"{meta.get('mem', '?')} RAM, kernel `{meta.get('kernel', '?')}`")
    w(f"- Strata: {meta.get('strata_version', '?')}; `strata up` (queryd + storaged + compactord in "
      f"one process) on a local `file://` store; dataset `orders` pinned, primary key `id`, "
      f"equality indexes on category and country")
    w(f"- Data: {meta.get('data', '?')}; import into a fresh store took {meta.get('import_s', '?')} s "
      f"(once; every phase below starts `strata up` on a copy of that store)")
    w(f"- Load average: {meta.get('loadavg', '?')}; whole run {meta.get('elapsed_s', '?')} s")
    w("- Everything (server, Python driver, wrk) shares the same cores.")
    try:
        samples = [l.split() for l in open(os.path.join(d, "contention.txt")) if len(l.split()) == 3]
    except OSError:
        samples = []
    if samples:
        busy = sum(1 for s in samples if int(s[2]) > 0)
        loads = [float(s[1]) for s in samples]
        w(f"- Other work on the machine: compiler processes (rustc/cargo/cc/ld) were running in "
          f"{busy} of {len(samples)} samples taken every 5 s; 1-min load average "
          f"{min(loads):.2f}–{max(loads):.2f} (mean {sum(loads) / len(loads):.2f}) during the run"
          + (" — **numbers are disturbed by concurrent compilation**" if busy else ""))
    w("")

    # ------------------------------------------------------------ ingest
    w("## 1. Ingest (`POST /api/v1/datasets/orders/deltas`, upserts: half existing ids, half new)")
    w("")
    w("Each line starts on a fresh copy of the imported store. Bodies are built before the clock "
      "starts; each client is one keep-alive connection posting one body after the other (the "
      "answer arrives once queryd serves the new version). With several clients the posts are "
      "split between them (disjoint keys); *versions* counts the distinct versions the answers "
      "named (posts / versions = requests per group commit). *catch-up*: seconds queryd spent "
      "bringing its in-memory state to new versions (read manifest and delta files, apply; "
      "`strata_reload_duration_seconds`), per version.")
    w("")
    w("| body | rows per post | clients | posts | rows/s | posts/s | post p50 ms | post p99 ms "
      "| post p50 first → last quarter (client 1) | versions | catch-up ms / version | body KiB |")
    w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    ingest = {}
    for path in sorted(glob.glob(os.path.join(d, "ingest_*.json")),
                       key=lambda p: (p.split("_")[1] == "arrow", int(p.split("_")[2]),
                                      int(p.split("_")[3].split(".")[0]))):
        r = load(path)
        if not r:
            continue
        ingest[(r["format"], r["batch"], r["clients"])] = r
        lat = r["latency"]
        err = f" **errors: {r['errors'][0][:300]}**" if r.get("errors") else ""
        w(f"| {'JSON' if r['format'] == 'json' else 'Arrow IPC'} | {r['batch']:,} | {r['clients']} "
          f"| {r['posts']} | {f(r['rows_per_s'], ',.0f')} | {f(r['posts_per_s'], ',.1f')} "
          f"| {f(lat.get('p50_ms'), '.1f')} | {f(lat.get('p99_ms'), '.1f')} "
          f"| {f(r['latency_first_quarter'].get('p50_ms'), '.1f')} → "
          f"{f(r['latency_last_quarter'].get('p50_ms'), '.1f')} "
          f"| {r['versions']} "
          f"| {f(reload_ms(d, os.path.basename(path)[:-5], r['versions']), '.1f')} "
          f"| {r['body_bytes_mean'] / 1024:,.1f} |{err}")
    if not ingest:
        w("| not run | | | | | | | | | | | |")
    w("")

    # ------------------------------------------------------------ visible
    w("## 2. Post → visible")
    w("")
    w("One connection posts a single-row upsert of one id (its `note` changes every time); a "
      "second connection (another process, pausing *poller pause* before each lookup) polls `id eq <that id>` "
      "until the new note shows. *post→visible*: from "
      "just before the post is sent to the arrival of the first lookup answer showing it; "
      "*post round-trip*: the post alone (it answers once queryd serves the new version).")
    w("")
    w("| rows in deltas | samples | post→visible p50 ms | p99 ms | max ms | post round-trip p50 ms "
      "| p99 ms | seen before the post's answer | catch-up ms / version | poller pause |")
    w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    vis0 = load(os.path.join(d, "visible_0.json"))
    visl = load(os.path.join(d, "visible_loaded.json"))
    loaded_rows = None
    try:
        loaded_rows = int(open(os.path.join(d, "visible_loaded.rows")).read())
    except (OSError, ValueError):
        pass
    for (label, v), rl in zip([("~0 (fresh store)", vis0),
                     (f"{loaded_rows:,} (after the query levels)" if loaded_rows else "after the levels",
                      visl)], ["visible_0", "visible_loaded"]):
        if not v:
            continue
        w(f"| {label} | {v['samples']} | {f(v['visible'].get('p50_ms'), '.2f')} "
          f"| {f(v['visible'].get('p99_ms'), '.2f')} | {f(v['visible'].get('max_ms'), '.2f')} "
          f"| {f(v['post'].get('p50_ms'), '.2f')} | {f(v['post'].get('p99_ms'), '.2f')} "
          f"| {v['visible_before_post_answer']} of {v['samples']} "
          f"| {f(reload_ms(d, rl, v['samples'] + 1), '.1f')} "
          f"| {v.get('poll_interval_ms', 0)} ms |")
    if not (vis0 or visl):
        w("| not run | | | | | | | | | |")
    w("")

    # ------------------------------------------------------------ levels
    w("## 3. Query throughput with rows living in deltas")
    w("")
    w(f"`wrk -t2 -c8 -d{meta.get('duration', '?')}s` (after a {meta.get('warmup', '?')} s warm-up) "
      "with `benches/read/wrk/query.lua` (pk_lookup: `id eq <random 1..1M>`; indexed_page: "
      "`category eq <random of 8>`, page 1..50 of 100 rows). One process: 0% is the fresh store; "
      "then the rows at the next positions of a fixed random permutation of the ids are posted "
      f"({meta.get('level_batch', '?')} rows per post, 90% updates of every non-key column, 10% "
      "deletes) until the level's share of the 1M rows lives in deltas. After each fill the "
      "total count and 50 posted keys are checked against what was posted.")
    w("")
    levels = sorted({int(m.group(1)) for p in glob.glob(os.path.join(d, "level_*.json"))
                     if (m := re.search(r"level_(\d+)\.json$", p))})
    wrk = {(lv, q): load(os.path.join(d, f"wrk_{lv}_{q}.json")) for lv in levels for q in QUERIES}
    w("| rows in deltas | query | req/s | p50 ms | p99 ms | req/s vs 0% | failed requests |")
    w("|---|---|--:|--:|--:|--:|--:|")
    ratio = {}
    for lv in levels:
        for q in QUERIES:
            r = wrk[(lv, q)]
            base = wrk.get((0, q))
            rr = None
            if r and base and "failed" not in r and "failed" not in base and base["rps"] > 0:
                rr = r["rps"] / base["rps"]
            ratio[(lv, q)] = rr
            if not r or "failed" in r:
                w(f"| {lv}% | {q} | FAILED | | | | {(r or {}).get('failed', 'not run')[:200]} |")
                continue
            w(f"| {lv}% | {q} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
              f"| {f(rr, '.2f') + 'x' if rr is not None else '—'} | {errors(r)} of {r['requests']:,} |")
    w("")
    w("| rows in deltas | posted (upserts / deletes) | fill rows/s (post p50 first → last quarter) "
      "| served version | manifests | delta files (MiB) | VmRSS `strata up` | cache accounts | answers |")
    w("|---|--:|--:|--:|--:|--:|--:|--:|---|")
    cum_up = cum_del = 0
    for lv in levels:
        st = load(os.path.join(d, f"level_{lv}.json")) or {}
        fill = load(os.path.join(d, f"fill_{lv}.json"))
        fill_txt, check = "—", "—"
        if fill:
            cum_up += fill["upserts"]
            cum_del += fill["deletes"]
            fill_txt = (f"{fill['rows_per_s']:,.0f} ({fill['latency_first_quarter']['p50_ms']:.0f} → "
                        f"{fill['latency_last_quarter']['p50_ms']:.0f} ms; catch-up "
                        f"{f(reload_ms(d, f'fill_{lv}', fill['posts']), '.0f')} ms / version)")
            check = "ok" if not fill["problems"] else "**WRONG: " + "; ".join(fill["problems"][:3]) + "**"
        cache = load(os.path.join(d, f"cache_stats_{lv}.json")) or {}
        acc = next((x.get("bytes") for x in cache.get("datasets", []) if x.get("dataset") == "orders"), None)
        w(f"| {lv}% | {cum_up:,} / {cum_del:,} | {fill_txt} | {st.get('version', '—')} "
          f"| {st.get('manifests', '—')} | {st.get('delta_files', '—')} "
          f"({(st.get('delta_bytes') or 0) / 2**20:.1f}) "
          f"| {f((st.get('rss_kb') or 0) / 1024, '.0f')} MiB | {f((acc or 0) / 2**20, '.0f')} MiB | {check} |")
    if not levels:
        w("| not run | | | | | | | | | |")
    w("")
    # Paired rounds: wrk runs back to back against the level's process and a second process
    # at 0% (its own copy of the store); the median of the rounds' ratios.
    paired = {}
    for lv in levels:
        for q in QUERIES:
            ratios = []
            for rnd in range(1, 100):
                a = load(os.path.join(d, f"wrk_paired{lv}_r{rnd}_{q}.json"))
                b = load(os.path.join(d, f"wrk_paired{lv}_ref_r{rnd}_{q}.json"))
                if not a or not b:
                    break
                if "failed" not in a and "failed" not in b and b["rps"] > 0:
                    ratios.append((a["rps"], b["rps"]))
            if ratios:
                paired[(lv, q)] = ratios
    if paired:
        w("Paired rounds (the slowdown the targets use): at each level, wrk runs alternate between "
          "the level's process and a second `strata up` at 0% on its own copy of the store, "
          "one right after the other; the ratio of each pair and their median.")
        w("")
        w("| rows in deltas | query | rounds: level / 0% req/s (ratio) | median ratio |")
        w("|---|---|---|--:|")
        for (lv, q), pairs in sorted(paired.items()):
            med = median([a / b for a, b in pairs])
            ratio[(lv, q)] = med
            rounds = "; ".join(f"{a:,.0f} / {b:,.0f} ({a / b:.2f}x)" for a, b in pairs)
            w(f"| {lv}% | {q} | {rounds} | {med:.2f}x |")
        w("")

    # ------------------------------------------------------------ targets
    w("## Targets")
    w("")
    w("| target | measured | result |")
    w("|---|--:|---|")

    def verdict(value, ok):
        return "not measured" if value is None else ("PASS" if ok else "MISS")

    p99 = vis0["visible"].get("p99_ms") if vis0 else None
    w(f"| post→visible p99 ≤ 20 ms (fresh store) | {f(p99, '.1f')} ms | {verdict(p99, (p99 or 0) <= 20)} |")
    if visl:
        p99l = visl["visible"].get("p99_ms")
        w(f"| post→visible p99 ≤ 20 ms ({loaded_rows or '?'} rows in deltas) | {f(p99l, '.1f')} ms "
          f"| {verdict(p99l, (p99l or 0) <= 20)} |")
    for q in QUERIES:
        rr = ratio.get((1, q))
        how = " (median of paired rounds)" if (1, q) in paired else ""
        w(f"| 1% of rows in deltas slows {q} by ≤ 10% (req/s ≥ 0.90x of 0%){how} | {f(rr, '.2f')}x "
          f"| {verdict(rr, (rr or 0) >= 0.9)} |")
    for key, label in [(("json", 10000, 1), "JSON, 1 client"),
                       (("json", 10000, int(meta.get("clients", 4))), f"JSON, {meta.get('clients', 4)} clients"),
                       (("arrow", 10000, 1), "Arrow IPC, 1 client"),
                       (("arrow", 10000, int(meta.get("clients", 4))), f"Arrow IPC, {meta.get('clients', 4)} clients")]:
        r = ingest.get(key)
        if r is None:
            continue
        v = r["rows_per_s"]
        w(f"| ingest ≥ 200k rows/s, 10 000-row batches ({label}) | {f(v, ',.0f')} rows/s "
          f"| {verdict(v, (v or 0) >= 200_000)} |")
    w("")

    out += log_findings(d, "Warnings and errors in the strata logs")
    print("\n".join(out))


if __name__ == "__main__":
    main()
