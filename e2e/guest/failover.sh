# A held lock and a stream of fsynced appends across a SIGKILL of the server
# (e2e/tests/kernel_failover.rs kills and restarts it at the pause `crash-N`
# while the stream runs). The client must reclaim its open and its lock in
# the restarted server's grace period and carry on: no error, no ESTALE.
# Every append the guest saw succeed is listed in /tmp/acked with its time;
# the host checks the server's file against the count.

# record N -- the N-th record; the host builds the same bytes to compare.
record() { printf 'record %06d of the failover stream\n' "$1"; }

# One append per open: open(O_APPEND), write, fsync, close. dd fails when
# the fsync does, so a listed record is one the server said is stable.
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

section failover
: >stream
# The holder: flock over NFSv4 is a LOCK of the whole file, held by this
# open of it across the crash.
( flock -x 9 && now >/tmp/locked && while [ ! -e /tmp/release ]; do usleep 200000; done ) 9<>stream &
holder=$!
step locked wait_file /tmp/locked
writer &
writer_pid=$!
# Let the stream run, then have the host kill the server under it.
_i=0
while [ "$(acked)" -lt 20 ] && [ "$_i" -lt 200 ]; do usleep 100000; _i=$((_i + 1)); done
pause "crash-$(acked)"
before=$(acked)
# Carry on until 20 more records made it after the restart (at most 60 s).
_i=0
while [ "$(acked)" -lt $((before + 20)) ] && [ "$_i" -lt 600 ]; do usleep 100000; _i=$((_i + 1)); done
touch /tmp/stop
wait $writer_pid
expect_eq stream-continued 1 "$([ "$(acked)" -ge $((before + 20)) ] && echo 1)"
expect_eq no-failed-appends "" "$(cat /tmp/failed 2>/dev/null)"
metric acked "$(acked)"
# The longest wait for an acknowledgement: the I/O pause across the crash.
metric io_pause_s "$(awk 'NR > 1 { g = $2 - t; if (g > m) m = g } { t = $2 } END { printf "%.2f", m }' /tmp/acked)"

section lock
# The host's client (another node) is refused the reclaimed lock...
pause other-node-refused
touch /tmp/release
wait $holder
expect_eq holder-ran 0 $?
# ...and granted it once the holder let go.
pause other-node-granted

section after
expect_eq stream-complete "$(acked)" "$(wc -l <stream 2>&1)"
expect_eq stream-last "$(record "$(acked)")" "$(tail -n 1 stream 2>&1)"
step listing ls -l
step new-file sh -c 'echo after >after && rm after'
