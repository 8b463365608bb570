//! [`LocalVfs`]: a directory of the local file system, served with persistent
//! handles, every change made as the caller.
//!
//! How each requirement is met:
//! - Handles: `name_to_handle_at` bytes, authenticated (see `handle.rs`),
//!   resolved with `open_by_handle_at` into an `O_PATH` fd, which a sharded
//!   LRU keeps so hot objects are not resolved again.
//! - Identity: calls that take an [`Identity`] switch the executing thread's
//!   fsuid/fsgid/groups for their file system calls (`sys::AsIdentity`), so
//!   the kernel checks permissions and new files belong to the caller.
//!   Handle resolution happens before the switch (it needs fsuid 0).
//! - Confinement: names are single components, never `.`/`..`; objects are
//!   opened with `O_NOFOLLOW` relative to their parent's fd, so a symlink is
//!   an object, never a path; a mount inside the export is not entered
//!   ([`VfsError::XDev`]).
//! - Access points: `/ap` (a pseudo directory beneath the root) leads to
//!   each configured access point's root, resolved with `openat2` beneath
//!   the export; handles issued through one carry its scope (see
//!   `handle.rs`), which decides the identity calls run as (its POSIX user)
//!   and the scope of every handle issued from them. Objects are cached once
//!   whatever the scope, under their export handle.
//! - Objects are reached by fd, never by path: an fd is re-opened for I/O
//!   through `/proc/self/fd/N` (the kernel's documented way to upgrade an
//!   `O_PATH` fd), which checks permissions against the opener.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::mem::MaybeUninit;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use lru::LruCache;
use rustix::fs::{
    Access, AtFlags, Mode, OFlags, RawDir, Statx, StatxFlags, Timespec, Timestamps, XattrFlags,
};
use rustix::io::Errno;
use rustix::path::DecInt;
use rustix::thread::{Gid, Uid};

use crate::ap::{self, ApEntry, ApTable, Via};
use crate::crypt::{self, BLOCK, BLOCK_U64, ContentCipher, NONCE_XATTR, Nonce};
use crate::error::Context;
use crate::handle::{self, Decoded, HandleCodec};
use crate::purge::{self, Removed};
use crate::sys::{self, AsIdentity, BaseCreds, RawHandle};
use crate::usage::{self, Change, Ledger};
use crate::{
    AP_DIR_NAME, AccessPoint, ApUsage, Attr, CreateMode, Created, CreationInfo, DeleteTreeError,
    DirEntry, DirPage, FileHandle, FileType, FsStat, Identity, OpenAccess, OpenFile, SetAttr,
    SetTime, Stability, Timestamp, Usage, UsageTarget, Vfs, VfsError, VfsResult, access,
};

/// Tuning of a [`LocalVfs`].
#[derive(Clone, Debug)]
pub struct LocalVfsOptions {
    /// How many resolved handles keep an `O_PATH` fd open (one fd each). It is
    /// clamped to half the process's open-file limit.
    pub cache_capacity: usize,
    /// Make creates, removals, renames, links and attribute changes durable
    /// (fsync of the changed directory or object) before returning, as NFS
    /// requires of a server that may crash (knfsd's `sync` export option).
    pub sync_metadata: bool,
    /// Encrypt file contents with this data key; `None`: store plaintext.
    pub content_key: Option<crate::ContentKey>,
}

impl Default for LocalVfsOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 4096,
            sync_metadata: true,
            content_key: None,
        }
    }
}

/// Largest read served in one call; a shorter read than asked is legal in
/// NFS, and this bounds the buffer a request can make us allocate.
const MAX_READ: usize = 16 << 20;
/// Linux's NAME_MAX.
const NAME_MAX: usize = 255;
/// Linux's PATH_MAX, the longest symlink target.
const PATH_MAX: usize = 4096;
/// Readdir cookies are the file system's `d_off` plus this, so that they
/// never collide with 0 (start), 1 and 2 (reserved by NFS).
const COOKIE_BIAS: u64 = 3;
/// Bytes of directory entries fetched per `getdents64`.
const READDIR_BUF: usize = 32 << 10;
const VERIFIER_XATTR: &CStr = c"trusted.openefs.create-verifier";
const CACHE_SHARDS: usize = 16;
/// OpenSSL failing is not the client's doing: logged here, EIO to it.
impl From<crypt::CipherError> for VfsError {
    fn from(e: crypt::CipherError) -> Self {
        tracing::error!(error = %e, "encryption at rest: the content cipher failed");
        VfsError::Io {
            context: "the content cipher",
            errno: libc::EIO,
        }
    }
}

/// Per-file locks of encrypted contents, striped by inode number.
const LOCK_STRIPES: usize = 256;

/// Content encryption (see `crypt.rs`): the cipher, and the per-file locks
/// that make a read-modify-write of a block, and a change of the file's
/// last unit with its size, atomic against the file's other readers and
/// writers through this instance.
struct Crypt {
    cipher: ContentCipher,
    locks: Box<[RwLock<()>]>,
}

impl Crypt {
    fn new(key: &crate::ContentKey) -> VfsResult<Self> {
        Ok(Self {
            cipher: ContentCipher::new(key)?,
            locks: (0..LOCK_STRIPES).map(|_| RwLock::new(())).collect(),
        })
    }

    /// The lock of the file with inode `ino`. Nothing a holder does can leave
    /// the file half changed in memory, so poison is ignored.
    fn read(&self, ino: u64) -> std::sync::RwLockReadGuard<'_, ()> {
        self.stripe(ino).read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, ino: u64) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.stripe(ino).write().unwrap_or_else(|e| e.into_inner())
    }

    fn stripe(&self, ino: u64) -> &RwLock<()> {
        // The remainder is below LOCK_STRIPES: the cast cannot truncate.
        &self.locks[(ino % LOCK_STRIPES as u64) as usize]
    }
}

/// A resolved object: an `O_PATH` fd and its change counter.
///
/// The `change` attribute is `ctime (ns) + changes`. `changes` starts at the
/// instance's epoch (its start time in ns) and every modification made
/// through this instance sets it to the next value of an instance-wide
/// sequence that started at the same epoch. So two changes within one ctime
/// tick still give two values, and values never repeat across restarts (a
/// new epoch is later than the old epoch plus the number of changes made
/// since, as long as fewer than one change per nanosecond happened).
/// Limits: a restart changes every object's value once (clients revalidate
/// their caches once); a change made outside this server within the ctime
/// tick of the previous change is invisible; and a node evicted from the
/// cache and modified again within the same ctime tick could repeat a value
/// (recently modified nodes are the last the LRU evicts, so this needs a
/// whole cache shard of new lookups within one tick).
struct Node {
    fd: OwnedFd,
    changes: AtomicU64,
}

/// Handle → [`Node`], sharded so that threads working on different objects
/// rarely wait for one another.
struct NodeCache {
    shards: Box<[Mutex<Shard>]>,
}

type Shard = LruCache<FileHandle, Arc<Node>>;

impl NodeCache {
    fn new(capacity: usize) -> Self {
        let per_shard =
            NonZeroUsize::new(capacity.div_ceil(CACHE_SHARDS)).unwrap_or(NonZeroUsize::MIN);
        Self {
            shards: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(LruCache::new(per_shard)))
                .collect(),
        }
    }

    fn shard(&self, fh: &FileHandle) -> MutexGuard<'_, Shard> {
        // The last bytes of a handle are its MAC tag: already uniformly spread.
        let i = fh.0.last().map_or(0, |b| usize::from(*b) % CACHE_SHARDS);
        // A panic while holding the lock cannot leave the LRU inconsistent
        // in a way that matters here (worst case, a stale entry), so poison
        // is ignored rather than spread.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, fh: &FileHandle) -> Option<Arc<Node>> {
        self.shard(fh).get(fh).cloned()
    }

    fn peek(&self, fh: &FileHandle) -> Option<Arc<Node>> {
        self.shard(fh).peek(fh).cloned()
    }

    /// Inserts `node` unless the handle is cached already; returns the cached
    /// one (keeping its change counter).
    fn insert(&self, fh: FileHandle, node: Node) -> Arc<Node> {
        self.shard(&fh).get_or_insert(fh, || Arc::new(node)).clone()
    }

    fn remove(&self, fh: &FileHandle) -> Option<Arc<Node>> {
        self.shard(fh).pop(fh)
    }
}

/// A validated single path component, NUL-terminated on the stack.
struct Name {
    buf: [u8; NAME_MAX + 1],
    len: usize,
}

impl Name {
    fn new(name: &[u8]) -> VfsResult<Self> {
        if name.is_empty()
            || name == b"."
            || name == b".."
            || name.iter().any(|&b| b == b'/' || b == 0)
        {
            return Err(VfsError::InvalidName);
        }
        if name.len() > NAME_MAX {
            return Err(VfsError::NameTooLong);
        }
        let mut buf = [0; NAME_MAX + 1];
        buf[..name.len()].copy_from_slice(name);
        Ok(Self {
            buf,
            len: name.len(),
        })
    }

    fn c(&self) -> &CStr {
        // The constructor refused NULs and left a terminating one.
        CStr::from_bytes_with_nul(&self.buf[..=self.len]).unwrap_or_default()
    }
}

/// A local directory served as an export. See the module documentation.
pub struct LocalVfs {
    /// A real fd of the export root: the file system `open_by_handle_at`
    /// resolves handles on (it refuses `O_PATH` fds).
    mount_fd: OwnedFd,
    /// `/proc/self/fd`, checked to be procfs, for re-opening `O_PATH` fds.
    proc_fd: OwnedFd,
    root_handle: FileHandle,
    /// The handle of the `/ap` pseudo directory.
    ap_dir: FileHandle,
    root_mount_id: i32,
    fsid: u64,
    codec: HandleCodec,
    base: BaseCreds,
    nodes: NodeCache,
    epoch: u64,
    change_seq: AtomicU64,
    sync_metadata: bool,
    /// The access points served now; replaced whole by `set_access_points`.
    aps: RwLock<Arc<ApTable>>,
    /// Stored bytes of the file system and of each access point.
    ledger: Ledger,
    /// `Some`: file contents are stored encrypted.
    crypt: Option<Crypt>,
}

impl std::fmt::Debug for LocalVfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalVfs")
            .field("fsid", &self.fsid)
            .finish_non_exhaustive()
    }
}

fn statx_fd(fd: impl AsFd) -> VfsResult<Statx> {
    rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS).context("statx")
}

/// The metered size of an object (see `usage`).
fn metered(st: &Statx) -> u64 {
    usage::metered_size(
        file_type(st),
        st.stx_size,
        st.stx_blocks.saturating_mul(512),
    )
}

fn file_type(st: &Statx) -> FileType {
    use rustix::fs::FileType as K;
    match K::from_raw_mode(st.stx_mode.into()) {
        K::Directory => FileType::Directory,
        K::Symlink => FileType::Symlink,
        K::BlockDevice => FileType::BlockDevice,
        K::CharacterDevice => FileType::CharDevice,
        K::Fifo => FileType::Fifo,
        K::Socket => FileType::Socket,
        K::RegularFile | K::Unknown => FileType::Regular,
    }
}

/// The error for an object of the wrong type where a regular file is needed.
fn not_regular(ft: FileType) -> VfsError {
    match ft {
        FileType::Directory => VfsError::IsDir,
        FileType::Symlink => VfsError::Symlink,
        _ => VfsError::WrongType,
    }
}

fn require_dir(st: &Statx) -> VfsResult<()> {
    match file_type(st) {
        FileType::Directory => Ok(()),
        _ => Err(VfsError::NotDir),
    }
}

fn timestamp(t: &rustix::fs::StatxTimestamp) -> Timestamp {
    Timestamp {
        seconds: t.tv_sec,
        nanos: t.tv_nsec,
    }
}

fn timespec(t: Option<SetTime>) -> VfsResult<Timespec> {
    Ok(match t {
        None => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        Some(SetTime::ServerNow) => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        Some(SetTime::Client(ts)) if ts.nanos < 1_000_000_000 => Timespec {
            tv_sec: ts.seconds,
            tv_nsec: ts.nanos.into(),
        },
        Some(SetTime::Client(_)) => return Err(VfsError::Inval),
    })
}

/// Ids from the network: -1 means "unchanged" to chown and is not an id.
fn id_arg(id: Option<u32>) -> VfsResult<Option<u32>> {
    match id {
        Some(u32::MAX) => Err(VfsError::Inval),
        other => Ok(other),
    }
}

impl LocalVfs {
    /// Serves `export_dir` with default options. Needs CAP_DAC_READ_SEARCH
    /// (to resolve handles), CAP_SETUID/CAP_SETGID (to act as callers) and
    /// CAP_SYS_ADMIN (the handle key is a `trusted.*` xattr of the root).
    pub fn new(export_dir: impl AsRef<Path>) -> VfsResult<Self> {
        Self::with_options(export_dir, LocalVfsOptions::default())
    }

    pub fn with_options(export_dir: impl AsRef<Path>, options: LocalVfsOptions) -> VfsResult<Self> {
        let mount_fd = rustix::fs::open(
            export_dir.as_ref(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .context("opening the export directory")?;
        let proc_fd = rustix::fs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .context("opening /proc/self/fd")?;
        // Re-opening through anything but the real procfs would open
        // whatever that file system returns.
        let proc_stat = rustix::fs::fstatfs(&proc_fd).context("statfs /proc/self/fd")?;
        if proc_stat.f_type as u64 != rustix::fs::PROC_SUPER_MAGIC as u64 {
            return Err(VfsError::Io {
                context: "/proc is not procfs",
                errno: libc::ENOTSUP,
            });
        }

        let codec = HandleCodec::new(&handle::load_or_create_key(mount_fd.as_fd())?);
        let (raw_root, root_mount_id) =
            sys::name_to_handle_at(mount_fd.as_fd(), c"", AtFlags::EMPTY_PATH)
                .map_err(handle_errno)?;
        // Fail now, not on the first request, when handles cannot be
        // resolved (no CAP_DAC_READ_SEARCH).
        let root_fd = sys::open_by_handle_at(mount_fd.as_fd(), &raw_root, OFlags::PATH)
            .context("resolving the export root's handle")?;
        let vfs_stat = rustix::fs::fstatvfs(&mount_fd).context("statvfs of the export")?;
        let st = statx_fd(&mount_fd)?;
        let fsid = match vfs_stat.f_fsid {
            0 => (u64::from(st.stx_dev_major) << 32) | u64::from(st.stx_dev_minor),
            id => id,
        };

        let fd_limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let capacity = options
            .cache_capacity
            .min(usize::try_from(fd_limit / 2).unwrap_or(usize::MAX));
        if capacity < options.cache_capacity {
            tracing::warn!(
                requested = options.cache_capacity,
                capacity,
                "handle cache clamped to half the open-file limit; raise RLIMIT_NOFILE"
            );
        }

        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2));
        let root_handle = codec.encode(&raw_root);
        let vfs = Self {
            mount_fd,
            proc_fd,
            root_handle: root_handle.clone(),
            ap_dir: codec.ap_dir(),
            root_mount_id,
            fsid,
            codec,
            base: BaseCreds::current()?,
            nodes: NodeCache::new(capacity),
            epoch,
            change_seq: AtomicU64::new(epoch),
            sync_metadata: options.sync_metadata,
            aps: RwLock::new(Arc::new(ApTable::default())),
            ledger: Ledger::default(),
            crypt: options.content_key.as_ref().map(Crypt::new).transpose()?,
        };
        vfs.nodes.insert(root_handle, vfs.new_node(root_fd));
        Ok(vfs)
    }

    fn new_node(&self, fd: OwnedFd) -> Node {
        Node {
            fd,
            changes: AtomicU64::new(self.epoch),
        }
    }

    /// Starts metering a change of the object of `fd` (inode `ino`) made
    /// through `via`, which may grow it by `grows(its stat now)`; refused
    /// with `QuotaExceeded` when that growth does not fit `via`'s quota.
    fn begin_change(
        &self,
        fd: BorrowedFd<'_>,
        ino: u64,
        via: &Via,
        grows: impl FnOnce(&Statx) -> u64,
    ) -> VfsResult<Change> {
        self.ledger.begin(ino, via, || statx_fd(fd), metered, grows)
    }

    /// Ends a change from [`Self::begin_change`], counting what it changed.
    fn end_change(&self, fd: BorrowedFd<'_>, change: Change) {
        self.ledger
            .end(change, || statx_fd(fd).ok().map(|st| metered(&st)));
    }

    /// Counts a new object (see `Ledger::created`).
    fn count_new(&self, node: &Node, via: &Via) -> VfsResult<()> {
        let st = statx_fd(&node.fd)?;
        self.ledger.created(st.stx_ino, via, || {
            statx_fd(&node.fd).ok().map(|st| metered(&st))
        });
        Ok(())
    }

    /// Uncounts the object of `fd` (stat'ed as `before` while it had the
    /// link just removed) if that was its last link.
    fn count_unlinked(&self, fd: &OwnedFd, before: &Statx, via: &Via) {
        self.ledger
            .unlinked(before.stx_ino, via, metered(before), || {
                statx_fd(fd).map_or(0, |st| st.stx_nlink)
            });
    }

    /// What the access point of the handle `fh` came through.
    fn via_of(&self, fh: &FileHandle) -> Via {
        if fh.0.first() == Some(&handle::VERSION) {
            return Via::Export;
        }
        match self.codec.decode(fh) {
            Ok(Decoded::Object {
                scope: Some(scope), ..
            }) => self
                .aps()
                .by_scope
                .get(&scope)
                .cloned()
                // An access point removed since: its handles are stale, an
                // open file still works and counts for the file system only.
                .map_or(Via::Export, Via::Ap),
            _ => Via::Export,
        }
    }

    /// Handle → live node, with the object's current attributes and what
    /// the handle was issued through. A scoped handle of an access point
    /// that is no longer configured is stale; the `/ap` pseudo directory is
    /// no object to work on (every change to it is refused).
    fn resolve(&self, fh: &FileHandle) -> VfsResult<(Arc<Node>, Statx, Via)> {
        // Export handles are their own cache key: a hit needs no decoding
        // (only authentic handles ever enter the cache).
        if fh.0.first() == Some(&handle::VERSION) {
            let (node, st) = self.resolve_key(fh, None)?;
            return Ok((node, st, Via::Export));
        }
        match self.codec.decode(fh)? {
            Decoded::ApDir => Err(VfsError::Access),
            Decoded::Object { raw, scope: None } => {
                let (node, st) = self.resolve_key(fh, Some(raw))?;
                Ok((node, st, Via::Export))
            }
            Decoded::Object {
                raw,
                scope: Some(scope),
            } => {
                let ap = self
                    .aps()
                    .by_scope
                    .get(&scope)
                    .cloned()
                    .ok_or(VfsError::Stale)?;
                // One node per object, whichever way it was reached, so its
                // change counter is one.
                let key = self.codec.encode(&raw);
                let (node, st) = self.resolve_key(&key, Some(raw))?;
                Ok((node, st, Via::Ap(ap)))
            }
        }
    }

    /// The cached node of an export handle (`fh`), resolved if missing;
    /// `raw` is its kernel handle when already decoded.
    fn resolve_key(
        &self,
        fh: &FileHandle,
        raw: Option<RawHandle>,
    ) -> VfsResult<(Arc<Node>, Statx)> {
        if let Some(node) = self.nodes.get(fh) {
            // A cached fd keeps a removed object alive; it must still look
            // gone to clients.
            return match statx_fd(&node.fd) {
                Ok(st) if st.stx_nlink > 0 => Ok((node, st)),
                Ok(_) | Err(VfsError::Stale | VfsError::NotFound) => {
                    self.nodes.remove(fh);
                    Err(VfsError::Stale)
                }
                Err(e) => Err(e),
            };
        }
        let raw = match raw {
            Some(raw) => raw,
            None => match self.codec.decode(fh)? {
                Decoded::Object { raw, scope: None } => raw,
                _ => return Err(VfsError::BadHandle),
            },
        };
        let fd = open_by_handle_retrying(self.mount_fd.as_fd(), &raw).map_err(|e| match e {
            // The handle is authentic (the tag matched), so whatever the file
            // system no longer finds is gone, not malformed.
            Errno::STALE | Errno::NOENT | Errno::INVAL => VfsError::Stale,
            e => VfsError::from_errno(e.raw_os_error(), "open_by_handle_at"),
        })?;
        let st = statx_fd(&fd)?;
        if st.stx_nlink == 0 {
            return Err(VfsError::Stale);
        }
        Ok((self.nodes.insert(fh.clone(), self.new_node(fd)), st))
    }

    /// Gives a handle to an object reached beneath the export (through
    /// `via`, whose scope the handle carries), and caches it.
    fn issue(&self, fd: OwnedFd, via: &Via) -> VfsResult<(FileHandle, Arc<Node>)> {
        let (raw, mount_id) =
            sys::name_to_handle_at(fd.as_fd(), c"", AtFlags::EMPTY_PATH).map_err(handle_errno)?;
        if mount_id != self.root_mount_id {
            return Err(VfsError::XDev);
        }
        let key = self.codec.encode(&raw);
        let fh = self.handle_via(&raw, &key, via)?;
        let node = self.nodes.insert(key, self.new_node(fd));
        Ok((fh, node))
    }

    /// The handle given out for the object of `raw` (whose export handle is
    /// `key`) reached through `via`.
    fn handle_via(&self, raw: &RawHandle, key: &FileHandle, via: &Via) -> VfsResult<FileHandle> {
        match via.scope() {
            None => Ok(key.clone()),
            Some(scope) => self.codec.encode_scoped(raw, scope),
        }
    }

    /// The cache key (export handle) of any object handle.
    fn cache_key(&self, fh: &FileHandle) -> Option<FileHandle> {
        if fh.0.first() == Some(&handle::VERSION) {
            return Some(fh.clone());
        }
        match self.codec.decode(fh).ok()? {
            Decoded::Object { raw, .. } => Some(self.codec.encode(&raw)),
            Decoded::ApDir => None,
        }
    }

    fn aps(&self) -> Arc<ApTable> {
        self.aps.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The root directory of access point `ap`, created (with missing
    /// parents) from its creation info when missing.
    fn open_ap_root(&self, ap: &ApEntry) -> VfsResult<OwnedFd> {
        let parts = ap::components(&ap.spec.root_directory)?;
        match ap::open_beneath(&self.mount_fd, &parts) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOENT) => match &ap.spec.creation_info {
                Some(info) => self.create_ap_root(ap, &parts, info),
                None => {
                    tracing::warn!(
                        access_point = %ap.spec.id,
                        root = %ap.spec.root_directory,
                        "access point root directory missing, and no creation info to create it"
                    );
                    Err(VfsError::NotFound)
                }
            },
            Err(e) => {
                tracing::warn!(
                    access_point = %ap.spec.id,
                    root = %ap.spec.root_directory,
                    error = %e,
                    "cannot open the access point root directory"
                );
                Err(VfsError::from_errno(
                    e.raw_os_error(),
                    "opening an access point root",
                ))
            }
        }
    }

    /// Creates the missing directories of `parts` as the server (which may
    /// create anywhere), each then given the creation info's owner and
    /// permissions. Directories that exist are left as they are.
    fn create_ap_root(
        &self,
        ap: &ApEntry,
        parts: &[&str],
        info: &CreationInfo,
    ) -> VfsResult<OwnedFd> {
        let mut dir = ap::open_beneath(&self.mount_fd, &[])
            .map_err(|e| VfsError::from_errno(e.raw_os_error(), "opening the export root"))?;
        for depth in 1..=parts.len() {
            match ap::open_beneath(&self.mount_fd, &parts[..depth]) {
                Ok(fd) => {
                    dir = fd;
                    continue;
                }
                Err(Errno::NOENT) => {}
                Err(e) => {
                    return Err(VfsError::from_errno(
                        e.raw_os_error(),
                        "opening an access point root",
                    ));
                }
            }
            let name = Name::new(parts[depth - 1].as_bytes())?;
            match rustix::fs::mkdirat(
                &dir,
                name.c(),
                Mode::from_raw_mode(info.permissions & 0o777),
            ) {
                Ok(()) => {}
                // Someone else created it since: theirs is used as it is.
                Err(Errno::EXIST) => {
                    dir = ap::open_beneath(&self.mount_fd, &parts[..depth]).map_err(|e| {
                        VfsError::from_errno(e.raw_os_error(), "opening an access point root")
                    })?;
                    continue;
                }
                Err(e) => {
                    return Err(VfsError::from_errno(
                        e.raw_os_error(),
                        "creating an access point root",
                    ));
                }
            }
            let fd = rustix::fs::openat(
                &dir,
                name.c(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .context("opening a new access point root")?;
            rustix::fs::chownat(
                &fd,
                c"",
                Some(Uid::from_raw(info.owner_uid)),
                Some(Gid::from_raw(info.owner_gid)),
                AtFlags::EMPTY_PATH,
            )
            .context("chown of a new access point root")?;
            // After chown, which may clear set-id bits; mkdir's mode went
            // through the umask and cannot carry them anyway.
            rustix::fs::chmodat(
                &self.proc_fd,
                DecInt::from_fd(&fd),
                Mode::from_raw_mode(info.permissions & 0o7777),
                AtFlags::empty(),
            )
            .context("chmod of a new access point root")?;
            self.sync_fd(&fd)?;
            self.sync_fd(&dir)?;
            tracing::info!(
                access_point = %ap.spec.id,
                directory = %parts[..depth].join("/"),
                uid = info.owner_uid,
                gid = info.owner_gid,
                mode = format_args!("{:o}", info.permissions),
                "created an access point root directory"
            );
            dir = fd;
        }
        Ok(dir)
    }

    fn is_ap_dir(&self, fh: &FileHandle) -> bool {
        *fh == self.ap_dir
    }

    /// LOOKUP of `name` in `/ap`: the root of that access point, reached
    /// through it.
    fn lookup_ap(&self, name: &[u8]) -> VfsResult<(FileHandle, Attr)> {
        let table = self.aps();
        let Some(ap) = std::str::from_utf8(name)
            .ok()
            .and_then(|id| table.by_id.get(id))
        else {
            tracing::warn!(
                access_point = %String::from_utf8_lossy(name),
                "lookup of an access point that is not configured"
            );
            return Err(VfsError::NotFound);
        };
        let fd = self.open_ap_root(ap)?;
        let (fh, node) = self.issue(fd, &Via::Ap(ap.clone()))?;
        Ok((fh, self.node_attr(&node)?))
    }

    /// The attributes of the `/ap` pseudo directory: read-only for all,
    /// changing when the access points do.
    fn ap_dir_attr(&self) -> Attr {
        let table = self.aps();
        Attr {
            file_type: FileType::Directory,
            mode: 0o555,
            nlink: 2,
            uid: 0,
            gid: 0,
            size: 4096,
            space_used: 0,
            rdev: (0, 0),
            fsid: self.fsid,
            fileid: ap::AP_DIR_FILEID,
            atime: table.changed_at,
            mtime: table.changed_at,
            ctime: table.changed_at,
            change: table.change,
        }
    }

    /// READDIR of `/ap`: the access points in id order, each with its root
    /// (created when missing, as on LOOKUP); one whose root cannot be had is
    /// left out. Cookies are positions in the id order.
    fn readdir_ap(&self, cookie: u64, max_entries: usize) -> VfsResult<DirPage> {
        let table = self.aps();
        let start = match cookie {
            0 => 0,
            c => usize::try_from(c.checked_sub(COOKIE_BIAS).ok_or(VfsError::BadCookie)?)
                .map_err(|_| VfsError::BadCookie)?,
        };
        let mut entries = Vec::new();
        let mut eof = true;
        for (i, ap) in table.by_id.values().enumerate().skip(start) {
            if entries.len() == max_entries {
                eof = false;
                break;
            }
            let Ok(fd) = self.open_ap_root(ap) else {
                continue;
            };
            let (handle, node) = self.issue(fd, &Via::Ap(ap.clone()))?;
            entries.push(DirEntry {
                name: ap.spec.id.as_bytes().to_vec(),
                cookie: i as u64 + 1 + COOKIE_BIAS,
                handle,
                attr: self.node_attr(&node)?,
            });
        }
        Ok(DirPage { entries, eof })
    }

    fn attr(&self, st: &Statx, changes: u64) -> Attr {
        let ctime_ns = (st.stx_ctime.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(u64::from(st.stx_ctime.tv_nsec));
        Attr {
            file_type: file_type(st),
            mode: u32::from(st.stx_mode) & 0o7777,
            nlink: st.stx_nlink,
            uid: st.stx_uid,
            gid: st.stx_gid,
            size: st.stx_size,
            space_used: st.stx_blocks.saturating_mul(512),
            rdev: (st.stx_rdev_major, st.stx_rdev_minor),
            fsid: self.fsid,
            fileid: st.stx_ino,
            atime: timestamp(&st.stx_atime),
            mtime: timestamp(&st.stx_mtime),
            ctime: timestamp(&st.stx_ctime),
            change: ctime_ns.wrapping_add(changes),
        }
    }

    fn node_attr(&self, node: &Node) -> VfsResult<Attr> {
        let st = statx_fd(&node.fd)?;
        Ok(self.attr(&st, node.changes.load(Ordering::Acquire)))
    }

    /// Records a modification of `node` made through this instance.
    fn bump(&self, node: &Node) {
        let next = self.change_seq.fetch_add(1, Ordering::AcqRel) + 1;
        node.changes.fetch_max(next, Ordering::AcqRel);
    }

    fn become_(&self, id: &Identity) -> VfsResult<AsIdentity<'_>> {
        AsIdentity::switch(id, &self.base)
    }

    /// Opens the object of an `O_PATH` fd for I/O, permission-checked as
    /// whoever the thread currently is.
    fn reopen(&self, node: &Node, flags: OFlags) -> Result<OwnedFd, Errno> {
        self.reopen_fd(&node.fd, flags)
    }

    fn reopen_fd(&self, fd: impl AsFd, flags: OFlags) -> Result<OwnedFd, Errno> {
        rustix::fs::openat(
            &self.proc_fd,
            DecInt::from_fd(fd),
            flags | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
    }

    /// Opens a regular file as `id`. Like knfsd, the owner may open their own
    /// file whatever its mode: a client that created a file with mode 0444
    /// holds a writable open of it (POSIX `open(O_CREAT|O_RDWR, 0444)`), and
    /// the client, not the server, enforces the mode for later opens.
    fn open_as(&self, id: &Identity, node: &Node, st: &Statx, flags: OFlags) -> VfsResult<OwnedFd> {
        let opened = {
            let _as = self.become_(id)?;
            self.reopen(node, flags)
        };
        match opened {
            Err(Errno::ACCESS) if st.stx_uid == id.uid => self.reopen(node, flags),
            other => other,
        }
        .context("opening a file")
    }

    /// Applies `set` as `id`: size first (as knfsd), then owner (which may
    /// clear set-id bits), then mode, then times.
    fn apply_set(&self, id: &Identity, node: &Node, st: &Statx, set: &SetAttr) -> VfsResult<()> {
        let ft = file_type(st);
        if let Some(size) = set.size {
            if ft != FileType::Regular {
                return Err(not_regular(ft));
            }
            let fd = self.open_as(id, node, st, OFlags::WRONLY)?;
            match &self.crypt {
                None => rustix::fs::ftruncate(&fd, size).context("truncating")?,
                Some(crypt) => self.resize_encrypted(crypt, node, st.stx_ino, &fd, size)?,
            }
        }
        let _as = self.become_(id)?;
        let (uid, gid) = (id_arg(set.uid)?, id_arg(set.gid)?);
        if uid.is_some() || gid.is_some() {
            rustix::fs::chownat(
                &node.fd,
                c"",
                uid.map(Uid::from_raw),
                gid.map(Gid::from_raw),
                AtFlags::EMPTY_PATH,
            )
            .context("chown")?;
        }
        if let Some(mode) = set.mode {
            // Linux cannot change a symlink's mode (and it means nothing).
            if ft == FileType::Symlink {
                return Err(VfsError::Inval);
            }
            rustix::fs::chmodat(
                &self.proc_fd,
                DecInt::from_fd(&node.fd),
                Mode::from_raw_mode(mode & 0o7777),
                AtFlags::empty(),
            )
            .context("chmod")?;
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let times = Timestamps {
                last_access: timespec(set.atime)?,
                last_modification: timespec(set.mtime)?,
            };
            rustix::fs::utimensat(&node.fd, c"", &times, AtFlags::EMPTY_PATH)
                .context("utimensat")?;
        }
        Ok(())
    }

    /// The server's umask must not apply (the client applied its own): give
    /// back permission bits the process umask took from a new object.
    fn undo_umask(&self, id: &Identity, node: &Node, st: &Statx, mode: u32) -> VfsResult<()> {
        let have = u32::from(st.stx_mode) & 0o7777;
        if mode & 0o777 & !have == 0 {
            return Ok(());
        }
        let set = SetAttr {
            mode: Some(have | (mode & 0o777)),
            ..SetAttr::default()
        };
        self.apply_set(id, node, st, &set)
    }

    /// Makes `node`'s metadata (a directory's entries, an object's inode)
    /// durable when the export is synchronous.
    fn sync_node(&self, node: &Node) -> VfsResult<()> {
        self.sync_fd(&node.fd)
    }

    fn sync_fd(&self, fd: &OwnedFd) -> VfsResult<()> {
        if !self.sync_metadata {
            return Ok(());
        }
        let fd = self
            .reopen_fd(fd, OFlags::RDONLY | OFlags::NONBLOCK)
            .context("opening for fsync")?;
        rustix::fs::fsync(&fd).context("fsync")
    }

    /// The handle `name` in `dir` has now, if any (no caching): used to find
    /// the cached node of an object about to be removed or replaced.
    fn handle_at(&self, dir: &Node, name: &Name) -> Option<FileHandle> {
        let (raw, _) = sys::name_to_handle_at(dir.fd.as_fd(), name.c(), AtFlags::empty()).ok()?;
        Some(self.codec.encode(&raw))
    }

    /// An fd and the stat of `name` in `dir`, if any, about to lose that
    /// link: the fd tells afterwards whether it was the last one.
    fn open_counted(&self, dir: &Node, name: &Name) -> Option<(OwnedFd, Statx)> {
        let fd = rustix::fs::openat(
            &dir.fd,
            name.c(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let st = statx_fd(&fd).ok()?;
        Some((fd, st))
    }

    fn read_verifier(&self, node: &Node) -> VfsResult<Option<[u8; 8]>> {
        let fd = self
            .reopen(node, OFlags::RDONLY)
            .context("opening to read the verifier")?;
        let mut verf = [0u8; 8];
        match rustix::fs::fgetxattr(&fd, VERIFIER_XATTR, &mut verf[..]) {
            Ok(8) => Ok(Some(verf)),
            Ok(_) | Err(Errno::NODATA) | Err(Errno::RANGE) => Ok(None),
            Err(e) => Err(VfsError::from_errno(
                e.raw_os_error(),
                "reading the create verifier",
            )),
        }
    }

    /// Stores an exclusive create's verifier with the file: a `trusted.*`
    /// xattr, which clients cannot see or change, rather than knfsd's atime
    /// and mtime, so it needs no clean-up by a later SETATTR.
    fn store_verifier(&self, node: &Node, verf: &[u8; 8]) -> VfsResult<()> {
        let fd = self
            .reopen(node, OFlags::RDONLY)
            .context("opening to store the verifier")?;
        rustix::fs::fsetxattr(&fd, VERIFIER_XATTR, verf, XattrFlags::empty())
            .context("storing the create verifier")?;
        if self.sync_metadata {
            rustix::fs::fsync(&fd).context("fsync")?;
        }
        Ok(())
    }

    /// Creates `name` in `dir` with `make` (as `id`), then opens it. An
    /// existing name is `Exists` when `exclusive`, else opened and reported
    /// as not created.
    fn make_in(
        &self,
        id: &Identity,
        dir: &Node,
        name: &Name,
        exclusive: bool,
        make: impl FnOnce() -> Result<(), Errno>,
    ) -> VfsResult<(bool, OwnedFd)> {
        let _as = self.become_(id)?;
        let created = match make() {
            Ok(()) => true,
            Err(Errno::EXIST) if !exclusive => false,
            Err(e) => return Err(VfsError::from_errno(e.raw_os_error(), "creating an object")),
        };
        let fd = rustix::fs::openat(
            &dir.fd,
            name.c(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .context("opening a new object")?;
        Ok((created, fd))
    }

    /// The common tail of mkdir and symlink: caches the new object, fixes its
    /// mode, records and syncs the change of `dir`.
    fn finish_new(
        &self,
        id: &Identity,
        dir: &Node,
        via: &Via,
        fd: OwnedFd,
        mode: Option<u32>,
    ) -> VfsResult<Created> {
        let (handle, node) = self.issue(fd, via)?;
        self.count_new(&node, via)?;
        if let Some(mode) = mode {
            let st = statx_fd(&node.fd)?;
            self.undo_umask(id, &node, &st, mode)?;
        }
        self.bump(dir);
        self.sync_node(dir)?;
        let attr = self.node_attr(&node)?;
        Ok(Created {
            handle,
            attr,
            created: true,
        })
    }

    /// Reads up to `max_entries` entries of the open directory `dirfd`,
    /// positioned at `cookie`, as the current thread's identity.
    fn read_entries(&self, dirfd: &OwnedFd, via: &Via, max_entries: usize) -> VfsResult<DirPage> {
        // One buffer per call: readdir is not on the data path, and 32 KiB
        // is a cheap allocation next to the system calls it feeds.
        let mut buf = vec![MaybeUninit::<u8>::uninit(); READDIR_BUF];
        let mut raw = RawDir::new(dirfd.as_fd(), &mut buf);
        let mut entries = Vec::with_capacity(max_entries.min(1024));
        loop {
            let entry = match raw.next() {
                None => return Ok(DirPage { entries, eof: true }),
                Some(entry) => entry.context("getdents64")?,
            };
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            // Having seen one entry more than fits tells eof without an
            // extra call.
            if entries.len() == max_entries {
                return Ok(DirPage {
                    entries,
                    eof: false,
                });
            }
            let cookie =
                entry
                    .next_entry_cookie()
                    .checked_add(COOKIE_BIAS)
                    .ok_or(VfsError::Io {
                        context: "directory offset out of range",
                        errno: libc::EOVERFLOW,
                    })?;
            let st = match rustix::fs::statx(
                dirfd,
                name,
                AtFlags::SYMLINK_NOFOLLOW,
                StatxFlags::BASIC_STATS,
            ) {
                Ok(st) => st,
                // Removed since getdents read it.
                Err(Errno::NOENT) => continue,
                Err(e) => {
                    return Err(VfsError::from_errno(
                        e.raw_os_error(),
                        "statx of a directory entry",
                    ));
                }
            };
            let (raw_handle, mount_id) =
                match sys::name_to_handle_at(dirfd.as_fd(), name, AtFlags::empty()) {
                    Ok(h) => h,
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(handle_errno(e)),
                };
            // A mount point inside the export: not served (see XDev).
            if mount_id != self.root_mount_id {
                continue;
            }
            let key = self.codec.encode(&raw_handle);
            let changes = self
                .nodes
                .peek(&key)
                .map_or(self.epoch, |n| n.changes.load(Ordering::Acquire));
            entries.push(DirEntry {
                name: name.to_bytes().to_vec(),
                cookie,
                attr: self.attr(&st, changes),
                handle: self.handle_via(&raw_handle, &key, via)?,
            });
        }
    }
}

fn handle_errno(e: Errno) -> VfsError {
    match e {
        // The file system's handles do not fit in ours, or it has none.
        Errno::OVERFLOW | Errno::OPNOTSUPP => VfsError::NotSupported,
        e => VfsError::from_errno(e.raw_os_error(), "name_to_handle_at"),
    }
}

/// Reads up to `want` bytes at `offset` into `buf`'s spare capacity, stopping
/// early only at the end of the file. Uninitialised capacity: zero-filling a
/// 1 MiB buffer before the kernel overwrites it showed up in READ profiles.
fn pread_vec(fd: impl AsFd, buf: &mut Vec<u8>, want: usize, offset: u64) -> VfsResult<()> {
    buf.reserve(want.saturating_sub(buf.len()));
    while buf.len() < want {
        let at = offset.saturating_add(buf.len() as u64);
        match rustix::io::pread(&fd, rustix::buffer::spare_capacity(&mut *buf), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(VfsError::from_errno(e.raw_os_error(), "read")),
        }
    }
    // The allocator may have granted more than asked; never return more.
    buf.truncate(want);
    Ok(())
}

/// An encrypted file shorter than its size said a moment ago (under the
/// file's lock): changed beneath the server. Failing is the one answer
/// that serves no wrongly decrypted bytes.
const CHANGED_BENEATH: VfsError = VfsError::Io {
    context: "encrypted file changed beneath the server",
    errno: libc::EIO,
};

fn pread_exact(fd: impl AsFd, mut buf: &mut [u8], mut offset: u64) -> VfsResult<()> {
    while !buf.is_empty() {
        match rustix::io::pread(&fd, &mut *buf, offset) {
            Ok(0) => return Err(CHANGED_BENEATH),
            Ok(n) => {
                buf = &mut buf[n..];
                offset = offset.saturating_add(n as u64);
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(VfsError::from_errno(e.raw_os_error(), "read")),
        }
    }
    Ok(())
}

fn pwrite_all(fd: impl AsFd, mut buf: &[u8], mut offset: u64) -> VfsResult<()> {
    while !buf.is_empty() {
        match rustix::io::pwrite(&fd, buf, offset) {
            Ok(0) => {
                return Err(VfsError::Io {
                    context: "write",
                    errno: libc::EIO,
                });
            }
            Ok(n) => {
                buf = &buf[n..];
                offset = offset.saturating_add(n as u64);
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(VfsError::from_errno(e.raw_os_error(), "write")),
        }
    }
    Ok(())
}

/// Length of a byte range within one read or write (at most `MAX_READ` plus
/// a block, or the length of a buffer given): fits in usize.
fn span(from: u64, to: u64) -> usize {
    usize::try_from(to - from).unwrap_or(usize::MAX)
}

/// The data paths of encrypted contents. Every change of a file's bytes or
/// size holds the file's write lock from reading its size to writing, so
/// the size a unit was encrypted for is the size the file has; reads hold
/// the read lock from reading the size to reading the bytes.
impl LocalVfs {
    /// The content nonce of the file open as `fd`, which had `size` bytes a
    /// moment ago. An empty file without one gets one (new files get theirs
    /// at creation; this covers files made by other means). A file with data
    /// and no nonce was not written by an encrypting server (it may hold
    /// plaintext): refused, never served or mixed with ciphertext.
    fn content_nonce(&self, fd: BorrowedFd<'_>, size: u64) -> VfsResult<Nonce> {
        let read = |fd| {
            let mut nonce = Nonce::default();
            match rustix::fs::fgetxattr(fd, NONCE_XATTR, &mut nonce[..]) {
                Ok(n) if n == nonce.len() => Ok(Some(nonce)),
                Err(Errno::NODATA) => Ok(None),
                Ok(_) | Err(Errno::RANGE) => Err(VfsError::Io {
                    context: "malformed content nonce",
                    errno: libc::EIO,
                }),
                Err(e) => Err(VfsError::from_errno(
                    e.raw_os_error(),
                    "reading the content nonce",
                )),
            }
        };
        if let Some(nonce) = read(fd)? {
            return Ok(nonce);
        }
        if size > 0 {
            let ino = statx_fd(fd).map_or(0, |st| st.stx_ino);
            tracing::error!(
                inode = ino,
                size,
                "refusing a file with data but no content nonce: it was not written by an \
                 encrypting server and may hold plaintext"
            );
            return Err(VfsError::Io {
                context: "file data without a content nonce",
                errno: libc::EIO,
            });
        }
        let nonce = crypt::new_nonce().context("generating a content nonce")?;
        match rustix::fs::fsetxattr(fd, NONCE_XATTR, &nonce, XattrFlags::CREATE) {
            Ok(()) => Ok(nonce),
            // A concurrent writer stored one first: theirs is the file's.
            Err(Errno::EXIST) => read(fd)?.ok_or(VfsError::Io {
                context: "content nonce vanished while being created",
                errno: libc::EIO,
            }),
            Err(e) => Err(VfsError::from_errno(
                e.raw_os_error(),
                "storing the content nonce",
            )),
        }
    }

    /// [`Self::content_nonce`] of an open file, read once per open.
    fn file_nonce(&self, file: &OpenFile, size: u64) -> VfsResult<Nonce> {
        if let Some(nonce) = file.content_nonce.get() {
            return Ok(*nonce);
        }
        let nonce = self.content_nonce(file.file.as_fd(), size)?;
        Ok(*file.content_nonce.get_or_init(|| nonce))
    }

    /// Gives a newly created file its content nonce. No fsync: a nonce lost
    /// in a crash belonged to a file without data, which gets a new one, and
    /// the fsync that makes data durable makes the xattr durable with it.
    fn store_new_nonce(&self, node: &Node) -> VfsResult<()> {
        let fd = self
            .reopen(node, OFlags::RDONLY)
            .context("opening to store the content nonce")?;
        self.content_nonce(fd.as_fd(), 0).map(drop)
    }

    /// An fd to read `file` with: its own, or (when opened write-only) one
    /// opened as the server, which may read what it must re-encrypt.
    fn readable(&self, file: &OpenFile) -> VfsResult<Option<OwnedFd>> {
        if file.access.read {
            return Ok(None);
        }
        self.reopen_fd(&file.file, OFlags::RDONLY)
            .context("opening for read-modify-write")
            .map(Some)
    }

    /// The plaintext of block `index` of a file of `size` bytes into `block`
    /// (zeros past the end of the file).
    fn read_block(
        &self,
        crypt: &Crypt,
        fd: BorrowedFd<'_>,
        nonce: &Nonce,
        index: u64,
        size: u64,
        block: &mut [u8; BLOCK],
    ) -> VfsResult<()> {
        block.fill(0);
        let len = crypt::unit_len(index, size);
        pread_exact(fd, &mut block[..len], index * BLOCK_U64)?;
        crypt.cipher.decrypt(nonce, index, &mut block[..len])?;
        Ok(())
    }

    /// Block `index` of a file of `old` bytes, re-encrypted as the unit it
    /// is in a file of `new` bytes: the block, and that unit's length.
    fn recut(
        &self,
        crypt: &Crypt,
        reader: BorrowedFd<'_>,
        nonce: &Nonce,
        index: u64,
        old: u64,
        new: u64,
    ) -> VfsResult<([u8; BLOCK], usize)> {
        let mut block = [0u8; BLOCK];
        self.read_block(crypt, reader, nonce, index, old, &mut block)?;
        let len = crypt::unit_len(index, new);
        crypt.cipher.encrypt(nonce, index, &mut block[..len])?;
        Ok((block, len))
    }

    /// Re-encrypts block `index` for a change of the file's size from `old`
    /// to `new` (its unit's length changes, or a new short tail must not be
    /// left a hole). A write past the end extends the file to the unit's end.
    #[allow(clippy::too_many_arguments)]
    fn recut_block(
        &self,
        crypt: &Crypt,
        reader: BorrowedFd<'_>,
        writer: BorrowedFd<'_>,
        nonce: &Nonce,
        index: u64,
        old: u64,
        new: u64,
    ) -> VfsResult<()> {
        let (block, len) = self.recut(crypt, reader, nonce, index, old, new)?;
        pwrite_all(writer, &block[..len], index * BLOCK_U64)
    }

    fn read_encrypted(
        &self,
        crypt: &Crypt,
        file: &OpenFile,
        offset: u64,
        want: usize,
    ) -> VfsResult<(Vec<u8>, bool)> {
        let ino = statx_fd(&file.file)?.stx_ino;
        let first = offset / BLOCK_U64;
        let start = first * BLOCK_U64;
        let _lock = crypt.read(ino);
        let size = statx_fd(&file.file)?.stx_size;
        if offset >= size {
            return Ok((Vec::new(), true));
        }
        let end = offset.saturating_add(want as u64).min(size);
        // Whole units: from the block of `offset` to the end of the block of
        // `end`, or of the file.
        let stop = end.div_ceil(BLOCK_U64).saturating_mul(BLOCK_U64).min(size);
        let nonce = self.file_nonce(file, size)?;
        // Each piece read and deciphered by one thread, under the lock: the
        // bytes and the size they are read with stay consistent.
        let mut buf = sys::pread_in_pieces(
            file.file.as_fd(),
            span(start, stop),
            start,
            || CHANGED_BENEATH,
            |at, piece| {
                crypt
                    .cipher
                    .decrypt(&nonce, first + (at / BLOCK) as u64, piece)
                    .map_err(VfsError::from)
            },
        )?;
        let head = span(start, offset);
        if head > 0 {
            buf.drain(..head);
        }
        buf.truncate(span(offset, end));
        Ok((buf, end >= size))
    }

    /// Writes `data` at `offset` of `file` (whose stat before was `st`).
    fn write_encrypted(
        &self,
        crypt: &Crypt,
        file: &OpenFile,
        st: &Statx,
        offset: u64,
        data: &[u8],
    ) -> VfsResult<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(VfsError::FileTooLarge)?;
        let fd = file.file.as_fd();
        let nonce = self.file_nonce(file, st.stx_size)?;
        let first = offset / BLOCK_U64;
        let reopened;
        // Whole blocks are whole units whatever the file's size: written
        // piece by piece as each is encrypted, over the cores.
        if offset.is_multiple_of(BLOCK_U64) && end.is_multiple_of(BLOCK_U64) {
            let write_encrypted = || {
                crypt.cipher.encrypt_each(&nonce, first, data, |at, piece| {
                    pwrite_all(fd, piece, offset + at as u64)
                })
            };
            let _lock = crypt.write(st.stx_ino);
            let old = statx_fd(fd)?.stx_size;
            if old % BLOCK_U64 != 0 && old < offset {
                reopened = self.readable(file)?;
                let reader = reopened.as_ref().map_or(fd, AsFd::as_fd);
                self.recut_block(crypt, reader, fd, &nonce, old / BLOCK_U64, old, end)?;
                let written = write_encrypted();
                return self.undo_failed_growth(crypt, reader, fd, &nonce, old, written);
            }
            return write_encrypted();
        }
        reopened = self.readable(file)?;
        let reader = reopened.as_ref().map_or(fd, AsFd::as_fd);
        let _lock = crypt.write(st.stx_ino);
        let old = statx_fd(fd)?.stx_size;
        let new = old.max(end);
        // The old last unit, when it ends short before the written blocks,
        // becomes a whole block: re-encrypted first, so that a crash
        // between the two writes leaves a file whose units all fit its size.
        let recut = old % BLOCK_U64 != 0 && old / BLOCK_U64 < first;
        if recut {
            self.recut_block(crypt, reader, fd, &nonce, old / BLOCK_U64, old, new)?;
        }
        let last = (end - 1) / BLOCK_U64;
        let start = first * BLOCK_U64;
        let stop = (last + 1).saturating_mul(BLOCK_U64).min(new);
        // One buffer of whole units: the old plaintext around `data` in its
        // first and last blocks, then encrypted in place.
        let mut buf = Vec::with_capacity(span(start, stop));
        let mut block = [0u8; BLOCK];
        let head = span(start, offset);
        if head > 0 {
            self.read_block(crypt, reader, &nonce, first, old, &mut block)?;
            buf.extend_from_slice(&block[..head]);
        }
        buf.extend_from_slice(data);
        if stop > end {
            if last != first || head == 0 {
                self.read_block(crypt, reader, &nonce, last, old, &mut block)?;
            }
            let base = last * BLOCK_U64;
            buf.extend_from_slice(&block[span(base, end)..span(base, stop)]);
        }
        let written = crypt
            .cipher
            .encrypt(&nonce, first, &mut buf)
            .map_err(VfsError::from)
            .and_then(|()| pwrite_all(fd, &buf, start));
        if recut {
            return self.undo_failed_growth(crypt, reader, fd, &nonce, old, written);
        }
        written
    }

    /// After a write that failed (e.g. past the file system's largest size)
    /// once the old last unit was re-encrypted as a whole block: back to the
    /// old size, so that a failed write changes nothing visible.
    fn undo_failed_growth(
        &self,
        crypt: &Crypt,
        reader: BorrowedFd<'_>,
        fd: BorrowedFd<'_>,
        nonce: &Nonce,
        old: u64,
        written: VfsResult<()>,
    ) -> VfsResult<()> {
        if written.is_err() {
            let undone = statx_fd(fd)
                .and_then(|st| self.resize_locked(crypt, reader, fd, nonce, st.stx_size, old));
            if let Err(e) = undone {
                tracing::warn!(error = %e, "could not undo the growth of a failed encrypted write");
            }
        }
        written
    }

    /// SETATTR size of an encrypted file (inode `ino`, open for writing as
    /// the caller as `fd`): the last unit is re-encrypted for its new length.
    fn resize_encrypted(
        &self,
        crypt: &Crypt,
        node: &Node,
        ino: u64,
        fd: &OwnedFd,
        new: u64,
    ) -> VfsResult<()> {
        let _lock = crypt.write(ino);
        let old = statx_fd(fd)?.stx_size;
        // As the server: the caller may write the file without reading it.
        let reader = self
            .reopen(node, OFlags::RDONLY)
            .context("opening for a resize")?;
        let nonce = self.content_nonce(reader.as_fd(), old)?;
        self.resize_locked(crypt, reader.as_fd(), fd.as_fd(), &nonce, old, new)
    }

    /// Changes the size of an encrypted file from `old` to `new`, its lock
    /// held: the last unit is re-encrypted for its new length.
    fn resize_locked(
        &self,
        crypt: &Crypt,
        reader: BorrowedFd<'_>,
        fd: BorrowedFd<'_>,
        nonce: &Nonce,
        old: u64,
        new: u64,
    ) -> VfsResult<()> {
        let new_tail = new % BLOCK_U64;
        if new < old {
            if new_tail != 0 {
                // A crash between the truncation and the write loses this
                // block (see docs/encryption.md, crash consistency).
                let index = new / BLOCK_U64;
                let (block, len) = self.recut(crypt, reader, nonce, index, old, new)?;
                rustix::fs::ftruncate(fd, new).context("truncating")?;
                return pwrite_all(fd, &block[..len], index * BLOCK_U64);
            }
        } else if new > old {
            // Writes that extend the file come first, so a crash leaves a
            // size every unit was encrypted for.
            let old_tail = old % BLOCK_U64;
            if old_tail != 0 {
                self.recut_block(crypt, reader, fd, nonce, old / BLOCK_U64, old, new)?;
            }
            let short = (1..16).contains(&new_tail);
            if short && (old_tail == 0 || new / BLOCK_U64 != old / BLOCK_U64) {
                self.recut_block(crypt, reader, fd, nonce, new / BLOCK_U64, old, new)?;
            }
        }
        rustix::fs::ftruncate(fd, new).context("truncating")
    }
}

impl Vfs for LocalVfs {
    fn root(&self) -> FileHandle {
        self.root_handle.clone()
    }

    fn getattr(&self, fh: &FileHandle) -> VfsResult<Attr> {
        if self.is_ap_dir(fh) {
            return Ok(self.ap_dir_attr());
        }
        let (node, st, _) = self.resolve(fh)?;
        Ok(self.attr(&st, node.changes.load(Ordering::Acquire)))
    }

    fn setattr(&self, id: &Identity, fh: &FileHandle, set: &SetAttr) -> VfsResult<Attr> {
        let (node, st, via) = self.resolve(fh)?;
        let change = match set.size {
            Some(size) if file_type(&st) == FileType::Regular => {
                Some(self.begin_change(node.fd.as_fd(), st.stx_ino, &via, |now| {
                    usage::growth(now.stx_size, size)
                })?)
            }
            _ => None,
        };
        let set_result = self.apply_set(via.identity(id), &node, &st, set);
        if let Some(change) = change {
            self.end_change(node.fd.as_fd(), change);
        }
        set_result?;
        self.bump(&node);
        if matches!(file_type(&st), FileType::Regular | FileType::Directory) {
            self.sync_node(&node)?;
        }
        self.node_attr(&node)
    }

    fn lookup(
        &self,
        id: &Identity,
        dir: &FileHandle,
        name: &[u8],
    ) -> VfsResult<(FileHandle, Attr)> {
        if self.is_ap_dir(dir) {
            return self.lookup_ap(name);
        }
        let name = Name::new(name)?;
        let (dnode, dst, via) = self.resolve(dir)?;
        require_dir(&dst)?;
        // The pseudo directory exists beneath the export root only, never
        // beneath an access point (whose root may be the export root): it
        // would lead out of the access point.
        if name.c().to_bytes() == AP_DIR_NAME
            && matches!(via, Via::Export)
            && *dir == self.root_handle
        {
            return Ok((self.codec.ap_dir(), self.ap_dir_attr()));
        }
        let fd = {
            let _as = self.become_(via.identity(id))?;
            rustix::fs::openat(
                &dnode.fd,
                name.c(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .context("lookup")?
        };
        let (fh, node) = self.issue(fd, &via)?;
        Ok((fh, self.node_attr(&node)?))
    }

    fn lookup_parent(&self, id: &Identity, dir: &FileHandle) -> VfsResult<(FileHandle, Attr)> {
        if self.is_ap_dir(dir) {
            let root = self.root_handle.clone();
            let attr = self.getattr(&root)?;
            return Ok((root, attr));
        }
        let (dnode, dst, via) = self.resolve(dir)?;
        require_dir(&dst)?;
        let here = || {
            Ok((
                dir.clone(),
                self.attr(&dst, dnode.changes.load(Ordering::Acquire)),
            ))
        };
        if self.cache_key(dir).as_ref() == Some(&self.root_handle) {
            return here();
        }
        // `..` of an access point's root is that root. Compared by inode,
        // with the root opened afresh, so a root directory replaced since
        // is not mistaken for the old one.
        if let Via::Ap(ap) = &via {
            let parts = ap::components(&ap.spec.root_directory)?;
            if let Ok(root) = ap::open_beneath(&self.mount_fd, &parts) {
                let rst = statx_fd(&root)?;
                if (rst.stx_ino, rst.stx_dev_major, rst.stx_dev_minor)
                    == (dst.stx_ino, dst.stx_dev_major, dst.stx_dev_minor)
                {
                    return here();
                }
            }
        }
        let fd = {
            let _as = self.become_(via.identity(id))?;
            rustix::fs::openat(
                &dnode.fd,
                c"..",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .context("lookup of ..")?
        };
        let (fh, node) = self.issue(fd, &via)?;
        Ok((fh, self.node_attr(&node)?))
    }

    fn access(&self, id: &Identity, fh: &FileHandle, requested: u32) -> VfsResult<u32> {
        if self.is_ap_dir(fh) {
            return Ok(requested & (access::READ | access::LOOKUP));
        }
        let (node, st, via) = self.resolve(fh)?;
        let id = via.identity(id);
        // Following the (magic) link of a symlink's fd would check the
        // symlink's 0777 mode at best; reading a symlink needs no permission
        // and nothing else applies to one.
        let table: &[(u32, Access)] = match file_type(&st) {
            FileType::Symlink => return Ok(requested & access::READ),
            // As knfsd: changing a directory's entries needs write and search.
            FileType::Directory => &[
                (access::READ, Access::READ_OK),
                (access::LOOKUP, Access::EXEC_OK),
                (access::MODIFY, Access::WRITE_OK.union(Access::EXEC_OK)),
                (access::EXTEND, Access::WRITE_OK.union(Access::EXEC_OK)),
                (access::DELETE, Access::WRITE_OK.union(Access::EXEC_OK)),
            ],
            // DELETE of a non-directory depends on its parent, which a handle
            // does not name: not granted, the client asks REMOVE.
            _ => &[
                (access::READ, Access::READ_OK),
                (access::MODIFY, Access::WRITE_OK),
                (access::EXTEND, Access::WRITE_OK),
                (access::EXECUTE, Access::EXEC_OK),
            ],
        };
        let _as = self.become_(id)?;
        let mut granted = 0;
        for &(bit, mode) in table {
            if requested & bit == 0 {
                continue;
            }
            // AT_EACCESS: check as the fsuid we switched to, not the real uid.
            match rustix::fs::accessat(
                &self.proc_fd,
                DecInt::from_fd(&node.fd),
                mode,
                AtFlags::EACCESS,
            ) {
                Ok(()) => granted |= bit,
                Err(Errno::ACCESS | Errno::PERM | Errno::ROFS | Errno::TXTBSY) => {}
                Err(e) => return Err(VfsError::from_errno(e.raw_os_error(), "faccessat")),
            }
        }
        Ok(granted)
    }

    fn open(&self, id: &Identity, fh: &FileHandle, access: OpenAccess) -> VfsResult<Arc<OpenFile>> {
        let (node, st, via) = self.resolve(fh)?;
        let id = via.identity(id);
        let ft = file_type(&st);
        if ft != FileType::Regular {
            return Err(not_regular(ft));
        }
        let flags = match (access.read, access.write) {
            (true, true) => OFlags::RDWR,
            (false, true) => OFlags::WRONLY,
            (true, false) => OFlags::RDONLY,
            (false, false) => return Err(VfsError::Inval),
        };
        let fd = self.open_as(id, &node, &st, flags)?;
        Ok(Arc::new(OpenFile::new(fh.clone(), access, File::from(fd))))
    }

    fn read(&self, file: &OpenFile, offset: u64, count: u32) -> VfsResult<(Vec<u8>, bool)> {
        let want = usize::try_from(count).unwrap_or(MAX_READ).min(MAX_READ);
        if let Some(crypt) = &self.crypt {
            return self.read_encrypted(crypt, file, offset, want);
        }
        let mut buf = Vec::with_capacity(want);
        pread_vec(&file.file, &mut buf, want, offset)?;
        let got = buf.len();
        // A short read of a regular file is its end; a full one may end
        // exactly at EOF, which only the size tells.
        let eof = got < want || {
            let size = rustix::fs::fstat(&file.file).context("fstat")?.st_size;
            offset.saturating_add(got as u64) >= u64::try_from(size).unwrap_or(0)
        };
        Ok((buf, eof))
    }

    fn write(
        &self,
        file: &OpenFile,
        offset: u64,
        data: &[u8],
        stability: Stability,
    ) -> VfsResult<Stability> {
        let via = self.via_of(&file.handle);
        let st = statx_fd(&file.file)?;
        let end = offset.saturating_add(data.len() as u64);
        let change = self.begin_change(file.file.as_fd(), st.stx_ino, &via, |now| {
            usage::growth(now.stx_size, end)
        })?;
        let written = match &self.crypt {
            None => file.file.write_all_at(data, offset).context("write"),
            Some(crypt) => self.write_encrypted(crypt, file, &st, offset, data),
        };
        self.end_change(file.file.as_fd(), change);
        written?;
        match stability {
            Stability::Unstable => {}
            Stability::DataSync => file.file.sync_data().context("fdatasync")?,
            Stability::FileSync => file.file.sync_all().context("fsync")?,
        }
        // Only a cached node has a counter to move; an uncached one gets a
        // fresh value (the epoch) when next resolved, see `Node`.
        if let Some(node) = self
            .cache_key(&file.handle)
            .and_then(|key| self.nodes.peek(&key))
        {
            self.bump(&node);
        }
        Ok(stability)
    }

    fn commit(&self, fh: &FileHandle) -> VfsResult<()> {
        let (node, st, _) = self.resolve(fh)?;
        let ft = file_type(&st);
        if ft != FileType::Regular {
            return Err(not_regular(ft));
        }
        let fd = self
            .reopen(&node, OFlags::RDONLY)
            .context("opening for commit")?;
        rustix::fs::fsync(&fd).context("fsync")
    }

    fn create(
        &self,
        id: &Identity,
        dir: &FileHandle,
        name: &[u8],
        mode: u32,
        how: CreateMode,
        set: &SetAttr,
    ) -> VfsResult<Created> {
        let name = Name::new(name)?;
        let (dnode, dst, via) = self.resolve(dir)?;
        require_dir(&dst)?;
        let id = via.identity(id);
        let exclusive = how == CreateMode::Guarded;
        // Opening an existing file works at the quota's limit: a create
        // that does not fit may still find the name taken.
        let (change, room) =
            match self.begin_change(dnode.fd.as_fd(), dst.stx_ino, &via, |_| usage::NEW_OBJECT) {
                Ok(change) => (change, true),
                Err(VfsError::QuotaExceeded) if !exclusive => (
                    self.begin_change(dnode.fd.as_fd(), dst.stx_ino, &via, |_| 0)?,
                    false,
                ),
                Err(e) => return Err(e),
            };
        let made = self
            .make_in(id, &dnode, &name, exclusive, || {
                if !room {
                    return match rustix::fs::statx(
                        &dnode.fd,
                        name.c(),
                        AtFlags::SYMLINK_NOFOLLOW,
                        StatxFlags::TYPE,
                    ) {
                        Ok(_) => Err(Errno::EXIST),
                        Err(Errno::NOENT) => Err(Errno::DQUOT),
                        Err(e) => Err(e),
                    };
                }
                rustix::fs::mknodat(
                    &dnode.fd,
                    name.c(),
                    rustix::fs::FileType::RegularFile,
                    Mode::from_raw_mode(mode & 0o7777),
                    0,
                )
            })
            .and_then(|(created, fd)| {
                let (handle, node) = self.issue(fd, &via)?;
                if created {
                    self.count_new(&node, &via)?;
                }
                Ok((created, handle, node))
            });
        self.end_change(dnode.fd.as_fd(), change);
        let (created, handle, node) = made?;
        let st = statx_fd(&node.fd)?;
        if created {
            if self.crypt.is_some() {
                // Before any attribute: a size set below is encrypted.
                self.store_new_nonce(&node)?;
            }
            self.undo_umask(id, &node, &st, mode)?;
            if let CreateMode::Exclusive(verf) = how {
                self.store_verifier(&node, &verf)?;
            }
            self.apply_set(id, &node, &st, set)?;
            self.bump(&dnode);
            self.sync_node(&dnode)?;
        } else {
            let ft = file_type(&st);
            match how {
                // make_in refused the existing name already.
                CreateMode::Guarded => return Err(VfsError::Exists),
                _ if ft != FileType::Regular => return Err(not_regular(ft)),
                CreateMode::Exclusive(verf) => {
                    if self.read_verifier(&node)? != Some(verf) {
                        return Err(VfsError::Exists);
                    }
                }
                // Of the attributes, only a truncation to 0 applies to an
                // existing file (RFC 8881, OPEN with UNCHECKED4).
                CreateMode::Unchecked => {
                    if set.size == Some(0) {
                        let truncate = SetAttr {
                            size: Some(0),
                            ..SetAttr::default()
                        };
                        let change = self.begin_change(node.fd.as_fd(), st.stx_ino, &via, |_| 0)?;
                        let truncated = self.apply_set(id, &node, &st, &truncate);
                        self.end_change(node.fd.as_fd(), change);
                        truncated?;
                        self.bump(&node);
                    }
                }
            }
        }
        let attr = self.node_attr(&node)?;
        Ok(Created {
            handle,
            attr,
            created,
        })
    }

    fn mkdir(&self, id: &Identity, dir: &FileHandle, name: &[u8], mode: u32) -> VfsResult<Created> {
        let name = Name::new(name)?;
        let (dnode, dst, via) = self.resolve(dir)?;
        require_dir(&dst)?;
        let id = via.identity(id);
        let change =
            self.begin_change(dnode.fd.as_fd(), dst.stx_ino, &via, |_| usage::NEW_OBJECT)?;
        let made = self
            .make_in(id, &dnode, &name, true, || {
                rustix::fs::mkdirat(&dnode.fd, name.c(), Mode::from_raw_mode(mode & 0o7777))
            })
            .and_then(|(_, fd)| self.finish_new(id, &dnode, &via, fd, Some(mode)));
        self.end_change(dnode.fd.as_fd(), change);
        made
    }

    fn symlink(
        &self,
        id: &Identity,
        dir: &FileHandle,
        name: &[u8],
        target: &[u8],
    ) -> VfsResult<Created> {
        let name = Name::new(name)?;
        if target.is_empty() || target.contains(&0) {
            return Err(VfsError::Inval);
        }
        if target.len() >= PATH_MAX {
            return Err(VfsError::NameTooLong);
        }
        let (dnode, dst, via) = self.resolve(dir)?;
        require_dir(&dst)?;
        let id = via.identity(id);
        let change =
            self.begin_change(dnode.fd.as_fd(), dst.stx_ino, &via, |_| usage::NEW_OBJECT)?;
        let made = self
            .make_in(id, &dnode, &name, true, || {
                rustix::fs::symlinkat(target, &dnode.fd, name.c())
            })
            .and_then(|(_, fd)| self.finish_new(id, &dnode, &via, fd, None));
        self.end_change(dnode.fd.as_fd(), change);
        made
    }

    fn readlink(&self, _id: &Identity, fh: &FileHandle) -> VfsResult<Vec<u8>> {
        let (node, st, _) = self.resolve(fh)?;
        if file_type(&st) != FileType::Symlink {
            return Err(VfsError::Inval);
        }
        // Reading a link needs no permission on the link itself.
        let target = rustix::fs::readlinkat(&node.fd, c"", Vec::new()).context("readlink")?;
        Ok(target.into_bytes())
    }

    fn remove(&self, id: &Identity, dir: &FileHandle, name: &[u8]) -> VfsResult<()> {
        let name = Name::new(name)?;
        let (dnode, dst, via) = self.resolve(dir)?;
        require_dir(&dst)?;
        let change = self.begin_change(dnode.fd.as_fd(), dst.stx_ino, &via, |_| 0)?;
        let removed = (|| -> VfsResult<_> {
            let _as = self.become_(via.identity(id))?;
            let victim = self.handle_at(&dnode, &name);
            let counted = self.open_counted(&dnode, &name);
            match rustix::fs::unlinkat(&dnode.fd, name.c(), AtFlags::empty()) {
                Ok(()) => {}
                Err(Errno::ISDIR) => rustix::fs::unlinkat(&dnode.fd, name.c(), AtFlags::REMOVEDIR)
                    .map_err(|e| match e {
                        // Some file systems say EEXIST for a non-empty directory.
                        Errno::EXIST => VfsError::NotEmpty,
                        e => VfsError::from_errno(e.raw_os_error(), "rmdir"),
                    })?,
                Err(e) => return Err(VfsError::from_errno(e.raw_os_error(), "unlink")),
            }
            Ok((victim, counted))
        })();
        self.end_change(dnode.fd.as_fd(), change);
        let (victim, counted) = removed?;
        if let Some((fd, before)) = counted {
            self.count_unlinked(&fd, &before, &via);
        }
        // A cached fd would keep the removed object's blocks allocated.
        if let Some(victim) = victim {
            self.nodes.remove(&victim);
        }
        self.bump(&dnode);
        self.sync_node(&dnode)
    }

    fn rename(
        &self,
        id: &Identity,
        from_dir: &FileHandle,
        from: &[u8],
        to_dir: &FileHandle,
        to: &[u8],
    ) -> VfsResult<()> {
        let (from, to) = (Name::new(from)?, Name::new(to)?);
        let (fnode, fst, fvia) = self.resolve(from_dir)?;
        require_dir(&fst)?;
        let (tnode, tst, tvia) = self.resolve(to_dir)?;
        require_dir(&tst)?;
        // Handles of different access points (or of one and the export) do
        // not meet: moving between them would take an object out of reach
        // of, or into, a scope that never saw it.
        if !fvia.same_scope(&tvia) {
            return Err(VfsError::XDev);
        }
        let change = self.begin_change(tnode.fd.as_fd(), tst.stx_ino, &tvia, |_| 0)?;
        let renamed = (|| -> VfsResult<_> {
            let _as = self.become_(fvia.identity(id))?;
            let moved = self.handle_at(&fnode, &from);
            let replaced = self.handle_at(&tnode, &to);
            let counted = self.open_counted(&tnode, &to);
            rustix::fs::renameat(&fnode.fd, from.c(), &tnode.fd, to.c()).map_err(|e| match e {
                Errno::EXIST => VfsError::NotEmpty,
                e => VfsError::from_errno(e.raw_os_error(), "rename"),
            })?;
            Ok((moved, replaced, counted))
        })();
        self.end_change(tnode.fd.as_fd(), change);
        let (moved, replaced, counted) = renamed?;
        if let Some((fd, before)) = counted {
            self.count_unlinked(&fd, &before, &tvia);
        }
        // Renaming changes the moved object's ctime (and, for a directory,
        // its `..`); a replaced object lost a link.
        if let Some(node) = moved.as_ref().and_then(|fh| self.nodes.peek(fh)) {
            self.bump(&node);
        }
        if let Some(replaced) = replaced.filter(|r| Some(r) != moved.as_ref()) {
            self.nodes.remove(&replaced);
        }
        self.bump(&fnode);
        self.bump(&tnode);
        self.sync_node(&fnode)?;
        if !Arc::ptr_eq(&fnode, &tnode) {
            self.sync_node(&tnode)?;
        }
        Ok(())
    }

    fn link(&self, id: &Identity, fh: &FileHandle, dir: &FileHandle, name: &[u8]) -> VfsResult<()> {
        let name = Name::new(name)?;
        let (node, st, via) = self.resolve(fh)?;
        if file_type(&st) == FileType::Directory {
            return Err(VfsError::IsDir);
        }
        let (dnode, dst, dvia) = self.resolve(dir)?;
        require_dir(&dst)?;
        if !via.same_scope(&dvia) {
            return Err(VfsError::XDev);
        }
        let change = self.begin_change(dnode.fd.as_fd(), dst.stx_ino, &dvia, |_| 0)?;
        let linked = (|| -> VfsResult<()> {
            let _as = self.become_(via.identity(id))?;
            // linkat(fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH, which
            // the caller's identity has not; the /proc link is the
            // unprivileged way, with the usual protected_hardlinks checks.
            rustix::fs::linkat(
                &self.proc_fd,
                DecInt::from_fd(&node.fd),
                &dnode.fd,
                name.c(),
                AtFlags::SYMLINK_FOLLOW,
            )
            .context("link")
        })();
        self.end_change(dnode.fd.as_fd(), change);
        linked?;
        self.bump(&node);
        self.bump(&dnode);
        self.sync_node(&dnode)
    }

    fn readdir(
        &self,
        id: &Identity,
        dir: &FileHandle,
        cookie: u64,
        max_entries: usize,
    ) -> VfsResult<DirPage> {
        if self.is_ap_dir(dir) {
            return self.readdir_ap(cookie, max_entries);
        }
        let (dnode, dst, via) = self.resolve(dir)?;
        require_dir(&dst)?;
        let _as = self.become_(via.identity(id))?;
        let dirfd = self
            .reopen(&dnode, OFlags::RDONLY | OFlags::DIRECTORY)
            .context("opening a directory")?;
        if cookie != 0 {
            // d_off is the file system's own position of the next entry
            // (ext4: a hash, tmpfs/xfs: an index), so seeking there resumes
            // in O(1) or O(position) without re-reading names.
            let offset = cookie.checked_sub(COOKIE_BIAS).ok_or(VfsError::BadCookie)?;
            rustix::fs::seek(&dirfd, rustix::fs::SeekFrom::Start(offset)).map_err(|e| match e {
                Errno::INVAL => VfsError::BadCookie,
                e => VfsError::from_errno(e.raw_os_error(), "seekdir"),
            })?;
        }
        self.read_entries(&dirfd, &via, max_entries)
    }

    fn statfs(&self, fh: &FileHandle) -> VfsResult<FsStat> {
        let fh = if self.is_ap_dir(fh) {
            &self.root_handle
        } else {
            fh
        };
        let (node, _, via) = self.resolve(fh)?;
        let s = rustix::fs::fstatvfs(&node.fd).context("statvfs")?;
        let volume = FsStat {
            bytes_total: s.f_blocks.saturating_mul(s.f_frsize),
            bytes_free: s.f_bfree.saturating_mul(s.f_frsize),
            bytes_avail: s.f_bavail.saturating_mul(s.f_frsize),
            files_total: s.f_files,
            files_free: s.f_ffree,
            files_avail: s.f_favail,
        };
        Ok(match via {
            Via::Ap(ap) => ap.space(volume),
            Via::Export => volume,
        })
    }

    fn set_access_points(&self, aps: &[AccessPoint]) {
        let change = self.change_seq.fetch_add(1, Ordering::AcqRel) + 1;
        let table = Arc::new(ApTable::new(&self.codec, &self.ledger, aps, change));
        let mut current = self.aps.write().unwrap_or_else(|e| e.into_inner());
        self.ledger.reconfigure(
            current.by_id.keys().map(String::as_str),
            &aps.iter().map(|ap| ap.id.as_str()).collect(),
        );
        *current = table;
    }

    fn usage(&self) -> Usage {
        let total = self.ledger.total();
        Usage {
            stored_bytes: total.bytes(),
            known: total.known(),
            access_points: self
                .aps()
                .by_id
                .values()
                .map(|ap| ApUsage {
                    id: ap.spec.id.clone(),
                    stored_bytes: ap.usage.bytes(),
                    known: ap.usage.known(),
                    max_bytes: ap.spec.max_bytes,
                })
                .collect(),
        }
    }

    fn restore_usage(&self, stored_bytes: Option<u64>, access_points: &[(String, u64)]) {
        if let Some(bytes) = stored_bytes {
            self.ledger.total().set(bytes);
        }
        // Also for ids not configured (yet): settings may come later.
        for (id, bytes) in access_points {
            self.ledger.ap(id).set(*bytes);
        }
    }

    fn reconcile(&self, target: &UsageTarget, stop: &AtomicBool) -> VfsResult<(u64, u64)> {
        let (root, figure) = match target {
            UsageTarget::FileSystem => (ap::open_beneath(&self.mount_fd, &[]), None),
            UsageTarget::AccessPoint(id) => {
                let ap = self
                    .aps()
                    .by_id
                    .get(id)
                    .cloned()
                    .ok_or(VfsError::NotFound)?;
                let parts = ap::components(&ap.spec.root_directory)?;
                (
                    ap::open_beneath(&self.mount_fd, &parts),
                    Some(ap.usage.clone()),
                )
            }
        };
        let measured = match root {
            // Not created yet: nothing stored.
            Err(Errno::NOENT) => 0,
            Err(e) => return Err(VfsError::from_errno(e.raw_os_error(), "opening for a walk")),
            // The walk goes by path; the fd's /proc link is the directory
            // the confined open found, whatever renames happen meanwhile.
            Ok(fd) => usage::measure(
                Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())),
                stop,
            )
            .context("measuring stored bytes")?,
        };
        let before = match figure {
            Some(figure) => figure.set(measured),
            None => self.ledger.total().set(measured),
        };
        Ok((before, measured))
    }

    fn delete_tree(&self, root_directory: &str) -> Result<Removed, DeleteTreeError> {
        let parts = ap::components(root_directory)?;
        let Some((name, parent)) = parts.split_last() else {
            return Err(DeleteTreeError::ExportRoot(root_directory.to_owned()));
        };
        for ap in self.aps().by_id.values() {
            let theirs = ap::components(&ap.spec.root_directory)?;
            if theirs.starts_with(&parts) || parts.starts_with(&theirs) {
                return Err(DeleteTreeError::InUse {
                    path: root_directory.to_owned(),
                    access_point: ap.spec.id.clone(),
                });
            }
        }
        let removal = |errno: Errno| DeleteTreeError::Removal {
            path: root_directory.to_owned(),
            source: errno.into(),
        };
        let parent = match ap::open_beneath_no_symlinks(&self.mount_fd, parent) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Removed::default()),
            Err(e) => return Err(removal(e)),
        };
        let name = CString::new(*name).map_err(|_| VfsError::InvalidName)?;
        let removed = purge::remove_tree(parent.as_fd(), &name, metered);
        // What was removed is gone even when the walk stopped half way.
        let done = match &removed {
            Ok(r) => *r,
            Err((r, _)) => *r,
        };
        self.ledger.forget(done.metered_bytes);
        tracing::info!(
            directory = %root_directory,
            objects = done.objects,
            metered_bytes = done.metered_bytes,
            complete = removed.is_ok(),
            "deleted a directory tree"
        );
        removed.map_err(|(_, e)| removal(e))
    }
}

/// `open_by_handle_at` (O_PATH), retried while it fails with ENOMEM: for a
/// handle whose inode number the kernel is evicting or giving to a new
/// file at that moment (the object was just removed), `iget_locked`
/// returns NULL, which ext4 reports as ENOMEM. That state passes within
/// microseconds, after which the answer is ESTALE; a real allocation
/// failure still ENOMEM after the retries is returned as such.
fn open_by_handle_retrying(mount: BorrowedFd<'_>, raw: &RawHandle) -> Result<OwnedFd, Errno> {
    const RETRIES: u32 = 20;
    let mut tries = 0;
    loop {
        match sys::open_by_handle_at(mount, raw, OFlags::PATH) {
            Err(Errno::NOMEM) if tries < RETRIES => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_micros(100 << tries.min(4)));
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kernels with coarse timestamps give two quick writes one ctime, so the
    /// counter alone must tell them apart; checked directly because this
    /// kernel's ctime may already differ.
    #[test]
    fn every_modification_moves_the_counter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vfs = LocalVfs::new(dir.path()).expect("vfs");
        let id = Identity {
            uid: 0,
            gid: 0,
            groups: vec![],
        };
        let root = vfs.root();
        let counter = |fh: &FileHandle| {
            vfs.nodes
                .peek(fh)
                .expect("cached")
                .changes
                .load(Ordering::Acquire)
        };
        let before_dir = counter(&root);
        let f = vfs
            .create(
                &id,
                &root,
                b"f",
                0o644,
                CreateMode::Guarded,
                &SetAttr::default(),
            )
            .expect("create")
            .handle;
        assert!(counter(&root) > before_dir);
        let open = vfs
            .open(
                &id,
                &f,
                OpenAccess {
                    read: true,
                    write: true,
                },
            )
            .expect("open");
        let mut last = counter(&f);
        for _ in 0..3 {
            vfs.write(&open, 0, b"x", Stability::Unstable)
                .expect("write");
            let now = counter(&f);
            assert!(now > last);
            last = now;
        }
        vfs.setattr(
            &id,
            &f,
            &SetAttr {
                mode: Some(0o600),
                ..SetAttr::default()
            },
        )
        .expect("setattr");
        assert!(counter(&f) > last);
    }
}
