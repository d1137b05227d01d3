#!/usr/bin/env bash
# Read benchmark: the same query mix against Strata and datap-rs 0.8.6 (DataFusion backend,
# equality index on the key and the filter columns: id, category, country — as its users would
# configure it for these requests) on a generated 1M-row table, with wrk as the HTTP load
# generator. A run with failed requests reports failures, not throughput. Prints a markdown report and writes it to benches/read/results/<UTC timestamp>.md.
#
# Usage: bash benches/read/run.sh
#
# Environment:
#   ROUNDS            rounds of the whole query mix (default 3); the report takes medians
#   DURATION          seconds per measured wrk run (default 5)
#   WARMUP            seconds of an unrecorded wrk run before each measured one (default 1)
#   BENCH_TARGET_DIR  cargo target dir for the release build (default ~/.cache/strata-bench-target)
#   BENCH_VENV        Python venv with datap-rs 0.8.6 and pyarrow (default ~/.cache/strata-bench-venv)
#   WORKDIR           data, configs, logs and raw results (default /tmp/strata-bench)
#   STRATA_BIN        use this strata binary instead of building one
#   SERVERS           which servers to run (default "strata datap"; "datap" alone for harness work)
#   READY_TIMEOUT     seconds to wait for each server's dataset to be ready (default 900)
#
# Needs: Debian (apt-get for wrk, run as root or with sudo), python3, curl, cargo.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
BENCH_TARGET_DIR=${BENCH_TARGET_DIR:-$HOME/.cache/strata-bench-target}
BENCH_VENV=${BENCH_VENV:-$HOME/.cache/strata-bench-venv}
WORKDIR=${WORKDIR:-/tmp/strata-bench}
SERVERS=${SERVERS:-strata datap}
READY_TIMEOUT=${READY_TIMEOUT:-900}
STRATA_BIN=${STRATA_BIN:-}
THREADS=2
CONNECTIONS=8
QUERIES=(pk_lookup indexed_page group_by plain_page deep_page filter_order topk_order key_desc)
DATAP_VERSION=0.8.6

# shellcheck source=../lib.sh
source "$REPO/benches/lib.sh"
has() { [[ " $SERVERS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- 1. tools
ensure_wrk
need_tools curl python3
ensure_venv "import importlib.metadata as m, pyarrow, datap_rs.datapress
assert m.version('datap-rs') == '$DATAP_VERSION'" "datap-rs==$DATAP_VERSION" pyarrow

# ---------------------------------------------------------------- 2. build Strata
has strata && build_strata

# ---------------------------------------------------------------- 3. data
mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
DATA=$WORKDIR/orders.parquet
ensure_orders "$DATA" 1000000 >/dev/null

RUN_DIR=$WORKDIR/run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN_DIR"
log "raw results and logs in $RUN_DIR"

# ---------------------------------------------------------------- servers
PIDS=()
trap stop_servers EXIT
trap 'exit 130' INT TERM

read -r DATAP_PORT Q_PORT S_PORT C_PORT <<<"$(free_ports 4)"
DATAP_URL=http://127.0.0.1:$DATAP_PORT
STRATA_URL=http://127.0.0.1:$Q_PORT


datap_ready() {
    curl -sf "$DATAP_URL/api/v1/datasets/orders/status" 2>/dev/null | grep -q '"state":"published"'
}
# The dataset is pinned: queryd loads it at start (as datap-rs loads its own), so readiness
# is only watched, no request is sent to a dataset that is still loading.
strata_ready() { orders_resident "$STRATA_URL"; }

declare -A MEM_READY READY_S
if has datap; then
    log "starting datap-rs $DATAP_VERSION (DataFusion, workers=2) on $DATAP_URL"
    "$PY" "$HERE/serve_datap.py" "$DATA" "$DATAP_PORT" 2 >"$RUN_DIR/datap.log" 2>&1 &
    DATAP_PID=$!
    PIDS+=("$DATAP_PID")
    READY_S[datap]=$(wait_ready datap-rs "$DATAP_PID" "$RUN_DIR/datap.log" datap_ready)
    MEM_READY[datap]=$(rss_kb "$DATAP_PID" VmRSS)
    log "datap-rs ready after ${READY_S[datap]}s, VmRSS ${MEM_READY[datap]} kB"
fi
if has strata; then
    rm -rf "$WORKDIR/strata-data"
    cat >"$WORKDIR/strata.toml" <<EOF
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
admin_token = "bench"
internal_token = "bench-internal"

[[datasets]]
name = "orders"
source = "$DATA"
primary_key = ["id"]
index = "list"
index_columns = ["category", "country"]
pin = true
EOF
    # First start: storaged imports orders.parquet into Strata's store (a one-time step, in
    # the same process). The measured process is the next start, which serves the stored
    # dataset as every later restart does; the import's peak is reported on its own.
    log "first start of strata: importing the dataset"
    "$STRATA_BIN" up --config "$WORKDIR/strata.toml" --data "$WORKDIR/strata-data" \
        >"$RUN_DIR/strata-import.log" 2>&1 &
    IMPORT_PID=$!
    PIDS+=("$IMPORT_PID")
    wait_ready strata "$IMPORT_PID" "$RUN_DIR/strata-import.log" strata_ready >/dev/null
    IMPORT_HWM=$(rss_kb "$IMPORT_PID" VmHWM)
    kill -TERM "$IMPORT_PID"
    wait "$IMPORT_PID" || true
    log "import done (peak VmHWM ${IMPORT_HWM} kB); restarting strata to serve"
    log "starting strata ($STRATA_BIN) on $STRATA_URL"
    "$STRATA_BIN" up --config "$WORKDIR/strata.toml" --data "$WORKDIR/strata-data" \
        >"$RUN_DIR/strata.log" 2>&1 &
    STRATA_PID=$!
    PIDS+=("$STRATA_PID")
    READY_S[strata]=$(wait_ready strata "$STRATA_PID" "$RUN_DIR/strata.log" strata_ready)
    MEM_READY[strata]=$(rss_kb "$STRATA_PID" VmRSS)
    log "strata ready after ${READY_S[strata]}s, VmRSS ${MEM_READY[strata]} kB"
fi

# ---------------------------------------------------------------- 6. verify, then load
verify_args=()
has strata && verify_args+=("strata=$STRATA_URL")
has datap && verify_args+=("datap=$DATAP_URL")
log "verifying answers"
"$PY" "$HERE/verify.py" "$RUN_DIR/verify.json" "$DATA" "${verify_args[@]}" 2>&1 |
    tee "$RUN_DIR/verify.txt" >&2 || log "WARNING: verify.py crashed (see $RUN_DIR/verify.txt)"

declare -A ERROR_SAMPLES
url_of() { if [ "$1" = strata ]; then echo "$STRATA_URL"; else echo "$DATAP_URL"; fi; }
run_wrk() { # SERVER QUERY ROUND
    local server=$1 query=$2 round=$3 url out json
    url=$(url_of "$server")
    out=$RUN_DIR/wrk_${server}_${query}_r${round}
    if [ "$WARMUP" != 0 ]; then
        wrk -t$THREADS -c$CONNECTIONS -d"${WARMUP}s" --timeout 30s -s "$HERE/wrk/query.lua" \
            "$url" -- "$query" >/dev/null 2>&1 || true
    fi
    if wrk -t$THREADS -c$CONNECTIONS -d"${DURATION}s" --timeout 30s -s "$HERE/wrk/query.lua" \
        "$url" -- "$query" >"$out.txt" 2>&1; then
        json=$(sed -n 's/^BENCH_JSON //p' "$out.txt")
    else
        json=""
    fi
    if [ -z "$json" ]; then
        json=$("$PY" -c 'import json,sys; print(json.dumps({"failed": sys.argv[1]}))' \
            "wrk: $(tr '\n' ' ' <"$out.txt" | cut -c1-500)")
    fi
    echo "$json" >"$out.json"
    "$PY" - "$server" "$query" "$round" "$out.json" <<'EOF' >&2
import json, sys
server, query, round_, path = sys.argv[1:]
r = json.load(open(path))
if "failed" in r:
    print(f"  r{round_} {server:6s} {query:12s} FAILED: {r['failed']}")
else:
    errs = sum(r[k] for k in ("non2xx", "connect_err", "read_err", "write_err", "timeout_err"))
    print(f"  r{round_} {server:6s} {query:12s} {r['rps']:10.1f} req/s  p50 {r['p50_ms']:8.2f} ms  "
          f"p99 {r['p99_ms']:8.2f} ms" + (f"  ERRORS: {errs}" if errs else ""))
EOF
    if grep -q '"non2xx":[1-9]\|"connect_err":[1-9]\|"read_err":[1-9]\|"write_err":[1-9]\|"timeout_err":[1-9]\|"failed"' "$out.json"; then
        "$PY" "$HERE/verify.py" --sample "$query" "$url" "$out.sample.txt" >/dev/null || true
        ERROR_SAMPLES["$server $query r$round"]=$(cat "$out.sample.txt" 2>/dev/null || true)
        log "WARNING: $server $query (round $round) had failed requests; sample: ${ERROR_SAMPLES["$server $query r$round"]}"
    fi
}

LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# The machine's speed drifts by tens of percent within minutes (a fixed Python loop, timed
# every 2 s on an idle machine, took 344–478 ms), so a ratio of two runs minutes apart measures
# the drift as much as the servers. Each round therefore runs every query on both servers one
# right after the other (who goes first alternates), and Strata's /health right after its key
# lookups (the target compares the two); the report takes each round's ratio and their median.
log "load: wrk -t$THREADS -c$CONNECTIONS, ${DURATION}s per run (+${WARMUP}s warm-up), one server at a time, $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
    order="strata datap"
    [ $((round % 2)) = 0 ] && order="datap strata"
    for query in "${QUERIES[@]}"; do
        for server in $order; do
            has "$server" || continue
            run_wrk "$server" "$query" "$round"
            if [ "$server" = strata ] && [ "$query" = pk_lookup ]; then
                run_wrk strata health "$round"
            fi
        done
    done
done

# ---------------------------------------------------------------- 7. memory, meta, report
declare -A MEM_AFTER MEM_HWM MEM_ANON MEM_FILE
for s in strata datap; do
    has "$s" || continue
    pid_var=${s^^}_PID
    MEM_AFTER[$s]=$(rss_kb "${!pid_var}" VmRSS)
    MEM_HWM[$s]=$(rss_kb "${!pid_var}" VmHWM)
    MEM_ANON[$s]=$(rss_kb "${!pid_var}" RssAnon)
    MEM_FILE[$s]=$(rss_kb "${!pid_var}" RssFile)
done
has strata && { curl -s "$STRATA_URL/api/v1/cache/stats" >"$RUN_DIR/strata_cache_stats.json" || true; }

strata_version="not run"
if has strata; then
    commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "?")
    dirty=$(git -C "$REPO" status --porcelain -- . ':!benches' 2>/dev/null | grep -cv '^??' || true)
    strata_version="\`$(curl -s "$STRATA_URL/version" || echo '?')\`, built from commit $commit"
    [ "$dirty" != 0 ] && strata_version+=" + $dirty uncommitted changed files (working tree at build time)"
fi
datap_version="not run"
has datap && datap_version="\`$(curl -s "$DATAP_URL/version" || echo '?')\` (pip datap-rs==$DATAP_VERSION, DataFusion backend, workers=2, equality index mode=list on id, category, country; pyarrow $("$PY" -c 'import pyarrow; print(pyarrow.__version__)'))"

samples_json=$(for k in "${!ERROR_SAMPLES[@]}"; do printf '%s\0%s\0' "$k" "${ERROR_SAMPLES[$k]}"; done |
    "$PY" -c 'import json,sys; p=sys.stdin.read().split("\0")[:-1]; print(json.dumps(dict(zip(p[::2], p[1::2]))))')

"$PY" - "$RUN_DIR/meta.json" <<EOF
import json, sys
def kb(v):
    return int(v) if v else None
meta = {
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "nproc": "$(nproc)",
    "cpu": """$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)""".strip() or "?",
    "mem": "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)",
    "kernel": "$(uname -r)",
    "wrk_version": """$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)""",
    "duration": "$DURATION",
    "rounds": "$ROUNDS",
    "loadavg": "$LOADAVG_BEFORE (1/5/15 min, before the wrk runs) → $(cut -d' ' -f1-3 /proc/loadavg) (after)",
    "warmup": "$WARMUP",
    "data": "orders.parquet, 1,000,000 rows, $(stat -c %s "$DATA") bytes, 8 row groups (benches/read/gen_data.py, fixed seed)",
    "strata_version": """$strata_version""",
    "datap_version": """$datap_version""",
    "memory": {},
    "strata_import_hwm_kb": kb("${IMPORT_HWM:-}"),
    "error_samples": json.loads(r'''$samples_json'''),
}
for s, proc, ready, after, hwm, anon, file, secs in [
    ("strata", "\`strata up\` (pid ${STRATA_PID:-})", "${MEM_READY[strata]:-}", "${MEM_AFTER[strata]:-}", "${MEM_HWM[strata]:-}", "${MEM_ANON[strata]:-}", "${MEM_FILE[strata]:-}", "${READY_S[strata]:-}"),
    ("datap", "python serve_datap.py (pid ${DATAP_PID:-})", "${MEM_READY[datap]:-}", "${MEM_AFTER[datap]:-}", "${MEM_HWM[datap]:-}", "${MEM_ANON[datap]:-}", "${MEM_FILE[datap]:-}", "${READY_S[datap]:-}"),
]:
    if after:
        meta["memory"][s] = {"process": proc, "rss_ready_kb": kb(ready), "rss_after_kb": kb(after),
                             "hwm_kb": kb(hwm), "anon_after_kb": kb(anon),
                             "file_after_kb": kb(file), "ready_s": secs}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF

mkdir -p "$HERE/results"
REPORT=$HERE/results/$(date -u +%Y-%m-%dT%H%M%SZ).md
"$PY" "$HERE/report.py" "$RUN_DIR" >"$REPORT"
cp "$REPORT" "$RUN_DIR/report.md"
cat "$REPORT"
log "report written to $REPORT"
