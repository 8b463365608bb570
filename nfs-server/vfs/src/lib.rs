//! openefs-vfs: the storage backend an NFS server serves. Knows nothing of NFS.
//!
//! Every call is synchronous (blocking syscalls); the NFS layer runs them on
//! tokio's blocking pool. Calls that take an [`Identity`] perform the file
//! system work *as that identity* (per-thread fsuid/fsgid/groups), so
//! permission checks are the kernel's.

#![deny(unsafe_code)]

mod ap;
mod crypt;
mod error;
mod handle;
mod local;
mod purge;
pub mod usage;
// The only module allowed `unsafe`: raw system calls no safe crate wraps.
#[allow(unsafe_code)]
mod sys;

pub use crypt::ContentKey;
pub use error::VfsError;
pub use local::{LocalVfs, LocalVfsOptions};
pub use purge::Removed;

use std::sync::Arc;

pub type VfsResult<T> = Result<T, VfsError>;

/// Largest handle we ever produce (NFSv3's limit, so v3 and v4 share handles).
pub const MAX_HANDLE_LEN: usize = 64;

/// An opaque, persistent file handle: valid across server restarts for as long
/// as the object exists on the backing file system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileHandle(pub Vec<u8>);

/// Who performs an operation (after squashing / access point overrides).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// A directory of the export served as its own root, reached by clients as
/// `/ap/<id>` (see [`AP_DIR_NAME`]). Validated by the NFS layer's settings;
/// the vfs still treats the root directory as untrusted input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPoint {
    pub id: String,
    /// Absolute path inside the export, e.g. `/teams/a`; `/` is the export.
    pub root_directory: String,
    /// Who every operation through the access point runs as, whatever the
    /// client sends; `None`: the caller, as on the export.
    pub posix_user: Option<Identity>,
    /// How a missing root directory is created on first use; `None`: a
    /// missing root directory is an error (NotFound).
    pub creation_info: Option<CreationInfo>,
    /// Most metered bytes that may be stored through the access point (see
    /// [`usage`]); changes that would pass it fail with `QuotaExceeded`.
    /// `None`: no limit.
    pub max_bytes: Option<u64>,
}

/// What the ledger says is stored ([`Vfs::usage`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Metered bytes of the whole file system.
    pub stored_bytes: u64,
    /// False until the figure was restored or measured: it counts only the
    /// changes since the start.
    pub known: bool,
    /// The configured access points, in id order.
    pub access_points: Vec<ApUsage>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApUsage {
    pub id: String,
    /// Metered bytes stored through the access point (beneath its root).
    pub stored_bytes: u64,
    pub known: bool,
    pub max_bytes: Option<u64>,
}

/// What a reconciliation walk measures ([`Vfs::reconcile`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UsageTarget {
    /// The whole export.
    FileSystem,
    /// The tree beneath an access point's root.
    AccessPoint(String),
}

/// Owner and permissions of access point root directories this backend
/// creates (and of missing parents it creates on the way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreationInfo {
    pub owner_uid: u32,
    pub owner_gid: u32,
    /// Permission bits, at most 0o7777.
    pub permissions: u32,
}

/// The name of the pseudo directory beneath the export root that lists the
/// access points. It wins over a real directory of that name at the export
/// root: LOOKUP of `ap` there gives the pseudo directory, so such a
/// directory is reachable only through handles from READDIR.
pub const AP_DIR_NAME: &[u8] = b"ap";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    BlockDevice,
    CharDevice,
    Fifo,
    Socket,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub file_type: FileType,
    /// Permission bits including setuid/setgid/sticky (no file type bits).
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub space_used: u64,
    /// (major, minor) for device files.
    pub rdev: (u32, u32),
    /// Identifies the backing file system (stable across restarts).
    pub fsid: u64,
    /// Inode number.
    pub fileid: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    /// Changes on every data or metadata change of the object, including two
    /// changes within one ctime tick made through this server.
    pub change: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    ServerNow,
    Client(Timestamp),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsStat {
    pub bytes_total: u64,
    pub bytes_free: u64,
    pub bytes_avail: u64,
    pub files_total: u64,
    pub files_free: u64,
    pub files_avail: u64,
}

/// How a regular file is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateMode {
    /// Open if it exists (then `attrs.size` may truncate), create otherwise.
    Unchecked,
    /// Fail with `Exists` if it exists.
    Guarded,
    /// Exclusive create with a client verifier: succeeds again (idempotently)
    /// for a retransmission carrying the same verifier, fails with `Exists`
    /// if the file exists with another verifier. The verifier is stored with
    /// the file (e.g. in its timestamps or an xattr) until the next SETATTR.
    Exclusive([u8; 8]),
}

/// Result of creating an object in a directory.
#[derive(Clone, Debug)]
pub struct Created {
    pub handle: FileHandle,
    pub attr: Attr,
    /// False when `Unchecked`/`Exclusive` found an existing file.
    pub created: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stability {
    Unstable,
    DataSync,
    FileSync,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenAccess {
    pub read: bool,
    pub write: bool,
}

/// An open regular file. Permission was checked (as the opener) when it was
/// opened; I/O through it needs no further check, as with a POSIX fd.
#[derive(Debug)]
pub struct OpenFile {
    pub handle: FileHandle,
    pub access: OpenAccess,
    pub file: std::fs::File,
    /// The file's content nonce once read (encrypted exports): it never
    /// changes, and reading its xattr per call cost as much as the `pread`
    /// of a 4 KiB READ.
    content_nonce: std::sync::OnceLock<[u8; 8]>,
}

impl OpenFile {
    pub fn new(handle: FileHandle, access: OpenAccess, file: std::fs::File) -> Self {
        Self {
            handle,
            access,
            file,
            content_nonce: std::sync::OnceLock::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: Vec<u8>,
    /// Resume position: passing it back continues after this entry. Never 0,
    /// 1 or 2 (reserved by NFS). Stable while the directory is unchanged.
    pub cookie: u64,
    pub handle: FileHandle,
    pub attr: Attr,
}

#[derive(Clone, Debug)]
pub struct DirPage {
    pub entries: Vec<DirEntry>,
    pub eof: bool,
}

/// Access bits (same values as NFSv4 ACCESS4_*).
pub mod access {
    pub const READ: u32 = 0x01;
    pub const LOOKUP: u32 = 0x02;
    pub const MODIFY: u32 = 0x04;
    pub const EXTEND: u32 = 0x08;
    pub const DELETE: u32 = 0x10;
    pub const EXECUTE: u32 = 0x20;
}

pub trait Vfs: Send + Sync + 'static {
    /// Handle of the export root.
    fn root(&self) -> FileHandle;
    fn getattr(&self, fh: &FileHandle) -> VfsResult<Attr>;
    fn setattr(&self, id: &Identity, fh: &FileHandle, set: &SetAttr) -> VfsResult<Attr>;
    /// Looks `name` up in directory `dir` (no `.`/`..`; those are refused).
    /// [`AP_DIR_NAME`] in the export root is the access points' pseudo
    /// directory, whose entries are the access points' roots.
    fn lookup(&self, id: &Identity, dir: &FileHandle, name: &[u8])
    -> VfsResult<(FileHandle, Attr)>;
    /// Parent of `dir`; the export root's parent is the root itself.
    fn lookup_parent(&self, id: &Identity, dir: &FileHandle) -> VfsResult<(FileHandle, Attr)>;
    /// Which of the requested `access::*` bits `id` has on `fh`.
    fn access(&self, id: &Identity, fh: &FileHandle, requested: u32) -> VfsResult<u32>;
    fn open(&self, id: &Identity, fh: &FileHandle, access: OpenAccess) -> VfsResult<Arc<OpenFile>>;
    /// Reads up to `count` bytes; returns the data and whether EOF was reached.
    fn read(&self, file: &OpenFile, offset: u64, count: u32) -> VfsResult<(Vec<u8>, bool)>;
    /// Writes all of `data`; returns the stability actually achieved (≥ requested).
    fn write(
        &self,
        file: &OpenFile,
        offset: u64,
        data: &[u8],
        stability: Stability,
    ) -> VfsResult<Stability>;
    /// Makes previously written data of `fh` durable.
    fn commit(&self, fh: &FileHandle) -> VfsResult<()>;
    fn create(
        &self,
        id: &Identity,
        dir: &FileHandle,
        name: &[u8],
        mode: u32,
        how: CreateMode,
        set: &SetAttr,
    ) -> VfsResult<Created>;
    fn mkdir(&self, id: &Identity, dir: &FileHandle, name: &[u8], mode: u32) -> VfsResult<Created>;
    fn symlink(
        &self,
        id: &Identity,
        dir: &FileHandle,
        name: &[u8],
        target: &[u8],
    ) -> VfsResult<Created>;
    fn readlink(&self, id: &Identity, fh: &FileHandle) -> VfsResult<Vec<u8>>;
    /// Removes a non-directory or an empty directory.
    fn remove(&self, id: &Identity, dir: &FileHandle, name: &[u8]) -> VfsResult<()>;
    fn rename(
        &self,
        id: &Identity,
        from_dir: &FileHandle,
        from: &[u8],
        to_dir: &FileHandle,
        to: &[u8],
    ) -> VfsResult<()>;
    fn link(&self, id: &Identity, fh: &FileHandle, dir: &FileHandle, name: &[u8]) -> VfsResult<()>;
    /// Entries after `cookie` (0 = from the start), at most `max_entries`.
    fn readdir(
        &self,
        id: &Identity,
        dir: &FileHandle,
        cookie: u64,
        max_entries: usize,
    ) -> VfsResult<DirPage>;
    fn statfs(&self, fh: &FileHandle) -> VfsResult<FsStat>;
    /// Replaces the served access points. Handles issued through one that is
    /// no longer in `aps` (or whose root directory changed) are stale from
    /// now on; operations on handles of the others run as their `posix_user`.
    fn set_access_points(&self, aps: &[AccessPoint]);
    /// The stored bytes of the file system and of each access point.
    fn usage(&self) -> Usage;
    /// Sets figures recorded by an earlier instance: the file system's
    /// (`None`: leave it) and the access points' (id, bytes), also of ids
    /// configured only later. They count as known.
    fn restore_usage(&self, stored_bytes: Option<u64>, access_points: &[(String, u64)]);
    /// Measures `target` by walking it and replaces its figure; returns the
    /// figure before and the measured one. Stops with an error once `stop`
    /// is set.
    fn reconcile(
        &self,
        target: &UsageTarget,
        stop: &std::sync::atomic::AtomicBool,
    ) -> VfsResult<(u64, u64)>;
    /// Removes `root_directory` (absolute in the export; a deleted access
    /// point's root) and everything below it, following no symlink and not
    /// leaving the export's file system; its metered bytes leave the ledger.
    /// Refused for the export's root and while a configured access point's
    /// root is that directory, above it or below it. A missing directory is
    /// nothing to do.
    fn delete_tree(&self, root_directory: &str) -> Result<Removed, DeleteTreeError>;
}

/// Why [`Vfs::delete_tree`] removed nothing, or not everything.
#[derive(Debug, thiserror::Error)]
pub enum DeleteTreeError {
    #[error("{0:?} is the export's root: deleting it would delete the whole file system")]
    ExportRoot(String),
    #[error(
        "{path:?} is in use by access point {access_point:?} (its root directory, or above or below it)"
    )]
    InUse { path: String, access_point: String },
    #[error("removing {path:?}: {source}")]
    Removal {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Vfs(#[from] VfsError),
}
