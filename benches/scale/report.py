#!/usr/bin/env python3
"""Turn one run directory of scale/run.sh into the markdown report.

Usage: report.py RUN_DIR > report.md

RUN_DIR holds (missing files are reported as not run):
  import.json         driver.py import: Strata's import and DuckDB's CREATE TABLE
  queryd_start.json   queryd's start: time until settled, VmRSS, VmHWM, "too big" logged
  serve.json          driver.py serve: cold and warm requests, answers, memory
  compact.json        driver.py compact: deltas, compaction, memory, answers after it
  store_bytes.txt     the store's size after the import
  contention.txt      load average and compiler processes every 5 s
  log_findings.txt    WARN/ERROR lines of the daemon logs
  meta.json           machine, versions, settings
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from report_common import load, log_findings, median  # noqa: E402

MIB = 2**20
IMPORT_MARGIN = 256 * MIB  # issue 19: the import's peak within its budget + 256 MiB
IMPORT_VS_DUCKDB = 3.0  # issue 19: the import within 3x DuckDB's CREATE TABLE … ORDER BY

REQUESTS = [
    ("key_lookup", "`l_orderkey = k AND l_linenumber = n`, a random existing key"),
    ("q1_group_by", "Q1-like: `l_shipdate <= 1998-09-02`, group by returnflag, linestatus; "
     "sum(quantity), sum(extendedprice), avg(discount), count"),
    ("filter_page", "`l_shipmode = <random of 7>` and `l_shipdate` in a random 90-day window, "
     "no order (storage order; DuckDB `ORDER BY` the key), 50 rows"),
    ("topk_order", "order by `l_extendedprice` desc, 50 rows (ties by the key)"),
    ("count", "`POST …/count`: `l_shipmode = <random of 7>` and `l_shipdate >= <random day>`"),
]


def f(v, fmt=",.1f"):
    return "—" if v is None else format(v, fmt)


def mib(kb):
    return None if kb is None else kb / 1024


def verdict(ok):
    return "MET" if ok else "MISS"


def log_numbers(path, pattern, fields):
    """From the daemon log at `path`, each line holding `pattern`: a dict of the integer
    `key=value` fields asked for (tracing's plain format)."""
    found = []
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        return found
    for line in lines:
        if pattern in line:
            kv = dict(m.groups() for m in re.finditer(r"(\w+)=(\d+)", line))
            found.append({k: int(kv[k]) for k in fields if k in kv})
    return found


def main():
    d = sys.argv[1]
    meta = load(os.path.join(d, "meta.json")) or {}
    imp = load(os.path.join(d, "import.json")) or {}
    start = load(os.path.join(d, "queryd_start.json")) or {}
    serve = load(os.path.join(d, "serve.json")) or {}
    comp = load(os.path.join(d, "compact.json")) or {}
    out = []
    w = out.append
    targets = []  # (target, measured, MET/MISS)

    info = imp.get("info") if isinstance(imp.get("info"), dict) else {}
    duck = imp.get("duckdb", {})
    w(f"# Scale: TPC-H lineitem SF{meta.get('scale', '?')} past the cache — {meta.get('date', '?')}")
    w("")
    w(f"- Machine: {meta.get('nproc', '?')} cores (`nproc`), {meta.get('cpu', '?')}, "
      f"{meta.get('mem', '?')} RAM, kernel `{meta.get('kernel', '?')}`; load average "
      f"{meta.get('loadavg', '?')}; whole run {meta.get('elapsed_s', '?')} s")
    try:
        samples = [line.split() for line in open(os.path.join(d, "contention.txt")) if len(line.split()) >= 3]
    except OSError:
        samples = []
    if samples:
        busy = sum(1 for s in samples if int(s[2]) > 0)
        w(f"- Compiler processes (rustc/cargo/cc/ld) running in {busy} of {len(samples)} samples "
          "taken every 5 s" + (" — **timings disturbed by concurrent compilation**" if busy else ""))
    w(f"- Strata: {meta.get('strata_version', '?')}; `strata storaged`, `strata queryd` and "
      "`strata compactord` as three processes on a local `file://` store (queryd and compactord "
      "reach it through storaged's object API)")
    w(f"- Data: `{meta.get('data', '?')}`, {f((meta.get('data_bytes') or 0) / MIB, ',.0f')} MiB, "
      f"{f(info.get('base_rows'), ',')} rows (tpchgen-cli 4.0.0)")
    w(f"- Settings: `import_memory_bytes` {f(meta.get('import_memory', 0) / MIB, ',.0f')} MiB, "
      f"`cache_bytes` {f(meta.get('cache_bytes', 0) / MIB, ',.0f')} MiB (margin for queryd "
      f"{f(meta.get('queryd_margin', 0) / MIB, ',.0f')} MiB), `request_timeout` "
      f"{meta.get('request_timeout', '?')}; {meta.get('rounds', '?')} rounds × {meta.get('reps', '?')} "
      f"requests per side; deltas: {meta.get('delta_share', '?')}% of the rows, "
      f"{float(meta.get('deletes', 0)) * 100:.0f}% of them deletes, posts of "
      f"{meta.get('delta_batch', '?')} rows"
      + (f"; `[queryd]` extra: `{' '.join(meta['queryd_toml'].split())}`"
         if meta.get("queryd_toml", "").strip() else ""))
    w(f"- DuckDB {duck.get('version', '?')} in the driver's process, default settings (threads = "
      f"{duck.get('threads', '?')}, memory_limit {duck.get('memory_limit', '?')}), on a database "
      "file in the run directory")
    w("")

    # ------------------------------------------------------------ 1. import
    w("## 1. Import")
    w("")
    before, after = imp.get("storaged_before", {}), imp.get("storaged_after", {})
    try:
        store_bytes = int(open(os.path.join(d, "store_bytes.txt")).read().strip())
    except (OSError, ValueError):
        store_bytes = None
    w("storaged alone creates `lineitem` through its catalog (`POST /api/v1/datasets`, the file "
      "named in a JSON body); DuckDB runs `CREATE TABLE lineitem AS SELECT * FROM read_parquet(…) "
      "ORDER BY l_orderkey, l_linenumber` afterwards (then `CHECKPOINT`, timed apart).")
    w("")
    w("| | Strata (storaged) | DuckDB |")
    w("|---|--:|--:|")
    if imp.get("error"):
        w(f"| import | **FAILED: {imp['error'][:300]}** | |")
    w(f"| wall time s | {f(imp.get('import_s'))} | {f(imp.get('duckdb_ctas_s'))} "
      f"(+ {f(imp.get('duckdb_checkpoint_s'))} checkpoint) |")
    w(f"| RSS before MiB | {f(mib(before.get('VmRSS')), ',.0f')} | {f(mib(duck.get('rss_before_kb')), ',.0f')} |")
    w(f"| peak RSS (VmHWM) MiB | **{f(mib(after.get('VmHWM')), ',.0f')}** | "
      f"{f(mib(duck.get('hwm_kb')), ',.0f')} (the driver's whole process) |")
    runs = log_numbers(os.path.join(d, "storaged.log"), "sorted run spilled", ("rows", "file_bytes"))
    spilled = sum(r.get("file_bytes", 0) for r in runs)
    w(f"| spilled to `spill_dir` MiB | {f(spilled / MIB, ',.0f')} ({len(runs)} sorted runs of "
      f"{f(sum(r.get('rows', 0) for r in runs), ',')} rows, storaged's log) | — |")
    w(f"| on disk MiB | {f(store_bytes / MIB if store_bytes else None, ',.0f')} (store, "
      f"{info.get('base_files', '?')} base files) | {f((imp.get('duckdb_file_bytes') or 0) / MIB, ',.0f')} |")
    w("")
    budget = meta.get("import_memory")
    if after.get("VmHWM") and budget and not imp.get("error"):
        peak = after["VmHWM"] * 1024
        targets.append((f"storaged's import peak ≤ import_memory_bytes + 256 MiB "
                        f"({f((budget + IMPORT_MARGIN) / MIB, ',.0f')} MiB)",
                        f"{f(peak / MIB, ',.0f')} MiB", verdict(peak <= budget + IMPORT_MARGIN)))
    if imp.get("import_s") and imp.get("duckdb_ctas_s") and not imp.get("error"):
        r = imp["import_s"] / imp["duckdb_ctas_s"]
        targets.append(("Strata's import ≤ 3x DuckDB's `CREATE TABLE … ORDER BY`",
                        f"{r:.2f}x ({imp['import_s']:.1f} s / {imp['duckdb_ctas_s']:.1f} s)",
                        verdict(r <= IMPORT_VS_DUCKDB)))

    # ------------------------------------------------------------ 2. serving
    w("## 2. Serving past the cache")
    w("")
    entry = lambda stats: next((x for x in (stats or {}).get("datasets", []) if x.get("dataset") == "lineitem"), {})  # noqa: E731
    residency = [entry(serve.get(k)).get("residency") for k in ("cache_before", "cache_after_cold", "cache_after")]
    mb, ma = serve.get("metrics_before", {}), serve.get("metrics_after", {})
    builds_start = mb.get("strata_state_builds_total")
    builds_req = (ma.get("strata_state_builds_total", 0) - mb.get("strata_state_builds_total", 0)) if ma else None
    used = (serve.get("cache_after") or {}).get("used_bytes")
    w(f"- Residency of `lineitem` (`/api/v1/cache/stats`): after start `{residency[0]}`, after the "
      f"cold requests `{residency[1]}`, after all requests `{residency[2]}`; cache used "
      f"{f(used / MIB if used is not None else None, ',.0f')} MiB")
    too_big = log_numbers(os.path.join(d, "queryd.log"), "bigger than the cache", ("bytes",))
    w(f"- queryd settled {start.get('ready_s', '?')} s after it started (its first load of the "
      f"table finished). States built at start: {f(builds_start, '.0f')}; built during the "
      f"requests: {f(builds_req, '.0f')}. queryd found the table bigger than the cache "
      f"{len(too_big)} time(s) in the whole run (its log; a load stops once what it holds passes "
      f"`cache_bytes`, so no whole state is built)")
    w("- Cold: Strata's first request of each kind since queryd started (in the order below; "
      "queryd's load at start had read every file once); DuckDB's first run on a fresh "
      "connection over `read_parquet`. Both read files the OS has cached. Warm: each round's median, and the median of the rounds' ratios "
      "(Strata over HTTP on one kept-alive connection; DuckDB's Parquet scan on one connection)")
    w("")
    w("| request | cold Strata ms | cold DuckDB ms | cold ratio | warm Strata ms | warm DuckDB Parquet ms "
      "| **warm Strata / DuckDB** | failed | answers |")
    w("|---|--:|--:|--:|--:|--:|--:|--:|---|")
    all_equal = bool(serve.get("requests"))
    for name, _ in REQUESTS:
        r = serve.get("requests", {}).get(name)
        if not r:
            w(f"| {name} | not run | | | | | | | |")
            all_equal = False
            continue
        cold = r["cold"]
        cr = cold["strata_ms"] / cold["duck_ms"] if cold.get("strata_ms") and cold.get("duck_ms") else None
        pairs = [(s, dd) for s, dd in zip(r["strata_ms"], r["duck_ms"]) if s is not None and dd]
        ratio = median([s / dd for s, dd in pairs]) if pairs else None
        s_ms = median([s for s, _ in pairs]) if pairs else None
        d_ms = median(r["duck_ms"]) if r["duck_ms"] else None
        failed = r["failures"] + (cold.get("status") != 200)
        wrong = []
        if cold.get("wrong"):
            wrong.append(f"cold: {cold['wrong']}")
        if r.get("wrong"):
            wrong.append(f"{r['wrong']} of {r['checked']} warm differ, e.g. {r['wrong_sample']}")
        if failed:
            wrong.append(f"failure: {r.get('failure_sample') or cold.get('wrong')}")
        all_equal = all_equal and not wrong
        answers = ("**" + "; ".join(x[:300] for x in wrong) + "**") if wrong else \
            f"equal to DuckDB ({r['checked'] + 1} checked)"
        w(f"| {name} | {f(cold.get('strata_ms'), ',.1f')} | {f(cold.get('duck_ms'), ',.1f')} "
          f"| {f(cr, '.2f')}x | {f(s_ms, ',.2f')} | {f(d_ms, ',.2f')} "
          f"| **{'FAILED' if ratio is None else f'{ratio:.2f}x'}** | {failed} | {answers} |")
    w("")
    w("| request | what |")
    w("|---|---|")
    w("\n".join(f"| {n} | {t} |" for n, t in REQUESTS))
    w("")

    st, aft = serve.get("after_start", {}), serve.get("after_requests", {})
    q_start_peak = mib(start.get("hwm_kb") or st.get("queryd", {}).get("VmHWM"))
    q_req_peak = mib(aft.get("queryd", {}).get("VmHWM"))
    w("Memory (VmRSS; peaks are VmHWM: at start since the process began, during the requests "
      "since a reset just before them):")
    w("")
    w("| process | RSS after start MiB | peak up to then MiB | RSS after the requests MiB | peak during the requests MiB |")
    w("|---|--:|--:|--:|--:|")
    for n in ("queryd", "storaged", "compactord"):
        w(f"| {n} | {f(mib(st.get(n, {}).get('VmRSS')), ',.0f')} | "
          f"{f(mib(st.get(n, {}).get('VmHWM')), ',.0f')} | {f(mib(aft.get(n, {}).get('VmRSS')), ',.0f')} "
          f"| {f(mib(aft.get(n, {}).get('VmHWM')), ',.0f')} |")
    w("")
    cache = meta.get("cache_bytes")
    bound = (cache + meta.get("queryd_margin", 0)) / MIB if cache else None
    if bound and (q_start_peak or q_req_peak):
        peak = max(x for x in (q_start_peak, q_req_peak) if x is not None)
        targets.append((f"queryd's peak while serving ≤ cache_bytes + margin ({bound:,.0f} MiB)",
                        f"{peak:,.0f} MiB (start {f(q_start_peak, ',.0f')}, requests {f(q_req_peak, ',.0f')})",
                        verdict(peak <= bound)))
    if residency[2]:
        targets.append(("`lineitem` served from Parquet (residency not `memory`)",
                        f"`{residency[2]}`", verdict(residency[2] != "memory" and residency[0] != "memory")))
    if serve:
        targets.append(("every answer equal to DuckDB's, no failed request",
                        "equal" if all_equal else "see above", verdict(all_equal)))

    # ------------------------------------------------------------ 3. deltas and compaction
    w("## 3. Deltas and compaction")
    w("")
    if not comp:
        w("not run")
    else:
        run = comp.get("run", {})
        rate = run.get("rows_in", 0) / comp["run_s"] if comp.get("run_s") else None
        w(f"- Deltas: {comp.get('updates', 0):,} updates (l_quantity, l_extendedprice) and "
          f"{comp.get('deletes', 0):,} deletes of existing keys in {comp.get('posts', 0)} Arrow IPC "
          f"posts ({f(comp.get('body_bytes', 0) / MIB)} MiB) through queryd in "
          f"{f(comp.get('ingest_s'))} s "
          f"({f(comp['updates'] / comp['ingest_s'] + comp['deletes'] / comp['ingest_s'] if comp.get('ingest_s') else None, ',.0f')} rows/s); "
          f"version {comp.get('version_before')} before the compaction")
        w(f"- Compaction on demand (`POST /api/v1/datasets/lineitem/compact` on compactord): outcome "
          f"`{run.get('outcome')}`, run {f(comp.get('run_s'), '.2f')} s (its own started/finished), "
          f"wall {f(comp.get('compact_wall_s'), '.2f')} s; rows_in {f(run.get('rows_in'), ',')}, "
          f"rows_out {f(run.get('rows_out'), ',')} (expected {f(comp.get('expected_rows'), ',')}), "
          f"deltas merged {run.get('deltas_merged')}, {f((run.get('bytes_written') or 0) / MIB, ',.0f')} MiB "
          f"written; **{f(rate, ',.0f')} rows merged/s** (rows_in / run s); queryd served the "
          f"compacted version {f(comp.get('served_after_s'), '.2f')} s after the answer")
        bp, ap = comp.get("before_posts", {}), comp.get("after_posts", {})
        mbp, map_ = comp.get("metrics_before_posts", {}), comp.get("metrics_after_posts", {})
        built = (map_.get("strata_state_builds_total", 0) - mbp.get("strata_state_builds_total", 0)) if map_ else None
        w(f"- While the deltas were posted (peaks reset before the first post; then "
          f"{f(comp.get('posts_settle_s'), '.1f')} s waiting for queryd to finish the loads they "
          f"started): queryd built {f(built, '.0f')} state(s) of the whole table, VmRSS "
          f"{f(mib(bp.get('queryd', {}).get('VmRSS')), ',.0f')} → peak "
          f"**{f(mib(ap.get('queryd', {}).get('VmHWM')), ',.0f')} MiB**; storaged peak "
          f"{f(mib(ap.get('storaged', {}).get('VmHWM')), ',.0f')} MiB")
        b, ac, sw, ck = (comp.get(k, {}) for k in ("before", "after_compaction", "after_switch", "after_checks"))
        w("")
        w("Memory: peaks reset just before the compaction; *across the compaction* is VmHWM 2 s after "
          "queryd served the compacted version (no query sent meanwhile); *with the checks* adds "
          "the reads after it and the load of the table they start (a read of a new version makes "
          "queryd try to load it), waited for.")
        w("")
        w("| process | RSS before MiB | peak across the compaction MiB | peak with the checks MiB | RSS at the end MiB |")
        w("|---|--:|--:|--:|--:|")
        for n in ("compactord", "queryd", "storaged"):
            w(f"| {n} | {f(mib(b.get(n, {}).get('VmRSS')), ',.0f')} | "
              f"**{f(mib(sw.get(n, {}).get('VmHWM') or ac.get(n, {}).get('VmHWM')), ',.0f')}** | "
              f"{f(mib(ck.get(n, {}).get('VmHWM')), ',.0f')} | {f(mib(ck.get(n, {}).get('VmRSS')), ',.0f')} |")
        mbc, msw, mck = (comp.get(k, {}) for k in ("metrics_before", "metrics_after_switch", "metrics_after_checks"))
        bs = lambda m: m.get("strata_state_builds_total")  # noqa: E731
        if bs(mbc) is not None:
            w("")
            w(f"queryd states built: {f(bs(msw) - bs(mbc) if bs(msw) is not None else None, '.0f')} across "
              f"the compaction, {f(bs(mck) - bs(msw) if bs(mck) is not None and bs(msw) is not None else None, '.0f')} "
              "during the checks.")
        w("")
        w("| check after the compaction (against DuckDB's table with the same changes) | result |")
        w("|---|---|")
        checks = comp.get("checks", {})
        for k, label in (("count", "count of all rows"), ("count_predicate", "count with a predicate"),
                         ("q1_group_by", "Q1-like group-by"),
                         ("keys", f"{comp.get('keys_checked', 0)} keys read back (updated, deleted, untouched)")):
            v = checks.get(k, "not run")
            w(f"| {label} | {'equal' if v is None else '**' + str(v)[:300] + '**'} |")
        ok = bool(checks) and all(checks.get(k) is None for k in ("count", "count_predicate", "q1_group_by"))
        targets.append(("after the compaction, count and Q1 equal to DuckDB's",
                        "equal" if ok else "differ or not run", verdict(ok)))
        p_peak = mib(ap.get("queryd", {}).get("VmHWM"))
        if bound and p_peak:
            targets.append((f"queryd's peak while the deltas were posted ≤ cache_bytes + margin ({bound:,.0f} MiB)",
                            f"{p_peak:,.0f} MiB", verdict(p_peak <= bound)))
        q_peak = mib(sw.get("queryd", {}).get("VmHWM"))
        if bound and q_peak:
            targets.append((f"queryd's peak across the compaction ≤ cache_bytes + margin ({bound:,.0f} MiB)",
                            f"{q_peak:,.0f} MiB", verdict(q_peak <= bound)))
    w("")

    # ------------------------------------------------------------ targets
    w("## Targets")
    w("")
    w("| target | measured | result |")
    w("|---|---|---|")
    for t, m, v in targets:
        w(f"| {t} | {m} | {v} |")
    if not targets:
        w("| not run | | |")
    problems = serve.get("problems", []) + comp.get("problems", [])
    if imp.get("error"):
        problems.insert(0, f"import: {imp['error']}")
    w("")
    w("## Problems")
    w("")
    w("\n".join(f"- {p[:600]}" for p in problems) if problems else "none")
    w("")
    out += log_findings(d, "Warnings and errors in the daemon logs")
    print("\n".join(out))


if __name__ == "__main__":
    main()
