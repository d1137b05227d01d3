#!/usr/bin/env python3
"""Correctness check before timing: one fixed request per query kind, sent to every server.

Usage: verify.py OUT.json PARQUET NAME=BASE_URL [NAME=BASE_URL ...]
       verify.py --sample KIND BASE_URL OUT.txt

The --sample form is used after a timed run that had failed requests: it sends up to 200
random requests of that kind (built like wrk/query.lua builds them) and writes the first
non-2xx answer (request, status, body) to OUT.txt.

For each check, every server must answer 200 and the same `data`; the answer is also compared
with the truth computed from the Parquet file with pyarrow, so a mismatch says which side is
wrong. Group-by results are compared sorted by country, with floating-point sums compared to a
relative tolerance of 1e-9 (summation order differs between engines). Never fails: it prints
WARNING lines and writes the findings to OUT.json for the report.
"""

import json
import math
import subprocess
import sys

import pyarrow.compute as pc
import pyarrow.parquet as pq

DATASET = "/api/v1/datasets/orders"
GROUP_BODY = {
    "group_by": ["country"],
    "aggregations": [{"op": "count", "alias": "n"}, {"op": "sum", "col": "amount"}],
}


def post(base: str, path: str, body: dict) -> tuple[int, str]:
    """POST with curl (the same client a reader would use to reproduce a finding)."""
    cmd = [
        "curl", "-sS", "--max-time", "120", "-H", "Content-Type: application/json",
        "--data-binary", json.dumps(body), "-w", "\n%{http_code}", base + path,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if r.returncode != 0:
        return 0, f"curl exit {r.returncode}: {r.stderr.strip()}"
    text, _, code = r.stdout.rpartition("\n")
    return int(code), text


def ts_json(v) -> str:
    """datap-rs encoding of timestamp[us, tz=UTC]: chrono %.f fraction, then Z."""
    s = v.strftime("%Y-%m-%dT%H:%M:%S")
    us = v.microsecond
    if us == 0:
        frac = ""
    elif us % 1000 == 0:
        frac = f".{us // 1000:03d}"
    else:
        frac = f".{us:06d}"
    return s + frac + "Z"


def rows_json(table) -> list[dict]:
    out = []
    for row in table.to_pylist():
        row["ts"] = ts_json(row["ts"])
        out.append(row)
    return out


def close(a, b) -> bool:
    """Equal JSON values; floats equal within a relative 1e-9."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


def first_difference(a: list, b: list) -> str:
    if len(a) != len(b):
        return f"row count {len(a)} vs {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if not close(x, y):
            return f"row {i}: {json.dumps(x)} vs {json.dumps(y)}"
    return "no difference"


CATEGORIES = ["books", "clothing", "electronics", "garden", "grocery", "home", "sports", "toys"]


def sample(kind: str, base: str, out: str) -> None:
    import random

    rng = random.Random(7)
    found = f"no failing request in 200 tries of {kind}"
    for _ in range(200):
        if kind == "health":
            r = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", base + "/health"],
                               capture_output=True, text=True, errors="replace")
            text, _, code = r.stdout.rpartition("\n")
            status, path, body = int(code or 0), "/health", None
        else:
            if kind == "pk_lookup":
                body = {"predicates": [{"col": "id", "op": "eq", "val": rng.randint(1, 1_000_000)}]}
            elif kind == "indexed_page":
                body = {"predicates": [{"col": "category", "op": "eq",
                                        "val": rng.choice(CATEGORIES)}],
                        "page": rng.randint(1, 50), "page_size": 100}
            elif kind == "group_by":
                body = GROUP_BODY
            elif kind == "deep_page":
                body = {"page": 1000, "page_size": 100}
            elif kind == "filter_order":
                body = {"predicates": [{"col": "category", "op": "eq", "val": rng.choice(CATEGORIES)}],
                        "order_by": [{"col": "amount", "dir": "desc"}], "page_size": 50}
            elif kind == "topk_order":
                body = {"order_by": [{"col": "amount", "dir": "desc"}], "page_size": 50}
            elif kind == "key_desc":
                body = {"order_by": [{"col": "id", "dir": "desc"}], "page_size": 50}
            else:
                body = {"page": rng.randint(1, 1000), "page_size": 100}
            path = DATASET + "/query"
            status, text = post(base, path, body)
        if not 200 <= status < 300:
            found = (f"{'GET' if body is None else 'POST'} {path} "
                     f"{'' if body is None else json.dumps(body)} -> HTTP {status}: {text[:1000]}")
            break
    with open(out, "w") as f:
        f.write(found)
    print(found)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--sample":
        return sample(sys.argv[2], sys.argv[3], sys.argv[4])
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out_path, parquet = sys.argv[1], sys.argv[2]
    servers = dict(arg.split("=", 1) for arg in sys.argv[3:])

    table = pq.read_table(parquet)
    grocery = table.filter(pc.equal(table["category"], "grocery"))
    groups = table.group_by("country").aggregate([("id", "count"), ("amount", "sum")])
    group_truth = sorted(
        (
            {"country": c, "n": n, "sum_amount": s}
            for c, n, s in zip(
                groups["country"].to_pylist(),
                groups["id_count"].to_pylist(),
                groups["amount_sum"].to_pylist(),
            )
        ),
        key=lambda r: r["country"],
    )
    de_count = pc.sum(pc.equal(table["country"], "DE")).as_py()
    # Ordered pages: ties in `amount` may be broken differently by the two servers (Strata
    # breaks them by the key), so those pages are compared by their amounts.
    top_amounts = sorted(table["amount"].to_pylist(), reverse=True)[:50]
    grocery_top = sorted(grocery["amount"].to_pylist(), reverse=True)[:50]
    last = table.slice(table.num_rows - 50, 50)
    key_desc_truth = list(reversed(rows_json(last)))

    checks = [
        # (query kind, check name, path, body, how to compare, truth)
        ("pk_lookup", "id eq 12345", "/query",
         {"predicates": [{"col": "id", "op": "eq", "val": 12345}]},
         "exact", rows_json(table.slice(12344, 1))),
        ("indexed_page", "category eq grocery, page 7 of 100", "/query",
         {"predicates": [{"col": "category", "op": "eq", "val": "grocery"}],
          "page": 7, "page_size": 100},
         "exact", rows_json(grocery.slice(600, 100))),
        ("group_by", "group_by country (as timed, compared sorted by country)", "/query",
         GROUP_BODY, "sorted", group_truth),
        ("group_by", "group_by country, order_by country", "/query",
         dict(GROUP_BODY, order_by=[{"col": "country", "dir": "asc"}]),
         "exact", group_truth),
        ("plain_page", "no predicates, page 500 of 100", "/query",
         {"page": 500, "page_size": 100}, "exact", rows_json(table.slice(49900, 100))),
        ("deep_page", "no predicates, page 1000 of 100", "/query",
         {"page": 1000, "page_size": 100}, "exact", rows_json(table.slice(99900, 100))),
        ("filter_order", "category eq grocery, order_by amount desc, 50 (amounts)", "/query",
         {"predicates": [{"col": "category", "op": "eq", "val": "grocery"}],
          "order_by": [{"col": "amount", "dir": "desc"}], "page_size": 50},
         "amounts", grocery_top),
        ("topk_order", "order_by amount desc, 50 (amounts)", "/query",
         {"order_by": [{"col": "amount", "dir": "desc"}], "page_size": 50}, "amounts", top_amounts),
        ("key_desc", "order_by id desc, 50", "/query",
         {"order_by": [{"col": "id", "dir": "desc"}], "page_size": 50}, "exact", key_desc_truth),
        ("count", "count country eq DE", "/count",
         {"predicates": [{"col": "country", "op": "eq", "val": "DE"}]},
         "count", de_count),
    ]

    findings = []
    for kind, name, path, body, how, truth in checks:
        answers = {}
        problems = []
        try:
            for server, base in servers.items():
                status, text = post(base, DATASET + path, body)
                if status != 200:
                    problems.append(
                        f"{server}: HTTP {status} for POST {DATASET}{path} {json.dumps(body)}: "
                        f"{text[:500]}"
                    )
                    continue
                try:
                    doc = json.loads(text)
                    value = doc["count"] if how == "count" else doc["data"]
                except Exception as e:
                    problems.append(f"{server}: unparseable answer ({e}): {text[:500]}")
                    continue
                if how == "amounts":
                    value = [r.get("amount") for r in value]
                if how == "sorted":
                    try:
                        value = sorted(value, key=lambda r: str(r.get("country")))
                    except Exception as e:
                        problems.append(f"{server}: unexpected data ({e}): {text[:500]}")
                        continue
                answers[server] = value
                if how == "count":
                    ok = value == truth
                    diff = f"{value} vs truth {truth}"
                else:
                    ok = close(value, truth)
                    diff = first_difference(value, truth) + " (server vs truth)"
                if not ok:
                    problems.append(
                        f"{server}: wrong answer to POST {DATASET}{path} {json.dumps(body)}: {diff}"
                    )
            names = list(answers)
            for other in names[1:]:
                if not close(answers[names[0]], answers[other]):
                    problems.append(
                        f"{names[0]} and {other} disagree on {json.dumps(body)}: "
                        + (f"{answers[names[0]]} vs {answers[other]}" if how == "count"
                           else first_difference(answers[names[0]], answers[other]))
                    )
        except Exception as e:  # a shape we did not expect: report, never crash
            problems.append(f"comparison failed ({type(e).__name__}: {e}); answers: "
                            f"{json.dumps(answers)[:1000]}")
        status = "ok" if not problems else "MISMATCH"
        print(f"verify {kind:13s} {name}: {status}")
        for p in problems:
            print(f"WARNING: verify {kind}: {p}")
        findings.append({"kind": kind, "check": name, "body": body, "path": path,
                         "ok": not problems, "problems": problems})

    with open(out_path, "w") as f:
        json.dump(findings, f, indent=1)


if __name__ == "__main__":
    main()
