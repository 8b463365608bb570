# Through openefs-csi tls-proxy to openefs-nfsd --require-tls
# (e2e/tests/kernel_tls.rs): files with checksums, then a stream of fsynced
# appends of a known pattern during which the host SIGKILLs the proxy and
# starts it again (pause `proxy-restart`). The hard mount must carry on: no
# failed append, and the file holds exactly the acknowledged records.

section files
for size in 0 1 4096 1048576 4194304; do
  step "write-$size" sh -c "head -c $size /dev/urandom >f$size"
  sha "f$size" >"/tmp/f$size.sha"
done
echo 3 >/proc/sys/vm/drop_caches
for size in 0 1 4096 1048576 4194304; do
  expect_eq "read-$size" "$(cat "/tmp/f$size.sha")" "$(sha "f$size")"
  # The host compares its own checksum of the export's file.
  metric "sha-f$size" "$(cat "/tmp/f$size.sha")"
done

# record N -- the N-th record; the host builds the same bytes to compare.
record() { printf 'record %06d of the tls stream\n' "$1"; }

writer() {
  i=0
  while [ ! -e /tmp/stop ]; do
    i=$((i + 1))
    if record "$i" | dd of=stream bs=4k conv=notrunc,fsync oflag=append 2>/tmp/dd.err; then
      echo "$i $(now)" >>/tmp/acked
    else
      echo "$i $(now) $(tail -n 1 /tmp/dd.err)" >>/tmp/failed
    fi
  done
}

acked() { if [ -e /tmp/acked ]; then wc -l </tmp/acked; else echo 0; fi; }

section stream
: >stream
writer &
writer_pid=$!
_i=0
while [ "$(acked)" -lt 20 ] && [ "$_i" -lt 300 ]; do usleep 100000; _i=$((_i + 1)); done
pause proxy-restart
before=$(acked)
# Carry on until 20 more records made it after the restart (at most 60 s).
_i=0
while [ "$(acked)" -lt $((before + 20)) ] && [ "$_i" -lt 600 ]; do usleep 100000; _i=$((_i + 1)); done
touch /tmp/stop
wait $writer_pid
expect_eq stream-continued 1 "$([ "$(acked)" -ge $((before + 20)) ] && echo 1)"
expect_eq no-failed-appends "" "$(cat /tmp/failed 2>/dev/null)"
metric acked "$(acked)"
metric io_pause_s "$(awk 'NR > 1 { g = $2 - t; if (g > m) m = g } { t = $2 } END { printf "%.2f", m }' /tmp/acked)"
_n=0
: >/tmp/expected
while [ "$_n" -lt "$(acked)" ]; do _n=$((_n + 1)); record "$_n" >>/tmp/expected; done
echo 3 >/proc/sys/vm/drop_caches
step stream-content cmp /tmp/expected stream
