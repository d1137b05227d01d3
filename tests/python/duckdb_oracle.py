"""DuckDB as the oracle of the differential tests (tests/it/differential).

A long-lived process: each line on stdin is a JSON object {"sql": "...", "params": [...]};
each answer on stdout is a line "OK <n>" followed by n bytes of an Arrow IPC stream of the
result, or a line "ERR <message>". Values are bound as parameters, never pasted into SQL.
Nothing here knows Strata: the test sends SQL over the same Parquet files it gave Strata.
"""

import json
import sys

import duckdb
import pyarrow as pa


def main() -> None:
    con = duckdb.connect()
    # UTC everywhere: TIMESTAMPTZ values come back as UTC instants.
    con.execute("SET TimeZone = 'UTC'")
    out = sys.stdout.buffer
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            result = con.execute(request["sql"], request.get("params") or [])
            table = result.to_arrow_table() if result.description else pa.table({})
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            body = sink.getvalue().to_pybytes()
            out.write(f"OK {len(body)}\n".encode())
            out.write(body)
        except Exception as e:  # the test prints it with the request
            message = " ".join(str(e).split())
            out.write(f"ERR {type(e).__name__}: {message}\n".encode())
        out.flush()


if __name__ == "__main__":
    main()
