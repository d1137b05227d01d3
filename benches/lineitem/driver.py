#!/usr/bin/env python3
"""TPC-H lineitem: Strata (over HTTP) against DuckDB in this process, on the same Parquet file.

Usage: driver.py OUT_DIR PARQUET STRATA_URL STRATA_PID

DuckDB runs in this process, configured as its users would: its default settings (all cores),
the table loaded once with `CREATE TABLE lineitem AS SELECT * FROM read_parquet(...)` (the
in-memory table), and the same requests as plain SQL over `read_parquet(...)` (the Parquet
scan). Strata is a running `strata up` with the dataset `lineitem` already in memory.

Steps:
1. DuckDB loads its table; the process's VmRSS before and after (the footprint of the table),
   and DuckDB's own `duckdb_memory()` count.
2. Correctness: each request once on Strata and on DuckDB's table, compared row for row
   (decimals and sums to a relative 1e-9, dates as ISO strings). A mismatch is reported, and
   that request's timings are marked.
3. ROUNDS paired rounds: in each, every request REPS times in a row on Strata, on DuckDB's
   table and on DuckDB's Parquet scan, back to back (who goes first alternates). A round's
   figure is the median latency of its REPS runs; the ratio Strata / DuckDB is taken per round
   and the report gives the median of the rounds' ratios. A failed Strata request (non-200) is
   counted as a failure and its latency never used.

Writes OUT_DIR/results.json; report.py turns it into markdown.
"""

import datetime
import decimal
import http.client
import json
import os
import random
import statistics
import sys
import time
import urllib.parse

import duckdb

ROUNDS = int(os.environ.get("ROUNDS", "3"))
REPS = int(os.environ.get("REPS", "15"))
DATASET = "/api/v1/datasets/lineitem/query"
SHIP_MODES = ["AIR", "FOB", "MAIL", "RAIL", "REG AIR", "SHIP", "TRUCK"]

# Each request: the Strata body and the same request in SQL over `{t}` (DuckDB's table or its
# Parquet scan). Orders break ties by the primary key ascending, which is Strata's contract,
# so both sides have one right answer. `{k}` marks the random parameters of key lookups.
REQUESTS = {
    "q1_group_by": (
        {
            "predicates": [{"col": "l_shipdate", "op": "lte", "val": "1998-09-02"}],
            "group_by": ["l_returnflag", "l_linestatus"],
            "aggregations": [
                {"op": "sum", "col": "l_quantity", "alias": "sum_qty"},
                {"op": "sum", "col": "l_extendedprice", "alias": "sum_base_price"},
                {"op": "avg", "col": "l_discount", "alias": "avg_disc"},
                {"op": "count", "alias": "count_order"},
            ],
            "order_by": [{"col": "l_returnflag"}, {"col": "l_linestatus"}],
        },
        "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty, "
        "sum(l_extendedprice) AS sum_base_price, avg(l_discount) AS avg_disc, "
        "count(*) AS count_order FROM {t} WHERE l_shipdate <= DATE '1998-09-02' "
        "GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus",
    ),
    "topk_order": (
        {"order_by": [{"col": "l_extendedprice", "dir": "desc"}], "page_size": 50},
        "SELECT * FROM {t} ORDER BY l_extendedprice DESC, l_orderkey, l_linenumber LIMIT 50",
    ),
    "key_desc": (
        {
            "order_by": [
                {"col": "l_orderkey", "dir": "desc"},
                {"col": "l_linenumber", "dir": "desc"},
            ],
            "page_size": 50,
        },
        "SELECT * FROM {t} ORDER BY l_orderkey DESC, l_linenumber DESC LIMIT 50",
    ),
    "filter_order": (
        {
            "predicates": [{"col": "l_shipmode", "op": "eq", "val": "{mode}"}],
            "order_by": [{"col": "l_extendedprice", "dir": "desc"}],
            "page_size": 50,
        },
        "SELECT * FROM {t} WHERE l_shipmode = ? "
        "ORDER BY l_extendedprice DESC, l_orderkey, l_linenumber LIMIT 50",
    ),
    "key_lookup": (
        {
            "predicates": [
                {"col": "l_orderkey", "op": "eq", "val": "{orderkey}"},
                {"col": "l_linenumber", "op": "eq", "val": "{linenumber}"},
            ]
        },
        "SELECT * FROM {t} WHERE l_orderkey = ? AND l_linenumber = ?",
    ),
}


def rss_kb(pid) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Strata:
    def __init__(self, url: str):
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)

    def query(self, body: dict):
        """(status, decoded JSON or text): one request on the kept-alive connection."""
        self.conn.request("POST", DATASET, json.dumps(body), {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        text = r.read().decode("utf-8", "replace")
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


def params_of(name: str, rng: random.Random, keys: list[tuple[int, int]]):
    """The random parameters of one run of `name`: (Strata substitutions, SQL parameters)."""
    if name == "key_lookup":
        orderkey, linenumber = keys[rng.randrange(len(keys))]
        return {"orderkey": orderkey, "linenumber": linenumber}, [orderkey, linenumber]
    if name == "filter_order":
        mode = SHIP_MODES[rng.randrange(len(SHIP_MODES))]
        return {"mode": mode}, [mode]
    return {}, []


def fill(body, subs: dict):
    """`body` with each "{name}" string replaced by subs[name] (keeping its JSON type)."""
    if isinstance(body, dict):
        return {k: fill(v, subs) for k, v in body.items()}
    if isinstance(body, list):
        return [fill(v, subs) for v in body]
    if isinstance(body, str) and body.startswith("{") and body.endswith("}"):
        return subs.get(body[1:-1], body)
    return body


def same(strata, duck) -> bool:
    """One cell: Strata's JSON value against DuckDB's Python value. Strata writes decimals and
    dates as strings ("123.45", "1998-09-02"); numbers compare to a relative 1e-9 (sums and
    averages are added up in different orders)."""
    if isinstance(duck, (decimal.Decimal, int, float)) and not isinstance(duck, bool):
        try:
            a, b = float(strata), float(duck)
        except (TypeError, ValueError):
            return False
        return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))
    if isinstance(duck, (datetime.date, datetime.datetime)):
        return strata == duck.isoformat()
    return strata == duck


def compare(strata_rows: list[dict], duck_rows: list[tuple], columns: list[str]) -> str | None:
    """None if the answers are equal, else what differs first."""
    if len(strata_rows) != len(duck_rows):
        return f"{len(strata_rows)} rows from Strata, {len(duck_rows)} from DuckDB"
    for i, (s, d) in enumerate(zip(strata_rows, duck_rows)):
        for c, dv in zip(columns, d):
            if c not in s:
                return f"row {i}: Strata has no column {c}"
            if not same(s[c], dv):
                return f"row {i}, {c}: Strata {s[c]!r}, DuckDB {dv!r}"
    return None


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main():
    out_dir, parquet, strata_url, strata_pid = sys.argv[1:5]
    strata = Strata(strata_url)
    results = {"rounds": ROUNDS, "reps": REPS, "requests": {}, "memory": {}}

    # 1. DuckDB's table, and its footprint.
    before = rss_kb(os.getpid())
    con = duckdb.connect()
    scan = f"read_parquet('{parquet}')"
    start = time.perf_counter()
    con.execute(f"CREATE TABLE lineitem AS SELECT * FROM {scan}")
    load_s = time.perf_counter() - start
    after = rss_kb(os.getpid())
    tagged = dict(
        (tag, b) for tag, b, _ in con.execute("SELECT * FROM duckdb_memory()").fetchall()
    )
    results["memory"]["duckdb"] = {
        "rss_before_kb": before,
        "rss_after_load_kb": after,
        "table_kb": after - before,
        "in_memory_table_bytes": tagged.get("IN_MEMORY_TABLE"),
        "load_s": round(load_s, 2),
        "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
        "version": duckdb.__version__,
    }
    results["memory"]["strata_ready_kb"] = rss_kb(strata_pid)

    keys = con.execute(
        "SELECT l_orderkey, l_linenumber FROM lineitem USING SAMPLE 10000 ROWS (reservoir, 7)"
    ).fetchall()
    rng = random.Random(18)

    # 2. Correctness.
    correct = {}
    for name, (body, sql) in REQUESTS.items():
        subs, params = params_of(name, rng, keys)
        status, answer = strata.query(fill(body, subs))
        cur = con.execute(sql.format(t="lineitem"), params)
        cols = [d[0] for d in cur.description]
        duck = cur.fetchall()
        if status != 200:
            correct[name] = f"Strata answered {status}: {str(answer)[:300]}"
        else:
            correct[name] = compare(answer.get("data", []), duck, cols)
        print(f"check {name}: {correct[name] or 'equal'}", file=sys.stderr)
    results["correct"] = correct

    # 3. Paired rounds.
    for name, (body, sql) in REQUESTS.items():
        per = results["requests"][name] = {
            "strata_ms": [], "duck_table_ms": [], "duck_parquet_ms": [], "failures": 0,
            "failure_sample": None,
        }
        for round_no in range(ROUNDS):
            runs = {"strata": [], "table": [], "parquet": []}
            for _ in range(REPS):
                subs, params = params_of(name, rng, keys)
                order = ["strata", "table", "parquet"]
                if round_no % 2:
                    order.reverse()
                for side in order:
                    if side == "strata":
                        answer = {}

                        def run():
                            answer["r"] = strata.query(fill(body, subs))
                        ms = timed(run)
                        status, text = answer["r"]
                        if status == 200:
                            runs["strata"].append(ms)
                        else:
                            per["failures"] += 1
                            per["failure_sample"] = f"{status}: {str(text)[:300]}"
                    else:
                        q = sql.format(t="lineitem" if side == "table" else scan)
                        runs[side].append(timed(lambda: con.execute(q, params).fetchall()))
            for side, key in (("strata", "strata_ms"), ("table", "duck_table_ms"),
                              ("parquet", "duck_parquet_ms")):
                per[key].append(statistics.median(runs[side]) if runs[side] else None)
            print(f"  r{round_no + 1} {name:13s} strata {per['strata_ms'][-1]} ms, "
                  f"duckdb table {per['duck_table_ms'][-1]:.2f} ms, "
                  f"parquet {per['duck_parquet_ms'][-1]:.2f} ms", file=sys.stderr)

    results["memory"]["strata_after_kb"] = rss_kb(strata_pid)
    results["memory"]["duckdb"]["rss_after_runs_kb"] = rss_kb(os.getpid())
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
