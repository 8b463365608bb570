#!/usr/bin/env bash
# The real Linux kernel NFS client for e2e tests: Debian's kernel booted under
# qemu from a small busybox initramfs (see docs/testing.md).
#
#   kernel.sh prepare           install host tools, fetch + unpack the kernel,
#                               build the base initramfs; prints KEY=VALUE paths
#   kernel.sh initrd DIR OUT    prepare, then OUT = base initramfs + a cpio of
#                               DIR's contents (the run's files, e.g.
#                               DIR/openefs/run/workload.sh); prints as prepare
#
# Everything lands in <repo>/.cache/kernel (git-ignored); a fresh clone without
# it works, only slower the first time. prepare is idempotent and flock-guarded,
# so parallel test processes share one download.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
guest_src="$root/e2e/guest"
cache="$root/.cache/kernel"

die() { echo "kernel.sh: $*" >&2; exit 1; }

install_host_tools() {
  local -A need=([qemu-system-x86_64]=qemu-system-x86 [busybox]=busybox-static
    [socat]=socat [cpio]=cpio [depmod]=kmod)
  local missing=() bin
  for bin in "${!need[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/sbin/$bin" ] || missing+=("${need[$bin]}")
  done
  # busybox-static specifically: a dynamic busybox cannot run in the initramfs.
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" \
    || missing+=(busybox-static)
  ((${#missing[@]})) || return 0
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]} and not root to install them"
  echo "kernel.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be absent on a fresh machine; update only then.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  }
}

# The concrete image package (linux-image-6.1.0-N-amd64) that the
# linux-image-amd64 metapackage points to.
image_package() {
  apt-cache depends linux-image-amd64 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

fetch_kernel() {
  local pkg="$1" dir="$cache/$1"
  [ -f "$dir/.unpacked" ] && return 0
  rm -rf "$dir" && mkdir -p "$dir/deb"
  echo "kernel.sh: downloading $pkg" >&2
  (cd "$dir/deb" && apt-get download -qq "$pkg" >/dev/null 2>&1) || {
    apt-get update -qq
    (cd "$dir/deb" && apt-get download -qq "$pkg" >/dev/null)
  }
  # Unpacked, never installed: the host keeps its own kernel and boot setup.
  dpkg -x "$dir"/deb/*.deb "$dir/root"
  rm -rf "$dir/deb"
  touch "$dir/.unpacked"
}

build_base() {
  local pkg="$1" dir="$cache/$1" kver base stage
  kver="$(basename "$(ls -d "$dir"/root/lib/modules/*/ | head -n1)")"
  base="$dir/base.cpio"
  [ -f "$base" ] && { echo "$kver"; return 0; }
  stage="$(mktemp -d "$cache/stage.XXXXXX")"
  trap 'rm -rf "$stage"' RETURN
  /sbin/depmod -b "$dir/root" "$kver"
  mkdir -p "$stage"/{bin,sbin,proc,sys,dev,tmp,mnt,etc,lib/modules,openefs}
  cp "$(command -v busybox)" "$stage/bin/busybox"
  for applet in $("$stage/bin/busybox" --list); do
    [ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
  done
  # Dependency order as modprobe resolves it; the guest insmods in this order.
  : >"$stage/etc/modules.order"
  local mod path
  for mod in nfsv4 nfsv3 virtio_pci virtio_net; do
    /sbin/modprobe -d "$dir/root" -S "$kver" --show-depends "$mod" | while read -r kind path _; do
      [ "$kind" = insmod ] || continue
      grep -qxF "/lib/modules/$(basename "$path")" "$stage/etc/modules.order" && continue
      cp "$path" "$stage/lib/modules/"
      echo "/lib/modules/$(basename "$path")" >>"$stage/etc/modules.order"
    done
  done
  cp "$guest_src/init" "$stage/init"
  cp "$guest_src/lib.sh" "$stage/openefs/lib.sh"
  chmod 755 "$stage/init"
  printf 'root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000:tester:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$stage/etc/passwd"
  printf 'root:x:0:\ntester:x:1000:\nnogroup:x:65534:\n' >"$stage/etc/group"
  (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$base.tmp"
  mv "$base.tmp" "$base"
  echo "$kver"
}

prepare() {
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  install_host_tools
  local pkg kver dir
  pkg="$(image_package)"
  [ -n "$pkg" ] || { apt-get update -qq; pkg="$(image_package)"; }
  [ -n "$pkg" ] || die "apt knows no linux-image-amd64"
  fetch_kernel "$pkg"
  dir="$cache/$pkg"
  # The base image is built from the guest files and this script: rebuild it
  # whenever one of them changes.
  local sum
  sum="$(cat "$guest_src/init" "$guest_src/lib.sh" "$here/kernel.sh" | sha256sum | cut -c1-16)"
  if [ "$(cat "$dir/.base-sum" 2>/dev/null)" != "$sum" ]; then
    rm -f "$dir/base.cpio"
    echo "$sum" >"$dir/.base-sum"
  fi
  kver="$(build_base "$pkg")"
  echo "KERNEL=$dir/root/boot/vmlinuz-$kver"
  echo "BASE_INITRD=$dir/base.cpio"
  echo "KERNEL_VERSION=$kver"
  echo "QEMU=$(command -v qemu-system-x86_64)"
  echo "SOCAT=$(command -v socat)"
}

initrd() {
  local src="$1" out="$2" info base
  info="$(prepare)"
  base="$(sed -n 's/^BASE_INITRD=//p' <<<"$info")"
  [ -d "$src" ] || die "no such directory: $src"
  # The kernel unpacks concatenated newc archives in order, so each run only
  # packs its own few files and reuses the cached base untouched.
  {
    cat "$base"
    (cd "$src" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet)
  } >"$out"
  echo "$info"
}

case "${1:-}" in
  prepare) prepare ;;
  initrd) [ $# = 3 ] || die "usage: kernel.sh initrd DIR OUT"; initrd "$2" "$3" ;;
  *) die "usage: kernel.sh prepare | kernel.sh initrd DIR OUT" ;;
esac
