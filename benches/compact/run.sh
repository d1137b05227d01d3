#!/usr/bin/env bash
# Compaction benchmark: storaged, queryd and compactord as separate processes on a local
# `file://` store, over the generated `orders` table (benches/read/gen_data.py) at each size
# in SIZES; for each share of rows in deltas in SHARES: post the deltas (Arrow IPC), compact on
# demand, and measure rows merged per second, compactord's peak resident memory, and queryd's
# reload time and peak resident memory after the compaction against its steady state.
# Prints a markdown report and writes it to benches/compact/results/<UTC timestamp>.md.
#
# Usage: bash benches/compact/run.sh
#        SIZES="1000000" bash benches/compact/run.sh        # 1M rows only (a quick pass)
#
# Environment:
#   SIZES             table sizes in rows (default "1000000 10000000")
#   SHARES            percentages of the rows posted as deltas before each compaction (default "1 10")
#   DELTA_BATCH       rows per delta post (default 10000)
#   DELETES, INSERTS  fractions of the delta rows that are deletes of existing ids / inserts of
#                     new ids (defaults 0.10 / 0.05); the rest update every non-key column
#   POLL_MS           queryd version/RSS poll interval while compacting and reloading (default 50)
#   SETTLE_S          seconds after queryd switched to the compacted version before its
#                     "after" RSS is read (default 10)
#   BENCH_TARGET_DIR  cargo target dir for the release build (default ~/.cache/strata-bench-target)
#   BENCH_VENV        Python venv with pyarrow (default ~/.cache/strata-bench-venv)
#   WORKDIR           data, stores, configs, logs and raw results (default /tmp/strata-bench)
#   STRATA_BIN        use this strata binary instead of building one
#   READY_TIMEOUT     seconds to wait for a daemon or the dataset to be ready (default 1200)
#   COMPACTORD_TOML   extra lines for the [compactord] section (e.g. "batch_rows = 65536")
#   QUERYD_TOML       extra lines for the [queryd] section (e.g. 'rebuild = "beside"')
#
# Needs: Linux (/proc), python3, curl, cargo.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SIZES=${SIZES:-1000000 10000000}
SHARES=${SHARES:-1 10}
DELTA_BATCH=${DELTA_BATCH:-10000}
DELETES=${DELETES:-0.10}
INSERTS=${INSERTS:-0.05}
POLL_MS=${POLL_MS:-50}
SETTLE_S=${SETTLE_S:-10}
BENCH_TARGET_DIR=${BENCH_TARGET_DIR:-$HOME/.cache/strata-bench-target}
BENCH_VENV=${BENCH_VENV:-$HOME/.cache/strata-bench-venv}
WORKDIR=${WORKDIR:-/tmp/strata-bench}
READY_TIMEOUT=${READY_TIMEOUT:-1200}
COMPACTORD_TOML=${COMPACTORD_TOML:-}
QUERYD_TOML=${QUERYD_TOML:-}
STRATA_BIN=${STRATA_BIN:-}
STRATA_BIN_GIVEN=$STRATA_BIN
TOKEN=bench
export STRATA_INTERNAL_TOKEN=bench-internal
unset STRATA_ADMIN_TOKEN STRATA_WRITE_TOKEN STRATA_CONFIG

# shellcheck source=../lib.sh
source "$REPO/benches/lib.sh"
T0=$(date +%s)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- tools
need_tools curl python3
ensure_venv "import pyarrow" pyarrow

# ---------------------------------------------------------------- build
build_strata
# A private copy: a rebuild of the target dir during the run must not change the binary.
mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
RUN_DIR=$WORKDIR/compact-run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN_DIR"
cp "$STRATA_BIN" "$RUN_DIR/strata"
BIN=$RUN_DIR/strata
log "raw results and logs in $RUN_DIR"

# ---------------------------------------------------------------- data (shared with read/)
data_file() { # ROWS: orders.parquet for 1M (the read/ and deltas/ file), orders-ROWS.parquet otherwise
    if [ "$1" = 1000000 ]; then echo "$WORKDIR/orders.parquet"; else echo "$WORKDIR/orders-$1.parquet"; fi
}
declare -A GEN_S
for rows in $SIZES; do
    GEN_S[$rows]=$(ensure_orders "$(data_file "$rows")" "$rows")
done

# ---------------------------------------------------------------- processes
# Contention: every 5 s, the load average, how many compiler processes (rustc, cc, ld) of
# other work on the machine are running, and how many other servers or load generators
# (wrk, a strata binary other than this run's copy, test binaries under a target dir) use
# more than 20% of a core; summarised in the report, the busiest listed in contention_ps.txt.
( while sleep 5; do
    others=$(ps -eo pcpu=,args= | awk -v mine="$RUN_DIR/" '
        $1 > 20 && index($0, mine) == 0 &&
        ($2 ~ /(^|\/)(wrk|strata)$/ || $2 ~ /\/target\/[^ ]*\/deps\// || $2 ~ /nextest/) { n++ }
        END { print n + 0 }')
    echo "$(date +%s) $(cut -d' ' -f1 /proc/loadavg) $(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|ld|ld.lld|mold|cargo)$' || true) $others"
    if [ "$others" != 0 ]; then
        ps -eo pid=,pcpu=,etime=,args= --sort=-pcpu | grep -v "$RUN_DIR/" | head -n 3 | cut -c1-160 |
            sed "s/^/$(date -u +%H:%M:%S) /" >>"$RUN_DIR/contention_ps.txt"
    fi
  done ) >"$RUN_DIR/contention.txt" 2>/dev/null &
SAMPLER_PID=$!

declare -A PIDS=()
stop_daemon() { # NAME
    local pid=${PIDS[$1]:-}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PIDS[$1]=""
}
stop_all() { stop_daemon compactord; stop_daemon queryd; stop_daemon storaged; }
trap 'stop_all; kill "$SAMPLER_PID" 2>/dev/null || true; rm -f "$BIN"' EXIT
trap 'exit 130' INT TERM

read -r Q_PORT S_PORT C_PORT <<<"$(free_ports 3)"
Q_URL=http://127.0.0.1:$Q_PORT
S_URL=http://127.0.0.1:$S_PORT
C_URL=http://127.0.0.1:$C_PORT
STORE=$WORKDIR/compact-store

write_config() { # ROWS -> RUN_DIR/strata-ROWS.toml
    cat >"$RUN_DIR/strata-$1.toml" <<EOF
[store]
url = "file://$STORE"

[storaged]
listen = "127.0.0.1:$S_PORT"

[queryd]
listen = "127.0.0.1:$Q_PORT"
$QUERYD_TOML

[compactord]
listen = "127.0.0.1:$C_PORT"
# No automatic compaction or GC: the benchmark compacts on demand.
check_interval = "0s"
gc_schedule = ""
$COMPACTORD_TOML

[auth]
admin_token = "$TOKEN"

[[datasets]]
name = "orders"
source = "$(data_file "$1")"
primary_key = ["id"]
pin = true
EOF
}

queryd_ready() { orders_resident "$Q_URL"; }
# start_daemon NAME ROWS LABEL CHECK: starts `strata NAME` and waits until CHECK succeeds.
start_daemon() {
    local name=$1 rows=$2 label=$3 check=$4 logf=$RUN_DIR/$3-$1.log start
    RUST_LOG=${RUST_LOG:-info} "$BIN" "$name" --config "$RUN_DIR/strata-$rows.toml" >"$logf" 2>&1 &
    PIDS[$name]=$!
    start=$(date +%s.%N)
    until eval "$check"; do
        if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
            echo "$name exited before it was ready; last log lines:" >&2
            tail -n 40 "$logf" >&2
            exit 1
        fi
        if (($(date +%s) - ${start%.*} > READY_TIMEOUT)); then
            echo "$name not ready after ${READY_TIMEOUT}s; last log lines:" >&2
            tail -n 40 "$logf" >&2
            exit 1
        fi
        sleep 0.2
    done
    READY_S=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    log "$name ready ($label, pid ${PIDS[$name]}, ${READY_S} s, VmRSS $(rss_kb "${PIDS[$name]}" VmRSS) kB, VmHWM $(rss_kb "${PIDS[$name]}" VmHWM) kB)"
}
health() { curl -sf "$1/health" >/dev/null 2>&1; }
scan_log() { # LABEL
    for f in "$RUN_DIR/$1"-*.log; do
        grep -E ' (WARN|ERROR) |panicked|error' "$f" | sed "s|^|$(basename "$f"): |" | head -n 20 \
            >>"$RUN_DIR/log_findings.txt" || true
    done
}

# ---------------------------------------------------------------- scenarios
for rows in $SIZES; do
    write_config "$rows"
    pristine=$WORKDIR/compact-store-pristine-$rows
    log "importing $(basename "$(data_file "$rows")") ($rows rows) with storaged alone into a fresh store"
    rm -rf "$STORE" "$pristine"
    start_daemon storaged "$rows" "import-$rows" "health $S_URL"
    echo "{\"rows\": $rows, \"import_s\": $READY_S, \"storaged_hwm_kb\": $(rss_kb "${PIDS[storaged]}" VmHWM), \"gen_s\": \"${GEN_S[$rows]}\", \"parquet_bytes\": $(stat -c %s "$(data_file "$rows")"), \"store_bytes\": $(du -sb "$STORE" | cut -f1)}" \
        >"$RUN_DIR/import_$rows.json"
    stop_daemon storaged
    scan_log "import-$rows"
    mv "$STORE" "$pristine"

    for share in $SHARES; do
        label=s${rows}_p${share}
        log "scenario: $rows rows, $share% in deltas"
        rm -rf "$STORE"
        cp -a "$pristine" "$STORE"
        start_daemon storaged "$rows" "$label" "health $S_URL"
        start_daemon queryd "$rows" "$label" queryd_ready
        echo "{\"ready_s\": $READY_S, \"rss_kb\": $(rss_kb "${PIDS[queryd]}" VmRSS), \"hwm_kb\": $(rss_kb "${PIDS[queryd]}" VmHWM)}" \
            >"$RUN_DIR/${label}_queryd_start.json"
        start_daemon compactord "$rows" "$label" "health $C_URL"
        "$PY" "$HERE/driver.py" scenario --queryd "$Q_URL" --compactord "$C_URL" --token "$TOKEN" \
            --rows "$rows" --share "$share" --batch "$DELTA_BATCH" --deletes "$DELETES" \
            --inserts "$INSERTS" --poll-ms "$POLL_MS" --settle-s "$SETTLE_S" --seed "$share" \
            --queryd-pid "${PIDS[queryd]}" --compactord-pid "${PIDS[compactord]}" \
            --storaged-pid "${PIDS[storaged]}" --out "$RUN_DIR/$label.json" ||
            log "WARNING: scenario $label failed (see $RUN_DIR/$label-*.log)"
        du -sb "$STORE/datasets/orders/base" 2>/dev/null | cut -f1 >"$RUN_DIR/${label}_base_bytes.txt" || true
        stop_all
        scan_log "$label"
    done
    rm -rf "$STORE" "$pristine"
done

# ---------------------------------------------------------------- report
strata_version="\`$("$BIN" --version 2>/dev/null || echo strata)\`, built from commit $BUILT_COMMIT"
[ -n "${STRATA_BIN_GIVEN:-}" ] && strata_version="\`$STRATA_BIN_GIVEN\` (given with STRATA_BIN; HEAD was $BUILT_COMMIT)"
[ "$BUILT_DIRTY" != 0 ] && strata_version+=" + $BUILT_DIRTY uncommitted changed files (working tree at build time)"
"$PY" - "$RUN_DIR/meta.json" <<EOF
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "nproc": "$(nproc)",
    "cpu": """$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)""".strip() or "?",
    "mem": "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)",
    "kernel": "$(uname -r)",
    "sizes": "$SIZES", "shares": "$SHARES", "delta_batch": "$DELTA_BATCH",
    "deletes": "$DELETES", "inserts": "$INSERTS", "poll_ms": "$POLL_MS", "settle_s": "$SETTLE_S",
    "compactord_toml": """$COMPACTORD_TOML""",
    "queryd_toml": """$QUERYD_TOML""",
    "loadavg": "$LOADAVG_START (1/5/15 min, at start) → $(cut -d' ' -f1-3 /proc/loadavg) (at end)",
    "elapsed_s": $(($(date +%s) - T0)),
    "strata_version": """$strata_version""",
}, open(sys.argv[1], "w"), indent=1)
EOF
mkdir -p "$HERE/results"
REPORT=$HERE/results/$(date -u +%Y-%m-%dT%H%M%SZ).md
"$PY" "$HERE/report.py" "$RUN_DIR" >"$REPORT"
cp "$REPORT" "$RUN_DIR/report.md"
rm -f "$BIN"
cat "$REPORT"
log "report written to $REPORT"
