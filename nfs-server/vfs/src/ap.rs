//! Access points as the backend sees them: the table of configured ones by
//! id and by handle scope, what a resolved handle was reached through
//! ([`Via`]), and the kernel-confined walk to an access point's root.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::handle::{HandleCodec, Scope};
use crate::usage::{Figure, Ledger};
use crate::{AccessPoint, FsStat, Identity, Timestamp, VfsError, VfsResult};

/// The inode number the `/ap` pseudo directory reports: file systems hand
/// out inode numbers from the bottom, so it does not collide in practice.
pub(crate) const AP_DIR_FILEID: u64 = u64::MAX;

/// How an access point's root directory is resolved from the export root:
/// by the kernel, never leaving the export (`..` and absolute symlinks that
/// would are refused), never through `/proc` magic links, never into
/// another mount.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// openat2 says EAGAIN when a rename raced the walk; it is worth a retry or
/// two, not a loop a busy tree could keep spinning.
const RESOLVE_TRIES: usize = 4;

#[derive(Debug)]
pub(crate) struct ApEntry {
    pub spec: AccessPoint,
    pub scope: Scope,
    /// Its stored bytes in the ledger, kept across changes of the table.
    pub usage: Arc<Figure>,
}

impl ApEntry {
    /// The space figures a client of this access point sees (`df` on its
    /// mount, the CSI driver's volume stats): its own stored bytes as used,
    /// its quota as the size when it has one. Free space is what is left of
    /// the quota, never more than the volume has left; without a quota the
    /// size is what it uses plus what the volume has free. Inode figures
    /// stay the volume's: no per-access-point count of objects is kept.
    pub fn space(&self, volume: FsStat) -> FsStat {
        let used = self.usage.bytes();
        let (total, free, avail) = match self.spec.max_bytes {
            Some(max) => {
                let left = max.saturating_sub(used);
                (
                    max,
                    left.min(volume.bytes_free),
                    left.min(volume.bytes_avail),
                )
            }
            None => (
                used.saturating_add(volume.bytes_free),
                volume.bytes_free,
                volume.bytes_avail,
            ),
        };
        FsStat {
            bytes_total: total,
            bytes_free: free,
            bytes_avail: avail,
            ..volume
        }
    }
}

/// What a handle was issued through; decides the identity operations run
/// as and the kind of handles issued for what they reach.
#[derive(Clone, Debug)]
pub(crate) enum Via {
    Export,
    Ap(Arc<ApEntry>),
}

impl Via {
    /// The identity to act as: the access point's POSIX user if it has one,
    /// else the caller.
    pub fn identity<'a>(&'a self, caller: &'a Identity) -> &'a Identity {
        match self {
            Via::Ap(ap) => ap.spec.posix_user.as_ref().unwrap_or(caller),
            Via::Export => caller,
        }
    }

    pub fn scope(&self) -> Option<&Scope> {
        match self {
            Via::Ap(ap) => Some(&ap.scope),
            Via::Export => None,
        }
    }

    /// Whether two handles may meet in one operation (RENAME, LINK).
    pub fn same_scope(&self, other: &Via) -> bool {
        self.scope() == other.scope()
    }
}

/// The configured access points, replaced whole on every change.
#[derive(Debug, Default)]
pub(crate) struct ApTable {
    /// By id, in id order (the `/ap` listing's order).
    pub by_id: BTreeMap<String, Arc<ApEntry>>,
    pub by_scope: HashMap<Scope, Arc<ApEntry>>,
    /// The `/ap` directory's change attribute and timestamps.
    pub change: u64,
    pub changed_at: Timestamp,
}

impl ApTable {
    pub fn new(codec: &HandleCodec, ledger: &Ledger, aps: &[AccessPoint], change: u64) -> Self {
        let mut by_id = BTreeMap::new();
        let mut by_scope = HashMap::with_capacity(aps.len());
        for spec in aps {
            let entry = Arc::new(ApEntry {
                scope: codec.scope(&spec.id, &spec.root_directory),
                usage: ledger.ap(&spec.id),
                spec: spec.clone(),
            });
            by_scope.insert(entry.scope, entry.clone());
            by_id.insert(spec.id.clone(), entry);
        }
        let changed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(Timestamp::default(), |d| Timestamp {
                seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            });
        Self {
            by_id,
            by_scope,
            change,
            changed_at,
        }
    }
}

/// The components of an access point's root directory, relative to the
/// export root. The settings validated it already; this refuses again what
/// would make the walk mean something else.
pub(crate) fn components(root: &str) -> VfsResult<Vec<&str>> {
    let parts: Vec<&str> = root.split('/').filter(|c| !c.is_empty()).collect();
    if !root.starts_with('/') || parts.iter().any(|c| matches!(*c, "." | "..")) {
        return Err(VfsError::Inval);
    }
    Ok(parts)
}

/// Opens the directory `parts` beneath `base` as an `O_PATH` fd, confined
/// by the kernel (see [`RESOLVE`]).
pub(crate) fn open_beneath(base: &OwnedFd, parts: &[&str]) -> Result<OwnedFd, Errno> {
    open_beneath_with(base, parts, RESOLVE)
}

/// As [`open_beneath`], following no symlink at all: for removing a tree,
/// which must reach the very directory the path names.
pub(crate) fn open_beneath_no_symlinks(base: &OwnedFd, parts: &[&str]) -> Result<OwnedFd, Errno> {
    open_beneath_with(base, parts, RESOLVE.union(ResolveFlags::NO_SYMLINKS))
}

fn open_beneath_with(
    base: &OwnedFd,
    parts: &[&str],
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let path = if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            base,
            path.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        ) {
            Err(Errno::AGAIN) if tries + 1 < RESOLVE_TRIES => tries += 1,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_directories_are_absolute_and_never_step_up() {
        assert_eq!(components("/").expect("root"), Vec::<&str>::new());
        assert_eq!(components("//a//b/").expect("ok"), vec!["a", "b"]);
        for bad in ["", "a/b", "/a/../b", "/..", "/./a"] {
            assert!(matches!(components(bad), Err(VfsError::Inval)), "{bad}");
        }
    }

    #[test]
    fn the_walk_stays_beneath_the_base() {
        let dir = tempfile::tempdir().expect("tempdir");
        let export = dir.path().join("export");
        std::fs::create_dir_all(export.join("a/b")).expect("mkdir");
        std::fs::create_dir(dir.path().join("outside")).expect("mkdir");
        std::os::unix::fs::symlink("/", export.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../outside", export.join("rel")).expect("symlink");
        std::os::unix::fs::symlink("a/b", export.join("inside")).expect("symlink");
        let base = rustix::fs::open(
            &export,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open");
        assert!(open_beneath(&base, &["a", "b"]).is_ok());
        assert!(open_beneath(&base, &[]).is_ok());
        // A symlink that stays inside is followed; one that leaves is not.
        assert!(open_beneath(&base, &["inside"]).is_ok());
        assert_eq!(open_beneath(&base, &["abs"]).err(), Some(Errno::XDEV));
        assert_eq!(open_beneath(&base, &["rel"]).err(), Some(Errno::XDEV));
        assert_eq!(open_beneath(&base, &["nope"]).err(), Some(Errno::NOENT));
    }
}
