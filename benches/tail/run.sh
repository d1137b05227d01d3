#!/usr/bin/env bash
# The tail during compaction (issue 24, item 7): key lookups under wrk at CONNECTIONS
# connections against queryd, in paired windows of WINDOW_S seconds — one idle, one across a
# compaction of SHARE% of the rows in deltas — ROUNDS times; storaged, queryd and compactord as
# separate release processes on a local `file://` store over the generated 1M-row `orders`
# table (benches/read/gen_data.py). Reports p99 (and p50, throughput, failed requests) of both
# windows, their ratio per round and its median, queryd's peak RSS during the compaction
# window against its RSS before it, and whether queryd carried its state over or rebuilt it.
# Prints a markdown report and writes it to benches/tail/results/<UTC timestamp>.md.
#
# Usage: bash benches/tail/run.sh
#        QUERYD_TOML='rebuild = "beside"' bash benches/tail/run.sh
#
# Environment:
#   ROUNDS            paired rounds (default 3)
#   SHARE             percentage of the rows posted as deltas before each compaction (default 1)
#   CONNECTIONS       wrk connections (default 1000); THREADS wrk threads (default 2)
#   WINDOW_S          seconds of each wrk window (default 15); COMPACT_AT_S when the
#                     compaction starts within its window (default 3)
#   QUERYD_TOML       extra lines for the [queryd] section
#   BENCH_TARGET_DIR  cargo target dir for the release build (default ~/.cache/strata-bench-target)
#   BENCH_VENV        Python venv with pyarrow (default ~/.cache/strata-bench-venv)
#   WORKDIR           data, store, configs, logs and raw results (default /tmp/strata-bench)
#   STRATA_BIN        use this strata binary instead of building one
#
# Needs: Linux (/proc), python3, curl, wrk (installed from Debian if missing), cargo.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROUNDS=${ROUNDS:-3}
SHARE=${SHARE:-1}
CONNECTIONS=${CONNECTIONS:-1000}
THREADS=${THREADS:-2}
WINDOW_S=${WINDOW_S:-15}
COMPACT_AT_S=${COMPACT_AT_S:-3}
QUERYD_TOML=${QUERYD_TOML:-}
BENCH_TARGET_DIR=${BENCH_TARGET_DIR:-$HOME/.cache/strata-bench-target}
BENCH_VENV=${BENCH_VENV:-$HOME/.cache/strata-bench-venv}
WORKDIR=${WORKDIR:-/tmp/strata-bench}
STRATA_BIN=${STRATA_BIN:-}
STRATA_BIN_GIVEN=$STRATA_BIN
TOKEN=bench
export STRATA_INTERNAL_TOKEN=bench-internal
unset STRATA_ADMIN_TOKEN STRATA_WRITE_TOKEN STRATA_CONFIG

# shellcheck source=../lib.sh
source "$REPO/benches/lib.sh"
need_tools curl python3
ensure_wrk
ensure_venv "import pyarrow" pyarrow
# 1 000 connections need as many descriptors in wrk and in queryd (which inherits this limit).
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNECTIONS + 256)) ]; then
    echo "open files limited to $(ulimit -n): too few for $CONNECTIONS connections" >&2
    exit 1
fi

build_strata
mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
RUN_DIR=$WORKDIR/tail-run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN_DIR"
cp "$STRATA_BIN" "$RUN_DIR/strata"
BIN=$RUN_DIR/strata
log "raw results and logs in $RUN_DIR"
DATA=$WORKDIR/orders.parquet
ensure_orders "$DATA" 1000000 >/dev/null

read -r Q_PORT S_PORT C_PORT <<<"$(free_ports 3)"
Q_URL=http://127.0.0.1:$Q_PORT
S_URL=http://127.0.0.1:$S_PORT
C_URL=http://127.0.0.1:$C_PORT
STORE=$RUN_DIR/store
cat >"$RUN_DIR/strata.toml" <<TOML
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

[auth]
admin_token = "$TOKEN"

[[datasets]]
name = "orders"
source = "$DATA"
primary_key = ["id"]
pin = true
TOML

declare -A PIDS=()
stop_all() {
    for name in compactord queryd storaged; do
        local pid=${PIDS[$name]:-}
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap 'stop_all; rm -f "$BIN"' EXIT
trap 'exit 130' INT TERM
start_daemon() { # NAME CHECK
    RUST_LOG=${RUST_LOG:-warn} "$BIN" "$1" --config "$RUN_DIR/strata.toml" >"$RUN_DIR/$1.log" 2>&1 &
    PIDS[$1]=$!
    for _ in $(seq 6000); do
        eval "$2" && { log "$1 ready (pid ${PIDS[$1]})"; return 0; }
        kill -0 "${PIDS[$1]}" 2>/dev/null || { tail -n 40 "$RUN_DIR/$1.log" >&2; exit 1; }
        sleep 0.2
    done
    echo "$1 not ready" >&2
    exit 1
}
start_daemon storaged "curl -sf $S_URL/health >/dev/null"
start_daemon queryd "orders_resident $Q_URL"
start_daemon compactord "curl -sf $C_URL/health >/dev/null"

log "load: wrk -t$THREADS -c$CONNECTIONS, pk_lookup, ${WINDOW_S}s windows, compaction ${COMPACT_AT_S}s in, $ROUNDS rounds of $SHARE% deltas"
"$PY" "$HERE/driver.py" --queryd "$Q_URL" --compactord "$C_URL" --token "$TOKEN" \
    --queryd-pid "${PIDS[queryd]}" --wrk-script "$REPO/benches/read/wrk/query.lua" \
    --out "$RUN_DIR/tail.json" --share "$SHARE" --rounds "$ROUNDS" --window-s "$WINDOW_S" \
    --compact-at-s "$COMPACT_AT_S" --connections "$CONNECTIONS" --threads "$THREADS"

strata_version="\`$("$BIN" --version 2>/dev/null || echo strata)\`, built from commit $BUILT_COMMIT"
[ -n "${STRATA_BIN_GIVEN:-}" ] && strata_version="\`$STRATA_BIN_GIVEN\` (given with STRATA_BIN; HEAD was $BUILT_COMMIT)"
[ "$BUILT_DIRTY" != 0 ] && strata_version+=" + $BUILT_DIRTY uncommitted changed files"
REPORT=$HERE/results/$(date -u +%Y-%m-%dT%H%M%SZ).md
"$PY" - "$RUN_DIR/tail.json" >"$REPORT" <<PYEOF
import json, sys
d = json.load(open(sys.argv[1]))
print("# Tail latency during compaction\n")
print("- date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); strata: $strata_version")
print("- load: wrk -t$THREADS -c$CONNECTIONS, key lookups (benches/read/wrk/query.lua pk_lookup) on the 1M-row orders table; windows of ${WINDOW_S} s, idle then with a compaction starting ${COMPACT_AT_S} s in; $SHARE% of the rows posted as deltas (10% deletes, 5% inserts, the rest updates) before each round")
print("- queryd config: \`\`\`$QUERYD_TOML\`\`\`" if """$QUERYD_TOML""".strip() else "- queryd config: defaults")
print()
print("| round | p99 idle (ms) | p99 compaction (ms) | ratio | p50 idle / compaction (ms) | rps idle / compaction | failed idle / compaction | compaction (s) | queryd switched after (s) | carried / rebuilt | queryd RSS before → peak (MiB) | problems |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in d["rounds"]:
    if "failed" in r and "idle" not in r:
        print(f"| – | FAILED: {r['failed']} |||||||||||")
        continue
    i, c = r["idle"], r["during"]
    sw = f"{r['switch_s']:.2f}" if r["switch_s"] is not None else "never"
    print(f"| {r['round']} | {i['p99_ms']:.1f} | {c['p99_ms']:.1f} | {r['ratio']:.2f}x | {i['p50_ms']:.1f} / {c['p50_ms']:.1f} | {i['rps']:.0f} / {c['rps']:.0f} | {i['failed']} / {c['failed']} | {r['compact_s']:.2f} | {sw} | {r['carried']:.0f} / {r['builds']:.0f} | {r['queryd_steady_mib']:.0f} → {r['queryd_peak_mib']:.0f} | {'; '.join(r['problems']) or 'none'} |")
m = d["median_ratio"]
print(f"\nMedian ratio (p99 during compaction / p99 idle) over paired rounds: **{m:.2f}x**" if m is not None else "\nNo complete round.")
PYEOF
cat "$REPORT"
log "report written to $REPORT"
