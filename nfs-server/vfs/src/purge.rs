//! Removal of a directory tree beneath the export: an access point's root
//! directory, deleted with its AccessPoint when asked
//! (`rootDirectory.deletionPolicy: Delete`).
//!
//! Written here rather than with `std::fs::remove_dir_all`: the walk must
//! go from directory fds the kernel confined, never re-resolving a path, so
//! that a client swapping a directory for a symlink during the walk cannot
//! send it anywhere else; it must stay on the export's file system; and it
//! meters what it removes for the usage ledger.

use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Statx, StatxFlags};
use rustix::io::Errno;

/// Bytes of directory entries fetched per `getdents64`.
const READDIR_BUF: usize = 32 << 10;

/// How often a directory that a client keeps filling is emptied again
/// before the removal gives up (ENOTEMPTY).
const RESCANS: u32 = 3;

/// What a removal took away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Objects (files, directories, links…) whose last link was removed.
    pub objects: u64,
    /// Their metered size (see [`crate::usage`]).
    pub metered_bytes: u64,
}

/// A directory being emptied: its fd, its name in the directory below it on
/// the stack, and the subdirectories still to empty.
struct Frame {
    fd: OwnedFd,
    name: CString,
    subdirs: Vec<CString>,
    rescans: u32,
}

/// Removes `name` in `parent` and everything below it. Symlinks are removed,
/// never followed; a directory on another file system (a mount point) stops
/// the removal with EXDEV. A missing `name` is nothing to do. `metered`
/// gives an object's metered size from its stat. The walk is iterative (a
/// deep tree cannot overflow the stack) and holds one fd per level, so a
/// tree deeper than the open-file limit fails with EMFILE, having removed
/// what it reached. An error comes with what was removed before it.
pub(crate) fn remove_tree(
    parent: BorrowedFd<'_>,
    name: &CStr,
    metered: impl Fn(&Statx) -> u64,
) -> Result<Removed, (Removed, Errno)> {
    let mut removed = Removed::default();
    match remove_below(parent, name, &metered, &mut removed) {
        Ok(()) => Ok(removed),
        Err(e) => Err((removed, e)),
    }
}

fn remove_below(
    parent: BorrowedFd<'_>,
    name: &CStr,
    metered: &impl Fn(&Statx) -> u64,
    removed: &mut Removed,
) -> Result<(), Errno> {
    let dev = device(&statx_at(parent, c"")?);
    let mut stack: Vec<Frame> = Vec::new();
    let mut next = Some(name.to_owned());
    loop {
        if let Some(name) = next.take() {
            let at = stack.last().map_or(parent, |f| f.fd.as_fd());
            match open_dir(at, &name) {
                Ok(fd) => {
                    if device(&statx_at(fd.as_fd(), c"")?) != dev {
                        return Err(Errno::XDEV);
                    }
                    let subdirs = remove_non_dirs(fd.as_fd(), metered, removed)?;
                    stack.push(Frame {
                        fd,
                        name,
                        subdirs,
                        rescans: 0,
                    });
                }
                // Not a directory (or no longer one): removed as a file.
                Err(Errno::NOTDIR | Errno::LOOP) => remove_file(at, &name, metered, removed)?,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(e),
            }
        }
        let Some(top) = stack.last_mut() else {
            return Ok(());
        };
        if let Some(sub) = top.subdirs.pop() {
            next = Some(sub);
            continue;
        }
        let Some(mut frame) = stack.pop() else {
            return Ok(());
        };
        let at = stack.last().map_or(parent, |f| f.fd.as_fd());
        let st = statx_at(frame.fd.as_fd(), c"")?;
        match rustix::fs::unlinkat(at, frame.name.as_c_str(), AtFlags::REMOVEDIR) {
            Ok(()) => {
                removed.objects += 1;
                removed.metered_bytes += metered(&st);
            }
            Err(Errno::NOENT) => {}
            // Filled again meanwhile (a client writing through the export).
            Err(Errno::NOTEMPTY) if frame.rescans < RESCANS => {
                frame.subdirs = remove_non_dirs(frame.fd.as_fd(), metered, removed)?;
                frame.rescans += 1;
                stack.push(frame);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes every entry of `dir` that is not a directory; returns the names
/// of the directories.
fn remove_non_dirs(
    dir: BorrowedFd<'_>,
    metered: &impl Fn(&Statx) -> u64,
    removed: &mut Removed,
) -> Result<Vec<CString>, Errno> {
    let mut subdirs = Vec::new();
    let mut files = Vec::new();
    let mut buf = vec![MaybeUninit::<u8>::uninit(); READDIR_BUF];
    // The fd is read from its current offset: start again for a rescan.
    rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0))?;
    let mut entries = RawDir::new(dir, &mut buf);
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        // d_type is a hint (some file systems say Unknown); opening with
        // O_NOFOLLOW|O_DIRECTORY decides for real.
        if entry.file_type() == FileType::Directory || entry.file_type() == FileType::Unknown {
            subdirs.push(name.to_owned());
        } else {
            files.push(name.to_owned());
        }
    }
    for name in files {
        remove_file(dir, &name, metered, removed)?;
    }
    Ok(subdirs)
}

fn remove_file(
    dir: BorrowedFd<'_>,
    name: &CStr,
    metered: &impl Fn(&Statx) -> u64,
    removed: &mut Removed,
) -> Result<(), Errno> {
    let st = match statx_at(dir, name) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => {
            // Other links keep the object (and its metered size) alive.
            if st.stx_nlink <= 1 {
                removed.objects += 1;
                removed.metered_bytes += metered(&st);
            }
            Ok(())
        }
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn open_dir(at: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn statx_at(at: BorrowedFd<'_>, name: &CStr) -> Result<Statx, Errno> {
    let flags = if name.is_empty() {
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    rustix::fs::statx(at, name, flags, StatxFlags::BASIC_STATS)
}

fn device(st: &Statx) -> (u32, u32) {
    (st.stx_dev_major, st.stx_dev_minor)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn open(path: &std::path::Path) -> OwnedFd {
        rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open")
    }

    #[test]
    fn removes_a_tree_and_never_follows_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("keep"), b"keep").expect("write");
        let tree = dir.path().join("export/tree");
        std::fs::create_dir_all(tree.join("a/b/c")).expect("mkdir");
        std::fs::write(tree.join("a/f"), b"f").expect("write");
        std::fs::write(tree.join("a/b/c/g"), b"g").expect("write");
        // A hard link outside the tree keeps that object alive.
        std::fs::hard_link(tree.join("a/f"), dir.path().join("export/f-link")).expect("link");
        symlink(&outside, tree.join("a/b/to-outside")).expect("symlink");
        symlink("../../../../outside", tree.join("a/b/c/rel")).expect("symlink");
        let parent = open(&dir.path().join("export"));
        let removed = remove_tree(parent.as_fd(), c"tree", |_| 1).expect("remove");
        assert!(!tree.exists());
        assert_eq!(std::fs::read(outside.join("keep")).expect("kept"), b"keep");
        assert!(dir.path().join("export/f-link").exists());
        // tree, a, b, c, g and the two symlinks; f lives on through its link.
        assert_eq!(
            removed,
            Removed {
                objects: 7,
                metered_bytes: 7
            }
        );
        // Nothing left is nothing to do.
        assert_eq!(
            remove_tree(parent.as_fd(), c"tree", |_| 1).expect("again"),
            Removed::default()
        );
    }

    #[test]
    fn a_symlink_in_place_of_the_tree_is_removed_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(outside.join("sub")).expect("mkdir");
        std::fs::create_dir(dir.path().join("export")).expect("mkdir");
        symlink(&outside, dir.path().join("export/tree")).expect("symlink");
        let parent = open(&dir.path().join("export"));
        let removed = remove_tree(parent.as_fd(), c"tree", |_| 0).expect("remove");
        assert_eq!(removed.objects, 1);
        assert!(outside.join("sub").is_dir());
    }

    #[test]
    fn a_deep_tree_is_removed_without_recursion() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut path = dir.path().join("tree");
        for _ in 0..200 {
            path.push("d");
        }
        std::fs::create_dir_all(&path).expect("mkdir");
        let parent = open(dir.path());
        let removed = remove_tree(parent.as_fd(), c"tree", |_| 0).expect("remove");
        assert_eq!(removed.objects, 201);
        assert!(!dir.path().join("tree").exists());
    }
}
