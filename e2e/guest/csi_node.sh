# The CSI node plugin in the guest (e2e/tests/csi_node.rs): the guest boots
# without mounting anything, runs `openefs-csi node` on a unix socket, and
# socat bridges a TCP port (forwarded from the host) to it. The host drives
# the plugin over gRPC at each pause; between pauses this script checks, as
# pods would, what the plugin mounted.
mkdir -p /csi "$TLS_DIR"
# The tls-proxy sidecar: TLS volumes are mounted through its loopback ports.
/openefs/bin/openefs-csi --log openefs_csi=debug,info tls-proxy --state-dir "$TLS_DIR" \
  --poll-interval 200ms >/tmp/proxy.log 2>&1 &
/openefs/bin/openefs-csi --endpoint unix:///csi/csi.sock --log openefs_csi=debug,info \
  node --node-id "$NODE_ID" --mount-timeout "$MOUNT_TIMEOUT" --unmount-timeout "$UNMOUNT_TIMEOUT" \
  --stat-timeout 5s --tls-proxy-dir "$TLS_DIR" --tls-ca /openefs/run/ca.crt >/tmp/csi.log 2>&1 &
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

step node-socket wait_socket /csi/csi.sock
pause node-ready
section two-pods
expect_eq nfs-mounts 8 "$(nfs_mounts)"
expect_eq staging-type nfs4 "$(awk -v p="$STAGE1" '$5 == p { for (i = 7; $i != "-"; i++); print $(i + 1) }' /proc/self/mountinfo)"
expect_eq staging-source "10.0.2.100:/vol1" "$(source_of "$STAGE1")"
for option in vers=4.1 rsize=1048576 wsize=1048576 hard timeo=600 retrans=2 noresvport acregmin=1 acdirmax=1; do
  expect_eq "staging-option-$option" yes "$(has_option "$STAGE1" "$option")"
done
expect_eq staging-nosuid yes "$(case ",$(field 6 "$STAGE1")," in *,nosuid,*) echo yes ;; *) field 6 "$STAGE1" ;; esac)"
expect_eq pod-a-binds-staging "$(field 3 "$STAGE1")" "$(field 3 "$POD_A")"
expect_eq pod-b-binds-staging "$(field 3 "$STAGE1")" "$(field 3 "$POD_B")"
expect_eq pod-c-read-only ro "$(field 6 "$POD_C" | cut -d, -f1)"
step a-writes sh -c "echo from-a >$POD_A/a.txt"
expect_eq b-sees-a from-a "$(cat "$POD_B/a.txt" 2>&1)"
step b-writes sh -c "echo from-b >$POD_B/b.txt"
expect_eq a-sees-b from-b "$(cat "$POD_A/b.txt" 2>&1)"
expect_eq c-sees-a from-a "$(cat "$POD_C/a.txt" 2>&1)"
expect_err c-cannot-write "Read-only file system" sh -c "echo x >$POD_C/c.txt"
section tls
# The TLS volume: mounted through the proxy's loopback port (the server
# accepts nothing but TLS), the mount table still naming the real server.
tunnel_port=$(sed -n 's/.*"localPort": *\([0-9]*\).*/\1/p' "$TLS_DIR"/*.json)
expect_eq tls-staging-source "$TLS_SERVER:/vol5" "$(source_of "$STAGE5")"
expect_eq tls-mount-addr yes "$(has_option "$STAGE5" addr=127.0.0.1)"
expect_eq tls-mount-port yes "$(has_option "$STAGE5" "port=$tunnel_port")"
step tls-writes sh -c "echo through-tls >$POD_F/tls.txt && sync"
echo 3 >/proc/sys/vm/drop_caches
expect_eq tls-reads through-tls "$(cat "$POD_F/tls.txt" 2>&1)"
step a-writes-8mib dd if=/dev/zero of="$POD_A/big" bs=1M count=8
sync
pause written
section stale
pause stale
expect_eq d-sees-new-directory fresh "$(cat "$POD_D/new.txt" 2>&1)"
step d-writes sh -c "echo after-repair >$POD_D/after.txt"
section hung
pause hung
section teardown
pause teardown
expect_eq no-nfs-mounts 0 "$(nfs_mounts)"
expect_eq targets-removed "" "$(ls -d "$POD_A" "$POD_B" "$POD_C" "$POD_D" "$POD_F" 2>/dev/null)"
expect_eq tunnels-removed "" "$(ls "$TLS_DIR")"
# The plugin's warnings (timeouts, repairs) for the console.
grep -E 'WARN|ERROR' /tmp/csi.log | tail -n 20
grep -E 'WARN|ERROR' /tmp/proxy.log | tail -n 10
