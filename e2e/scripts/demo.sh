#!/usr/bin/env bash
# `make demo`: openefs end to end on this machine, no cluster needed
# (README.md, docs/testing.md).
#
#   demo.sh [openefs-demo flags...]     e.g. --writers 8 --file-kib 4096
#
# Builds openefs-nfsd and openefs-csi in release mode (they carry the data)
# and the demo driver (a debug build: it only orchestrates, and shares the
# test build's cache), then runs the driver with the release binaries. The
# driver's first step runs e2e/scripts/kernel.sh prepare, which installs
# qemu, busybox-static, socat, cpio and kmod when missing and caches Debian's
# kernel in .cache/kernel.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cargo="${CARGO:-cargo}"
target="${CARGO_TARGET_DIR:-$root/target}"

# nfsd resolves file handles and acts as each caller; apt installs qemu.
[ "$(id -u)" = 0 ] || { echo "demo: run as root (make demo needs what make run and make test need)" >&2; exit 1; }
# nfsd's content cipher links the system's OpenSSL.
bash .ci/apt-install.sh libssl-dev pkg-config
echo "demo: building openefs-nfsd and openefs-csi (release) and openefs-demo" >&2
"$cargo" build --release -p openefs-nfsd --bin openefs-nfsd -p openefs-csi --bin openefs-csi
"$cargo" build -p openefs-e2e --bin openefs-demo
OPENEFS_NFSD="$target/release/openefs-nfsd" OPENEFS_CSI="$target/release/openefs-csi" \
  exec "$target/debug/openefs-demo" "$@"
