"""Drives the published datap-rs client against a running Strata and checks every answer
against pyarrow computing the same thing on the same Parquet file.

Usage: datap_client_check.py BASE_URL DATASET PARQUET_FILE ADMIN_TOKEN
Exits non-zero (with the failed check) on the first disagreement.
"""
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datap_rs_client import DataPressClient, DataPressError

base, name, path, token = sys.argv[1:5]
client = DataPressClient(base, admin_token=token, timeout=60)
# Storage order of a dataset with a primary key is key order.
table = pq.read_table(path).sort_by("id")
rows = table.to_pylist()


def check(label, got, want):
    if got != want:
        print(f"FAIL {label}:\n  got  {got!r}\n  want {want!r}"[:2000])
        sys.exit(1)
    print(f"ok   {label}")


check("healthz", client.healthz()["status"], "ok")
check("datasets lists the dataset", name in client.datasets(), True)
schema = client.schema(name)
check("schema columns", [c["name"] for c in schema["columns"]], table.column_names)
check("schema rows", schema["rows"], table.num_rows)
check("status", client.dataset_status(name)["name"], name)

check("count all", client.count(name), table.num_rows)
check(
    "count with predicate",
    client.count(name, predicates=[{"col": "quantity", "op": "gte", "val": 5}]),
    pc.sum(pc.greater_equal(table["quantity"], 5)).as_py(),
)

# A page of an indexed equality filter, in storage order.
page = client.query(
    name,
    columns=["id", "category", "amount"],
    predicates=[{"col": "category", "op": "eq", "val": "books"}],
    page=2,
    page_size=50,
)
check("page echoed", (page["page"], page["page_size"]), (2, 50))
got = page["data"]
want = [
    {"id": r["id"], "category": r["category"], "amount": r["amount"]}
    for r in rows
    if r["category"] == "books"
][50:100]
check("indexed eq page 2", got, want)

# Key lookup (every column but the timestamp, whose text form is checked through Arrow).
columns = [c for c in table.column_names if c != "ts"]
got = client.query(name, columns=columns, predicates=[{"col": "id", "op": "eq", "val": rows[123]["id"]}])["data"]
check("key lookup", got, [{c: rows[123][c] for c in columns}])

# Ordered page with a range predicate.
got = client.query(
    name,
    columns=["id", "amount"],
    predicates=[{"col": "amount", "op": "gt", "val": 100.0}],
    order_by=[{"col": "amount", "dir": "desc"}],
    page_size=20,
)["data"]
filtered = table.filter(pc.greater(table["amount"], 100.0)).sort_by(
    [("amount", "descending"), ("id", "ascending")]
)
check("order_by desc", got, filtered.select(["id", "amount"]).slice(0, 20).to_pylist())

# Group-by with aggregations, ordered by the group column.
got = client.query(
    name,
    group_by=["country"],
    aggregations=[
        {"op": "count", "alias": "n"},
        {"op": "sum", "col": "quantity"},
        {"op": "max", "col": "amount", "alias": "top"},
    ],
    order_by=[{"col": "country"}],
)["data"]
agg = (
    table.group_by("country")
    .aggregate([("id", "count"), ("quantity", "sum"), ("amount", "max")])
    .sort_by("country")
)
want = [
    {"country": r["country"], "n": r["id_count"], "sum_quantity": r["quantity_sum"], "top": r["amount_max"]}
    for r in agg.to_pylist()
]
check("group_by aggregations", got, want)

# Arrow: every matching row as one stream (the client uses /query/stream).
got = client.query_arrow(
    name,
    columns=["id", "country", "quantity"],
    predicates=[{"col": "country", "op": "in", "val": ["DE", "FR"]}],
)
want = table.filter(pc.is_in(table["country"], value_set=pa.array(["DE", "FR"]))).select(
    ["id", "country", "quantity"]
)
check("query_arrow rows", got.num_rows, want.num_rows)
check("query_arrow equal", got.to_pylist(), want.to_pylist())
check("query_arrow types", [f.type for f in got.schema], [f.type for f in want.schema])

empty = client.query_arrow(name, predicates=[{"col": "id", "op": "lt", "val": -1}])
check("empty arrow keeps schema", empty.column_names, table.column_names)

check("reload", client.reload(name)["rows"], table.num_rows)

for label, call, status in [
    ("unknown dataset", lambda: client.schema("no_such_dataset"), "404"),
    ("unknown column", lambda: client.query(name, columns=["nope"]), "400"),
    ("bad operator", lambda: client.query(name, predicates=[{"col": "id", "op": "between", "val": 1}]), "400"),
    ("reload without token", lambda: DataPressClient(base).reload(name), "401"),
]:
    try:
        call()
    except DataPressError as e:
        check(label, status in str(e), True)
    else:
        check(label, "no error", f"HTTP {status}")

print("all checks passed")
