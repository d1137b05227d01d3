"""Reads a Delta table with Delta readers no one here wrote (tests/it/delta_mirror.rs).

usage: delta_readers.py TABLE_DIR KEY COLUMNS DUCKDB_DIR

TABLE_DIR is a Strata dataset's directory (datasets/NAME), COLUMNS the columns to print
(comma-separated), KEY the one to sort by. Prints one JSON object, a member per reader:
  "deltalake": {"version": N, "rows": [...]}   the `deltalake` package (delta-rs)
  "polars":    {"rows": [...]}                   polars' scan_delta
  "duckdb":    {"rows": [...]} or {"skipped": "why"}   DuckDB's delta_scan
and "versions": each reader's version.

DuckDB's `delta` extension is built for one DuckDB version, and the differential test's
oracle pins another, so it lives apart: DUCKDB_DIR holds `duckdb` and
`duckdb-extension-delta` (scripts/install-test-tools.sh installs them there), loaded by path
with extension downloads off, so the read is offline. Without DUCKDB_DIR that reader is
skipped; once installed, any failure of it is a failure.

Every reader's values take one canonical form, so the test compares rows exactly: integers
and booleans as they are, strings, floats as the signed 64-bit integer of their IEEE-754 bits
(no formatting to disagree on), dates as days since 1970-01-01, timestamps as microseconds
since the epoch (UTC), decimals as plain strings ("12.50"), null as null.
"""

import json
import os
import struct
import subprocess
import sys

import pyarrow as pa


def canonical(table: pa.Table, columns: list, key: str) -> list:
    values = []
    for name in columns:
        column = table.column(name).combine_chunks()
        kind = column.type
        if pa.types.is_dictionary(kind):
            column = column.dictionary_decode()
            kind = column.type
        if pa.types.is_timestamp(kind):
            micros = column.cast(pa.timestamp("us", tz=kind.tz)).cast(pa.int64())
            values.append(micros.to_pylist())
        elif pa.types.is_date32(kind):
            values.append(column.cast(pa.int32()).to_pylist())
        elif pa.types.is_floating(kind):
            values.append(
                [None if v is None else struct.unpack("<q", struct.pack("<d", v))[0]
                 for v in column.to_pylist()]
            )
        elif pa.types.is_decimal(kind):
            values.append([None if v is None else format(v, "f") for v in column.to_pylist()])
        else:
            values.append(column.to_pylist())
    rows = [list(row) for row in zip(*values)]
    at = columns.index(key)
    rows.sort(key=lambda row: row[at])
    return rows


def read_duckdb(table_dir: str, columns: list, key: str) -> dict:
    """In a child process whose path starts with DUCKDB_DIR."""
    import duckdb
    import duckdb_extension_delta

    extensions = os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions")
    found = [
        os.path.join(root, f)
        for root, _, files in os.walk(extensions)
        for f in files
        if f == "delta.duckdb_extension"
    ]
    if len(found) != 1:
        raise RuntimeError(f"expected one delta extension under {extensions}, found {found}")
    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"LOAD '{found[0]}'")
    table = con.execute("SELECT * FROM delta_scan(?)", [table_dir]).to_arrow_table()
    return {"rows": canonical(table, columns, key), "version": duckdb.__version__}


def main() -> None:
    if sys.argv[1] == "--duckdb":
        _, _, table_dir, key, columns = sys.argv
        # One write: json.dump's many small ones take seconds for a large table.
        sys.stdout.write(json.dumps(read_duckdb(table_dir, columns.split(","), key)))
        return
    table_dir, key, columns, duckdb_dir = sys.argv[1:5]
    columns = columns.split(",")

    import deltalake
    import polars as pl

    out = {"versions": {"deltalake": deltalake.__version__, "polars": pl.__version__}}
    delta = deltalake.DeltaTable(table_dir)
    out["deltalake"] = {
        "version": delta.version(),
        "rows": canonical(delta.to_pyarrow_table(), columns, key),
    }
    out["polars"] = {"rows": canonical(pl.scan_delta(table_dir).collect().to_arrow(), columns, key)}

    if not os.path.isdir(duckdb_dir):
        out["duckdb"] = {"skipped": f"{duckdb_dir} is missing: run scripts/install-test-tools.sh"}
    else:
        env = dict(os.environ, PYTHONPATH=duckdb_dir)
        child = subprocess.run(
            [sys.executable, __file__, "--duckdb", table_dir, key, ",".join(columns)],
            env=env,
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            sys.stderr.write(child.stderr)
            raise SystemExit(f"the DuckDB reader failed (exit {child.returncode})")
        duck = json.loads(child.stdout)
        out["versions"]["duckdb"] = duck.pop("version")
        out["duckdb"] = duck
    sys.stdout.write(json.dumps(out))


if __name__ == "__main__":
    main()
    # deltalake 1.6.6 (delta-rs) aborts at interpreter teardown in about one run of ten
    # ("terminate called without an active exception", exit 134), after the table was written
    # and the answer printed: leave without the teardown.
    sys.stdout.flush()
    os._exit(0)
