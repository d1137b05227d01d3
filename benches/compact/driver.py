#!/usr/bin/env python3
"""Driver of the compaction benchmark: one scenario (table size x share of rows in deltas)
against storaged, queryd and compactord running as separate processes.

Usage:
  driver.py scenario --queryd URL --compactord URL --token TOKEN --rows N --share PCT
                     --queryd-pid P --compactord-pid P --storaged-pid P --out OUT.json
                     [--batch ROWS] [--deletes FRACTION] [--inserts FRACTION] [--seed S]
                     [--poll-ms MS] [--reload-timeout S]

What it does, in order:
  1. builds the delta bodies (Arrow IPC streams with an `_op` column) before any clock runs:
     N * PCT / 100 distinct keys, of which FRACTION deletes of existing ids, FRACTION inserts
     of new ids (above N) and the rest updates of every non-key column of existing ids,
     shuffled and cut into posts of --batch rows;
  2. posts them one after the other to queryd (`POST /api/v1/datasets/orders/deltas`, which
     answers once queryd serves the new version) and checks the count before compaction;
  3. waits 2 s, reads VmRSS of the three processes (queryd's *steady* RSS), resets the peak
     (VmHWM) of all three with `echo 5 > /proc/PID/clear_refs`;
  4. starts a poller thread: every --poll-ms a primary-key lookup to queryd (its
     `X-Dataset-Version` header and latency) plus VmRSS of queryd and compactord;
  5. `POST /api/v1/datasets/orders/compact` on compactord (wall clock around the request;
     the run's own started_at/finished_at), then VmHWM of compactord and storaged;
  6. waits until queryd serves the compaction's version (the reload: time from the
     compaction's answer to the first lookup answering with that version; with queryd's
     default `rebuild = "release_first"` that answer comes from the new Parquet files at once)
     and then until the dataset is in memory again at that version or newer (the rebuild:
     `residency` in /api/v1/cache/stats), reads queryd's VmHWM, then its VmRSS --settle-s
     (default 2) seconds later;
  7. checks the answers: the run committed, rows_out and the total count equal
     N - deletes + inserts, and a sample of posted keys (updates, deletes, inserts) read back
     as posted.

All numbers go to OUT.json; a one-line summary goes to stderr.
"""

import argparse
import datetime as dt
import http.client
import json
import random
import re
import sys
import threading
import time
import urllib.parse

import pyarrow as pa

CATEGORIES = ["books", "clothing", "electronics", "garden", "grocery", "home", "sports", "toys"]
COUNTRIES = ["US", "DE", "GB", "FR", "JP", "CN", "IN", "BR", "CA", "AU",
             "IT", "ES", "NL", "SE", "PL", "MX", "KR", "CH", "NO", "ZA"]
BASE_US = int(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
DELTAS_PATH = "/api/v1/datasets/orders/deltas"
QUERY_PATH = "/api/v1/datasets/orders/query"
COUNT_PATH = "/api/v1/datasets/orders/count"
COMPACT_PATH = "/api/v1/datasets/orders/compact"
ARROW = "application/vnd.apache.arrow.stream"
CHECK_COLS = ("category", "country", "amount", "quantity", "active", "note")


class Failed(Exception):
    pass


def connect(url, timeout=600):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.connect()
    return conn


def request(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise Failed(f"{method} {path} -> {resp.status}: {data[:2000].decode('utf-8', 'replace')}")
    return resp, data


def proc_status(pid):
    """VmRSS, VmHWM (kB) and CPU seconds (utime + stime) of a process."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        import os
        tick = os.sysconf("SC_CLK_TCK")
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / tick
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


def parse_time(s):
    """RFC 3339 with up to nanoseconds (chrono) -> aware datetime (microseconds)."""
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        return dt.datetime.fromisoformat(s)
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return dt.datetime.fromisoformat(m.group(1) + frac + tz)


def metrics(url):
    """queryd's reload histogram sum and count."""
    conn = connect(url)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    s = c = 0.0
    for line in text.splitlines():
        if line.startswith("strata_reload_duration_seconds_sum"):
            s = float(line.split()[-1])
        elif line.startswith("strata_reload_duration_seconds_count"):
            c = float(line.split()[-1])
    return s, c


def cache_entry(url):
    """queryd's cache entry of the dataset (bytes, residency, version)."""
    conn = connect(url)
    conn.request("GET", "/api/v1/cache/stats")
    d = json.loads(conn.getresponse().read())
    conn.close()
    return next((x for x in d.get("datasets", []) if x.get("dataset") == "orders"), {})


def accounted_bytes(url):
    return cache_entry(url).get("bytes")


# ---------------------------------------------------------------- deltas
def build_deltas(rows, share, batch, f_del, f_ins, seed):
    rng = random.Random(seed)
    n = rows * share // 100
    n_del = round(n * f_del)
    n_ins = round(n * f_ins)
    n_upd = n - n_del - n_ins
    existing = rng.sample(range(1, rows + 1), n_upd + n_del)
    upd, dele = existing[:n_upd], existing[n_upd:]
    ins = list(range(rows + 1, rows + 1 + n_ins))
    ops = [(k, 0) for k in upd] + [(k, 1) for k in dele] + [(k, 0) for k in ins]
    rng.shuffle(ops)
    bodies, tables = [], []
    for i in range(0, len(ops), batch):
        part = ops[i:i + batch]
        keys = [k for k, _ in part]
        up = [op == 0 for _, op in part]
        m = len(part)
        table = pa.table({
            "id": pa.array(keys, pa.int64()),
            "ts": pa.array([BASE_US + k * 30_000_000 + rng.randrange(30_000_000) if u else None
                            for k, u in zip(keys, up)], pa.timestamp("us", tz="UTC")),
            "category": pa.array([CATEGORIES[rng.randrange(8)] if u else None for u in up], pa.string()),
            "country": pa.array([COUNTRIES[rng.randrange(20)] if u else None for u in up], pa.string()),
            "amount": pa.array([rng.randrange(100, 100_001) / 100 if u else None for u in up], pa.float64()),
            "quantity": pa.array([rng.randint(1, 20) if u else None for u in up], pa.int32()),
            "active": pa.array([rng.random() < 0.7 if u else None for u in up], pa.bool_()),
            "note": pa.array([f"compact bench {seed} {k}" if u and rng.random() < 0.5 else None
                              for k, u in zip(keys, up)], pa.string()),
            "_op": pa.array([0 if u else 1 for u in up], pa.uint8()),
        })
        assert table.num_rows == m
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        bodies.append(sink.getvalue().to_pybytes())
        tables.append(table)
    return {"n": n, "updates": n_upd, "deletes": n_del, "inserts": n_ins,
            "bodies": bodies, "tables": tables,
            "sample_upd": rng.sample(upd, min(30, len(upd))),
            "sample_del": rng.sample(dele, min(10, len(dele))),
            "sample_ins": rng.sample(ins, min(10, len(ins)))}


def posted_rows(tables, keys):
    """The posted row (dict, or None for a delete) of each key in `keys`."""
    want, found = set(keys), {}
    for t in tables:
        ids = t.column("id").to_pylist()
        for i, k in enumerate(ids):
            if k in want:
                r = {c: t.column(c)[i].as_py() for c in CHECK_COLS + ("_op",)}
                found[k] = None if r["_op"] == 1 else r
    return found


# ---------------------------------------------------------------- poller
class Poller(threading.Thread):
    """Every `interval` s: a key lookup (version header, latency) and VmRSS of the processes."""

    def __init__(self, url, pids, interval):
        super().__init__(daemon=True)
        self.conn = connect(url, timeout=120)
        self.pids = pids
        self.interval = interval
        self.samples = []  # (t, version, latency_s, {name: rss_kb}, status)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.body = json.dumps({"predicates": [{"col": "id", "op": "eq", "val": 1}]}).encode()

    def run(self):
        while not self.stop.is_set():
            t0 = time.perf_counter()
            version, status = None, None
            try:
                self.conn.request("POST", QUERY_PATH, body=self.body,
                                  headers={"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                resp.read()
                status = resp.status
                v = resp.getheader("X-Dataset-Version")
                version = int(v) if v is not None else None
            except Exception as e:  # noqa: BLE001 - recorded
                status = f"error: {e}"
                try:
                    self.conn.close()
                    self.conn.connect()
                except OSError:
                    pass
            t1 = time.perf_counter()
            rss = {name: proc_status(pid).get("VmRSS") for name, pid in self.pids.items()}
            with self.lock:
                self.samples.append((t1, version, t1 - t0, rss, status))
            self.stop.wait(max(0.0, self.interval - (time.perf_counter() - t0)))

    def first_at_least(self, version, after):
        with self.lock:
            for t, v, _, _, _ in self.samples:
                if t >= after and v is not None and v >= version:
                    return t
        return None


# ---------------------------------------------------------------- scenario
def cmd_scenario(a):
    pids = {"queryd": a.queryd_pid, "compactord": a.compactord_pid, "storaged": a.storaged_pid}
    out = {"rows": a.rows, "share": a.share, "batch": a.batch, "problems": [], "t_start": time.time()}
    problems = out["problems"]

    t = time.perf_counter()
    d = build_deltas(a.rows, a.share, a.batch, a.deletes, a.inserts, a.seed)
    out.update(delta_rows=d["n"], updates=d["updates"], deletes=d["deletes"], inserts=d["inserts"],
               posts=len(d["bodies"]), body_bytes=sum(len(b) for b in d["bodies"]),
               build_s=time.perf_counter() - t)
    expected = a.rows - d["deletes"] + d["inserts"]
    out["expected_rows"] = expected

    # 2. post the deltas
    q = connect(a.queryd)
    headers = {"X-Admin-Token": a.token, "Content-Type": ARROW}
    t = time.perf_counter()
    version = None
    for body in d["bodies"]:
        _, data = request(q, "POST", DELTAS_PATH, body, headers)
        version = json.loads(data)["version"]
    out["ingest_s"] = time.perf_counter() - t
    out["ingest_rows_per_s"] = d["n"] / out["ingest_s"] if out["ingest_s"] > 0 else None
    out["version_before"] = version
    qh = {"Content-Type": "application/json"}
    _, data = request(q, "POST", COUNT_PATH, json.dumps({"min_version": version}).encode(), qh)
    out["count_before"] = json.loads(data)["count"]
    if out["count_before"] != expected:
        problems.append(f"count before compaction {out['count_before']}, expected {expected}")

    # 3. steady state
    time.sleep(2)
    out["accounted_before"] = accounted_bytes(a.queryd)
    out["before"] = {name: proc_status(pid) for name, pid in pids.items()}
    out["peak_reset"] = all(reset_peak(pid) for pid in pids.values())
    out["after_reset"] = {name: proc_status(pid) for name, pid in pids.items()}
    reload_before = metrics(a.queryd)

    # 4-5. compaction
    poller = Poller(a.queryd, {"queryd": a.queryd_pid, "compactord": a.compactord_pid,
                               "storaged": a.storaged_pid}, a.poll_ms / 1e3)
    poller.start()
    time.sleep(0.3)
    c = connect(a.compactord, timeout=3600)
    t0 = time.perf_counter()
    _, data = request(c, "POST", COMPACT_PATH, b"", {"X-Admin-Token": a.token})
    t1 = time.perf_counter()
    run = json.loads(data)
    out["run"] = run
    out["compact_wall_s"] = t1 - t0
    out["after_compaction"] = {name: proc_status(pid) for name, pid in pids.items()}
    try:
        out["run_s"] = (parse_time(run["finished_at"]) - parse_time(run["started_at"])).total_seconds()
    except (KeyError, ValueError) as e:
        out["run_s"] = None
        problems.append(f"cannot read the run's times: {e}")
    if run.get("outcome") != "committed":
        problems.append(f"compaction outcome {run.get('outcome')}: {run.get('error')}")
    if run.get("rows_out") != expected:
        problems.append(f"rows_out {run.get('rows_out')}, expected {expected}")
    if run.get("deltas_merged") is not None and run["deltas_merged"] != len(d["bodies"]):
        problems.append(f"deltas_merged {run['deltas_merged']}, posted {len(d['bodies'])} deltas")

    # 6. the reload in queryd
    target = run.get("version")
    seen = None
    if target is not None:
        deadline = time.perf_counter() + a.reload_timeout
        while time.perf_counter() < deadline:
            seen = poller.first_at_least(target, t0)
            if seen is not None:
                break
            time.sleep(0.01)
        if seen is None:
            problems.append(f"queryd did not serve version {target} within {a.reload_timeout} s")
    out["reload_s"] = (seen - t1) if seen is not None else None
    out["reload_from_start_s"] = (seen - t0) if seen is not None else None
    # 6b. the rebuild: in memory again at the compaction's version (or newer)
    hot = None
    if target is not None:
        deadline = time.perf_counter() + a.reload_timeout
        while time.perf_counter() < deadline:
            e = cache_entry(a.queryd)
            if e.get("residency") == "memory" and (e.get("version") or 0) >= target:
                hot = time.perf_counter()
                break
            time.sleep(0.02)
        if hot is None:
            problems.append(f"queryd did not have version {target} in memory within {a.reload_timeout} s")
    out["rebuild_s"] = (hot - t1) if hot is not None else None
    out["after_reload"] = {name: proc_status(pid) for name, pid in pids.items()}
    time.sleep(a.settle_s)
    poller.stop.set()
    poller.join()
    out["settled"] = {name: proc_status(pid) for name, pid in pids.items()}
    out["accounted_after"] = accounted_bytes(a.queryd)
    reload_after = metrics(a.queryd)
    out["queryd_reloads"] = reload_after[1] - reload_before[1]
    out["queryd_reload_seconds"] = reload_after[0] - reload_before[0]
    lat = [s[2] for s in poller.samples]
    during = [s for s in poller.samples if t0 <= s[0] <= (seen or t1)]
    rebuilding = sorted(s[2] for s in poller.samples if (seen or t1) <= s[0] <= (hot or seen or t1))
    out["poll"] = {
        "samples": len(poller.samples),
        "non_200": sum(1 for s in poller.samples if s[4] != 200),
        "max_latency_ms": max(lat) * 1e3 if lat else None,
        "max_latency_during_ms": max((s[2] for s in during), default=0) * 1e3,
        # lookups answered while queryd rebuilt (cold, with release_first)
        "rebuild_lookups": len(rebuilding),
        "rebuild_p50_ms": rebuilding[len(rebuilding) // 2] * 1e3 if rebuilding else None,
        "rebuild_max_ms": rebuilding[-1] * 1e3 if rebuilding else None,
        "max_rss_kb": {n: max((s[3].get(n) or 0 for s in poller.samples), default=0)
                       for n in ("queryd", "compactord", "storaged")},
    }
    out["timeline"] = [{"t": round(s[0] - t0, 3), "version": s[1], "ms": round(s[2] * 1e3, 2),
                        "rss_kb": s[3], "status": s[4]} for s in poller.samples]

    # 7. answers after the compaction
    if target is not None:
        _, data = request(q, "POST", COUNT_PATH, json.dumps({"min_version": target}).encode(), qh)
        out["count_after"] = json.loads(data)["count"]
        if out["count_after"] != expected:
            problems.append(f"count after compaction {out['count_after']}, expected {expected}")
    keys = d["sample_upd"] + d["sample_del"] + d["sample_ins"]
    want = posted_rows(d["tables"], keys)
    checked = 0
    for k in keys:
        body = json.dumps({"predicates": [{"col": "id", "op": "eq", "val": k}],
                           "min_version": target or version}).encode()
        _, data = request(q, "POST", QUERY_PATH, body, qh)
        got = json.loads(data)["data"]
        w = want.get(k, "missing")
        if w is None:
            if got:
                problems.append(f"id {k} was deleted but reads back {got}")
        elif w == "missing":
            problems.append(f"id {k} not found among the posted rows (harness bug)")
        elif len(got) != 1 or any(got[0].get(col) != w[col] for col in CHECK_COLS):
            problems.append(f"id {k} reads back {got}, posted {w}")
        checked += 1
    out["keys_checked"] = checked

    out["t_end"] = time.time()
    json.dump(out, open(a.out, "w"), indent=1)
    hwm = lambda n: (out["after_reload"][n].get("VmHWM") or 0) / 1024  # noqa: E731
    steady = (out["before"]["queryd"].get("VmRSS") or 0) / 1024
    rate = run.get("rows_in", 0) / out["run_s"] if out.get("run_s") else 0
    print(f"  {a.rows:,} rows, {a.share}% in deltas ({d['n']:,} rows, {len(d['bodies'])} posts, "
          f"ingest {out['ingest_s']:.1f} s): compaction {run.get('outcome')} in {out['run_s'] or 0:.2f} s "
          f"(wall {out['compact_wall_s']:.2f} s), {rate:,.0f} rows/s, compactord peak "
          f"{hwm('compactord'):.0f} MiB, storaged peak {hwm('storaged'):.0f} MiB; queryd reload "
          f"{out['reload_s'] if out['reload_s'] is not None else float('nan'):.2f} s, in memory after "
          f"{out['rebuild_s'] if out['rebuild_s'] is not None else float('nan'):.2f} s, steady {steady:.0f} MiB, "
          f"peak {hwm('queryd'):.0f} MiB ({hwm('queryd') / steady if steady else 0:.2f}x)"
          + (f"; PROBLEMS: {problems[:3]}" if problems else "; answers checked"), file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scenario")
    s.add_argument("--queryd", required=True)
    s.add_argument("--compactord", required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--rows", type=int, required=True)
    s.add_argument("--share", type=int, required=True)
    s.add_argument("--queryd-pid", type=int, required=True)
    s.add_argument("--compactord-pid", type=int, required=True)
    s.add_argument("--storaged-pid", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--batch", type=int, default=10_000)
    s.add_argument("--deletes", type=float, default=0.10)
    s.add_argument("--inserts", type=float, default=0.05)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--poll-ms", type=float, default=50)
    s.add_argument("--reload-timeout", type=float, default=600)
    # Seconds after the switch before queryd's "settled" RSS is read.
    s.add_argument("--settle-s", type=float, default=2)
    a = p.parse_args()
    try:
        cmd_scenario(a)
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
