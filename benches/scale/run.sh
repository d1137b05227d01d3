#!/usr/bin/env bash
# Scale (issue 19, item 4): TPC-H lineitem at scale factor SCALE (SF10 is the long run) with
# storaged, queryd and compactord as three separate processes on a local `file://` store, so
# each process's resident memory is its own. DuckDB 1.5.6, in the driver's process, is the
# peer. Three steps, each checked against DuckDB:
#
# 1. Import: with storaged alone, create the dataset `lineitem` through storaged's catalog
#    (`POST /api/v1/datasets`, a JSON body naming the Parquet file; primary key l_orderkey,
#    l_linenumber; `index = "list"` on l_shipmode) with `import_memory_bytes = IMPORT_MEMORY`
#    and `spill_dir` under the run directory. Reports the import's wall time and storaged's
#    VmRSS before and peak (VmHWM). Against DuckDB: `CREATE TABLE lineitem AS SELECT * FROM
#    read_parquet(…) ORDER BY l_orderkey, l_linenumber` on a database file (the table the
#    later steps check against). Targets: storaged's peak ≤ IMPORT_MEMORY + 256 MiB; Strata's
#    import ≤ 3x DuckDB's CREATE TABLE.
# 2. Serving past the cache: queryd with `cache_bytes = CACHE_BYTES`, smaller than the table,
#    so it is served from its Parquet files (`/api/v1/cache/stats` residency, reported; queryd
#    tries to load it at start and the bench waits until it gave up). Requests: key lookup
#    (l_orderkey, l_linenumber), the Q1-like group-by, a filter page (l_shipmode eq X and
#    l_shipdate in a 90-day window, no order, 50 rows: storage order, the key's after an
#    import), the top-50 by l_extendedprice, and a count with a predicate. Cold: the first
#    request of each kind after queryd started, against DuckDB's first run on a fresh
#    connection over read_parquet (both with the OS page cache warm: the file was just read).
#    Warm: ROUNDS paired rounds of REPS requests against DuckDB's Parquet scan, medians. Every
#    answer compared row for row with DuckDB's; a non-200 is a failure, never a latency.
#    queryd's VmRSS after start and after the requests, and its VmHWM. Target (reported, not
#    asserted): queryd's peak ≤ CACHE_BYTES + QUERYD_MARGIN.
# 3. Deltas and compaction: DELTA_SHARE % of the rows (DELETES of them deleted, the rest
#    updated: l_quantity and l_extendedprice) posted to queryd as Arrow IPC in posts of
#    DELTA_BATCH rows and applied to DuckDB's table; compactord compacts on demand (it never
#    compacts by itself here: check_interval "0s", no schedule, no GC). Reports the
#    compaction's wall time, rows merged per second, compactord's and queryd's peaks across
#    it; then count, a count with a predicate, Q1 and 40 keys against DuckDB.
#
# Prints a markdown report and writes it to benches/scale/results/<UTC timestamp>.md.
#
# Usage: bash benches/scale/run.sh                    # SF1
#        SCALE=10 bash benches/scale/run.sh           # SF10 (the long run)
#        STRATA_BIN=~/.cache/strata-target/debug/strata SCALE=0.1 CACHE_BYTES=16777216 \
#            IMPORT_MEMORY=67108864 WORKDIR=/tmp/strata-scale-test bash benches/scale/run.sh
#
# Environment:
#   SCALE             TPC-H scale factor (default 1; fractions work: 0.1 is 600k rows)
#   IMPORT_MEMORY     storaged's import_memory_bytes (default 1073741824, 1 GiB)
#   CACHE_BYTES       queryd's cache_bytes (default 268435456, 256 MiB: smaller than SF1)
#   QUERYD_MARGIN     bytes over CACHE_BYTES queryd's peak may reach (default 268435456)
#   REQUEST_TIMEOUT   queryd's request_timeout (default "600s": a cold scan of SF10 on 2 cores
#                     may take longer than the 30 s default)
#   QUERYD_TOML       extra lines for the [queryd] section (e.g. "query_memory_bytes = 268435456")
#   ROUNDS, REPS      warm paired rounds (default 3) and requests per side and round (default 5)
#   DELTA_SHARE       percentage of the rows changed by deltas (default 1)
#   DELETES           fraction of those that are deletes (default 0.10; the rest are updates)
#   DELTA_BATCH       rows per delta post (default 10000)
#   LINEITEM_DIR      generated data, shared with benches/lineitem (default /tmp/strata-lineitem:
#                     LINEITEM_DIR/sfSCALE/lineitem.parquet)
#   WORKDIR           run directories: store, spill, DuckDB file, configs, logs, raw results
#                     (default /tmp/strata-scale; WORKDIR/run-<time>/)
#   KEEP_DATA         1: keep the run's store and DuckDB file (default: deleted at the end)
#   BENCH_VENV        Python venv with duckdb, tpchgen-cli, pyarrow (default ~/.cache/strata-lineitem-venv)
#   BENCH_TARGET_DIR  cargo target dir for the release build (default ~/.cache/strata-bench-target)
#   STRATA_BIN        use this strata binary instead of building one
#   READY_TIMEOUT     seconds to wait for a daemon to be ready (default 3600)
#
# Needs: Linux (/proc), python3, curl, cargo (unless STRATA_BIN); disk for the store, DuckDB's
# file and the import's spill (about the table's Arrow size: 1.25 GB for SF1 with the 1 GiB
# budget on 2026-12-05; the report gives it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SCALE=${SCALE:-1}
IMPORT_MEMORY=${IMPORT_MEMORY:-1073741824}
CACHE_BYTES=${CACHE_BYTES:-268435456}
QUERYD_MARGIN=${QUERYD_MARGIN:-268435456}
REQUEST_TIMEOUT=${REQUEST_TIMEOUT:-600s}
QUERYD_TOML=${QUERYD_TOML:-}
export ROUNDS=${ROUNDS:-3}
export REPS=${REPS:-5}
export DELTA_SHARE=${DELTA_SHARE:-1}
export DELETES=${DELETES:-0.10}
export DELTA_BATCH=${DELTA_BATCH:-10000}
LINEITEM_DIR=${LINEITEM_DIR:-/tmp/strata-lineitem}
WORKDIR=${WORKDIR:-/tmp/strata-scale}
KEEP_DATA=${KEEP_DATA:-0}
BENCH_TARGET_DIR=${BENCH_TARGET_DIR:-$HOME/.cache/strata-bench-target}
BENCH_VENV=${BENCH_VENV:-$HOME/.cache/strata-lineitem-venv}
READY_TIMEOUT=${READY_TIMEOUT:-3600}
STRATA_BIN=${STRATA_BIN:-}
STRATA_BIN_GIVEN=$STRATA_BIN
DUCKDB_VERSION=1.5.6
TPCHGEN_VERSION=4.0.0
PYARROW_VERSION=26.0.1
TOKEN=bench
export STRATA_INTERNAL_TOKEN=bench-internal
unset STRATA_ADMIN_TOKEN STRATA_WRITE_TOKEN STRATA_CONFIG

# shellcheck source=../lib.sh
source "$REPO/benches/lib.sh"
T0=$(date +%s)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

need_tools curl python3
ensure_venv "import importlib.metadata as m
assert m.version('duckdb') == '$DUCKDB_VERSION'
assert m.version('tpchgen-cli') == '$TPCHGEN_VERSION'
import pyarrow" "duckdb==$DUCKDB_VERSION" "tpchgen-cli==$TPCHGEN_VERSION" "pyarrow==$PYARROW_VERSION"
build_strata

# ---------------------------------------------------------------- data (shared with lineitem/)
mkdir -p "$LINEITEM_DIR" "$WORKDIR"
LINEITEM_DIR=$(cd "$LINEITEM_DIR" && pwd)
WORKDIR=$(cd "$WORKDIR" && pwd)
DATA=$(ensure_lineitem "$LINEITEM_DIR" "$SCALE")

RUN_DIR=$WORKDIR/run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN_DIR/spill" "$RUN_DIR/spool"
# A private copy: a rebuild of the target dir during the run must not change the binary.
BIN=$RUN_DIR/strata
cp "$STRATA_BIN" "$BIN"
log "raw results and logs in $RUN_DIR"

# Compilers running beside the benchmark (they disturb the timings): sampled every 5 s.
( while sleep 5; do
    echo "$(date +%s) $(cut -d' ' -f1 /proc/loadavg) $(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|ld|ld.lld|mold|cargo)$' || true)"
  done ) >"$RUN_DIR/contention.txt" 2>/dev/null &
SAMPLER_PID=$!

PIDS=()
cleanup() {
    stop_servers
    kill "$SAMPLER_PID" 2>/dev/null || true
    rm -f "$BIN"
    if [ "$KEEP_DATA" != 1 ]; then rm -rf "$RUN_DIR/store" "$RUN_DIR/spill" "$RUN_DIR/spool" "$RUN_DIR"/duck.db*; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r Q_PORT S_PORT C_PORT <<<"$(free_ports 3)"
Q_URL=http://127.0.0.1:$Q_PORT
S_URL=http://127.0.0.1:$S_PORT
C_URL=http://127.0.0.1:$C_PORT
CONFIG=$RUN_DIR/strata.toml
cat >"$CONFIG" <<EOF
[store]
url = "file://$RUN_DIR/store"

[storaged]
listen = "127.0.0.1:$S_PORT"
import_memory_bytes = $IMPORT_MEMORY
spill_dir = "$RUN_DIR/spill"

[queryd]
listen = "127.0.0.1:$Q_PORT"
cache_bytes = $CACHE_BYTES
request_timeout = "$REQUEST_TIMEOUT"
spool_dir = "$RUN_DIR/spool"
$QUERYD_TOML

[compactord]
listen = "127.0.0.1:$C_PORT"
# No compaction or GC of its own: the benchmark compacts on demand.
check_interval = "0s"
gc_schedule = ""

[auth]
admin_token = "$TOKEN"
EOF

# start_daemon NAME CHECK: starts `strata NAME` (its pid in PIDS and NAME_PID) and waits until
# the shell command CHECK succeeds; READY_S is how long it took.
ready_check() { eval "$READY_CHECK"; }
start_daemon() {
    local name=$1 logf=$RUN_DIR/$1.log pid
    READY_CHECK=$2
    RUST_LOG=${RUST_LOG:-info} "$BIN" "$name" --config "$CONFIG" >"$logf" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    printf -v "${name^^}_PID" %s "$pid"
    READY_S=$(wait_ready "$name" "$pid" "$logf" ready_check)
    log "$name ready (pid $pid, ${READY_S} s, VmRSS $(rss_kb "$pid" VmRSS) kB, VmHWM $(rss_kb "$pid" VmHWM) kB)"
}
health() { curl -sf "$1/health" >/dev/null 2>&1; }
# queryd has read the catalog and finished its first attempt to load lineitem (too big for
# the cache: it stays "cold"), so the requests below run on a settled process.
queryd_settled() {
    curl -sf "$Q_URL/readyz" >/dev/null 2>&1 || return 1
    "$PY" - "$Q_URL" 2>/dev/null <<'PYEOF'
import json, sys, urllib.request
url = sys.argv[1]
stats = json.load(urllib.request.urlopen(url + "/api/v1/cache/stats"))
entry = next((d for d in stats["datasets"] if d["dataset"] == "lineitem"), None)
text = urllib.request.urlopen(url + "/metrics").read().decode()
loads = sum(float(l.split()[-1]) for l in text.splitlines()
            if l.startswith("strata_reload_duration_seconds_count"))
sys.exit(0 if entry and entry["residency"] != "loading" and loads >= 1 else 1)
PYEOF
}

# ---------------------------------------------------------------- 1. import
log "1. import: storaged alone, import_memory_bytes = $IMPORT_MEMORY"
cat "$DATA" >/dev/null # in the OS page cache for both importers alike
start_daemon storaged "health $S_URL"
IMPORTED=0
if "$PY" "$HERE/driver.py" import --storaged "$S_URL" --storaged-pid "$STORAGED_PID" \
    --parquet "$DATA" --duckdb "$RUN_DIR/duck.db" --token "$TOKEN" --out "$RUN_DIR/import.json"; then
    IMPORTED=1
else
    log "WARNING: the import failed (see $RUN_DIR/storaged.log); nothing else runs"
fi
du -sb "$RUN_DIR/store" 2>/dev/null | cut -f1 >"$RUN_DIR/store_bytes.txt" || true

if [ "$IMPORTED" = 1 ]; then
    # ------------------------------------------------------------ 2. serving past the cache
    log "2. serving: queryd with cache_bytes = $CACHE_BYTES"
    start_daemon queryd queryd_settled
    echo "{\"ready_s\": $READY_S, \"rss_kb\": $(rss_kb "$QUERYD_PID" VmRSS), \"hwm_kb\": $(rss_kb "$QUERYD_PID" VmHWM), \"too_big_logged\": $(grep -c 'bigger than the cache' "$RUN_DIR/queryd.log" || true)}" \
        >"$RUN_DIR/queryd_start.json"
    start_daemon compactord "health $C_URL"
    PIDS_ARG="storaged=$STORAGED_PID,queryd=$QUERYD_PID,compactord=$COMPACTORD_PID"
    "$PY" "$HERE/driver.py" serve --queryd "$Q_URL" --pids "$PIDS_ARG" --parquet "$DATA" \
        --duckdb "$RUN_DIR/duck.db" --out "$RUN_DIR/serve.json" ||
        log "WARNING: serving failed (see $RUN_DIR/queryd.log)"

    # ------------------------------------------------------------ 3. deltas and compaction
    log "3. deltas ($DELTA_SHARE% of the rows, posts of $DELTA_BATCH) and compaction"
    "$PY" "$HERE/driver.py" compact --queryd "$Q_URL" --compactord "$C_URL" --pids "$PIDS_ARG" \
        --duckdb "$RUN_DIR/duck.db" --token "$TOKEN" --out "$RUN_DIR/compact.json" ||
        log "WARNING: deltas or compaction failed (see $RUN_DIR/*.log)"
    curl -s "$Q_URL/api/v1/cache/stats" >"$RUN_DIR/cache_stats_end.json" || true
fi
for f in "$RUN_DIR"/*.log; do
    grep -E ' (WARN|ERROR) |panicked' "$f" | sed "s|^|$(basename "$f"): |" | head -n 20 \
        >>"$RUN_DIR/log_findings.txt" || true
done

# ---------------------------------------------------------------- report
strata_version="\`$("$BIN" --version 2>/dev/null || echo strata)\`, built from commit $BUILT_COMMIT"
[ -n "$STRATA_BIN_GIVEN" ] && strata_version="\`$STRATA_BIN_GIVEN\` (given with STRATA_BIN; HEAD was $BUILT_COMMIT)"
[ "$BUILT_DIRTY" != 0 ] && strata_version+=" + $BUILT_DIRTY uncommitted changed files (working tree at build time)"
"$PY" - "$RUN_DIR/meta.json" <<EOF
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "nproc": "$(nproc)",
    "cpu": """$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)""".strip() or "?",
    "mem": "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)",
    "kernel": "$(uname -r)",
    "scale": "$SCALE",
    "data": "$DATA",
    "data_bytes": $(stat -c %s "$DATA"),
    "import_memory": $IMPORT_MEMORY, "cache_bytes": $CACHE_BYTES, "queryd_margin": $QUERYD_MARGIN,
    "request_timeout": "$REQUEST_TIMEOUT", "queryd_toml": """$QUERYD_TOML""", "rounds": $ROUNDS, "reps": $REPS,
    "delta_share": "$DELTA_SHARE", "deletes": "$DELETES", "delta_batch": $DELTA_BATCH,
    "config": open("$CONFIG").read(),
    "loadavg": "$LOADAVG_START (1/5/15 min, at start) → $(cut -d' ' -f1-3 /proc/loadavg) (at end)",
    "elapsed_s": $(($(date +%s) - T0)),
    "strata_version": """$strata_version""",
}, open(sys.argv[1], "w"), indent=1)
EOF
mkdir -p "$HERE/results"
REPORT=$HERE/results/$(date -u +%Y-%m-%dT%H%M%SZ).md
"$PY" "$HERE/report.py" "$RUN_DIR" >"$REPORT"
cp "$REPORT" "$RUN_DIR/report.md"
cat "$REPORT"
log "report written to $REPORT"
