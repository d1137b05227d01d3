#!/usr/bin/env bash
# TPC-H lineitem SF1 (6M rows): Strata against DuckDB in process on the same Parquet file —
# DuckDB's in-memory table and its Parquet scan — request by request, in paired rounds, and the
# resident memory of both for the same table. Prints a markdown report and writes it to
# benches/lineitem/results/<UTC timestamp>.md.
#
# Usage: bash benches/lineitem/run.sh
#
# Environment:
#   SCALE             TPC-H scale factor (default 1; the dataset must fit queryd's default 4 GiB cache)
#   ROUNDS            paired rounds (default 3); REPS requests per side and round (default 15)
#   BENCH_TARGET_DIR  cargo target dir for the release build (default ~/.cache/strata-bench-target)
#   BENCH_VENV        Python venv with duckdb, tpchgen-cli and pyarrow (default ~/.cache/strata-lineitem-venv)
#   WORKDIR           data, configs, logs and raw results (default /tmp/strata-lineitem)
#   STRATA_BIN        use this strata binary instead of building one
#   READY_TIMEOUT     seconds to wait for the dataset to be in memory (default 900)
#
# Needs: python3, curl, cargo.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SCALE=${SCALE:-1}
export ROUNDS=${ROUNDS:-3}
export REPS=${REPS:-15}
BENCH_TARGET_DIR=${BENCH_TARGET_DIR:-$HOME/.cache/strata-bench-target}
BENCH_VENV=${BENCH_VENV:-$HOME/.cache/strata-lineitem-venv}
WORKDIR=${WORKDIR:-/tmp/strata-lineitem}
READY_TIMEOUT=${READY_TIMEOUT:-900}
STRATA_BIN=${STRATA_BIN:-}
DUCKDB_VERSION=1.5.6
TPCHGEN_VERSION=4.0.0
PYARROW_VERSION=26.0.1

# shellcheck source=../lib.sh
source "$REPO/benches/lib.sh"

need_tools curl python3
ensure_venv "import importlib.metadata as m
assert m.version('duckdb') == '$DUCKDB_VERSION'
assert m.version('tpchgen-cli') == '$TPCHGEN_VERSION'
import pyarrow" "duckdb==$DUCKDB_VERSION" "tpchgen-cli==$TPCHGEN_VERSION" "pyarrow==$PYARROW_VERSION"
build_strata

mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
DATA=$(ensure_lineitem "$WORKDIR" "$SCALE")

RUN_DIR=$WORKDIR/run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN_DIR"
log "raw results and logs in $RUN_DIR"

PIDS=()
trap stop_servers EXIT
trap 'exit 130' INT TERM

read -r Q_PORT S_PORT C_PORT <<<"$(free_ports 3)"
STRATA_URL=http://127.0.0.1:$Q_PORT
rm -rf "$WORKDIR/strata-data"
# As a Strata user serving these requests would configure it: the primary key, an equality
# index on the filter column, pinned so it is in memory before the first request.
cat >"$WORKDIR/strata.toml" <<EOF
[queryd]
listen = "127.0.0.1:$Q_PORT"

[storaged]
listen = "127.0.0.1:$S_PORT"

[compactord]
listen = "127.0.0.1:$C_PORT"

[auth]
admin_token = "bench"
internal_token = "bench-internal"

[[datasets]]
name = "lineitem"
source = "$DATA"
primary_key = ["l_orderkey", "l_linenumber"]
index = "list"
index_columns = ["l_shipmode"]
pin = true
EOF
lineitem_ready() { dataset_resident "$STRATA_URL" lineitem; }

# First start imports the file into Strata's store; the measured process is the next start,
# which serves the stored dataset as every restart does.
log "first start of strata: importing lineitem"
import_start=$(date +%s.%N)
"$STRATA_BIN" up --config "$WORKDIR/strata.toml" --data "$WORKDIR/strata-data" \
    >"$RUN_DIR/strata-import.log" 2>&1 &
IMPORT_PID=$!
PIDS+=("$IMPORT_PID")
wait_ready strata "$IMPORT_PID" "$RUN_DIR/strata-import.log" lineitem_ready >/dev/null
IMPORT_S=$(awk -v s="$import_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
IMPORT_HWM=$(rss_kb "$IMPORT_PID" VmHWM)
kill -TERM "$IMPORT_PID"
wait "$IMPORT_PID" || true
log "import and first load took ${IMPORT_S}s (peak VmHWM ${IMPORT_HWM} kB); restarting strata"

"$STRATA_BIN" up --config "$WORKDIR/strata.toml" --data "$WORKDIR/strata-data" \
    >"$RUN_DIR/strata.log" 2>&1 &
STRATA_PID=$!
PIDS+=("$STRATA_PID")
READY_S=$(wait_ready strata "$STRATA_PID" "$RUN_DIR/strata.log" lineitem_ready)
log "strata ready after ${READY_S}s, VmRSS $(rss_kb "$STRATA_PID" VmRSS) kB"

"$PY" "$HERE/driver.py" "$RUN_DIR" "$DATA" "$STRATA_URL" "$STRATA_PID"
curl -s "$STRATA_URL/api/v1/cache/stats" >"$RUN_DIR/strata_cache_stats.json" || true

built="built from commit $BUILT_COMMIT"
[ "$BUILT_DIRTY" != 0 ] && built+=" + $BUILT_DIRTY uncommitted changed files"
"$PY" - "$RUN_DIR/meta.json" <<EOF
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "nproc": "$(nproc)",
    "cpu": """$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)""".strip() or "?",
    "scale": "$SCALE",
    "data": "$(basename "$DATA"), $(stat -c %s "$DATA") bytes (tpchgen-cli $TPCHGEN_VERSION, SF$SCALE)",
    "strata_version": """\`$(curl -s "$STRATA_URL/version" || echo '?')\`, $built""",
    "strata_import_s": "$IMPORT_S",
    "strata_import_hwm_kb": int("${IMPORT_HWM:-0}" or 0),
    "strata_ready_s": "$READY_S",
    "strata_hwm_kb": int("$(rss_kb "$STRATA_PID" VmHWM)" or 0),
}, open(sys.argv[1], "w"), indent=1)
EOF

mkdir -p "$HERE/results"
REPORT=$HERE/results/$(date -u +%Y-%m-%dT%H%M%SZ).md
"$PY" "$HERE/report.py" "$RUN_DIR" >"$REPORT"
cp "$REPORT" "$RUN_DIR/report.md"
cat "$REPORT"
log "report written to $REPORT"
