#!/usr/bin/env python3
"""TPC-H lineitem past the cache (issue 19, item 4): the import, serving from Parquet, and
deltas + compaction, against storaged, queryd and compactord running as separate processes,
with DuckDB in this process as the peer.

Usage (run.sh calls each step in turn; each writes OUT.json):
  driver.py import  --storaged URL --storaged-pid P --parquet F --duckdb DB --token T --out OUT.json
  driver.py serve   --queryd URL --pids NAME=P,... --parquet F --duckdb DB --out OUT.json
  driver.py compact --queryd URL --compactord URL --pids NAME=P,... --duckdb DB --token T
                    --out OUT.json

import:  creates the dataset `lineitem` from the Parquet file through storaged's catalog
         (`POST /api/v1/datasets`, a JSON body naming the file: primary key
         l_orderkey, l_linenumber; index list on l_shipmode) and times it; storaged's VmRSS
         before and VmHWM after. Then DuckDB, in this process, on a database file:
         `CREATE TABLE lineitem AS SELECT * FROM read_parquet(F) ORDER BY l_orderkey,
         l_linenumber` (timed; then CHECKPOINT, timed apart). The later steps use that table.
serve:   queryd has started (and given up loading the table into its cache). Each request kind
         once, cold: Strata's first request of that kind since queryd started, and DuckDB's
         first run on a fresh connection over read_parquet(F). Then ROUNDS paired rounds of
         REPS requests of each kind on Strata and on DuckDB's Parquet scan (who goes first
         alternates by round); a round's figure is the median of its requests, the ratio is
         the median of the rounds' ratios. Every Strata answer is compared row for row with
         DuckDB's answer to the same request (benches/lineitem/driver.py's `compare`); a
         non-200 is a failure, never a latency. queryd's VmRSS/VmHWM around it.
compact: DELTA_SHARE % of the rows (default 1) sampled from DuckDB's table: DELETES of them
         (default 0.10) deleted, the rest updated (l_quantity and l_extendedprice changed);
         posted to queryd as Arrow IPC streams of DELTA_BATCH rows (`_op` 0 upsert, 1 delete),
         and applied to DuckDB's table with UPDATE / DELETE. Then the peaks of the three
         processes are reset, compactord compacts on demand (`POST
         /api/v1/datasets/lineitem/compact`), and the driver waits until queryd serves the
         compaction's version (`/api/v1/cache/stats`, no query: a read of a new version makes
         queryd try to load the table). Then count (all rows, and with a predicate), the Q1
         group-by and a few keys read back, each against DuckDB's changed table.
"""

import argparse
import datetime
import http.client
import importlib.util
import json
import os
import random
import statistics
import sys
import threading
import time
import urllib.parse

import duckdb
import pyarrow as pa

HERE = os.path.dirname(os.path.abspath(__file__))
# benches/lineitem/driver.py, loaded under its own name (this file is `driver` too): its
# request bodies and the row-for-row comparison of Strata's JSON against DuckDB's values.
_spec = importlib.util.spec_from_file_location(
    "lineitem_driver", os.path.join(HERE, "..", "lineitem", "driver.py"))
LI = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(LI)
same, compare, fill = LI.same, LI.compare, LI.fill

ROUNDS = int(os.environ.get("ROUNDS", "3"))
REPS = int(os.environ.get("REPS", "5"))
DELTA_BATCH = int(os.environ.get("DELTA_BATCH", "10000"))
DELTA_SHARE = float(os.environ.get("DELTA_SHARE", "1"))
DELETES = float(os.environ.get("DELETES", "0.10"))
DATASET = "lineitem"
API = f"/api/v1/datasets/{DATASET}"
ARROW = "application/vnd.apache.arrow.stream"
KEY = ("l_orderkey", "l_linenumber")
FIRST_DAY, LAST_DAY = datetime.date(1992, 1, 2), datetime.date(1998, 12, 1)

# Each request: (route, Strata body, DuckDB SQL over `{t}`). `{name}` strings in a body are
# the random parameters (params_of). Without order_by Strata answers in storage order, which
# after an import is the primary key's. DuckDB keeps a scan's order (`preserve_insertion_order`,
# its default), and tpchgen writes lineitem in key order, as the bench's DuckDB table is
# created: the filter page needs no ORDER BY there either, so DuckDB stops at 50 rows, as the
# query its users would write does.
REQUESTS = {
    "key_lookup": ("query",) + LI.REQUESTS["key_lookup"],
    "q1_group_by": ("query",) + LI.REQUESTS["q1_group_by"],
    "filter_page": (
        "query",
        {
            "predicates": [
                {"col": "l_shipmode", "op": "eq", "val": "{mode}"},
                {"col": "l_shipdate", "op": "gte", "val": "{from}"},
                {"col": "l_shipdate", "op": "lt", "val": "{to}"},
            ],
            "page_size": 50,
        },
        "SELECT * FROM {t} WHERE l_shipmode = ? AND l_shipdate >= ? AND l_shipdate < ? "
        "LIMIT 50",
    ),
    "topk_order": ("query",) + LI.REQUESTS["topk_order"],
    "count": (
        "count",
        {
            "predicates": [
                {"col": "l_shipmode", "op": "eq", "val": "{mode}"},
                {"col": "l_shipdate", "op": "gte", "val": "{from}"},
            ]
        },
        "SELECT count(*) AS count FROM {t} WHERE l_shipmode = ? AND l_shipdate >= ?",
    ),
}


class Failed(Exception):
    pass


# ---------------------------------------------------------------- processes
def proc_status(pid):
    """VmRSS and VmHWM (kB) of a process; empty if it is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def reset_peak(pid):
    """Resets VmHWM to the current RSS (Linux: `echo 5 > /proc/PID/clear_refs`)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError as e:
        print(f"  WARNING: cannot reset the peak RSS of {pid}: {e}", file=sys.stderr)
        return False


def statuses(pids):
    return {name: proc_status(pid) for name, pid in pids.items()}


def parse_pids(text):
    return {k: int(v) for k, v in (p.split("=") for p in text.split(","))}


# ---------------------------------------------------------------- HTTP
class Http:
    """One kept-alive HTTP/1.1 connection; `call` answers (status, parsed JSON or text, headers)."""

    def __init__(self, url, timeout=24 * 3600):
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def call(self, method, path, body=None, headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            r = self.conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            return None, f"{type(e).__name__}: {e}", {}
        text = data.decode("utf-8", "replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return r.status, parsed, dict(r.getheaders())

    def ok(self, method, path, body=None, headers=None):
        status, answer, hdrs = self.call(method, path, body, headers)
        if status not in (200, 201):
            raise Failed(f"{method} {path} -> {status}: {str(answer)[:2000]}")
        return answer, hdrs


def metrics(url):
    """queryd's counters that say whether it built a state: builds, loads (reload count)."""
    status, text, _ = Http(url, timeout=60).call("GET", "/metrics")
    out = {}
    if status == 200 and isinstance(text, str):
        for line in text.splitlines():
            for name in ("strata_state_builds_total", "strata_reload_duration_seconds_count",
                         "strata_reload_failures_total", "strata_cache_evictions_total"):
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    out[name] = out.get(name, 0) + float(line.split()[-1])
    return out


def cache_stats(url):
    _, d, _ = Http(url, timeout=60).call("GET", "/api/v1/cache/stats")
    return d if isinstance(d, dict) else {}


def cache_entry(stats):
    return next((x for x in stats.get("datasets", []) if x.get("dataset") == DATASET), {})


def settle(url, timeout=3600):
    """Waits until queryd is not loading `lineitem` (a load a request or a write started);
    the seconds it waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if cache_entry(cache_stats(url)).get("residency") != "loading":
            break
        time.sleep(0.1)
    return time.perf_counter() - t0


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return (time.perf_counter() - start) * 1000, value


# ---------------------------------------------------------------- requests
def params_of(name, rng, keys):
    """(Strata substitutions, SQL parameters) of one run of `name`."""
    if name in ("key_lookup", "q1_group_by", "topk_order"):
        return LI.params_of(name, rng, keys)
    mode = LI.SHIP_MODES[rng.randrange(len(LI.SHIP_MODES))]
    start = FIRST_DAY + datetime.timedelta(days=rng.randrange((LAST_DAY - FIRST_DAY).days - 120))
    if name == "filter_page":
        end = start + datetime.timedelta(days=90)
        return ({"mode": mode, "from": start.isoformat(), "to": end.isoformat()}, [mode, start, end])
    return {"mode": mode, "from": start.isoformat()}, [mode, start]


def strata_rows(name, answer):
    """Strata's answer as rows (dicts): a page's `data`, or a count as one row."""
    if REQUESTS[name][0] == "count":
        return [answer] if isinstance(answer, dict) else []
    return answer.get("data", []) if isinstance(answer, dict) else []


def check(name, status, answer, cur_description, duck_rows):
    """None if Strata answered 200 with DuckDB's rows, else what is wrong."""
    if status != 200:
        return f"Strata answered {status}: {str(answer)[:300]}"
    cols = [d[0] for d in cur_description]
    return compare(strata_rows(name, answer), duck_rows, cols)


def run_strata(q, name, subs, extra=None):
    route, body, _ = REQUESTS[name]
    body = fill(body, subs)
    if extra:
        body = {**body, **extra}
    ms, (status, answer, _) = timed(lambda: q.call("POST", f"{API}/{route}", body))
    return ms, status, answer


def run_duck(con, name, table, params):
    sql = REQUESTS[name][2].format(t=table)
    rows = {}

    def go():
        cur = con.execute(sql, params)
        rows["rows"] = cur.fetchall()
        rows["desc"] = cur.description
    ms, _ = timed(go)
    return ms, rows["desc"], rows["rows"]


# ---------------------------------------------------------------- import
def cmd_import(a):
    out = {}
    s = Http(a.storaged)
    out["storaged_before"] = proc_status(a.storaged_pid)
    body = {"name": DATASET, "source": a.parquet, "format": "parquet",
            "primary_key": list(KEY), "index": "list", "index_columns": ["l_shipmode"]}
    # storaged's RSS every 200 ms while it imports (the peak is VmHWM; this is the timeline).
    samples, stop = [], threading.Event()

    def sample():
        t0 = time.perf_counter()
        while not stop.wait(0.2):
            samples.append((round(time.perf_counter() - t0, 1), proc_status(a.storaged_pid).get("VmRSS")))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    status, info, _ = s.call("POST", "/api/v1/datasets", body, {"X-Admin-Token": a.token})
    out["import_s"] = time.perf_counter() - t0
    stop.set()
    sampler.join()
    out["status"], out["info"] = status, info
    out["storaged_after"] = proc_status(a.storaged_pid)
    out["rss_timeline"] = samples
    if status != 201:
        out["error"] = f"create answered {status}: {str(info)[:2000]}"
        print(f"  import FAILED: {out['error']}", file=sys.stderr)
    else:
        print(f"  import: {info.get('base_rows'):,} rows, {info.get('base_files')} base files in "
              f"{out['import_s']:.1f} s; storaged VmRSS {out['storaged_before'].get('VmRSS')} kB before, "
              f"VmHWM {out['storaged_after'].get('VmHWM')} kB", file=sys.stderr)

    # DuckDB, on a database file (Strata's import writes its store to disk too).
    before = proc_status(os.getpid())
    con = duckdb.connect(a.duckdb)
    t0 = time.perf_counter()
    con.execute(f"CREATE TABLE {DATASET} AS SELECT * FROM read_parquet('{a.parquet}') "
                "ORDER BY l_orderkey, l_linenumber")
    out["duckdb_ctas_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    con.execute("CHECKPOINT")
    out["duckdb_checkpoint_s"] = time.perf_counter() - t0
    out["duckdb_rows"] = con.execute(f"SELECT count(*) FROM {DATASET}").fetchone()[0]
    out["duckdb"] = {"version": duckdb.__version__,
                     "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
                     "memory_limit": con.execute("SELECT current_setting('memory_limit')").fetchone()[0],
                     "rss_before_kb": before.get("VmRSS"), "hwm_kb": proc_status(os.getpid()).get("VmHWM")}
    con.close()
    out["duckdb_file_bytes"] = os.path.getsize(a.duckdb)
    print(f"  DuckDB CREATE TABLE … ORDER BY: {out['duckdb_ctas_s']:.1f} s (+ checkpoint "
          f"{out['duckdb_checkpoint_s']:.1f} s), {out['duckdb_rows']:,} rows", file=sys.stderr)
    json.dump(out, open(a.out, "w"), indent=1)
    if status != 201:
        sys.exit(1)


# ---------------------------------------------------------------- serve
def cmd_serve(a):
    pids = parse_pids(a.pids)
    out = {"rounds": ROUNDS, "reps": REPS, "requests": {}, "problems": []}
    out["cache_before"] = cache_stats(a.queryd)
    out["metrics_before"] = metrics(a.queryd)
    out["after_start"] = statuses(pids)
    out["peak_reset"] = all(reset_peak(p) for p in pids.values())

    q = Http(a.queryd)
    con = duckdb.connect(a.duckdb, read_only=True)
    scan = f"read_parquet('{a.parquet}')"
    keys = con.execute(f"SELECT l_orderkey, l_linenumber FROM {DATASET} "
                       "USING SAMPLE reservoir(10000 ROWS) REPEATABLE (19)").fetchall()
    rng = random.Random(19)

    # 1. Cold: the first request of each kind on Strata, and on a fresh DuckDB connection.
    for name in REQUESTS:
        subs, params = params_of(name, rng, keys)
        ms, status, answer = run_strata(q, name, subs)
        fresh = duckdb.connect()
        dms, desc, duck = run_duck(fresh, name, scan, params)
        fresh.close()
        wrong = check(name, status, answer, desc, duck)
        out["requests"][name] = {
            "cold": {"strata_ms": ms if status == 200 else None, "duck_ms": dms,
                     "status": status, "params": [str(p) for p in params], "wrong": wrong},
            "strata_ms": [], "duck_ms": [], "failures": 0, "failure_sample": None,
            "wrong": 0, "wrong_sample": None, "checked": 0,
        }
        if wrong:
            out["problems"].append(f"{name} (cold, {subs}): {wrong}")
        print(f"  cold {name:12s} strata {ms:9.1f} ms ({status}), duckdb {dms:9.1f} ms: "
              f"{wrong or 'equal'}", file=sys.stderr)
    out["cache_after_cold"] = cache_stats(a.queryd)

    # 2. Warm: paired rounds against DuckDB's Parquet scan on one connection.
    for name in REQUESTS:
        per = out["requests"][name]
        for round_no in range(ROUNDS):
            runs = {"strata": [], "duck": []}
            for _ in range(REPS):
                subs, params = params_of(name, rng, keys)
                order = ["strata", "duck"] if round_no % 2 == 0 else ["duck", "strata"]
                for side in order:
                    if side == "duck":
                        dms, desc, duck = run_duck(con, name, scan, params)
                        runs["duck"].append(dms)
                    else:
                        ms, status, answer = run_strata(q, name, subs)
                if status == 200:
                    runs["strata"].append(ms)
                else:
                    per["failures"] += 1
                    per["failure_sample"] = f"{status}: {str(answer)[:300]}"
                wrong = check(name, status, answer, desc, duck) if status == 200 else None
                per["checked"] += status == 200
                if wrong:
                    per["wrong"] += 1
                    per["wrong_sample"] = f"{subs}: {wrong}"
            per["strata_ms"].append(statistics.median(runs["strata"]) if runs["strata"] else None)
            per["duck_ms"].append(statistics.median(runs["duck"]))
            s = per["strata_ms"][-1]
            print(f"  r{round_no + 1} {name:12s} strata {'FAILED' if s is None else f'{s:.2f} ms'}, "
                  f"duckdb parquet {per['duck_ms'][-1]:.2f} ms", file=sys.stderr)
        if per["wrong"]:
            out["problems"].append(f"{name}: {per['wrong']} of {per['checked']} warm answers "
                                   f"differ, e.g. {per['wrong_sample']}")

    out["after_requests"] = statuses(pids)
    out["metrics_after"] = metrics(a.queryd)
    out["cache_after"] = cache_stats(a.queryd)
    json.dump(out, open(a.out, "w"), indent=1)


# ---------------------------------------------------------------- compact
def build_deltas(con, rows):
    """The delta rows, sampled from DuckDB's table: (Arrow table with `_op`, updates, deletes).
    Updates change l_quantity and l_extendedprice; a delete carries its whole row (only the
    key counts)."""
    n = max(1, round(rows * DELTA_SHARE / 100))
    n_del = round(n * DELETES)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE d AS
        SELECT *, CASE WHEN row_number() OVER () <= {n_del} THEN 1 ELSE 0 END AS _op
        FROM (SELECT * FROM {DATASET} USING SAMPLE reservoir({n} ROWS) REPEATABLE (19))""")
    con.execute("""
        UPDATE d SET
            l_quantity = CAST((l_orderkey * 31 + l_linenumber) % 50 + 1 AS DECIMAL(15, 2)),
            l_extendedprice = l_extendedprice
                + CAST(((l_orderkey + l_linenumber) % 997 + 1) * 0.01 AS DECIMAL(15, 2))
        WHERE _op = 0""")
    cols = [r[0] for r in con.execute(f"DESCRIBE {DATASET}").fetchall()]
    # In an order unrelated to the key (fixed, so every run posts the same bodies).
    table = con.execute(f"SELECT {', '.join(cols)}, _op FROM d "
                        "ORDER BY hash(l_orderkey, l_linenumber)").to_arrow_table()
    return table, n - n_del, n_del


def ipc(table):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def cmd_compact(a):
    pids = parse_pids(a.pids)
    out = {"problems": [], "delta_batch": DELTA_BATCH, "delta_share": DELTA_SHARE,
           "deletes_share": DELETES}
    problems = out["problems"]
    con = duckdb.connect(a.duckdb)
    rows = con.execute(f"SELECT count(*) FROM {DATASET}").fetchone()[0]
    t = time.perf_counter()
    table, n_upd, n_del = build_deltas(con, rows)
    bodies = [ipc(table.slice(i, DELTA_BATCH)) for i in range(0, table.num_rows, DELTA_BATCH)]
    out.update(rows_before=rows, updates=n_upd, deletes=n_del, posts=len(bodies),
               body_bytes=sum(map(len, bodies)), build_s=time.perf_counter() - t)
    expected = rows - n_del
    out["expected_rows"] = expected

    # 1. Post the deltas through queryd (answered once queryd serves the new version); the
    #    peaks reset first, and queryd left to finish any load the posts started.
    q = Http(a.queryd)
    headers = {"X-Admin-Token": a.token, "Content-Type": ARROW}
    out["metrics_before_posts"] = metrics(a.queryd)
    out["before_posts"] = statuses(pids)
    for p in pids.values():
        reset_peak(p)
    t = time.perf_counter()
    version = None
    for i, body in enumerate(bodies):
        answer, _ = q.ok("POST", f"{API}/deltas", body, {**headers, "Idempotency-Key": f"scale-{i}"})
        version = answer["version"]
    out["ingest_s"] = time.perf_counter() - t
    out["version_before"] = version
    out["posts_settle_s"] = settle(a.queryd)
    out["after_posts"] = statuses(pids)
    out["metrics_after_posts"] = metrics(a.queryd)
    print(f"  posted {n_upd:,} updates and {n_del:,} deletes in {len(bodies)} posts, "
          f"{out['ingest_s']:.1f} s", file=sys.stderr)

    # 2. The same changes in DuckDB.
    t = time.perf_counter()
    con.execute(f"""
        UPDATE {DATASET} SET l_quantity = d.l_quantity, l_extendedprice = d.l_extendedprice
        FROM d WHERE d._op = 0 AND {DATASET}.l_orderkey = d.l_orderkey
          AND {DATASET}.l_linenumber = d.l_linenumber""")
    con.execute(f"""
        DELETE FROM {DATASET} USING d WHERE d._op = 1 AND {DATASET}.l_orderkey = d.l_orderkey
          AND {DATASET}.l_linenumber = d.l_linenumber""")
    out["duckdb_apply_s"] = time.perf_counter() - t
    duck_rows = con.execute(f"SELECT count(*) FROM {DATASET}").fetchone()[0]
    if duck_rows != expected:
        problems.append(f"DuckDB has {duck_rows} rows after the changes, expected {expected} (harness bug)")

    # 3. Compaction on demand, peaks reset just before.
    time.sleep(2)
    out["metrics_before"] = metrics(a.queryd)
    out["before"] = statuses(pids)
    out["peak_reset"] = all(reset_peak(p) for p in pids.values())
    c = Http(a.compactord)
    t0 = time.perf_counter()
    status, run, _ = c.call("POST", f"{API}/compact", b"", {"X-Admin-Token": a.token})
    t1 = time.perf_counter()
    out["compact_wall_s"] = t1 - t0
    out["run"] = run if isinstance(run, dict) else {"error": str(run)[:2000]}
    out["after_compaction"] = statuses(pids)
    if status != 200 or not isinstance(run, dict) or run.get("outcome") != "committed":
        problems.append(f"compaction answered {status}: {str(run)[:500]}")
        json.dump(out, open(a.out, "w"), indent=1)
        return
    try:
        out["run_s"] = (parse_time(run["finished_at"]) - parse_time(run["started_at"])).total_seconds()
    except (KeyError, ValueError) as e:
        out["run_s"] = None
        problems.append(f"cannot read the run's times: {e}")
    if run.get("rows_out") != expected:
        problems.append(f"compaction rows_out {run.get('rows_out')}, expected {expected}")

    # 4. queryd serves the compaction's version (its cold path follows the manifest).
    target = run.get("version")
    seen = None
    deadline = time.perf_counter() + 600
    while time.perf_counter() < deadline:
        if (cache_entry(cache_stats(a.queryd)).get("version") or -1) >= target:
            seen = time.perf_counter()
            break
        time.sleep(0.05)
    if seen is None:
        problems.append(f"queryd did not serve version {target} within 600 s")
    out["served_after_s"] = None if seen is None else seen - t1
    time.sleep(2)
    out["after_switch"] = statuses(pids)
    out["metrics_after_switch"] = metrics(a.queryd)
    out["cache_after_switch"] = cache_stats(a.queryd)
    print(f"  compaction {run.get('outcome')} in {out['compact_wall_s']:.1f} s (run "
          f"{out.get('run_s') or 0:.1f} s), rows_in {run.get('rows_in'):,}; queryd at version "
          f"{target} {out['served_after_s'] or float('nan'):.2f} s later", file=sys.stderr)

    # 5. Answers after the compaction, against DuckDB's changed table.
    mv = {"min_version": target}
    checks = out["checks"] = {}
    status, answer, _ = q.call("POST", f"{API}/count", mv)
    total = con.execute(f"SELECT count(*) FROM {DATASET}").fetchone()[0]
    checks["count"] = (f"Strata answered {status}: {str(answer)[:300]}" if status != 200
                       else None if answer.get("count") == total
                       else f"Strata {answer.get('count')}, DuckDB {total}")
    out["count_after"] = answer.get("count") if isinstance(answer, dict) else None
    rng = random.Random(20)
    for name in ("count", "q1_group_by"):
        subs, params = params_of(name, rng, [])
        _, status, answer = run_strata(q, name, subs, mv)
        _, desc, duck = run_duck(con, name, DATASET, params)
        checks[name if name != "count" else "count_predicate"] = check(name, status, answer, desc, duck)
    # Keys: some updated, some deleted, some untouched.
    sample = con.execute("""
        (SELECT l_orderkey, l_linenumber FROM d WHERE _op = 0 LIMIT 20)
        UNION ALL (SELECT l_orderkey, l_linenumber FROM d WHERE _op = 1 LIMIT 10)""").fetchall()
    sample += con.execute(f"SELECT l_orderkey, l_linenumber FROM {DATASET} "
                          "USING SAMPLE reservoir(10 ROWS) REPEATABLE (21)").fetchall()
    wrong_keys = []
    for k in sample:
        subs, params = {"orderkey": k[0], "linenumber": k[1]}, list(k)
        _, status, answer = run_strata(q, "key_lookup", subs, mv)
        _, desc, duck = run_duck(con, "key_lookup", DATASET, params)
        w = check("key_lookup", status, answer, desc, duck)
        if w:
            wrong_keys.append(f"{k}: {w}")
    checks["keys"] = (None if not wrong_keys
                      else f"{len(wrong_keys)} of {len(sample)} keys differ, e.g. {wrong_keys[0]}")
    out["keys_checked"] = len(sample)
    for k, v in checks.items():
        if v:
            problems.append(f"after compaction, {k}: {v}")
        print(f"  check after compaction {k}: {v or 'equal'}", file=sys.stderr)
    out["checks_settle_s"] = settle(a.queryd)
    out["after_checks"] = statuses(pids)
    out["metrics_after_checks"] = metrics(a.queryd)
    json.dump(out, open(a.out, "w"), indent=1)


def parse_time(s):
    """RFC 3339 with up to nanoseconds (chrono) -> aware datetime."""
    s = s.replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        i = next((j for j, ch in enumerate(rest) if not ch.isdigit()), len(rest))
        s = f"{head}.{rest[:i][:6]}{rest[i:]}"
    return datetime.datetime.fromisoformat(s)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("import")
    i.add_argument("--storaged", required=True)
    i.add_argument("--storaged-pid", type=int, required=True)
    i.add_argument("--parquet", required=True)
    i.add_argument("--duckdb", required=True)
    i.add_argument("--token", required=True)
    i.add_argument("--out", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--queryd", required=True)
    s.add_argument("--pids", required=True)
    s.add_argument("--parquet", required=True)
    s.add_argument("--duckdb", required=True)
    s.add_argument("--out", required=True)
    c = sub.add_parser("compact")
    c.add_argument("--queryd", required=True)
    c.add_argument("--compactord", required=True)
    c.add_argument("--pids", required=True)
    c.add_argument("--duckdb", required=True)
    c.add_argument("--token", required=True)
    c.add_argument("--out", required=True)
    a = p.parse_args()
    try:
        {"import": cmd_import, "serve": cmd_serve, "compact": cmd_compact}[a.cmd](a)
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
