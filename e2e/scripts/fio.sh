#!/usr/bin/env bash
# fio with its NFS engine (libnfs), for the e2e tests and the benchmark.
# Debian's fio package is built without the engine; its source package builds
# with it in about a minute (see docs/testing.md).
#
#   fio.sh prepare    install the build dependencies when missing, fetch
#                     Debian's fio source, build it with --enable-libnfs;
#                     prints FIO=<path of the binary>
#
# Everything lands in <repo>/.cache/fio (git-ignored). The source comes through
# a private deb-src entry under .cache/fio/apt made from this machine's own
# Debian entry (so its mirror or proxy is reused); the system's apt sources and
# state are not touched. Idempotent and flock-guarded: a second run only checks
# the stamp.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="$root/.cache/fio"
apt_dir="$cache/apt"
bin="$cache/bin"

die() { echo "fio.sh: $*" >&2; exit 1; }
log() { echo "fio.sh: $*" >&2; }

# Build dependencies: libnfs-dev (headers and pkg-config file) enables the
# engine, dpkg-dev unpacks the source package; gcc and make are usually there
# already, since Rust links with cc.
build_packages=(libnfs-dev dpkg-dev pkg-config gcc make)

install_build_deps() {
  local missing=() p
  for p in "${build_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]} and not root to install them"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be absent on a fresh machine; update only then.
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  }
}

apt_opts() {
  local a="$apt_dir"
  printf '%s\n' -o "Dir::Etc::sourcelist=/dev/null" -o "Dir::Etc::sourceparts=$a/sources" \
    -o "Dir::Etc::preferencesparts=$a/preferences" -o "Dir::State::lists=$a/lists" \
    -o "Dir::State::status=$a/status" -o "Dir::Cache=$a/cache" -o "APT::Sandbox::User=root"
}

# A deb-src twin of this machine's Debian entry (same mirror, suites and
# keyring), from a deb822 file or from a one-line sources.list.
write_src_source() {
  local out="$1" f entry=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    entry="$(awk 'BEGIN { RS = ""; FS = "\n" }
      /Types:[^\n]*deb/ && /URIs:[^\n]*\/debian/ && !/security/ {
        for (i = 1; i <= NF; i++) if ($i !~ /^#/) print ($i ~ /^Types:/ ? "Types: deb-src" : $i)
        exit
      }' "$f")"
    [ -n "$entry" ] && break
  done
  if [ -z "$entry" ] && [ -f /etc/apt/sources.list ]; then
    entry="$(awk '$1 == "deb" && $0 !~ /security/ && $0 ~ /\/debian/ {
      $1 = "deb-src"; print; exit }' /etc/apt/sources.list)"
    if [ -n "$entry" ]; then
      printf '%s\n' "$entry" >"${out%.sources}.list"
      return 0
    fi
  fi
  [ -n "$entry" ] || die "found no Debian apt source entry in /etc/apt to derive a deb-src entry from"
  printf '%s\n' "$entry" >"$out"
}

fetch_source() {
  rm -rf "$apt_dir" && mkdir -p "$apt_dir"/{sources,preferences,lists/partial,cache/archives/partial}
  : >"$apt_dir/status"
  write_src_source "$apt_dir/sources/debian-src.sources"
  local -a o; mapfile -t o < <(apt_opts)
  apt-get "${o[@]}" -q update >/dev/null || die "apt-get update of the private deb-src entry failed"
  rm -rf "$cache/src" && mkdir -p "$cache/src"
  (cd "$cache/src" && apt-get "${o[@]}" -q source fio >/dev/null) || die "apt-get source fio failed"
}

# The version of the fetched source package, e.g. 3.33-3.
source_version() {
  local dsc
  dsc="$(find "$cache/src" -maxdepth 1 -name 'fio_*.dsc' | head -n1)"
  [ -n "$dsc" ] || return 1
  awk '/^Version:/ { print $2; exit }' "$dsc"
}

build() {
  local dir
  dir="$(find "$cache/src" -mindepth 1 -maxdepth 1 -type d -name 'fio-*' | head -n1)"
  [ -n "$dir" ] || die "no unpacked fio source under $cache/src"
  log "building fio $(source_version) with the libnfs engine (about a minute on 2 cores)"
  # --disable-native: the binary may run on another CPU (a cached CI runner).
  (cd "$dir" && ./configure --disable-native --enable-libnfs >"$cache/configure.log" 2>&1) \
    || die "configure failed; see $cache/configure.log"
  grep -q '^NFS engine *yes' "$cache/configure.log" || die "configure did not enable the NFS engine"
  (cd "$dir" && make -j2 fio >"$cache/make.log" 2>&1) || die "make failed; see $cache/make.log"
  mkdir -p "$bin"
  cp "$dir/fio" "$bin/fio.new"
  mv "$bin/fio.new" "$bin/fio"
}

prepare() {
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  local t0=$SECONDS key
  install_build_deps
  # Rebuilt when this script or the libnfs it links against changes.
  key="$(sha256sum "$0" | cut -d' ' -f1) $(dpkg-query -W -f='${Version}' libnfs-dev)"
  if ! { [ -x "$bin/fio" ] && [ "$(cat "$bin/.stamp" 2>/dev/null)" = "$key" ]; }; then
    fetch_source
    build
    echo "$key" >"$bin/.stamp"
    # Only the binary is kept: the sources and the package lists are some 50 MB.
    rm -rf "$cache/src" "$apt_dir"
  fi
  "$bin/fio" --enghelp | grep -qx '[[:space:]]*nfs' || die "$bin/fio lists no nfs engine"
  ((SECONDS - t0 < 2)) || log "prepared in $((SECONDS - t0)) s"
  echo "FIO=$bin/fio"
  exec 9>&-
}

# In braces with an exit: bash parses the whole command before running it, so
# editing this file while a build runs cannot change what runs next.
{
case "${1:-}" in
  prepare) prepare ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
exit
}
