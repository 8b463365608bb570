# Encryption at rest (e2e/tests/kernel_encryption.rs). The host's nfsd
# encrypts file contents; the guest sees plaintext. Known text is written,
# then unaligned writes, holes and truncates are applied to a model file in
# the guest's own memory and to the mount alike: both must always hold the
# same bytes, read back from the server (caches dropped). At the pauses the
# host scans the raw export for the text, restarts nfsd, and rotates the
# key-encryption key.
plain=/openefs/run/plain.txt
model=/tmp/model

section write
step write-known-plaintext cp "$plain" plain.txt

# same NAME -- the mount's `edits` equals the model, read from the server.
same() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
  expect_eq "$1" "$(sha "$model")" "$(sha edits 2>&1)"
}

# both CMD... -- runs CMD with F=the model, then F=the mount's file.
both() {
  F="$model" sh -c "$1" && F=edits sh -c "$1"
}

section edits
: >"$model"; : >edits
both 'dd if=/openefs/run/plain.txt of="$F" bs=1 count=10 conv=notrunc 2>/dev/null'
same tail-shorter-than-16
both 'dd if=/openefs/run/plain.txt of="$F" bs=1 seek=5 skip=100 count=5000 conv=notrunc 2>/dev/null'
same unaligned-across-blocks
both 'dd if=/openefs/run/plain.txt of="$F" bs=1000 seek=9 skip=3 count=3 conv=notrunc 2>/dev/null'
same write-past-eof-leaves-a-hole
both 'truncate -s 100000 "$F"'
same truncate-grows-with-a-hole
both 'dd if=/openefs/run/plain.txt of="$F" bs=1 seek=50001 skip=7 count=3 conv=notrunc 2>/dev/null'
same write-inside-a-hole
both 'truncate -s 12345 "$F"'
same truncate-shrinks-mid-block
both 'truncate -s 4099 "$F"'
same truncate-leaves-a-3-byte-tail
both 'truncate -s 8192 "$F"'
same truncate-grows-a-short-tail
both 'dd if=/openefs/run/plain.txt of="$F" bs=4096 seek=3 skip=1 count=2 conv=notrunc 2>/dev/null'
same aligned-blocks-past-eof
metric edits-size "$(stat -c %s edits)"

pause written
echo 3 >/proc/sys/vm/drop_caches
expect_eq after-restart-plaintext "$(sha "$plain")" "$(sha plain.txt 2>&1)"
expect_eq after-restart-edits "$(sha "$model")" "$(sha edits 2>&1)"
step write-after-restart sh -c 'cat /openefs/run/plain.txt >>plain.txt && sync'

pause rotated
echo 3 >/proc/sys/vm/drop_caches
expect_eq after-rotation-plaintext "$(cat "$plain" "$plain" | sha256sum | cut -d' ' -f1)" "$(sha plain.txt 2>&1)"
expect_eq after-rotation-edits "$(sha "$model")" "$(sha edits 2>&1)"
