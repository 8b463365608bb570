# The CSI node plugin in the guest, as the node DaemonSet runs it
# (e2e/src/csi_guest.rs puts this before a workload that boots with
# SKIP_MOUNT): the tls-proxy sidecar (TLS volumes are mounted through its
# loopback ports; /metrics on $PROXY_METRICS_PORT), `openefs-csi node` on a
# unix socket, and socat bridging a TCP port (forwarded from the host) to
# it, so that the host drives the plugin over gRPC. Then helpers that read
# what the plugin mounted.
mkdir -p /csi "$TLS_DIR"
/openefs/bin/openefs-csi --log openefs_csi=debug,info tls-proxy --state-dir "$TLS_DIR" \
  --poll-interval 200ms --metrics-address "0.0.0.0:$PROXY_METRICS_PORT" >/tmp/proxy.log 2>&1 &
# The CA for TLS volumes whose context carries none, when the host sent one.
tls_ca=
[ -f /openefs/run/ca.crt ] && tls_ca=/openefs/run/ca.crt
/openefs/bin/openefs-csi --endpoint unix:///csi/csi.sock --log openefs_csi=debug,info \
  node --node-id "$NODE_ID" --mount-timeout "$MOUNT_TIMEOUT" --unmount-timeout "$UNMOUNT_TIMEOUT" \
  --stat-timeout 5s --tls-proxy-dir "$TLS_DIR" ${tls_ca:+--tls-ca "$tls_ca"} >/tmp/csi.log 2>&1 &
/openefs/bin/socat "TCP-LISTEN:$CSI_PORT,fork,reuseaddr" UNIX-CONNECT:/csi/csi.sock 2>/tmp/socat.log &

# wait_socket PATH -- until PATH is a socket, at most 30 s.
wait_socket() {
  _i=0
  while [ ! -S "$1" ] && [ "$_i" -lt 300 ]; do usleep 100000; _i=$((_i + 1)); done
  [ -S "$1" ]
}
# field N PATH -- field N of the mountinfo line of the topmost mount on PATH.
field() { awk -v p="$2" -v n="$1" '$5 == p { f = $n } END { print f }' /proc/self/mountinfo; }
# super_options PATH -- what follows the fstype and source.
super_options() { awk -v p="$1" '$5 == p { for (i = 7; $i != "-"; i++); s = $(i + 3) } END { print s }' /proc/self/mountinfo; }
has_option() { case ",$(super_options "$1")," in *",$2,"*) echo yes ;; *) echo "no: $(super_options "$1")" ;; esac; }
source_of() { awk -v p="$1" '$5 == p { for (i = 7; $i != "-"; i++); s = $(i + 2) } END { print s }' /proc/self/mountinfo; }
nfs_mounts() { awk '{ for (i = 7; $i != "-"; i++); if ($(i + 1) == "nfs4") n++ } END { print n + 0 }' /proc/self/mountinfo; }
# tunnel_port -- the loopback port of the (only) tunnel the plugin wrote.
tunnel_port() { sed -n 's/.*"localPort": *\([0-9]*\).*/\1/p' "$TLS_DIR"/*.json; }

step node-socket wait_socket /csi/csi.sock
