#!/usr/bin/env bash
# `make bench`: openefs-nfsd against nfs-ganesha, side by side (docs/benchmarks.md).
#
#   bench.sh [openefs-bench flags...]     e.g. --quick, --runtime 10, --output FILE
#
# Installs what only the benchmark needs (iperf3 for the loopback ceiling; the
# comparison server as CI's deps do; stunnel4, the TLS anchor of --tls),
# builds openefs-nfsd and openefs-csi (the tls-proxy) in release mode and the
# bench driver, and runs the driver with the release binaries. fio with libnfs
# is built and cached by fio.sh on first use.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cargo="${CARGO:-cargo}"
target="${CARGO_TARGET_DIR:-$root/target}"

packages=(iperf3 nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils stunnel4 libssl-dev pkg-config)
bash .ci/apt-install.sh "${packages[@]}"

"$cargo" build --release -q -p openefs-nfsd --bin openefs-nfsd -p openefs-csi --bin openefs-csi
# The driver only orchestrates (fio and the servers do the work): a debug
# build is enough and shares the test build's cache.
"$cargo" build -q -p openefs-e2e --bin openefs-bench
OPENEFS_NFSD="$target/release/openefs-nfsd" OPENEFS_CSI="$target/release/openefs-csi" exec "$target/debug/openefs-bench" "$@"
