#!/usr/bin/env python3
"""Turn one run directory of benches/compact/run.sh into the markdown report.

Usage: report.py RUN_DIR > report.md

RUN_DIR holds (each written by run.sh or driver.py; missing files are reported as not run):
  import_<rows>.json                 storaged's import of the generated table (time, peak RSS)
  s<rows>_p<share>.json              driver.py scenario
  s<rows>_p<share>_queryd_start.json queryd's start: load time, RSS, peak RSS
  s<rows>_p<share>_base_bytes.txt    bytes under the dataset's base/ after the run
  log_findings.txt                   WARN/ERROR lines of the daemon logs
  contention.txt                     load average and compiler processes every 5 s
  meta.json                          machine, versions, settings
"""

import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from report_common import load, log_findings  # noqa: E402

MIB = 1024



def f(v, fmt):
    return "—" if v is None else format(v, fmt)


def mib(kb):
    return None if kb is None else kb / MIB


def main():
    d = sys.argv[1]
    meta = load(os.path.join(d, "meta.json")) or {}
    out = []
    w = out.append
    w(f"# Compaction benchmark: Strata — {meta.get('date', '?')}")
    w("")
    w(f"- Machine: {meta.get('nproc', '?')} cores (`nproc`), {meta.get('cpu', '?')}, "
      f"{meta.get('mem', '?')} RAM, kernel `{meta.get('kernel', '?')}`")
    w(f"- Strata: {meta.get('strata_version', '?')}; `strata storaged`, `strata queryd` and "
      f"`strata compactord` as three processes on a local `file://` store (queryd and compactord "
      f"reach the store through storaged's object API); dataset `orders` pinned, primary key `id`"
      + (f"; `[compactord]` extra: `{meta['compactord_toml'].strip()}`" if meta.get("compactord_toml", "").strip() else "")
      + (f"; `[queryd]` extra: `{meta['queryd_toml'].strip()}`" if meta.get("queryd_toml", "").strip()
         else "; queryd `rebuild` default (`release_first`)"))
    w(f"- Deltas: Arrow IPC posts of {meta.get('delta_batch', '?')} rows through queryd, "
      f"{float(meta.get('deletes', 0)) * 100:.0f}% deletes of existing ids, "
      f"{float(meta.get('inserts', 0)) * 100:.0f}% inserts of new ids, the rest updates of every "
      f"non-key column of existing ids (distinct keys, random order)")
    w(f"- Load average: {meta.get('loadavg', '?')}; whole run {meta.get('elapsed_s', '?')} s")
    try:
        samples = [l.split() for l in open(os.path.join(d, "contention.txt")) if len(l.split()) >= 3]
    except OSError:
        samples = []
    if samples:
        busy = sum(1 for s in samples if int(s[2]) > 0)
        others = sum(1 for s in samples if len(s) > 3 and int(s[3]) > 0)
        loads = [float(s[1]) for s in samples]
        w(f"- Other work on the machine: compiler processes (rustc/cargo/cc/ld) were running in "
          f"{busy} of {len(samples)} samples taken every 5 s, other servers or load generators "
          f"(wrk, another strata, test binaries; > 20% of a core) in {others}; 1-min load average "
          f"{min(loads):.2f}–{max(loads):.2f} (mean {sum(loads) / len(loads):.2f}) during the run"
          + (" — **numbers are disturbed by concurrent compilation**" if busy else "")
          + (" — **numbers are disturbed by another benchmark or test run**" if others else ""))
        if others:
            try:
                ps = open(os.path.join(d, "contention_ps.txt")).read().splitlines()
            except OSError:
                ps = []
            if ps:
                w("  (busiest other processes, first and last sample: `" + ps[0].strip()[:150]
                  + "` … `" + ps[-1].strip()[:150] + "`)")
        # Which scenarios overlapped the disturbance.
        t_others = [int(s[0]) for s in samples if (len(s) > 3 and int(s[3]) > 0) or int(s[2]) > 0]
        if t_others:
            hit = []
            for p in sorted(glob.glob(os.path.join(d, "s*_p*.json"))):
                r = load(p)
                if r and r.get("t_start") and any(r["t_start"] - 5 <= t <= r["t_end"] + 5 for t in t_others):
                    hit.append(f"{r['rows']:,} rows at {r['share']}%")
            if hit:
                w(f"- Scenarios that overlapped other work: {', '.join(hit)}")
    w("")

    # ------------------------------------------------------------ imports
    w("## Tables")
    w("")
    w("| rows | Parquet MiB | generation s | import by storaged s | storaged peak RSS (import) MiB | store MiB |")
    w("|--:|--:|--:|--:|--:|--:|")
    imports = sorted((load(p) for p in glob.glob(os.path.join(d, "import_*.json"))),
                     key=lambda x: (x or {}).get("rows", 0))
    for im in imports:
        if not im:
            continue
        w(f"| {im['rows']:,} | {im['parquet_bytes'] / 2**20:,.0f} | {im.get('gen_s', '?')} "
          f"| {im['import_s']:.1f} | {mib(im.get('storaged_hwm_kb')) or 0:,.0f} "
          f"| {im['store_bytes'] / 2**20:,.0f} |")
    w("")

    # ------------------------------------------------------------ scenarios
    scen = []
    for p in glob.glob(os.path.join(d, "s*_p*.json")):
        m = re.search(r"/s(\d+)_p(\d+)\.json$", p)
        if m:
            r = load(p)
            if r:
                r["_label"] = f"s{m.group(1)}_p{m.group(2)}"
                scen.append(r)
    scen.sort(key=lambda r: (r["rows"], r["share"]))

    w("## Compaction (compactord)")
    w("")
    w("*run s*: the run's own `finished_at − started_at`; *wall s*: the `POST …/compact` round "
      "trip. *rows/s* = `rows_in` (base rows read + delta rows read) / run s. *CPU s*: "
      "compactord's and storaged's user+system CPU during the request (storaged serves "
      "compactord's reads and writes). Peak RSS: VmHWM after the peak was reset just before "
      "the request (`echo 5 > /proc/PID/clear_refs`); *before*: VmRSS at the reset.")
    w("")
    w("| rows | in deltas | posts | rows_in | rows_out | run s | wall s | rows/s | MiB written "
      "| compactord RSS before → peak MiB | compactord CPU s | storaged RSS before → peak MiB "
      "| storaged CPU s | answers |")
    w("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for r in scen:
        run = r.get("run", {})
        b, a = r.get("after_reset", {}), r.get("after_compaction", {})
        cpu = lambda n: (a.get(n, {}).get("cpu_s", 0) - b.get(n, {}).get("cpu_s", 0))  # noqa: E731
        rate = run.get("rows_in", 0) / r["run_s"] if r.get("run_s") else None
        check = "ok" if not r["problems"] else "**WRONG: " + "; ".join(r["problems"][:3]) + "**"
        if run.get("outcome") != "committed":
            check += f" (outcome {run.get('outcome')}: {run.get('error')})"
        w(f"| {r['rows']:,} | {r['share']}% ({r['delta_rows']:,}) | {r['posts']} "
          f"| {run.get('rows_in', 0):,} | {run.get('rows_out', 0):,} | {f(r.get('run_s'), '.2f')} "
          f"| {r['compact_wall_s']:.2f} | {f(rate, ',.0f')} | {run.get('bytes_written', 0) / 2**20:,.1f} "
          f"| {f(mib(b.get('compactord', {}).get('VmRSS')), ',.0f')} → "
          f"**{f(mib(a.get('compactord', {}).get('VmHWM')), ',.0f')}** | {cpu('compactord'):.1f} "
          f"| {f(mib(b.get('storaged', {}).get('VmRSS')), ',.0f')} → "
          f"{f(mib(a.get('storaged', {}).get('VmHWM')), ',.0f')} | {cpu('storaged'):.1f} | {check} |")
    if not scen:
        w("| not run | | | | | | | | | | | | | |")
    w("")

    w("## queryd after the compaction (reload)")
    w("")
    w("*steady*: queryd's VmRSS 2 s after the last delta post was answered (every delta row "
      "in its overlay), before the compaction. *peak*: VmHWM from the reset just before the "
      "compaction until the dataset was in memory again at the compaction's version "
      "(compaction, switch and rebuild). *served s*: from the compaction's answer to the first "
      f"lookup answering with the new version (lookups every {meta.get('poll_ms', '?')} ms; "
      "includes the notification). *in memory s*: from the compaction's answer until "
      "`/api/v1/cache/stats` shows the dataset in memory at that version. "
      "*queryd reload*: queryd's own `strata_reload_duration_seconds` added during the "
      "compaction and reload (count of loads). "
      f"*after*: VmRSS {meta.get('settle_s', '2')} s after it was in memory again. "
      "*lookup max ms*: the slowest lookup of the poller while compacting and switching; "
      "*while rebuilding*: the poller's lookups between the switch and the end of the rebuild "
      "(answered from Parquet with `rebuild = \"release_first\"`): count, p50 / max ms.")
    w("")
    w("| rows | in deltas | queryd start: load s, RSS (peak) MiB | steady MiB | peak MiB | **peak / steady** "
      "| after MiB | served s | in memory s | queryd reload s (n) | accounted MiB before → after | lookup max ms "
      "| while rebuilding: n, p50 / max ms | failed lookups |")
    w("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in scen:
        st = load(os.path.join(d, f"{r['_label']}_queryd_start.json")) or {}
        steady = mib(r.get("before", {}).get("queryd", {}).get("VmRSS"))
        peak = mib(r.get("after_reload", {}).get("queryd", {}).get("VmHWM"))
        after = mib(r.get("settled", {}).get("queryd", {}).get("VmRSS"))
        ratio = peak / steady if peak and steady else None
        acc_b, acc_a = r.get("accounted_before"), r.get("accounted_after")
        poll = r.get("poll", {})
        w(f"| {r['rows']:,} | {r['share']}% | {st.get('ready_s', '—')} s, "
          f"{f(mib(st.get('rss_kb')), ',.0f')} ({f(mib(st.get('hwm_kb')), ',.0f')}) "
          f"| {f(steady, ',.0f')} | {f(peak, ',.0f')} | **{f(ratio, '.2f')}x** | {f(after, ',.0f')} "
          f"| {f(r.get('reload_s'), '.2f')} | {f(r.get('rebuild_s'), '.2f')} "
          f"| {r.get('queryd_reload_seconds', 0):.2f} ({r.get('queryd_reloads', 0):.0f}) "
          f"| {f(acc_b / 2**20 if acc_b else None, ',.0f')} → {f(acc_a / 2**20 if acc_a else None, ',.0f')} "
          f"| {f(poll.get('max_latency_during_ms'), ',.0f')} "
          f"| {poll.get('rebuild_lookups', '—')}, {f(poll.get('rebuild_p50_ms'), ',.1f')} / "
          f"{f(poll.get('rebuild_max_ms'), ',.0f')} | {poll.get('non_200', '—')} |")
    if not scen:
        w("| not run | | | | | | | | | | | | | |")
    w("")

    w("## Posting the deltas (context)")
    w("")
    w("| rows | in deltas | upserts (updates + inserts) / deletes | posts | Arrow IPC MiB | ingest s | rows/s "
      "| version before compaction | count before → after (expected) | keys checked |")
    w("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in scen:
        w(f"| {r['rows']:,} | {r['share']}% | {r['updates']:,} + {r['inserts']:,} / {r['deletes']:,} "
          f"| {r['posts']} | {r['body_bytes'] / 2**20:,.1f} | {r['ingest_s']:.1f} "
          f"| {f(r.get('ingest_rows_per_s'), ',.0f')} | {r.get('version_before')} "
          f"| {r.get('count_before', '—'):,} → {r.get('count_after', '—'):,} ({r['expected_rows']:,}) "
          f"| {r.get('keys_checked', 0)} |")
    w("")

    # ------------------------------------------------------------ targets
    w("## Targets")
    w("")
    w("| target | measured | result |")
    w("|---|--:|---|")

    def verdict(value, ok):
        return "not measured" if value is None else ("PASS" if ok else "MISS")

    for r in scen:
        run = r.get("run", {})
        rate = run.get("rows_in", 0) / r["run_s"] if r.get("run_s") else None
        w(f"| ≥ 1M rows/s merged on {meta.get('nproc', '?')} cores ({r['rows']:,} rows, {r['share']}%) "
          f"| {f(rate, ',.0f')} rows/s | {verdict(rate, (rate or 0) >= 1_000_000)} |")
    # Compaction memory independent of table size: compare runs with the same number of delta
    # rows (the delta side is held in memory by design) and runs with the same share.
    by = {(r["rows"], r["share"]): r for r in scen}
    peak = lambda r: mib(r.get("after_compaction", {}).get("compactord", {}).get("VmHWM"))  # noqa: E731
    pairs = []
    for (ra, sa), x in by.items():
        for (rb, sb), y in by.items():
            if rb > ra and x["delta_rows"] == y["delta_rows"]:
                pairs.append((x, y, "same delta rows"))
    for x, y, why in pairs:
        px, py = peak(x), peak(y)
        ratio = py / px if px and py else None
        w(f"| compactord peak independent of table size ({why}: {x['rows']:,} rows at {x['share']}% vs "
          f"{y['rows']:,} at {y['share']}%, {x['delta_rows']:,} delta rows each) "
          f"| {f(px, ',.0f')} → {f(py, ',.0f')} MiB ({f(ratio, '.2f')}x) "
          f"| {verdict(ratio, (ratio or 9) <= 1.25)} |")
    sizes = sorted({r["rows"] for r in scen})
    for share in sorted({r["share"] for r in scen}):
        if len(sizes) > 1 and (sizes[0], share) in by and (sizes[-1], share) in by:
            x, y = by[(sizes[0], share)], by[(sizes[-1], share)]
            px, py = peak(x), peak(y)
            ratio = py / px if px and py else None
            w(f"| compactord peak, same share ({share}%): {sizes[0]:,} → {sizes[-1]:,} rows "
              f"(delta rows {x['delta_rows']:,} → {y['delta_rows']:,}) | {f(px, ',.0f')} → "
              f"{f(py, ',.0f')} MiB ({f(ratio, '.2f')}x) | {verdict(ratio, (ratio or 9) <= 1.25)} |")
    for r in scen:
        steady = mib(r.get("before", {}).get("queryd", {}).get("VmRSS"))
        pk = mib(r.get("after_reload", {}).get("queryd", {}).get("VmHWM"))
        ratio = pk / steady if pk and steady else None
        w(f"| queryd peak during the reload ≤ 1.3x steady ({r['rows']:,} rows, {r['share']}%) "
          f"| {f(ratio, '.2f')}x | {verdict(ratio, (ratio or 9) <= 1.3)} |")
    w("")
    w("A compactord peak counts as independent of the table size (PASS) when it grows by at most "
      "25% between the sizes compared.")
    w("")

    out += log_findings(d, "Warnings and errors in the daemon logs")
    print("\n".join(out))


if __name__ == "__main__":
    main()
