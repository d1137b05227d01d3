# Shared by the benchmark scripts (read/, deltas/, compact/), sourced after each has set
# REPO, BENCH_TARGET_DIR, BENCH_VENV and STRATA_BIN (empty: build one).

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# rss_kb PID FIELD: a field of /proc/PID/status in kB (VmRSS, VmHWM), empty if the process is gone.
rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# need_tools TOOL...: exits unless every tool is installed.
need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || { echo "missing: $tool" >&2; exit 1; }
    done
}

# apt_install PACKAGE...: from Debian, refreshing the package lists if the first try fails.
apt_install() {
    as_root apt-get install -y "$@" || { as_root apt-get update && as_root apt-get install -y "$@"; }
}

ensure_wrk() {
    if ! command -v wrk >/dev/null 2>&1; then
        log "installing wrk"
        apt_install wrk
    fi
}

# ensure_venv CHECK PACKAGE...: sets PY to BENCH_VENV's python; unless the Python code CHECK
# succeeds in it, (re)creates the venv with the packages and checks again.
ensure_venv() {
    local check=$1
    shift
    PY=$BENCH_VENV/bin/python
    if ! "$PY" -c "$check" 2>/dev/null; then
        log "creating venv $BENCH_VENV ($*)"
        python3 -m venv "$BENCH_VENV" || { apt_install python3-venv && python3 -m venv "$BENCH_VENV"; }
        "$PY" -m pip install -q "$@"
        "$PY" -c "$check" || { echo "venv $BENCH_VENV is not usable" >&2; exit 1; }
    fi
}

# build_strata: a release build into BENCH_TARGET_DIR unless STRATA_BIN names a binary; sets
# STRATA_BIN, and BUILT_COMMIT / BUILT_DIRTY for the report (the rest of the working tree may
# change while the benchmark runs).
build_strata() {
    if [ -z "$STRATA_BIN" ]; then
        log "building strata (release) into $BENCH_TARGET_DIR (the first build takes a long time)"
        (cd "$REPO" && CARGO_TARGET_DIR="$BENCH_TARGET_DIR" nice -n 10 cargo build --release --locked -p strata)
        STRATA_BIN=$BENCH_TARGET_DIR/release/strata
    fi
    BUILT_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "?")
    BUILT_DIRTY=$(git -C "$REPO" status --porcelain -- . ':!benches' 2>/dev/null | grep -cv '^??' || true)
}

# ensure_orders FILE ROWS: the generated `orders` table (read/gen_data.py, fixed seed) of ROWS
# rows in FILE, regenerated when the generator changed. Prints the generation's seconds, or
# "cached".
ensure_orders() {
    local file=$1 rows=$2 gen=$REPO/benches/read/gen_data.py stamp start
    stamp=$(sha256sum "$gen" | cut -c1-16)
    if [ -f "$file" ] && [ "$(cat "$file.stamp" 2>/dev/null)" = "$stamp" ]; then
        echo cached
        return
    fi
    log "generating $file ($rows rows)"
    start=$(date +%s)
    "$PY" "$gen" "$file" "$rows" >&2
    echo "$stamp" >"$file.stamp"
    echo $(($(date +%s) - start))
}

# ensure_lineitem DIR SCALE: prints the path of TPC-H lineitem at SCALE under DIR
# (DIR/sfSCALE/lineitem.parquet), generated first by the venv's tpchgen-cli if missing.
ensure_lineitem() {
    local data=$1/sf$2/lineitem.parquet
    if [ ! -f "$data" ]; then
        log "generating lineitem SF$2 with tpchgen-cli"
        "$BENCH_VENV/bin/tpchgen-cli" parquet -s "$2" --tables=lineitem --output-dir="$1/sf$2" >&2
    fi
    echo "$data"
}

# free_ports N: prints N distinct free TCP ports on 127.0.0.1.
free_ports() {
    "$PY" - "$1" <<'PYEOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PYEOF
}

# dataset_resident URL NAME: true once queryd at URL holds dataset NAME in memory.
dataset_resident() {
    curl -sf "$1/api/v1/cache/stats" 2>/dev/null | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(x["dataset"] == sys.argv[1] and x["residency"] == "memory" for x in d["datasets"]) else 1)
' "$2" 2>/dev/null
}

# orders_resident URL: true once queryd at URL holds dataset `orders` in memory.
orders_resident() { dataset_resident "$1" orders; }

# wait_ready NAME PID LOG CHECK_FUNCTION: polls CHECK_FUNCTION every 0.5 s (at most
# READY_TIMEOUT s) while PID lives; prints the seconds it took.
wait_ready() {
    local name=$1 pid=$2 logf=$3 check=$4 start
    start=$(date +%s.%N)
    while ! "$check"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited before it was ready; last log lines:" >&2
            tail -n 40 "$logf" >&2
            exit 1
        fi
        if (($(date +%s) - ${start%.*} > READY_TIMEOUT)); then
            echo "$name not ready after ${READY_TIMEOUT}s; last log lines:" >&2
            tail -n 40 "$logf" >&2
            exit 1
        fi
        sleep 0.5
    done
    awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'
}

# stop_servers: for the EXIT trap of a script that keeps the servers it started in the indexed
# array PIDS: sends each a TERM, waits up to 10 s, then KILLs it.
stop_servers() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
