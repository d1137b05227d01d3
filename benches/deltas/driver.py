#!/usr/bin/env python3
"""Load driver of the delta benchmark (stdlib HTTP; pyarrow only for Arrow IPC bodies).

Usage:
  driver.py ingest  URL TOKEN OUT.json --batch N --posts P [--clients C] [--format json|arrow]
                    [--seed S]
  driver.py visible URL TOKEN OUT.json --samples N [--id ID] [--seed S]
  driver.py fill    URL TOKEN OUT.json --start A --end B [--batch N] [--deletes FRACTION] [--seed S]

ingest   posts P bodies of N upsert rows each (half existing ids, half new ids, all distinct),
         from C clients at once (threads, one keep-alive connection each, disjoint keys, the
         P posts split between them). Every body is built before the clock starts. Writes
         rows/s, posts/s, per-post latency percentiles and the versions the answers named (how
         many posts each group commit carried).
visible  post→visible latency: one connection posts a single-row upsert of one id whose `note`
         changes every time; a second connection (another process) polls a primary-key lookup
         of that id until the new note shows. Latency runs from just before the post is sent
         to the arrival of the first lookup answer that shows it. Also the post round-trip.
         The poller pauses --poll-interval-ms (default 0.5) before each lookup, so it does
         not take a whole core away from the write it waits for.
fill     brings rows into deltas for the query-throughput levels: the ids at positions
         [A, B) of a fixed random permutation of 1..1M (so levels are disjoint and cumulative),
         in batches of N rows; a fraction FRACTION of them are deletes, the rest updates of
         every non-key column.

All requests must answer 200; the first failure aborts with its status and body.
"""

import argparse
import datetime as dt
import http.client
import json
import multiprocessing
import random
import sys
import threading
import time
import urllib.parse

ROWS = 1_000_000
NEW_ID_BASE = 10_000_000  # ids above the table's 1..1M: inserts
CATEGORIES = ["books", "clothing", "electronics", "garden", "grocery", "home", "sports", "toys"]
COUNTRIES = ["US", "DE", "GB", "FR", "JP", "CN", "IN", "BR", "CA", "AU",
             "IT", "ES", "NL", "SE", "PL", "MX", "KR", "CH", "NO", "ZA"]
BASE_TS = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
DELTAS_PATH = "/api/v1/datasets/orders/deltas"
QUERY_PATH = "/api/v1/datasets/orders/query"


class Failed(Exception):
    pass


def connect(url):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    conn.connect()
    return conn


def request(conn, path, body, headers):
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise Failed(f"POST {path} -> {resp.status}: {data[:2000].decode('utf-8', 'replace')}")
    return resp, data


def row(rng, key, note=None):
    """A full, type-correct row of `orders` for `key` (values in gen_data.py's ranges)."""
    us = key * 30_000_000 + rng.randrange(30_000_000)
    ts = (BASE_TS + dt.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if note is None and rng.random() < 0.25:
        note = f"delta note for order {key}"
    return {
        "id": key,
        "ts": ts,
        "category": CATEGORIES[rng.randrange(len(CATEGORIES))],
        "country": COUNTRIES[rng.randrange(len(COUNTRIES))],
        "amount": rng.randrange(100, 100_001) / 100,
        "quantity": rng.randint(1, 20),
        "active": rng.random() < 0.7,
        "note": note,
    }


def json_body(rows, deletes=()):
    return json.dumps({"upserts": rows, "deletes": [{"id": k} for k in deletes]},
                      separators=(",", ":")).encode()


def arrow_body(rows, deletes=()):
    import pyarrow as pa

    n = len(rows) + len(deletes)
    cols = {c: [r[c] for r in rows] + [None] * len(deletes)
            for c in ("ts", "category", "country", "amount", "quantity", "active", "note")}
    cols["ts"] = [None if v is None else dt.datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%fZ")
                  .replace(tzinfo=dt.timezone.utc) for v in cols["ts"]]
    table = pa.table({
        "id": pa.array([r["id"] for r in rows] + list(deletes), pa.int64()),
        "ts": pa.array(cols["ts"], pa.timestamp("us", tz="UTC")),
        "category": pa.array(cols["category"], pa.string()),
        "country": pa.array(cols["country"], pa.string()),
        "amount": pa.array(cols["amount"], pa.float64()),
        "quantity": pa.array(cols["quantity"], pa.int32()),
        "active": pa.array(cols["active"], pa.bool_()),
        "note": pa.array(cols["note"], pa.string()),
        "_op": pa.array([0] * len(rows) + [1] * len(deletes), pa.uint8()),
    })
    assert table.num_rows == n
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def summary_ms(values):
    return {"n": len(values), "p50_ms": pct(values, 50) * 1e3, "p90_ms": pct(values, 90) * 1e3,
            "p99_ms": pct(values, 99) * 1e3, "max_ms": max(values) * 1e3,
            "mean_ms": sum(values) / len(values) * 1e3} if values else {"n": 0}


# ---------------------------------------------------------------- ingest
def cmd_ingest(a):
    rng = random.Random(a.seed)
    total = a.batch * a.posts
    n_existing = total // 2
    existing = rng.sample(range(1, ROWS + 1), n_existing)
    new = list(range(NEW_ID_BASE + a.seed * 1_000_000, NEW_ID_BASE + a.seed * 1_000_000 + total - n_existing))
    keys = existing + new
    rng.shuffle(keys)
    headers = {"X-Admin-Token": a.token,
               "Content-Type": "application/json" if a.format == "json"
               else "application/vnd.apache.arrow.stream"}
    build = json_body if a.format == "json" else arrow_body
    t_build = time.perf_counter()
    bodies = [build([row(rng, k) for k in keys[i * a.batch:(i + 1) * a.batch]])
              for i in range(a.posts)]
    build_s = time.perf_counter() - t_build
    per_client = [bodies[c::a.clients] for c in range(a.clients)]

    conns = [connect(a.url) for _ in range(a.clients)]
    lat = [[] for _ in range(a.clients)]
    versions = [[] for _ in range(a.clients)]
    errors = []
    barrier = threading.Barrier(a.clients + 1)
    ends = [0.0] * a.clients

    def client(c):
        barrier.wait()
        try:
            for body in per_client[c]:
                t0 = time.perf_counter()
                _, data = request(conns[c], DELTAS_PATH, body, headers)
                lat[c].append(time.perf_counter() - t0)
                versions[c].append(json.loads(data)["version"])
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(str(e))
        ends[c] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(a.clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = max(ends) - start
    posts = sum(len(x) for x in lat)
    all_lat = [x for xs in lat for x in xs]
    all_versions = [v for vs in versions for v in vs]
    out = {
        "batch": a.batch, "clients": a.clients, "format": a.format, "posts": posts,
        "rows": posts * a.batch, "wall_s": wall,
        "rows_per_s": posts * a.batch / wall if wall > 0 else None,
        "posts_per_s": posts / wall if wall > 0 else None,
        "body_bytes_mean": sum(len(b) for b in bodies) / len(bodies),
        "build_s": build_s,
        "latency": summary_ms(all_lat),
        # First and last quarter of the posts of client 0: does ingest slow as deltas grow?
        "latency_first_quarter": summary_ms(lat[0][: max(1, len(lat[0]) // 4)]),
        "latency_last_quarter": summary_ms(lat[0][-max(1, len(lat[0]) // 4):]),
        "versions": len(set(all_versions)),
        "first_version": min(all_versions) if all_versions else None,
        "last_version": max(all_versions) if all_versions else None,
        "errors": errors,
    }
    json.dump(out, open(a.out, "w"), indent=1)
    print(f"  ingest {a.format:5s} batch {a.batch:6d} x{a.clients} clients: {posts} posts, "
          f"{out['rows_per_s'] or 0:10,.0f} rows/s, {out['posts_per_s'] or 0:8.1f} posts/s, "
          f"post p50 {out['latency'].get('p50_ms', 0):.1f} ms p99 {out['latency'].get('p99_ms', 0):.1f} ms, "
          f"{out['versions']} versions" + (f"  ERRORS: {errors[0]}" if errors else ""), file=sys.stderr)
    if errors:
        sys.exit(1)


# ---------------------------------------------------------------- visible
def cmd_visible(a):
    rng = random.Random(a.seed)
    key = a.id
    wh = {"X-Admin-Token": a.token, "Content-Type": "application/json"}
    stamp = f"{a.seed}-{int(time.time())}"
    notes = [f"visible-{stamp}-{i}" for i in range(a.samples + 1)]
    bodies = [json_body([row(rng, key, note=n)]) for n in notes]
    post_conn = connect(a.url)

    # The poller is a process of its own, not a thread: two threads of one interpreter share
    # its lock, and a thread woken by its socket waits up to the switch interval (5 ms) for
    # the other to let go, which added the harness's own delays to the samples. The two
    # processes compare time.perf_counter() readings: CLOCK_MONOTONIC, one clock for the
    # whole machine.
    ours, theirs = multiprocessing.Pipe()
    poller = multiprocessing.Process(target=visible_poller,
                                     args=(theirs, a.url, key, a.poll_interval_ms), daemon=True)
    poller.start()
    # One unmeasured round first (connections warm, the key's row in the overlay).
    visible, post_rt, before_ack = [], [], 0
    for i, body in enumerate(bodies):
        t0 = time.perf_counter()
        ours.send(notes[i])
        request(post_conn, DELTAS_PATH, body, wh)
        t_ack = time.perf_counter()
        if not ours.poll(30):
            raise Failed(f"note {notes[i]} not visible 30 s after its post")
        seen, error = ours.recv()
        if error:
            raise Failed(error)
        if i == 0:
            continue
        visible.append(seen - t0)
        post_rt.append(t_ack - t0)
        if seen < t_ack:
            before_ack += 1
    ours.send(None)
    polls = ours.recv()
    poller.join(10)
    out = {"samples": len(visible), "id": key, "visible": summary_ms(visible),
           "post": summary_ms(post_rt), "visible_before_post_answer": before_ack,
           "polls": polls, "poll_interval_ms": a.poll_interval_ms, "poller": "process",
           "raw_visible_ms": [round(x * 1e3, 3) for x in visible],
           "raw_post_ms": [round(x * 1e3, 3) for x in post_rt]}
    json.dump(out, open(a.out, "w"), indent=1)
    print(f"  visible: {len(visible)} samples, post→visible p50 {out['visible']['p50_ms']:.2f} ms "
          f"p99 {out['visible']['p99_ms']:.2f} ms; post round-trip p50 {out['post']['p50_ms']:.2f} ms "
          f"p99 {out['post']['p99_ms']:.2f} ms", file=sys.stderr)


def visible_poller(pipe, url, key, poll_interval_ms):
    """The poller process of `visible`: for each note it is sent, looks the key up (pausing
    `poll_interval_ms` before each lookup) until the answer shows the note, and sends back
    (the perf_counter at that answer's arrival, None), or (None, error). None ends it, after
    it sends back its lookup count."""
    qh = {"Content-Type": "application/json"}
    query = json.dumps({"predicates": [{"col": "id", "op": "eq", "val": key}]}).encode()
    conn, polls = connect(url), 0
    while (note := pipe.recv()) is not None:
        try:
            while True:
                if poll_interval_ms > 0:
                    time.sleep(poll_interval_ms / 1e3)
                _, data = request(conn, QUERY_PATH, query, qh)
                now = time.perf_counter()
                polls += 1
                rows = json.loads(data).get("data") or []
                if rows and rows[0].get("note") == note:
                    pipe.send((now, None))
                    break
        except Exception as e:  # noqa: BLE001 - reported by the poster
            pipe.send((None, str(e)))
            return
    pipe.send(polls)


# ---------------------------------------------------------------- fill
PERM_SEED = 4242


def fill_ids():
    perm = list(range(1, ROWS + 1))
    random.Random(PERM_SEED).shuffle(perm)  # fixed: levels are disjoint, cumulative slices
    return perm


def is_delete(pos, every):
    """Position `pos` of the permutation is a delete (every `every`-th one)."""
    return every > 0 and pos % every == 0


def cmd_fill(a):
    perm = fill_ids()
    every = round(1 / a.deletes) if a.deletes > 0 else 0
    rng = random.Random(a.seed)
    headers = {"X-Admin-Token": a.token, "Content-Type": "application/json"}
    bodies, n_del, posted = [], 0, {}
    for i in range(a.start, a.end, a.batch):
        ups, dels = [], []
        for pos in range(i, min(i + a.batch, a.end)):
            k = perm[pos]
            if is_delete(pos, every):
                dels.append(k)
                posted[k] = None
            else:
                r = row(rng, k)
                ups.append(r)
                posted[k] = r
        n_del += len(dels)
        bodies.append(json_body(ups, dels))
    conn = connect(a.url)
    lat, version = [], None
    start = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        _, data = request(conn, DELTAS_PATH, body, headers)
        lat.append(time.perf_counter() - t0)
        version = json.loads(data)["version"]
    wall = time.perf_counter() - start

    # Check what queryd answers now: the total count, and a sample of the posted keys.
    qh = {"Content-Type": "application/json"}
    problems = []
    deleted_total = sum(1 for pos in range(0, a.end) if is_delete(pos, every))
    _, data = request(conn, "/api/v1/datasets/orders/count", b"{}", qh)
    count = json.loads(data)["count"]
    if count != ROWS - deleted_total:
        problems.append(f"count {count}, expected {ROWS - deleted_total}")
    for k in random.Random(7).sample(sorted(posted), min(50, len(posted))):
        q = json.dumps({"predicates": [{"col": "id", "op": "eq", "val": k}]}).encode()
        _, data = request(conn, QUERY_PATH, q, qh)
        rows = json.loads(data)["data"]
        want = posted[k]
        if want is None:
            if rows:
                problems.append(f"id {k} was deleted but the lookup answers {rows}")
        elif len(rows) != 1 or any(rows[0].get(c) != want[c]
                                   for c in ("category", "country", "amount", "quantity", "note")):
            problems.append(f"id {k}: lookup answers {rows}, posted {want}")
    for c in CATEGORIES[:2]:
        # An indexed page must not return a deleted or superseded row.
        q = json.dumps({"predicates": [{"col": "category", "op": "eq", "val": c}],
                        "page": 1, "page_size": 1000}).encode()
        _, data = request(conn, QUERY_PATH, q, qh)
        for r in json.loads(data)["data"]:
            if r["category"] != c:
                problems.append(f"category {c} page has row {r}")
            elif r["id"] in posted and (posted[r["id"]] is None or posted[r["id"]]["category"] != c):
                problems.append(f"category {c} page has stale row {r}")
    out = {"rows": a.end - a.start, "deletes": n_del, "upserts": a.end - a.start - n_del,
           "posts": len(bodies), "batch": a.batch, "wall_s": wall,
           "rows_per_s": (a.end - a.start) / wall, "version": version, "count": count,
           "problems": problems[:20],
           "latency": summary_ms(lat),
           "latency_first_quarter": summary_ms(lat[: max(1, len(lat) // 4)]),
           "latency_last_quarter": summary_ms(lat[-max(1, len(lat) // 4):])}
    json.dump(out, open(a.out, "w"), indent=1)
    print(f"  fill ids[{a.start}:{a.end}] ({n_del} deletes) in {len(bodies)} posts of {a.batch}: "
          f"{wall:.1f} s, {out['rows_per_s']:,.0f} rows/s, post p50 {out['latency']['p50_ms']:.1f} ms "
          f"(first quarter {out['latency_first_quarter']['p50_ms']:.1f}, last "
          f"{out['latency_last_quarter']['p50_ms']:.1f}), version {version}, count {count}"
          + (f"; WRONG ANSWERS: {problems[:3]}" if problems else "; answers checked"), file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("ingest", "visible", "fill"):
        s = sub.add_parser(name)
        s.add_argument("url")
        s.add_argument("token")
        s.add_argument("out")
        s.add_argument("--seed", type=int, default=1)
        if name == "ingest":
            s.add_argument("--batch", type=int, required=True)
            s.add_argument("--posts", type=int, required=True)
            s.add_argument("--clients", type=int, default=1)
            s.add_argument("--format", choices=("json", "arrow"), default="json")
        elif name == "visible":
            s.add_argument("--samples", type=int, default=300)
            s.add_argument("--id", type=int, default=777_777)
            # A pause before each poll, so the poller does not take a whole core of the
            # machine away from the write it waits for (the resolution of the measurement).
            s.add_argument("--poll-interval-ms", type=float, default=0.5)
        else:
            s.add_argument("--start", type=int, required=True)
            s.add_argument("--end", type=int, required=True)
            s.add_argument("--batch", type=int, default=1000)
            s.add_argument("--deletes", type=float, default=0.1)
    a = p.parse_args()
    try:
        {"ingest": cmd_ingest, "visible": cmd_visible, "fill": cmd_fill}[a.cmd](a)
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
