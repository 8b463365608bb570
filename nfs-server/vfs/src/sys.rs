//! Every `unsafe` block and raw system call of the crate.
//!
//! Safe wrappers from `rustix`/`nix` are used directly elsewhere; what lives
//! here is what no well-kept crate wraps: `name_to_handle_at` and
//! `open_by_handle_at` (neither rustix nor nix has them), and the per-thread
//! identity switch, which must be done with care to never leave a thread
//! running as someone else; and reading a file into memory that is not
//! zero-filled first, from several threads at once.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::fs::{AtFlags, OFlags};
use rustix::io::Errno;
use rustix::thread::{Gid, set_thread_groups};

use crate::crypt;
use crate::handle::F_HANDLE_CAPACITY;
use crate::{Identity, VfsError, VfsResult};

/// A kernel file handle (`struct file_handle`) as `name_to_handle_at` returns
/// it: opaque bytes, meaningful to the file system that made them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawHandle {
    pub handle_type: i32,
    len: usize,
    bytes: [u8; F_HANDLE_CAPACITY],
}

impl RawHandle {
    /// `None` when `bytes` is longer than any handle we issue.
    pub fn new(handle_type: i32, bytes: &[u8]) -> Option<Self> {
        let mut buf = [0; F_HANDLE_CAPACITY];
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self {
            handle_type,
            len: bytes.len(),
            bytes: buf,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The kernel's `struct file_handle` with room for the largest handle we can
/// encode; `repr(C)` so the kernel sees the layout it expects.
#[repr(C)]
struct KernelHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; F_HANDLE_CAPACITY],
}

fn last_errno() -> Errno {
    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO)
}

/// `name_to_handle_at(2)`: the persistent handle of `path` relative to `dirfd`
/// and the id of the mount it lives on. EOVERFLOW means the file system's
/// handles are larger than we can carry.
pub(crate) fn name_to_handle_at(
    dirfd: BorrowedFd<'_>,
    path: &CStr,
    flags: AtFlags,
) -> Result<(RawHandle, i32), Errno> {
    let mut kh = KernelHandle {
        handle_bytes: F_HANDLE_CAPACITY as u32,
        handle_type: 0,
        f_handle: [0; F_HANDLE_CAPACITY],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `path` is NUL-terminated; `kh` is a valid `struct file_handle`
    // whose `handle_bytes` tells the kernel how much room `f_handle` has;
    // `mount_id` is a valid int; all outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            &raw mut kh,
            &raw mut mount_id,
            flags.bits() as libc::c_int,
        )
    };
    if rc != 0 {
        return Err(last_errno());
    }
    let len = (kh.handle_bytes as usize).min(F_HANDLE_CAPACITY);
    Ok((
        RawHandle {
            handle_type: kh.handle_type,
            len,
            bytes: kh.f_handle,
        },
        mount_id,
    ))
}

/// `open_by_handle_at(2)` on the file system of `mount_fd` (which must not be
/// an `O_PATH` fd). Needs CAP_DAC_READ_SEARCH, so call it with fsuid 0.
pub(crate) fn open_by_handle_at(
    mount_fd: BorrowedFd<'_>,
    handle: &RawHandle,
    flags: OFlags,
) -> Result<OwnedFd, Errno> {
    let mut kh = KernelHandle {
        handle_bytes: handle.len as u32,
        handle_type: handle.handle_type,
        f_handle: handle.bytes,
    };
    // SAFETY: `kh` is a valid `struct file_handle` with `handle_bytes` bytes
    // of `f_handle` initialised; the kernel only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            &raw mut kh,
            (flags | OFlags::CLOEXEC).bits() as libc::c_int,
        )
    };
    if fd < 0 {
        return Err(last_errno());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| Errno::BADF)?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The file system credentials a thread returns to after each operation.
#[derive(Debug)]
pub(crate) struct BaseCreds {
    uid: u32,
    gid: u32,
    groups: Vec<Gid>,
}

impl BaseCreds {
    /// The calling thread's credentials, taken when the export is opened; all
    /// threads of the server share them (nothing else changes them).
    pub fn current() -> VfsResult<Self> {
        let groups = rustix::process::getgroups()
            .map_err(|e| VfsError::from_errno(e.raw_os_error(), "getgroups"))?;
        Ok(Self {
            uid: current_fsuid(),
            gid: current_fsgid(),
            groups,
        })
    }
}

/// The sentinel setfsuid/setfsgid refuse, which makes them report the current
/// value without changing it.
const QUERY_ID: u32 = u32::MAX;

fn current_fsuid() -> u32 {
    nix::unistd::setfsuid(nix::unistd::Uid::from_raw(QUERY_ID)).as_raw()
}

fn current_fsgid() -> u32 {
    nix::unistd::setfsgid(nix::unistd::Gid::from_raw(QUERY_ID)).as_raw()
}

/// While alive, the current thread's file system accesses are checked as
/// `id` (fsuid, fsgid, supplementary groups); dropping it restores the base
/// credentials. A non-zero fsuid also drops the thread's file system
/// capabilities (CAP_DAC_OVERRIDE …), which is what makes the kernel's
/// permission checks apply to the caller.
///
/// The guard is `!Send`: the switch is per thread, so it must be undone on
/// the thread that made it.
pub(crate) struct AsIdentity<'a> {
    base: &'a BaseCreds,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl<'a> AsIdentity<'a> {
    pub fn switch(id: &Identity, base: &'a BaseCreds) -> VfsResult<Self> {
        // -1 is not an id, and the id APIs treat it as "no change"; refuse it
        // rather than silently keep the server's identity.
        if id.uid == QUERY_ID || id.gid == QUERY_ID || id.groups.contains(&QUERY_ID) {
            return Err(VfsError::Inval);
        }
        let groups: Vec<Gid> = id.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        // glibc's setgroups() changes every thread of the process; the raw
        // system call (which rustix makes) changes only this one.
        set_thread_groups(&groups)
            .map_err(|e| VfsError::from_errno(e.raw_os_error(), "setgroups"))?;
        // From here on, Drop restores whatever was changed.
        let guard = Self {
            base,
            _not_send: std::marker::PhantomData,
        };
        nix::unistd::setfsgid(nix::unistd::Gid::from_raw(id.gid));
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(id.uid));
        // setfsuid/setfsgid report no errors; ask back to know they took.
        if current_fsuid() != id.uid || current_fsgid() != id.gid {
            return Err(VfsError::Perm);
        }
        Ok(guard)
    }
}

impl Drop for AsIdentity<'_> {
    fn drop(&mut self) {
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(self.base.uid));
        nix::unistd::setfsgid(nix::unistd::Gid::from_raw(self.base.gid));
        if let Err(e) = set_thread_groups(&self.base.groups) {
            // Cannot happen for groups this thread had before; if it ever
            // does, the thread keeps the caller's groups but fsuid/fsgid are
            // back, so it is not more privileged than the server itself.
            tracing::error!(error = %e, "restoring supplementary groups failed");
        }
    }
}

/// `len` bytes of `fd` from `offset` in a new buffer, read piece by piece
/// over the cores ([`crypt::in_pieces`]), each piece handed to `then` (e.g.
/// to decrypt it) by the thread that read it, while it is in that core's
/// cache. The buffer is not zero-filled first: a memset of 1 MiB of cold
/// memory cost an eighth of an encrypted READ. `short` is the error for a
/// file that ends before `offset + len`.
pub(crate) fn pread_in_pieces(
    fd: BorrowedFd<'_>,
    len: usize,
    offset: u64,
    short: fn() -> VfsError,
    then: impl Fn(usize, &mut [u8]) -> VfsResult<()> + Sync,
) -> VfsResult<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    crypt::in_pieces(&mut buf.spare_capacity_mut()[..len], |at, piece| {
        let piece = pread_whole(fd, piece, offset.saturating_add(at as u64), short)?;
        then(at, piece)
    })?;
    // SAFETY: `in_pieces` returned Ok, so it ran the closure on every piece
    // of `..len` and each succeeded; a piece succeeds only once `pread_whole`
    // has initialised all of it.
    unsafe { buf.set_len(len) };
    Ok(buf)
}

/// Reads all of `piece` at `offset`, and gives it back initialised; a read
/// of nothing before its end is the end of the file.
fn pread_whole<'b>(
    fd: BorrowedFd<'_>,
    piece: &'b mut [MaybeUninit<u8>],
    offset: u64,
    short: fn() -> VfsError,
) -> VfsResult<&'b mut [u8]> {
    let mut filled = 0;
    while filled < piece.len() {
        let at = offset.saturating_add(filled as u64);
        match rustix::io::pread(fd, &mut piece[filled..], at) {
            Ok(([], _)) => return Err(short()),
            Ok((read, _)) => filled += read.len(),
            Err(Errno::INTR) => {}
            Err(e) => return Err(VfsError::from_errno(e.raw_os_error(), "read")),
        }
    }
    // SAFETY: the reads above initialised every byte of `piece`, which this
    // borrow replaces.
    Ok(unsafe { std::slice::from_raw_parts_mut(piece.as_mut_ptr().cast::<u8>(), piece.len()) })
}
