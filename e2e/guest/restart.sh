# Two phases around a server restart (e2e/tests/kernel_client.rs kills and
# restarts the server while the guest waits in `pause`). Handles obtained
# before the restart must keep working after it: no ESTALE.
block=/openefs/run/block.bin
mkdir -p keep/sub
head -c 300000 "$block" >keep/data
echo before >keep/sub/note
ln -s data keep/link
sync
ino_data=$(stat -c %i keep/data)
ino_sub=$(stat -c %i keep/sub)
# The shell's working directory is a handle the client revalidates later.
cd keep/sub
pause restart
expect_eq restart-cwd-readable "before" "$(cat note 2>&1)"
cd /mnt
echo 3 >/proc/sys/vm/drop_caches
expect_eq restart-data "$(head -c 300000 "$block" | sha256sum | cut -d' ' -f1)" "$(sha keep/data 2>&1)"
expect_eq restart-same-inode "$ino_data" "$(stat -c %i keep/data 2>&1)"
expect_eq restart-same-dir-inode "$ino_sub" "$(stat -c %i keep/sub 2>&1)"
expect_eq restart-readlink data "$(readlink keep/link 2>&1)"
step restart-write sh -c 'echo after >>keep/sub/note'
expect_eq restart-append-visible "$(printf 'before\nafter')" "$(cat keep/sub/note 2>&1)"
step restart-create sh -c 'echo new >keep/new'
step restart-rename mv keep/new keep/renamed
step restart-remove rm keep/renamed
expect_eq restart-listing "data link sub" "$(ls keep 2>&1 | tr '\n' ' ' | sed 's/ $//')"
