#!/usr/bin/env bash
# Delta benchmark: row-level updates against `strata up` on the generated 1M-row `orders` table.
#   1. ingest rows/s and posts/s for batches of 1, 100 and 10 000 rows (JSON; Arrow IPC for the
#      10 000-row batches), one client and CLIENTS concurrent clients;
#   2. post→visible latency (a second connection polls a primary-key lookup);
#   3. query throughput (wrk, pk_lookup and indexed_page) with 0%, 1% and 10% of the rows
#      living in deltas, with resident memory and manifest versions at each level.
# Prints a markdown report and writes it to benches/deltas/results/<UTC timestamp>.md.
#
# Usage: bash benches/deltas/run.sh
#
# Environment:
#   DURATION          seconds per measured wrk run (default 10)
#   WARMUP            seconds of an unrecorded wrk run before each measured one (default 2)
#   POSTS_1           posts of 1-row batches (default 500)
#   POSTS_100         posts of 100-row batches (default 200)
#   POSTS_10000       posts of 10 000-row batches (default 60)
#   CLIENTS           concurrent clients of the concurrent ingest runs (default 4)
#   ARROW             1 = also ingest the 10 000-row batches as Arrow IPC (default 1)
#   VISIBLE_SAMPLES   post→visible samples on the fresh store (default 300)
#   VISIBLE_SAMPLES_LOADED  post→visible samples again with 10% of rows in deltas (default 300; 0 = skip)
#   LEVEL_BATCH       rows per post when filling the 1% / 10% levels (default 1000)
#   LEVELS            percentages of rows in deltas for the query runs (default "0 1 10")
#   PAIRED_ROUNDS     at each level above 0%, alternating wrk runs against the level's process
#                     and a second process at 0% (default 3; 0 = none)
#   PHASES            which parts to run (default "ingest visible levels")
#   BENCH_TARGET_DIR  cargo target dir for the release build (default ~/.cache/strata-bench-target)
#   BENCH_VENV        Python venv with pyarrow (default ~/.cache/strata-bench-venv)
#   WORKDIR           data, configs, logs and raw results (default /tmp/strata-bench)
#   STRATA_BIN        use this strata binary instead of building one
#   READY_TIMEOUT     seconds to wait for the dataset to be ready (default 900)
#
# Needs: Debian (apt-get for wrk, run as root or with sudo), python3, curl, cargo.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
READ=$REPO/benches/read
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
POSTS_1=${POSTS_1:-500}
POSTS_100=${POSTS_100:-200}
POSTS_10000=${POSTS_10000:-60}
CLIENTS=${CLIENTS:-4}
ARROW=${ARROW:-1}
VISIBLE_SAMPLES=${VISIBLE_SAMPLES:-300}
VISIBLE_SAMPLES_LOADED=${VISIBLE_SAMPLES_LOADED:-300}
LEVEL_BATCH=${LEVEL_BATCH:-1000}
LEVELS=${LEVELS:-0 1 10}
PAIRED_ROUNDS=${PAIRED_ROUNDS:-3}
PHASES=${PHASES:-ingest visible levels}
BENCH_TARGET_DIR=${BENCH_TARGET_DIR:-$HOME/.cache/strata-bench-target}
BENCH_VENV=${BENCH_VENV:-$HOME/.cache/strata-bench-venv}
WORKDIR=${WORKDIR:-/tmp/strata-bench}
READY_TIMEOUT=${READY_TIMEOUT:-900}
STRATA_BIN=${STRATA_BIN:-}
STRATA_BIN_GIVEN=$STRATA_BIN
THREADS=2
CONNECTIONS=8
ROWS=1000000
TOKEN=bench

# shellcheck source=../lib.sh
source "$REPO/benches/lib.sh"
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }
T0=$(date +%s)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- tools
ensure_wrk
need_tools curl python3
ensure_venv "import pyarrow" pyarrow

# ---------------------------------------------------------------- build
build_strata

# ---------------------------------------------------------------- data (shared with read/)
mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
DATA=$WORKDIR/orders.parquet
ensure_orders "$DATA" "$ROWS" >/dev/null

RUN_DIR=$WORKDIR/deltas-run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN_DIR"
log "raw results and logs in $RUN_DIR"
STORE=$WORKDIR/deltas-store           # the store of the process under test
PRISTINE=$WORKDIR/deltas-store-pristine  # the store right after the import, copied per phase

# ---------------------------------------------------------------- server
# Contention: every 5 s, the load average and how many compiler processes (rustc, cc, ld) of
# other work on the machine are running; summarised in the report.
( while sleep 5; do
    echo "$(date +%s) $(cut -d' ' -f1 /proc/loadavg) $(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|ld|ld.lld|mold|cargo)$' || true)"
  done ) >"$RUN_DIR/contention.txt" 2>/dev/null &
SAMPLER_PID=$!

STRATA_PID=""
stop_strata() {
    [ -n "$STRATA_PID" ] || return 0
    kill -TERM "$STRATA_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$STRATA_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$STRATA_PID" 2>/dev/null || true
    wait "$STRATA_PID" 2>/dev/null || true
    STRATA_PID=""
}
trap 'stop_strata; kill "$SAMPLER_PID" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

read -r Q_PORT S_PORT C_PORT <<<"$(free_ports 3)"
URL=http://127.0.0.1:$Q_PORT
cat >"$RUN_DIR/strata.toml" <<EOF
[store]
url = "file://$STORE"

[queryd]
listen = "127.0.0.1:$Q_PORT"

[storaged]
listen = "127.0.0.1:$S_PORT"

[compactord]
listen = "127.0.0.1:$C_PORT"
# No compaction or GC during the measurements: the rows must stay in deltas.
check_interval = "0s"
gc_schedule = ""

[auth]
admin_token = "$TOKEN"
internal_token = "bench-internal"

[[datasets]]
name = "orders"
source = "$DATA"
primary_key = ["id"]
index = "list"
index_columns = ["category", "country"]
pin = true
EOF

strata_ready() { orders_resident "$URL"; }
# start_strata LABEL [fresh]: starts `strata up` on a copy of the pristine store (or, with
# "fresh", on an empty store: the import) and waits until `orders` is resident.
start_strata() {
    local label=$1 logf=$RUN_DIR/strata-$1.log start
    rm -rf "$STORE"
    if [ "${2:-}" != fresh ]; then cp -a "$PRISTINE" "$STORE"; fi
    "$STRATA_BIN" up --config "$RUN_DIR/strata.toml" >"$logf" 2>&1 &
    STRATA_PID=$!
    start=$(date +%s)
    until strata_ready; do
        if ! kill -0 "$STRATA_PID" 2>/dev/null; then
            echo "strata exited before it was ready; last log lines:" >&2
            tail -n 40 "$logf" >&2
            exit 1
        fi
        if (($(date +%s) - start > READY_TIMEOUT)); then
            echo "strata not ready after ${READY_TIMEOUT}s; last log lines:" >&2
            tail -n 40 "$logf" >&2
            exit 1
        fi
        sleep 0.2
    done
    log "strata ready ($label, pid $STRATA_PID, $(($(date +%s) - start)) s, VmRSS $(rss_kb "$STRATA_PID" VmRSS) kB)"
}
# reload_metrics: "sum count" of queryd's dataset (re)load durations: the time queryd spends
# bringing its in-memory state to a new version (reading the manifest and delta files, applying).
reload_metrics() {
    curl -s "$URL/metrics" 2>/dev/null | awk '
        $1 == "strata_reload_duration_seconds_sum" { s = $2 }
        $1 == "strata_reload_duration_seconds_count" { c = $2 }
        END { print s + 0, c + 0 }'
}
# Log lines that look like trouble, collected for the report.
scan_log() {
    grep -E ' (WARN|ERROR) |panicked|error' "$RUN_DIR/strata-$1.log" | head -n 20 >>"$RUN_DIR/log_findings.txt" || true
}

# ---------------------------------------------------------------- import once
log "importing orders.parquet into a fresh store (once per run)"
rm -rf "$PRISTINE"
IMPORT_START=$(date +%s.%N)
start_strata import fresh
IMPORT_S=$(awk -v s="$IMPORT_START" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
stop_strata
scan_log import
mv "$STORE" "$PRISTINE"

# ---------------------------------------------------------------- 1. ingest
SEED=1
ingest() { # FORMAT BATCH POSTS CLIENTS
    local fmt=$1 batch=$2 posts=$3 clients=$4 label=ingest_${1}_${2}_${4}
    [ "$posts" -gt 0 ] || return 0
    start_strata "$label"
    SEED=$((SEED + 1))
    reload_metrics >"$RUN_DIR/$label.reload"
    "$PY" "$HERE/driver.py" ingest "$URL" "$TOKEN" "$RUN_DIR/$label.json" \
        --format "$fmt" --batch "$batch" --posts "$posts" --clients "$clients" --seed "$SEED" ||
        log "WARNING: $label failed (see $RUN_DIR/$label.json and strata-$label.log)"
    reload_metrics >>"$RUN_DIR/$label.reload"
    rss_kb "$STRATA_PID" VmRSS >"$RUN_DIR/$label.rss"
    stop_strata
    scan_log "$label"
}
if has_phase ingest; then
    log "ingest: batches of 1 ($POSTS_1 posts), 100 ($POSTS_100), 10 000 ($POSTS_10000); 1 and $CLIENTS clients; a fresh store each"
    for spec in "1 $POSTS_1" "100 $POSTS_100" "10000 $POSTS_10000"; do
        read -r batch posts <<<"$spec"
        ingest json "$batch" "$posts" 1
        ingest json "$batch" "$posts" "$CLIENTS"
    done
    if [ "$ARROW" = 1 ]; then
        ingest arrow 10000 "$POSTS_10000" 1
        ingest arrow 10000 "$POSTS_10000" "$CLIENTS"
    fi
fi

# ---------------------------------------------------------------- 2. post→visible
if has_phase visible; then
    log "post→visible: $VISIBLE_SAMPLES single-row upserts on a fresh store"
    start_strata visible
    reload_metrics >"$RUN_DIR/visible_0.reload"
    "$PY" "$HERE/driver.py" visible "$URL" "$TOKEN" "$RUN_DIR/visible_0.json" \
        --samples "$VISIBLE_SAMPLES" || log "WARNING: visible failed"
    reload_metrics >>"$RUN_DIR/visible_0.reload"
    stop_strata
    scan_log visible
fi

# ---------------------------------------------------------------- 3. query throughput per level
run_wrk() { # LEVEL QUERY [URL]: wrk against URL (default the process under test)
    local level=$1 query=$2 url=${3:-$URL} out=$RUN_DIR/wrk_${1}_${2} json
    if [ "$WARMUP" != 0 ]; then
        wrk -t$THREADS -c$CONNECTIONS -d"${WARMUP}s" --timeout 30s -s "$READ/wrk/query.lua" \
            "$url" -- "$query" >/dev/null 2>&1 || true
    fi
    if wrk -t$THREADS -c$CONNECTIONS -d"${DURATION}s" --timeout 30s -s "$READ/wrk/query.lua" \
        "$url" -- "$query" >"$out.txt" 2>&1; then
        json=$(sed -n 's/^BENCH_JSON //p' "$out.txt")
    else
        json=""
    fi
    [ -n "$json" ] || json=$("$PY" -c 'import json,sys; print(json.dumps({"failed": sys.argv[1]}))' \
        "wrk: $(tr '\n' ' ' <"$out.txt" | cut -c1-500)")
    echo "$json" >"$out.json"
    "$PY" - "$level" "$query" "$out.json" <<'EOF' >&2
import json, sys
level, query, path = sys.argv[1:]
r = json.load(open(path))
if "failed" in r:
    print(f"  {level:>3s}% {query:12s} FAILED: {r['failed']}")
else:
    errs = sum(r[k] for k in ("non2xx", "connect_err", "read_err", "write_err", "timeout_err"))
    print(f"  {level:>3s}% {query:12s} {r['rps']:10.1f} req/s  p50 {r['p50_ms']:8.2f} ms  "
          f"p99 {r['p99_ms']:8.2f} ms" + (f"  ERRORS: {errs}" if errs else ""))
EOF
}
level_state() { # LEVEL: resident memory, served version, store files
    local level=$1 version mdir=$STORE/datasets/orders
    version=$(curl -s -D - -o /dev/null -H 'Content-Type: application/json' \
        -d '{"predicates":[{"col":"id","op":"eq","val":1}]}' "$URL/api/v1/datasets/orders/query" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "x-dataset-version" { print $2 }')
    curl -s "$URL/api/v1/cache/stats" >"$RUN_DIR/cache_stats_$level.json" || true
    cat >"$RUN_DIR/level_$level.json" <<EOF
{"level": $level, "rss_kb": $(rss_kb "$STRATA_PID" VmRSS), "hwm_kb": $(rss_kb "$STRATA_PID" VmHWM),
 "version": ${version:-null},
 "manifests": $(find "$mdir/_manifest" -name '*.json' 2>/dev/null | wc -l),
 "delta_files": $(find "$mdir/deltas" -name '*.parquet' 2>/dev/null | wc -l),
 "delta_bytes": $(find "$mdir/deltas" -name '*.parquet' -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')}
EOF
    log "level $level%: $(tr -d '\n' <"$RUN_DIR/level_$level.json")"
}
# The reference for the paired rounds: a second `strata up` on its own copy of the imported
# store, at 0% for the whole phase. Single wrk runs of this machine move by 10-20% over minutes,
# so a level's slowdown is also measured as the median of PAIRED_ROUNDS ratios of runs taken
# back to back against the level's process and this one.
REF_PID=""
start_ref() {
    local store=$WORKDIR/deltas-store-ref ports
    read -r -a ports <<<"$(free_ports 3)"
    REF_URL=http://127.0.0.1:${ports[0]}
    rm -rf "$store"
    cp -a "$PRISTINE" "$store"
    sed -e "s#file://$STORE#file://$store#" -e "s#127.0.0.1:$Q_PORT#127.0.0.1:${ports[0]}#" \
        -e "s#127.0.0.1:$S_PORT#127.0.0.1:${ports[1]}#" -e "s#127.0.0.1:$C_PORT#127.0.0.1:${ports[2]}#" \
        "$RUN_DIR/strata.toml" >"$RUN_DIR/strata-ref.toml"
    "$STRATA_BIN" up --config "$RUN_DIR/strata-ref.toml" >"$RUN_DIR/strata-ref.log" 2>&1 &
    REF_PID=$!
    for _ in $(seq $((READY_TIMEOUT * 5))); do
        orders_resident "$REF_URL" && break
        kill -0 "$REF_PID" 2>/dev/null || { echo "reference strata exited" >&2; exit 1; }
        sleep 0.2
    done
    log "reference strata at 0% ready (pid $REF_PID)"
}
stop_ref() {
    [ -n "$REF_PID" ] || return 0
    kill -TERM "$REF_PID" 2>/dev/null || true
    wait "$REF_PID" 2>/dev/null || true
    REF_PID=""
    rm -rf "$WORKDIR/deltas-store-ref"
}
trap 'stop_strata; stop_ref; kill "$SAMPLER_PID" 2>/dev/null || true' EXIT

if has_phase levels; then
    log "query throughput at ${LEVELS// /%, }% of rows in deltas: wrk -t$THREADS -c$CONNECTIONS, ${DURATION}s per run (+${WARMUP}s warm-up)"
    start_strata levels
    [ "$PAIRED_ROUNDS" -gt 0 ] && start_ref
    filled=0
    for level in $LEVELS; do
        target=$((ROWS * level / 100))
        if [ "$target" -gt "$filled" ]; then
            reload_metrics >"$RUN_DIR/fill_$level.reload"
            "$PY" "$HERE/driver.py" fill "$URL" "$TOKEN" "$RUN_DIR/fill_$level.json" \
                --start "$filled" --end "$target" --batch "$LEVEL_BATCH" --deletes 0.1 ||
                log "WARNING: fill to $level% failed"
            reload_metrics >>"$RUN_DIR/fill_$level.reload"
            filled=$target
        fi
        level_state "$level"
        for query in pk_lookup indexed_page; do run_wrk "$level" "$query"; done
        if [ "$level" -gt 0 ]; then
            for round in $(seq "$PAIRED_ROUNDS"); do
                for query in pk_lookup indexed_page; do
                    run_wrk "paired${level}_ref_r$round" "$query" "$REF_URL"
                    run_wrk "paired${level}_r$round" "$query"
                done
            done
        fi
    done
    stop_ref
    if [ "$VISIBLE_SAMPLES_LOADED" -gt 0 ]; then
        log "post→visible again with the last level's rows in deltas ($VISIBLE_SAMPLES_LOADED samples)"
        reload_metrics >"$RUN_DIR/visible_loaded.reload"
        "$PY" "$HERE/driver.py" visible "$URL" "$TOKEN" "$RUN_DIR/visible_loaded.json" \
            --samples "$VISIBLE_SAMPLES_LOADED" || log "WARNING: visible (loaded) failed"
        reload_metrics >>"$RUN_DIR/visible_loaded.reload"
        echo "$filled" >"$RUN_DIR/visible_loaded.rows"
    fi
    curl -s "$URL/metrics" >"$RUN_DIR/metrics_levels.txt" || true
    stop_strata
    scan_log levels
fi

# ---------------------------------------------------------------- report
strata_version="\`$("$STRATA_BIN" --version 2>/dev/null || echo strata)\`, built from commit $BUILT_COMMIT"
[ -n "${STRATA_BIN_GIVEN:-}" ] && strata_version="\`$STRATA_BIN\` (given with STRATA_BIN; HEAD was $BUILT_COMMIT)"
[ "$BUILT_DIRTY" != 0 ] && strata_version+=" + $BUILT_DIRTY uncommitted changed files (working tree at build time)"
"$PY" - "$RUN_DIR/meta.json" <<EOF
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "nproc": "$(nproc)",
    "cpu": """$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)""".strip() or "?",
    "mem": "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)",
    "kernel": "$(uname -r)",
    "wrk_version": """$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)""",
    "duration": "$DURATION", "warmup": "$WARMUP", "clients": "$CLIENTS",
    "level_batch": "$LEVEL_BATCH",
    "loadavg": "$LOADAVG_START (1/5/15 min, at start) → $(cut -d' ' -f1-3 /proc/loadavg) (at end)",
    "elapsed_s": $(($(date +%s) - T0)),
    "import_s": "$IMPORT_S",
    "data": "orders.parquet, 1,000,000 rows, $(stat -c %s "$DATA") bytes (benches/read/gen_data.py, fixed seed)",
    "strata_version": """$strata_version""",
}, open(sys.argv[1], "w"), indent=1)
EOF
mkdir -p "$HERE/results"
REPORT=$HERE/results/$(date -u +%Y-%m-%dT%H%M%SZ).md
"$PY" "$HERE/report.py" "$RUN_DIR" >"$REPORT"
cp "$REPORT" "$RUN_DIR/report.md"
cat "$REPORT"
log "report written to $REPORT"
