# Two clients on one file, close-to-open: the guest appends lines, each with
# its own open-append-close, and reads the file back (so its page cache
# holds it); at `pause host-round-N` the host's second client opens the file,
# must read every line the guest closed, appends its own lines and closes
# (e2e/tests/kernel_shared.rs). The guest's next open must revalidate and
# see the host's lines: no drop_caches, close-to-open is what is tested.
# Appends grow the file, which alone makes the client drop its cache; a
# last in-place rewrite by the host tests the change attribute itself.
# /tmp/expect (guest RAM) is what the file must hold at each point.

# line WHO ROUND N -- the bytes of one line; the host builds the same ones.
# Lengths differ so that appends land at unaligned offsets.
line() { printf '%s round %d line %d %s\n' "$1" "$2" "$3" "$(printf '%*s' $(($2 * 7 + $3 * 3)) '' | tr ' ' "$1")"; }

section shared
: >shared
: >/tmp/expect
for round in 1 2 3; do
  for n in 1 2 3; do
    line g "$round" "$n" >>shared
    line g "$round" "$n" >>/tmp/expect
  done
  # Read back through the cache: the guest's own appends.
  step "round-$round-own-lines" cmp shared /tmp/expect
  pause "host-round-$round"
  for n in 1 2; do line h "$round" "$n" >>/tmp/expect; done
  # A fresh open sees the host's appends (new size, new data) at once.
  step "round-$round-sees-host" cmp shared /tmp/expect
  expect_eq "round-$round-size" "$(wc -c </tmp/expect)" "$(wc -c <shared)"
done
# The host rewrites the first line in place: same size, so only the change
# attribute tells the guest's next open that its cached pages are stale.
pause host-rewrite
sed '1s/g/G/g' /tmp/expect >/tmp/expect.new && mv /tmp/expect.new /tmp/expect
step sees-host-rewrite cmp shared /tmp/expect
# The guest's append after the host's lands after them (O_APPEND writes at
# the revalidated size).
line g 4 1 >>shared
line g 4 1 >>/tmp/expect
step final-content cmp shared /tmp/expect
metric bytes "$(wc -c <shared)"
