# The CSI node plugin in the guest (e2e/tests/csi_node.rs): the guest boots
# without mounting anything and runs the plugin, the tls-proxy and socat
# (e2e/guest/csi_start.sh, which comes first); the host drives the plugin
# over gRPC at each pause; between pauses this script checks, as pods
# would, what the plugin mounted.
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
expect_eq tls-staging-source "$TLS_SERVER:/vol5" "$(source_of "$STAGE5")"
expect_eq tls-mount-addr yes "$(has_option "$STAGE5" addr=127.0.0.1)"
expect_eq tls-mount-port yes "$(has_option "$STAGE5" "port=$(tunnel_port)")"
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
