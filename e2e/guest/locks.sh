# flock(2) from the guest's NFS client. Every open file description is its
# own lock owner on the server, but the kernel checks conflicts between this
# client's own owners locally before it asks the server; so the host plays a
# second client (another node) at the pauses, with a lock taken over its own
# session, to make the server's refusals and lease expiry visible here.

section exclusive
: >lockfile
# The holder keeps an exclusive lock for 6 s.
( flock -x 9 && now >/tmp/held && sleep 6 && now >/tmp/released ) 9<>lockfile &
holder=$!
step holder-locked wait_file /tmp/held
( flock -n -x -E $DENIED 8 ) 8<>lockfile
expect_eq exclusive-refuses-exclusive $DENIED $?
( flock -n -s -E $DENIED 8 ) 8<>lockfile
expect_eq exclusive-refuses-shared $DENIED $?
# A blocking request waits until the holder lets go (the client polls the
# server, which answers DENIED until then).
( flock -x -w 40 -E $DENIED 8 && now >/tmp/got ) 8<>lockfile
expect_eq blocking-granted 0 $?
wait $holder
expect_eq holder-ran 0 $?
expect_eq blocking-waited-for-release 1 \
  "$(awk -v g="$(cat /tmp/got)" -v r="$(cat /tmp/released)" 'BEGIN { print (g >= r) ? 1 : 0 }')"
metric blocking_wait_s "$(awk -v g="$(cat /tmp/got)" -v h="$(cat /tmp/held)" 'BEGIN { printf "%.1f", g - h }')"
( flock -n -x -E $DENIED 8 ) 8<>lockfile
expect_eq free-after-release 0 $?

section shared
rm -f /tmp/held
( flock -s 9 && now >/tmp/held && sleep 4 ) 9<>lockfile &
holder=$!
step shared-holder-locked wait_file /tmp/held
( flock -n -s -E $DENIED 8 ) 8<>lockfile
expect_eq shared-with-shared 0 $?
( flock -n -x -E $DENIED 8 ) 8<>lockfile
expect_eq shared-refuses-exclusive $DENIED $?
wait $holder
( flock -n -x -E $DENIED 8 ) 8<>lockfile
expect_eq exclusive-after-shared 0 $?

section write-under-lock
# Written while the lock is held: the client writes with the lock stateid.
( flock -x 8 && echo under-lock >&8 ) 8<>data
expect_eq write-under-lock under-lock "$(cat data)"

section other-client
: >contended
pause host-locks
# The host holds a write lock on the whole file: only the server knows.
( flock -n -x -E $DENIED 8 ) 8<>contended
expect_eq other-client-refuses-exclusive $DENIED $?
( flock -n -s -E $DENIED 8 ) 8<>contended
expect_eq other-client-refuses-shared $DENIED $?
pause host-unlocks
( flock -n -x -E $DENIED 8 ) 8<>contended
expect_eq free-after-other-client-unlocks 0 $?
# The host locks again and then goes silent: once its lease runs out the
# server drops its lock, and this blocking request (polling) gets it.
pause host-locks-and-vanishes
start=$(now)
( flock -x -w 90 -E $DENIED 8 ) 8<>contended
expect_eq granted-after-lease-expiry 0 $?
metric lease_wait_s "$(awk -v s="$start" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }')"
