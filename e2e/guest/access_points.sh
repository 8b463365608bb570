# Through access point x (mounted at /mnt as /ap/x): posix user 1000:1000,
# root directory /teams/x, created on first use with creation info
# 1000:1000 0750, a quota of 4 MiB. The host's export also holds /secret,
# outside it.

section creation
expect_eq root-created-from-creation-info "750 1000:1000" "$(stat -c '%a %u:%g' .)"

section identity
# The guest is root; the server acts as the access point's user.
touch as-root
expect_eq created-as-posix-user 1000:1000 "$(stat -c %u:%g as-root)"
mkdir dir
expect_eq mkdir-as-posix-user 1000:1000 "$(stat -c %u:%g dir)"
expect_err chown-to-root-refused "Operation not permitted" chown 0 as-root

section quota
# 8 MiB do not fit in 4: the server refuses the WRITE that would pass the
# quota (DQUOT), which the client reports by fsync at the latest. A remove
# makes room again.
expect_err dd-past-the-quota "Disk quota exceeded" dd if=/dev/zero of=big bs=64k count=128 conv=fsync
rm -f big
step write-after-rm dd if=/dev/zero of=small bs=64k count=16 conv=fsync
# df on the mount shows the access point, not the volume: the quota as the
# size, its own 1 MiB (and more) as used.
expect_eq df-size-is-the-quota 4194304 "$(( $(stat -f -c '%b * %S' .) ))"
expect_eq df-used-is-the-access-points yes \
    "$([ $(( $(stat -f -c '(%b - %f) * %S' .) )) -ge 1048576 ] && echo yes)"
rm -f small

section escapes
# The server never follows symlinks: the client resolves them, in its own
# name space, where the export's /secret is nowhere.
ln -s /secret abs
ln -s ../../../../secret rel
expect_err absolute-symlink-resolves-nowhere "No such file or directory" cat abs
expect_err relative-symlink-resolves-nowhere "No such file or directory" cat rel
expect_err dotdot-leaves-the-mount-not-to-the-export "No such file or directory" cat ../secret
expect_err dotdot-from-a-subdirectory "No such file or directory" cat dir/../../secret

section root-export
# The same client mounts the export itself: there it acts as root, and
# sees the access point's files where they are.
mkdir -p /tmp/root /tmp/again
step mount-export mount -t "$MOUNT_TYPE" -o "$MOUNT_OPTS" "${MOUNT_SRC%%:*}:/" /tmp/root
expect_eq export-sees-outside "root only" "$(cat /tmp/root/secret)"
expect_eq export-sees-ap-file 1000:1000 "$(stat -c %u:%g /tmp/root/teams/x/as-root)"
expect_eq ap-directory-lists-x x "$(ls /tmp/root/ap)"
touch /tmp/root/teams/x/by-root
expect_eq export-acts-as-caller 0:0 "$(stat -c %u:%g /tmp/root/teams/x/by-root)"

section removal
pause remove-ap
expect_err removed-ap-is-stale "Stale file handle" touch after-removal
expect_err removed-ap-not-listed "No such file or directory" stat /tmp/root/ap/x
expect_eq export-unaffected "root only" "$(cat /tmp/root/secret)"
pause add-ap
step mount-re-added-ap mount -t "$MOUNT_TYPE" -o "$MOUNT_OPTS" "${MOUNT_SRC}" /tmp/again
expect_eq re-added-ap-serves 1000:1000 "$(stat -c %u:%g /tmp/again/as-root)"
umount /tmp/again

section policies
# The file system policy, switched at runtime (config file + SIGHUP), seen
# through the export mount by the guest's root.
mkdir -m 1777 /tmp/root/shared
pause root-squash
step squashed-root-creates touch /tmp/root/shared/squashed
expect_eq squashed-root-owns-as-anonymous 65534:65534 "$(stat -c %u:%g /tmp/root/shared/squashed)"
expect_err squashed-root-cannot-write-roots-file "Permission denied" sh -c "echo x >>/tmp/root/secret"
pause read-only
expect_err read-only-refuses-create "Read-only file system" touch /tmp/root/shared/ro
expect_err read-only-refuses-remove "Read-only file system" rm -f /tmp/root/shared/squashed
expect_eq read-only-still-reads "root only" "$(cat /tmp/root/secret)"
pause writable
step writable-again touch /tmp/root/shared/rw
expect_eq writable-again-as-root 0:0 "$(stat -c %u:%g /tmp/root/shared/rw)"
umount /tmp/root
