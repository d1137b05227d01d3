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
