#!/usr/bin/env bash
# A real Kubernetes API server for custom resources, built only from Debian sid
# packages: the standalone k8s.io/apiextensions-apiserver (built here from
# Debian's Go sources with a small patch, see apiserver/standalone.patch), etcd
# and kubectl. Facts behind every choice: docs/testing.md, "Real Kubernetes API
# server".
#
#   apiserver.sh prepare                  fetch, unpack and build into .cache/apiserver (idempotent)
#   apiserver.sh start DIR                start etcd + server by hand; DIR/kubeconfig, DIR/*.pid, DIR/*.log
#   apiserver.sh stop DIR                 stop exactly the processes recorded in DIR/*.pid
#   apiserver.sh certs DIR PORT           throwaway CA, server and client certificates, DIR/kubeconfig
#   apiserver.sh exec-etcd DIR CLIENT_PORT PEER_PORT       exec etcd (used by start and the Rust fixture)
#   apiserver.sh exec-apiserver DIR PORT ETCD_CLIENT_PORT  exec the server (idem)
#
# The exec-* commands replace this shell with the binary, so a caller's PID,
# PR_SET_PDEATHSIG and kill all act on the real process.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${OPENEFS_APISERVER_CACHE:-$repo/.cache/apiserver}"
pins_file="$here/apiserver/pins.txt"
patch_file="$here/apiserver/standalone.patch"
bin="$cache/bin"

# The k8s.io staging packages that upstream releases together: mixing two of
# their releases does not build, so they fall back to sid as one group.
k8s_release=(golang-k8s-apiextensions-apiserver-dev golang-k8s-api-dev golang-k8s-apimachinery-dev
  golang-k8s-apiserver-dev golang-k8s-client-go-dev golang-k8s-component-base-dev golang-k8s-kms-dev)

log() { echo "apiserver.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# sha256 of the concatenated files and strings given; stamps compare against it.
digest() {
  local x
  for x in "$@"; do
    if [ -f "$x" ]; then cat "$x"; else printf '%s\n' "$x"; fi
  done | sha256sum | cut -d' ' -f1
}

stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

apt_opts() {
  local a="$cache/apt"
  printf '%s\n' -o "Dir::Etc::sourcelist=/dev/null" -o "Dir::Etc::sourceparts=$a/sources" \
    -o "Dir::Etc::preferencesparts=$a/preferences" -o "Dir::State::lists=$a/lists" \
    -o "Dir::State::status=$a/status" -o "Dir::Cache=$a/cache" \
    -o "APT::Sandbox::User=root" -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false" \
    -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
}

# A deb822 entry for sid, made from this machine's own Debian entry (so its
# mirror or proxy is reused); the system's apt state is never touched.
write_sid_source() {
  local out="$1" f entry=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    entry="$(awk 'BEGIN { RS = ""; FS = "\n" }
      /Types:[^\n]*deb/ && /URIs:[^\n]*\/debian/ && !/security/ {
        for (i = 1; i <= NF; i++) if ($i !~ /^#/) print ($i ~ /^Suites:/ ? "Suites: sid" : $i)
        exit
      }' "$f")"
    [ -n "$entry" ] && break
  done
  if [ -z "$entry" ] && [ -f /etc/apt/sources.list ]; then
    local uri
    uri="$(awk '$1 == "deb" && $0 !~ /security/ && $0 ~ /\/debian/ {
      for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)"
    [ -n "$uri" ] && entry="$(printf 'Types: deb\nURIs: %s\nSuites: sid\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg' "$uri")"
  fi
  [ -n "$entry" ] || die "found no Debian apt source entry in /etc/apt to derive a sid entry from"
  printf '%s\n' "$entry" >"$out"
}

pins() { grep -v '^\s*\(#\|$\)' "$pins_file"; }

# Upstream part of a Debian version: 1:0.36.4+ds-2 -> 0.36.4
upstream() { local v="${1#*:}"; v="${v%-*}"; echo "${v%%+*}"; }

# Writes $cache/debs/resolved.txt: the pins, or the current sid versions for
# pins that have left the pool.
resolve() {
  local -a o; mapfile -t o < <(apt_opts)
  local -A want=() have=() pool=()
  local p pkg ver missing_k8s=0
  # One query for all packages: each apt-cache call re-reads the whole index.
  while read -r pkg ver; do pool[$pkg=$ver]=1; done < <(
    apt-cache "${o[@]}" madison $(pins | cut -d= -f1) 2>/dev/null | awk -F' [|] ' '{ gsub(/ /, "", $1); print $1, $2 }')
  while read -r p; do
    pkg="${p%%=*}"; ver="${p#*=}"; want[$pkg]="$ver"
    if [ -n "${pool[$p]:-}" ]; then
      have[$pkg]="$ver"
    else
      [[ " ${k8s_release[*]} " == *" $pkg "* ]] && missing_k8s=1
    fi
  done < <(pins)
  if ((missing_k8s)); then
    for pkg in "${k8s_release[@]}"; do unset "have[$pkg]"; done
  fi
  local out="$cache/debs/resolved.txt.new" cand
  : >"$out"
  while read -r p; do
    pkg="${p%%=*}"
    if [ -n "${have[$pkg]:-}" ]; then
      echo "$pkg=${have[$pkg]}" >>"$out"
      continue
    fi
    cand="$(apt-cache "${o[@]}" policy "$pkg" | awk '/Candidate:/ { print $2 }')"
    [ -n "$cand" ] && [ "$cand" != "(none)" ] || die "$pkg: neither the pin ${want[$pkg]} nor any other version is in sid"
    if [ -z "${pool[$pkg=${want[$pkg]}]:-}" ]; then
      log "pin $pkg=${want[$pkg]} is not in sid (any more); using the current sid version $cand"
    elif [ "$cand" != "${want[$pkg]}" ]; then
      log "pin $pkg=${want[$pkg]}: using the current sid version $cand, with the other k8s.io packages"
    fi
    echo "$pkg=$cand" >>"$out"
  done < <(pins)
  local first="" v
  for pkg in "${k8s_release[@]}"; do
    v="$(upstream "$(grep "^$pkg=" "$out" | cut -d= -f2-)")"
    [ -z "$first" ] && first="$v"
    [ "$v" = "$first" ] || log "warning: $pkg is upstream $v, not $first like the other k8s.io packages; the build may fail"
  done
  mv "$out" "$cache/debs/resolved.txt"
}

fetch() {
  local key; key="$(digest "$pins_file" "$(cat "$cache/apt/sources/sid.sources" 2>/dev/null)")"
  stamp_ok "$cache/debs/.stamp" "$key" && return 0
  log "fetching Debian sid packages"
  mkdir -p "$cache/apt/sources" "$cache/apt/preferences" "$cache/apt/lists/partial" \
    "$cache/apt/cache/archives/partial" "$cache/debs"
  : >"$cache/apt/status"
  write_sid_source "$cache/apt/sources/sid.sources"
  key="$(digest "$pins_file" "$(cat "$cache/apt/sources/sid.sources")")"
  local -a o; mapfile -t o < <(apt_opts)
  apt-get "${o[@]}" -q update >/dev/null || die "apt-get update of the private sid source failed"
  resolve
  local -a want; mapfile -t want <"$cache/debs/resolved.txt"
  rm -rf "$cache/debs/new" && mkdir -p "$cache/debs/new"
  (cd "$cache/debs/new" && apt-get "${o[@]}" -q download "${want[@]}" >/dev/null) || die "apt-get download failed"
  find "$cache/debs" -maxdepth 1 -name '*.deb' -delete
  mv "$cache/debs/new"/*.deb "$cache/debs/" && rmdir "$cache/debs/new"
  echo "$key" >"$cache/debs/.stamp"
  rm -f "$cache/root/.stamp"
}

unpack() {
  local key; key="$(digest "$cache/debs/resolved.txt")"
  stamp_ok "$cache/root/.stamp" "$key" && return 0
  log "unpacking $(find "$cache/debs" -maxdepth 1 -name '*.deb' | wc -l) packages"
  rm -rf "$cache/root.new" "$cache/root"
  mkdir -p "$cache/root.new"
  local d
  for d in "$cache/debs"/*.deb; do dpkg -x "$d" "$cache/root.new"; done
  mv "$cache/root.new" "$cache/root"
  echo "$key" >"$cache/root/.stamp"
}

build() {
  local r="$cache/root" src goroot gover
  src="$r/usr/share/gocode/src/k8s.io/apiextensions-apiserver"
  goroot="$(find "$r/usr/lib" -maxdepth 1 -name 'go-1.*' | sort -V | tail -n1)"
  [ -x "$goroot/bin/go" ] || die "no Go toolchain under $r/usr/lib"
  [ -d "$src" ] || die "no k8s.io/apiextensions-apiserver sources under $r"
  local deb_ver; deb_ver="$(grep '^golang-k8s-apiextensions-apiserver-dev=' "$cache/debs/resolved.txt" | cut -d= -f2-)"
  gover="$(upstream "$deb_ver")"
  # Without these kubectl cannot parse the server version ("-master+$Format:%H$").
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v1.${gover#0.}
    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$gover" | cut -d. -f2)
    -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.gitCommit=debian-$deb_ver"
  local key; key="$(digest "$cache/root/.stamp" "$patch_file" "$ldflags")"
  if stamp_ok "$bin/.stamp" "$key" && [ -x "$bin/apiextensions-apiserver" ]; then return 0; fi

  log "building apiextensions-apiserver $gover (cold: about 2 minutes on 2 cores)"
  # The patch goes onto copies named in an overlay, so the unpacked tree stays pristine.
  local ov="$cache/overlay"
  rm -rf "$ov" && mkdir -p "$ov/tree"
  local f json="" sep=""
  while read -r f; do
    mkdir -p "$ov/tree/$(dirname "$f")"
    cp "$src/$f" "$ov/tree/$f"
    json+="$sep\"$src/$f\": \"$ov/tree/$f\""; sep=", "
  done < <(sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$patch_file")
  [ -n "$json" ] || die "$patch_file names no file to patch"
  patch -s -p1 -d "$ov/tree" <"$patch_file" || die "the standalone patch does not apply to $src"
  echo "{\"Replace\": {$json}}" >"$ov/overlay.json"

  mkdir -p "$bin" "$cache/gocache"
  env GOROOT="$goroot" GOPATH="$r/usr/share/gocode" GO111MODULE=off GOPROXY=off GOFLAGS= \
    GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$cache/gocache" \
    "$goroot/bin/go" build -trimpath -overlay="$ov/overlay.json" \
    -ldflags="$ldflags -X k8s.io/component-base/version.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -o "$bin/apiextensions-apiserver.new" k8s.io/apiextensions-apiserver || die "go build failed"
  mv "$bin/apiextensions-apiserver.new" "$bin/apiextensions-apiserver"
  echo "$key" >"$bin/.stamp"
}

prepare() {
  command -v patch >/dev/null || die "'patch' is missing (Debian package patch)"
  command -v openssl >/dev/null || die "'openssl' is missing (Debian package openssl)"
  mkdir -p "$cache"
  # Several test binaries may prepare at once; one does the work, the others wait.
  exec 9>"$cache/.lock"
  flock 9
  local t0=$SECONDS
  fetch
  unpack
  build
  local b
  for b in etcd kubectl; do
    cmp -s "$cache/root/usr/bin/$b" "$bin/$b" 2>/dev/null || cp "$cache/root/usr/bin/$b" "$bin/$b"
  done
  ((SECONDS - t0 < 2)) || log "prepared in $((SECONDS - t0)) s: $bin"
  exec 9>&-
}

certs() {
  local d="$1" port="$2"
  mkdir -p "$d"
  (
    cd "$d"
    local days=30
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
      -subj "/CN=openefs-test-ca" -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days $days \
      -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n') \
      -out server.crt 2>/dev/null
    # system:masters is always allowed by the delegating authorizer, so no
    # SubjectAccessReview (which this server cannot answer) is ever needed.
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/O=system:masters/CN=admin" -keyout client.key -out client.csr 2>/dev/null
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days $days \
      -extfile <(printf 'extendedKeyUsage=clientAuth\n') -out client.crt 2>/dev/null
    rm -f ./*.csr ca.srl
    cat >kubeconfig <<EOF
apiVersion: v1
kind: Config
clusters:
- name: openefs-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 ca.crt)
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 client.crt)
    client-key-data: $(base64 -w0 client.key)
contexts:
- name: openefs-test
  context: {cluster: openefs-test, user: admin}
current-context: openefs-test
EOF
  ) || die "making certificates in $d failed"
}

exec_etcd() {
  local d="$1" cport="$2" pport="$3"
  exec "$bin/etcd" --name default --data-dir "$d/etcd" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "default=http://127.0.0.1:$pport" --log-level warn
}

exec_apiserver() {
  local d="$1" port="$2" eport="$3"
  # The three kubeconfig flags point the server at itself: without them it looks
  # for in-cluster config and exits. Admission plugins and priority-and-fairness
  # need core/admissionregistration/flowcontrol objects this server does not serve.
  exec "$bin/apiextensions-apiserver" \
    --etcd-servers="http://127.0.0.1:$eport" --bind-address=127.0.0.1 --secure-port="$port" \
    --tls-cert-file="$d/server.crt" --tls-private-key-file="$d/server.key" --client-ca-file="$d/ca.crt" \
    --kubeconfig="$d/kubeconfig" --authentication-kubeconfig="$d/kubeconfig" \
    --authorization-kubeconfig="$d/kubeconfig" --authentication-skip-lookup \
    --disable-admission-plugins=NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook \
    --enable-priority-and-fairness=false
}

# Plain /readyz stays 500: its informer-sync check waits on a core/v1 Services
# informer this server can never fill.
wait_ready() {
  local d="$1" i
  for ((i = 0; i < 300; i++)); do
    "$bin/kubectl" --kubeconfig "$d/kubeconfig" get --raw '/readyz?exclude=informer-sync' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

start() {
  local d; d="$(mkdir -p "$1" && cd "$1" && pwd)"
  local port="${APISERVER_PORT:-6443}" cport="${ETCD_CLIENT_PORT:-2379}" pport="${ETCD_PEER_PORT:-2380}"
  [ -f "$d/etcd.pid" ] && die "$d/etcd.pid exists: run '$0 stop $d' first"
  prepare
  certs "$d" "$port"
  rm -rf "$d/etcd"
  setsid "$0" exec-etcd "$d" "$cport" "$pport" >"$d/etcd.log" 2>&1 </dev/null &
  echo $! >"$d/etcd.pid"
  setsid "$0" exec-apiserver "$d" "$port" "$cport" >"$d/apiserver.log" 2>&1 </dev/null &
  echo $! >"$d/apiserver.pid"
  if ! wait_ready "$d"; then
    tail -n 20 "$d/apiserver.log" "$d/etcd.log" >&2
    stop "$d"
    die "the server did not become ready within 30 s"
  fi
  echo "ready: export KUBECONFIG=$d/kubeconfig PATH=$bin:\$PATH"
}

stop() {
  local d="$1" f pid i
  for f in "$d/apiserver.pid" "$d/etcd.pid"; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    # Only a process still running one of our binaries: a PID may have been reused.
    if grep -qaE "$bin/(etcd|apiextensions-apiserver)" "/proc/$pid/cmdline" 2>/dev/null; then
      kill "$pid"
      for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
    fi
    rm -f "$f"
  done
}

# In braces with an exit: bash parses the whole command before running it, so
# editing this file while a long prepare runs cannot change what runs next.
{
case "${1:-}" in
  prepare) prepare ;;
  start) [ $# -eq 2 ] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  certs) [ $# -eq 3 ] || die "usage: $0 certs DIR PORT"; certs "$2" "$3" ;;
  exec-etcd) [ $# -eq 4 ] || die "usage: $0 exec-etcd DIR CLIENT_PORT PEER_PORT"; exec_etcd "$2" "$3" "$4" ;;
  exec-apiserver) [ $# -eq 4 ] || die "usage: $0 exec-apiserver DIR PORT ETCD_CLIENT_PORT"; exec_apiserver "$2" "$3" "$4" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
exit
}
