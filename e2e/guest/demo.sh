# The demo's guest (e2e/src/demo.rs), after e2e/guest/csi_start.sh: one
# node with the CSI plugin and its tls-proxy. The host stages the access
# point volume (encryptInTransit) and publishes it to two pods at
# `pause node-ready`; then $WRITERS writers per pod write $FILES files each
# in parallel (a header line naming the file, then /openefs/run/src-W), each
# pod verifies the other pod's files against the host's checksums with the
# page cache dropped (so the data comes from the server), and the host
# unpublishes and unstages at `pause verified`.
pause node-ready
section mounts
expect_eq staging-source "$SERVER:$AP_PATH" "$(source_of "$STAGE")"
expect_eq staging-vers-4.1 yes "$(has_option "$STAGE" vers=4.1)"
# Through the tls-proxy: the kernel talks to the tunnel's loopback port.
expect_eq staging-through-proxy yes "$(has_option "$STAGE" addr=127.0.0.1)"
expect_eq staging-tunnel-port yes "$(has_option "$STAGE" "port=$(tunnel_port)")"
expect_eq pod-a-binds-staging "$(field 3 "$STAGE")" "$(field 3 "$POD_A")"
expect_eq pod-b-binds-staging "$(field 3 "$STAGE")" "$(field 3 "$POD_B")"
metric tunnel_port "$(tunnel_port)"

section write
# writer MOUNT POD W -- writer W of pod POD writes its $FILES files.
writer() {
  _f=1
  while [ "$_f" -le "$FILES" ]; do
    _name="$2-w$3-f$_f"
    { echo "openefs demo $2 writer $3 file $_f" && cat "/openefs/run/src-$3"; } >"$1/$_name" \
      || echo "$_name" >>/tmp/write-errors
    _f=$((_f + 1))
  done
}
: >/tmp/write-errors
started=$(now)
# Only the writers are waited for: the plugin, proxy and socat are
# background jobs of this shell too.
writers=
for w in $(seq 1 "$WRITERS"); do
  writer "$POD_A" pod-a "$w" &
  writers="$writers $!"
  writer "$POD_B" pod-b "$w" &
  writers="$writers $!"
done
# shellcheck disable=SC2086 # one PID per word
wait $writers
sync
ended=$(now)
expect_eq writes-succeeded "" "$(cat /tmp/write-errors)"
metric write_seconds "$(awk -v s="$started" -v e="$ended" 'BEGIN { printf "%.2f", e - s }')"
pause written

section verify
echo 3 >/proc/sys/vm/drop_caches
started=$(now)
(cd "$POD_B" && sha256sum -c /openefs/run/manifest-pod-a) >/tmp/verify-a 2>&1
(cd "$POD_A" && sha256sum -c /openefs/run/manifest-pod-b) >/tmp/verify-b 2>&1
ended=$(now)
metric verify_seconds "$(awk -v s="$started" -v e="$ended" 'BEGIN { printf "%.2f", e - s }')"
metric verified_a_by_b "$(grep -c ': OK$' /tmp/verify-a)"
metric verified_b_by_a "$(grep -c ': OK$' /tmp/verify-b)"
expect_eq b-verifies-a "" "$(grep -v ': OK$' /tmp/verify-a | head -n 5)"
expect_eq a-verifies-b "" "$(grep -v ': OK$' /tmp/verify-b | head -n 5)"
pause verified

section teardown
expect_eq no-nfs-mounts 0 "$(nfs_mounts)"
expect_eq targets-removed "" "$(ls -d "$POD_A" "$POD_B" 2>/dev/null)"
expect_eq tunnel-removed "" "$(ls "$TLS_DIR")"
echo "--- openefs-csi node log (guest /tmp/csi.log) ---"
cat /tmp/csi.log
echo "--- openefs-csi tls-proxy log (guest /tmp/proxy.log) ---"
cat /tmp/proxy.log
