#!/usr/bin/env python3
"""Generate the benchmark table: a deterministic 1M-row Parquet file `orders.parquet`.

Usage: gen_data.py OUT.parquet [ROWS]

Columns:
  id        int64, 1..ROWS, unique, sorted (the primary key)
  ts        timestamp[us, tz=UTC], increasing with id (about 30 s apart, jittered)
  category  string, 8 values (uniform)
  country   string, 20 values (skewed: the first ones are more common)
  amount    float64, 1.00..1000.00 (two decimals)
  quantity  int32, 1..20
  active    bool (~70% true)
  note      string, nullable: ~25% "note for order <id>", the rest null

The same seed gives byte-identical data on every machine (pure-Python `random`), so every
run and both servers see the same rows.
"""

import datetime as dt
import random
import sys

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20240101
CATEGORIES = [
    "books", "clothing", "electronics", "garden",
    "grocery", "home", "sports", "toys",
]
COUNTRIES = [
    "US", "DE", "GB", "FR", "JP", "CN", "IN", "BR", "CA", "AU",
    "IT", "ES", "NL", "SE", "PL", "MX", "KR", "CH", "NO", "ZA",
]
# Country weights: 20, 19, ..., 1 (a mild skew, so group sizes differ).
COUNTRY_WEIGHTS = list(range(len(COUNTRIES), 0, -1))


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    out = sys.argv[1]
    rows = int(sys.argv[2]) if len(sys.argv) == 3 else 1_000_000
    rng = random.Random(SEED)

    base_us = int(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    ids = list(range(1, rows + 1))
    ts = [base_us + i * 30_000_000 + rng.randrange(30_000_000) for i in ids]
    category = [CATEGORIES[rng.randrange(len(CATEGORIES))] for _ in ids]
    country = rng.choices(COUNTRIES, weights=COUNTRY_WEIGHTS, k=rows)
    amount = [rng.randrange(100, 100_001) / 100 for _ in ids]
    quantity = [rng.randint(1, 20) for _ in ids]
    active = [rng.random() < 0.7 for _ in ids]
    note = [f"note for order {i}" if rng.random() < 0.25 else None for i in ids]

    table = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "category": pa.array(category, pa.string()),
            "country": pa.array(country, pa.string()),
            "amount": pa.array(amount, pa.float64()),
            "quantity": pa.array(quantity, pa.int32()),
            "active": pa.array(active, pa.bool_()),
            "note": pa.array(note, pa.string()),
        }
    )
    tmp = out + ".tmp"
    pq.write_table(table, tmp, row_group_size=128 * 1024, compression="snappy")
    import os

    os.replace(tmp, out)
    print(f"wrote {out}: {table.num_rows} rows, {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
