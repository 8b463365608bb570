#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, idempotently.
# Harness-specific downloads (the kernel under qemu, the Kubernetes API server
# build) are fetched and cached by e2e/scripts/*.sh themselves.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache"
mkdir -p "$cache"

apt_packages=(qemu-system-x86 busybox-static socat cpio kmod openssl patch python3-venv)
# Userspace NFS clients and the comparison server (e2e/tests/libnfs_interop.rs,
# fio_nfs.rs); ganesha needs rpcbind to start with NFSv3. fio itself is built
# by e2e/scripts/fio.sh when a test first needs it.
apt_packages+=(libnfs-utils nfs-ganesha nfs-ganesha-vfs rpcbind)
# The loopback ceiling of the benchmark's CI smoke run (e2e/tests/bench_smoke.rs).
apt_packages+=(iperf3)
# The TLS anchor of the benchmark's `--tls` smoke run (bench_smoke.rs).
apt_packages+=(stunnel4)
# To build nfsd: OpenSSL's AES-256-XTS encrypts contents at rest (openssl crate).
apt_packages+=(libssl-dev pkg-config)
bash "$root/.ci/apt-install.sh" "${apt_packages[@]}"

# kubernetes-validate (PyPI) in a private venv, so the system Python stays untouched.
venv="$cache/venv"
# A venv copied from another path has scripts whose interpreter is gone: run it.
if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
  rm -rf "$venv"
  echo "deps: installing kubernetes-validate into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate
fi
