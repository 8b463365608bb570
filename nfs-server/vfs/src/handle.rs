//! The persistent file handle format, and why it is safe to accept from the
//! network.
//!
//! Layout (version 1), at most [`MAX_HANDLE_LEN`] bytes:
//!
//! | bytes | content |
//! |---|---|
//! | 0 | format version (1) |
//! | 1..5 | kernel `handle_type`, i32 little-endian |
//! | 5..n-8 | kernel `f_handle` bytes from `name_to_handle_at` |
//! | n-8..n | SipHash-2-4 tag of bytes 0..n-8, little-endian |
//!
//! The kernel handle alone would let a client who crafts bytes open *any*
//! inode of the backing file system (`open_by_handle_at` only confines to
//! the mount, not to the export directory beneath it). The tag, keyed by a
//! secret kept with the export, proves that this export issued the handle,
//! and it only issues handles for objects it reached beneath its root
//! (single-component lookups that never follow symlinks). Checking the
//! resolved object's path instead (readlink of /proc/self/fd) is unsound for
//! files: after a restart their dentries come back disconnected and have no
//! path, so valid handles would go stale. The tag costs nothing per call and
//! survives restarts because the key is persistent (a `trusted.*` xattr on
//! the export root, readable only with CAP_SYS_ADMIN, so not by clients).
//!
//! Limit (the same as knfsd's `no_subtree_check`): an object moved out of
//! the export by someone working on the backing file system directly keeps
//! its handle valid.

use std::os::fd::BorrowedFd;

use rustix::fs::XattrFlags;
use rustix::io::Errno;
use siphasher::sip::SipHasher24;

use crate::error::Context;
use crate::sys::RawHandle;
use crate::{FileHandle, MAX_HANDLE_LEN, VfsError, VfsResult};

const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4;
const TAG_LEN: usize = 8;
/// The largest kernel handle we can carry.
pub(crate) const F_HANDLE_CAPACITY: usize = MAX_HANDLE_LEN - HEADER_LEN - TAG_LEN;

const KEY_XATTR: &std::ffi::CStr = c"trusted.openefs.handle-key";
const KEY_LEN: usize = 16;

pub(crate) struct HandleCodec {
    mac: SipHasher24,
}

impl HandleCodec {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self {
            mac: SipHasher24::new_with_key(key),
        }
    }

    pub fn encode(&self, raw: &RawHandle) -> FileHandle {
        let mut out = Vec::with_capacity(HEADER_LEN + raw.bytes().len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&raw.handle_type.to_le_bytes());
        out.extend_from_slice(raw.bytes());
        let tag = self.mac.hash(&out);
        out.extend_from_slice(&tag.to_le_bytes());
        FileHandle(out)
    }

    pub fn decode(&self, fh: &FileHandle) -> VfsResult<RawHandle> {
        let bytes = &fh.0;
        if bytes.len() < HEADER_LEN + TAG_LEN || bytes.len() > MAX_HANDLE_LEN || bytes[0] != VERSION
        {
            return Err(VfsError::BadHandle);
        }
        let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let expected = self.mac.hash(signed).to_le_bytes();
        // Constant time, so response timing does not reveal how many tag
        // bytes a forged handle got right.
        let diff = expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(VfsError::BadHandle);
        }
        let handle_type = i32::from_le_bytes([signed[1], signed[2], signed[3], signed[4]]);
        RawHandle::new(handle_type, &signed[HEADER_LEN..]).ok_or(VfsError::BadHandle)
    }
}

/// The export's handle key: read from the root's xattr, or created there on
/// first use. `root` must be a real (not `O_PATH`) fd of the export root.
pub(crate) fn load_or_create_key(root: BorrowedFd<'_>) -> VfsResult<[u8; KEY_LEN]> {
    if let Some(key) = read_key(root)? {
        return Ok(key);
    }
    let mut key = [0u8; KEY_LEN];
    rustix::rand::getrandom(&mut key, rustix::rand::GetRandomFlags::empty())
        .context("generating the handle key")?;
    match rustix::fs::fsetxattr(root, KEY_XATTR, &key, XattrFlags::CREATE) {
        Ok(()) => {
            // The key must survive a crash, or every handle given out goes
            // bad; the xattr lives in the root inode.
            rustix::fs::fsync(root).context("syncing the handle key")?;
            Ok(key)
        }
        // Another server instance created it first: use theirs.
        Err(Errno::EXIST) => read_key(root)?.ok_or(VfsError::Io {
            context: "handle key xattr vanished while being created",
            errno: libc::ENODATA,
        }),
        Err(e) => Err(VfsError::from_errno(
            e.raw_os_error(),
            "storing the handle key xattr",
        )),
    }
}

fn read_key(root: BorrowedFd<'_>) -> VfsResult<Option<[u8; KEY_LEN]>> {
    let mut key = [0u8; KEY_LEN];
    match rustix::fs::fgetxattr(root, KEY_XATTR, &mut key[..]) {
        Ok(KEY_LEN) => Ok(Some(key)),
        Ok(_) | Err(Errno::RANGE) => Err(VfsError::Io {
            context: "handle key xattr has the wrong length",
            errno: libc::EINVAL,
        }),
        Err(Errno::NODATA) => Ok(None),
        Err(e) => Err(VfsError::from_errno(
            e.raw_os_error(),
            "reading the handle key xattr",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawHandle {
        RawHandle::new(1, &[1, 2, 3, 4, 5, 6, 7, 8]).expect("fits")
    }

    #[test]
    fn round_trip() {
        let codec = HandleCodec::new(&[7; KEY_LEN]);
        let fh = codec.encode(&raw());
        assert!(fh.0.len() <= MAX_HANDLE_LEN);
        assert_eq!(codec.decode(&fh).expect("decodes"), raw());
    }

    #[test]
    fn other_key_tampering_and_garbage_are_bad_handles() {
        let codec = HandleCodec::new(&[7; KEY_LEN]);
        let fh = codec.encode(&raw());
        let other = HandleCodec::new(&[8; KEY_LEN]);
        assert!(matches!(other.decode(&fh), Err(VfsError::BadHandle)));
        for i in 0..fh.0.len() {
            let mut bad = fh.clone();
            bad.0[i] ^= 0x40;
            assert!(
                matches!(codec.decode(&bad), Err(VfsError::BadHandle)),
                "byte {i}"
            );
        }
        for len in [0, 1, 12, 13, 65, 200] {
            let junk = FileHandle(vec![1; len]);
            assert!(
                matches!(codec.decode(&junk), Err(VfsError::BadHandle)),
                "len {len}"
            );
        }
    }
}
