# The kernel-client suite (run by e2e/tests/kernel_client.rs, sourced by /init
# with the NFS mount as working directory; helpers from lib.sh).
# Inputs: /openefs/run/block.bin (1 MiB of random bytes from the host),
# BIG_MIB and BIG_SHA (the host's checksum of BIG_MIB copies of the block).
# Reads that verify data come after drop_caches, so they are served by the
# server, not by the client's page cache.
block=/openefs/run/block.bin
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
head_sha() { head -c "$1" "$block" | sha256sum | cut -d' ' -f1; }

# --- small files of awkward sizes ---
section small
sizes="0 1 4095 4096 4097 65537 1048576"
mkdir small
for n in $sizes; do head -c "$n" "$block" >"small/$n"; done
drop_caches
for n in $sizes; do
  expect_eq "small-$n-size" "$n" "$(stat -c %s "small/$n")"
  expect_eq "small-$n-data" "$(head_sha "$n")" "$(sha "small/$n")"
done

# --- append ---
section append
printf 'line1\n' >append.txt
printf 'line2\n' >>append.txt
drop_caches
expect_eq append-data "$(printf 'line1\nline2')" "$(cat append.txt)"
expect_eq append-size 12 "$(stat -c %s append.txt)"

# --- truncate up and down ---
section truncate
head -c 10000 "$block" >trunc
truncate -s 100000 trunc
drop_caches
expect_eq truncate-up-size 100000 "$(stat -c %s trunc)"
expect_eq truncate-up-keeps-data "$(head_sha 10000)" "$(head -c 10000 trunc | sha256sum | cut -d' ' -f1)"
expect_eq truncate-up-zero-tail 0 "$(tail -c 90000 trunc | tr -d '\000' | wc -c)"
truncate -s 5000 trunc
drop_caches
expect_eq truncate-down-size 5000 "$(stat -c %s trunc)"
expect_eq truncate-down-data "$(head_sha 5000)" "$(sha trunc)"

# --- mkdir / rmdir ---
section mkdir
step mkdir mkdir dir1
step mkdir-is-dir test -d dir1
step rmdir rmdir dir1
step rmdir-gone test ! -e dir1

# --- a directory of 5,000 entries ---
section readdir
mkdir many
# Directories: mkdir is one CREATE per entry, where touch costs an OPEN, a
# CLOSE and a SETATTR, and readdir reads both kinds the same way.
(cd many && seq 1 5000 | sed 's/^/f/' | xargs mkdir)
drop_caches
expect_eq readdir-5000-count 5000 "$(ls many | wc -l)"
expect_eq readdir-5000-names "$(seq 1 5000 | sed 's/^/f/' | sort | sha256sum)" "$(ls many | sort | sha256sum)"

# --- rename within and across directories, over an existing file ---
section rename
echo A >ren1
mv ren1 ren2
expect_err rename-old-gone "No such file or directory" cat ren1
expect_eq rename-within "A" "$(cat ren2)"
mkdir rena renb
echo B >rena/x
mv rena/x renb/y
expect_eq rename-across "B" "$(cat renb/y)"
step rename-across-old-gone test ! -e rena/x
echo C >over1
echo D >over2
mv over1 over2
drop_caches
expect_eq rename-over-existing "C" "$(cat over2)"
step rename-over-source-gone test ! -e over1
mkdir rena/sub
echo E >rena/sub/f
mv rena/sub renb/sub
expect_eq rename-dir-across "E" "$(cat renb/sub/f)"

# --- hard links ---
section hardlink
echo L >hl1
ln hl1 hl2
drop_caches
expect_eq hardlink-nlink 2 "$(stat -c %h hl1)"
expect_eq hardlink-same-inode "$(stat -c %i hl1)" "$(stat -c %i hl2)"
echo M >>hl2
expect_eq hardlink-shared-data "$(printf 'L\nM')" "$(cat hl1)"
rm hl1
expect_eq hardlink-nlink-after-unlink 1 "$(stat -c %h hl2)"

# --- symlinks and readlink ---
section symlink
ln -s hl2 sym1
ln -s /some/absolute/../target sym2
drop_caches
expect_eq readlink-relative hl2 "$(readlink sym1)"
expect_eq readlink-absolute /some/absolute/../target "$(readlink sym2)"
expect_eq symlink-follow "$(printf 'L\nM')" "$(cat sym1)"
expect_eq symlink-type "symbolic link" "$(stat -c %F sym2)"

# --- chmod, chown (as root), utimes ---
section attrs
echo m >modes
chmod 640 modes
echo o >owned
chown 1234:5678 owned
echo t >times
touch -d '2001-02-03 04:05:06' times
drop_caches
expect_eq chmod 640 "$(stat -c %a modes)"
expect_eq chown "1234:5678" "$(stat -c %u:%g owned)"
expect_eq utimes-mtime 981173106 "$(stat -c %Y times)"

# --- permissions for a non-root uid (tester is 1000:1000) ---
section permissions
mkdir private
echo secret >private/f
chmod 700 private
expect_err eacces-read-0700 "Permission denied" su -s /bin/sh tester -c 'cat /mnt/private/f'
expect_err eacces-list-0700 "Permission denied" su -s /bin/sh tester -c 'ls /mnt/private'
expect_err eacces-create-0700 "Permission denied" su -s /bin/sh tester -c 'echo x >/mnt/private/g'
mkdir userdir
chown 1000:1000 userdir
step nonroot-create su -s /bin/sh tester -c 'echo mine >/mnt/userdir/mine'
expect_eq nonroot-owner "1000:1000" "$(stat -c %u:%g userdir/mine)"

# --- error cases ---
section errors
expect_err enoent-open "No such file or directory" cat does-not-exist
expect_err enoent-rmdir "No such file or directory" rmdir does-not-exist
mkdir exists
expect_err eexist-mkdir "File exists" mkdir exists
expect_err eexist-link "File exists" ln append.txt hl2
mkdir full
touch full/f
expect_err enotempty-rmdir "Directory not empty" rmdir full

# --- df ---
section df
set -- $(df -k /mnt | tail -n 1)
metric df_total_kib "$2"
step df-total-positive test "$2" -gt 0
step df-avail-positive test "$4" -gt 0

# --- a file written at random offsets, against a copy in guest RAM ---
section random-offsets
: >/tmp/rand.ref
: >rand
i=0
while [ $i -lt 200 ]; do
  off=$(( (RANDOM * 32768 + RANDOM) % 8388608 ))
  len=$(( RANDOM % 65536 + 1 ))
  src=$(( (RANDOM * 32768 + RANDOM) % (1048576 - len) ))
  for f in /tmp/rand.ref rand; do
    dd if="$block" of="$f" bs="$len" count=1 skip="$src" seek="$off" \
      iflag=skip_bytes oflag=seek_bytes conv=notrunc 2>/dev/null
  done
  i=$((i + 1))
done
drop_caches
metric rand_sha "$(sha /tmp/rand.ref)"
expect_eq random-offsets-size "$(stat -c %s /tmp/rand.ref)" "$(stat -c %s rand)"
expect_eq random-offsets-data "$(sha /tmp/rand.ref)" "$(sha rand)"
rm /tmp/rand.ref

# --- one large file ---
section big
start=$(now)
i=0
while [ $i -lt "$BIG_MIB" ]; do cat "$block"; i=$((i + 1)); done >big
sync
end=$(now)
metric big_write_mbps "$(mbps $((BIG_MIB * 1048576)) "$start" "$end")"
echo 3 >/proc/sys/vm/drop_caches
start=$(now)
dd if=big of=/dev/null bs=1M 2>/dev/null
end=$(now)
metric big_read_mbps "$(mbps $((BIG_MIB * 1048576)) "$start" "$end")"
expect_eq big-size $((BIG_MIB * 1048576)) "$(stat -c %s big)"
expect_eq big-data "$BIG_SHA" "$(sha big)"
section end
