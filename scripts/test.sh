#!/usr/bin/env bash
# Runs every test: unit tests, the commit-protocol property tests, and the end-to-end tests
# that start real processes (the strata binary, a SeaweedFS S3 server) on 127.0.0.1.
# Extra arguments go to `cargo nextest run` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

# Build artifacts live outside the work tree so later runs on this machine reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"

scripts/install-test-tools.sh
# The end-to-end tests run the strata binary itself: build it with the same settings.
cargo build --workspace --bins --locked
cargo nextest run --workspace --locked --no-fail-fast "$@"

# The deployment on a real Docker engine (tests/it/compose.rs): images built here from the
# binaries (no registry), then the compose tests one at a time. Only in a full run.
if [ $# -eq 0 ]; then
    if docker info >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1; then
        scripts/compose-images.sh "$CARGO_TARGET_DIR/debug/strata"
        cargo nextest run --workspace --locked --no-fail-fast --run-ignored only \
            -E 'test(/^compose::/)' --test-threads 1
    else
        echo "compose tests skipped: no Docker engine answers 'docker info'" \
            "or docker-compose is not installed" >&2
    fi
fi
