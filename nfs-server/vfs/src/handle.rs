//! The persistent file handle format, and why it is safe to accept from the
//! network.
//!
//! Layouts, at most [`MAX_HANDLE_LEN`] bytes:
//!
//! | version | bytes 0..n-8 | n-8..n |
//! |---|---|---|
//! | 1: object of the export | `1`, kernel `handle_type` (i32 LE), kernel `f_handle` | tag |
//! | 2: object reached through an access point | `2`, access point scope (8 bytes), `handle_type`, `f_handle` | tag |
//! | 3: the `/ap` pseudo directory | `3` | tag |
//!
//! The tag is a SipHash-2-4 of bytes 0..n-8, little-endian. The scope of a
//! version 2 handle is a keyed hash of the access point's id and root
//! directory ([`HandleCodec::scope`]); being inside the tagged bytes, it
//! cannot be removed or changed without the key, so a handle issued
//! through an access point stays bound to it (and goes stale when the
//! access point is removed or its root directory changes). Version 1
//! handles are unchanged since before access points existed, so clients
//! mounted then do not go stale.
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

pub(crate) const VERSION: u8 = 1;
const VERSION_SCOPED: u8 = 2;
const VERSION_AP_DIR: u8 = 3;
const HEADER_LEN: usize = 1 + 4;
const SCOPE_LEN: usize = 8;
const TAG_LEN: usize = 8;
/// The largest kernel handle we can carry (in an unscoped handle; a scoped
/// one has [`SCOPE_LEN`] bytes less room).
pub(crate) const F_HANDLE_CAPACITY: usize = MAX_HANDLE_LEN - HEADER_LEN - TAG_LEN;

/// Which access point a handle was issued through.
pub(crate) type Scope = [u8; SCOPE_LEN];

/// What an authentic handle names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// An object, reached through the export (`None`) or an access point.
    Object {
        raw: RawHandle,
        scope: Option<Scope>,
    },
    /// The `/ap` pseudo directory.
    ApDir,
}

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

    /// The handle of an object reached through the export itself.
    pub fn encode(&self, raw: &RawHandle) -> FileHandle {
        let mut out = Vec::with_capacity(HEADER_LEN + raw.bytes().len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&raw.handle_type.to_le_bytes());
        out.extend_from_slice(raw.bytes());
        self.sign(out)
    }

    /// The handle of an object reached through the access point of `scope`;
    /// `NotSupported` when the kernel handle leaves no room for the scope.
    pub fn encode_scoped(&self, raw: &RawHandle, scope: &Scope) -> VfsResult<FileHandle> {
        let len = 1 + SCOPE_LEN + 4 + raw.bytes().len() + TAG_LEN;
        if len > MAX_HANDLE_LEN {
            return Err(VfsError::NotSupported);
        }
        let mut out = Vec::with_capacity(len);
        out.push(VERSION_SCOPED);
        out.extend_from_slice(scope);
        out.extend_from_slice(&raw.handle_type.to_le_bytes());
        out.extend_from_slice(raw.bytes());
        Ok(self.sign(out))
    }

    /// The handle of the `/ap` pseudo directory.
    pub fn ap_dir(&self) -> FileHandle {
        self.sign(vec![VERSION_AP_DIR])
    }

    /// The scope of access point `id` with root directory `root`: a new
    /// value when either changes, so that old handles go stale. Keyed, so
    /// it is not guessable from the id (not that a guess would help without
    /// the tag).
    pub fn scope(&self, id: &str, root: &str) -> Scope {
        let mut input = Vec::with_capacity(id.len() + root.len() + 4);
        input.extend_from_slice(b"ap\0");
        input.extend_from_slice(id.as_bytes());
        input.push(0);
        input.extend_from_slice(root.as_bytes());
        self.mac.hash(&input).to_le_bytes()
    }

    fn sign(&self, mut out: Vec<u8>) -> FileHandle {
        let tag = self.mac.hash(&out);
        out.extend_from_slice(&tag.to_le_bytes());
        FileHandle(out)
    }

    pub fn decode(&self, fh: &FileHandle) -> VfsResult<Decoded> {
        let bytes = &fh.0;
        if bytes.len() < 1 + TAG_LEN || bytes.len() > MAX_HANDLE_LEN {
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
        let (scope, rest) = match signed[0] {
            VERSION => (None, &signed[1..]),
            VERSION_SCOPED => {
                let (scope, rest) = signed[1..]
                    .split_first_chunk::<SCOPE_LEN>()
                    .ok_or(VfsError::BadHandle)?;
                (Some(*scope), rest)
            }
            VERSION_AP_DIR if signed.len() == 1 => return Ok(Decoded::ApDir),
            _ => return Err(VfsError::BadHandle),
        };
        let (kind, f_handle) = rest.split_first_chunk::<4>().ok_or(VfsError::BadHandle)?;
        let raw = RawHandle::new(i32::from_le_bytes(*kind), f_handle).ok_or(VfsError::BadHandle)?;
        Ok(Decoded::Object { raw, scope })
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
        assert_eq!(
            codec.decode(&fh).expect("decodes"),
            Decoded::Object {
                raw: raw(),
                scope: None
            }
        );
        let scope = codec.scope("a", "/x");
        let scoped = codec.encode_scoped(&raw(), &scope).expect("fits");
        assert_eq!(
            codec.decode(&scoped).expect("decodes"),
            Decoded::Object {
                raw: raw(),
                scope: Some(scope)
            }
        );
        assert_eq!(
            codec.decode(&codec.ap_dir()).expect("decodes"),
            Decoded::ApDir
        );
    }

    #[test]
    fn scopes_differ_by_id_root_and_key() {
        let codec = HandleCodec::new(&[7; KEY_LEN]);
        let a = codec.scope("a", "/x");
        assert_ne!(a, codec.scope("b", "/x"));
        assert_ne!(a, codec.scope("a", "/y"));
        // The separator keeps ("a/", "x") apart from ("a", "/x").
        assert_ne!(codec.scope("ab", "/"), codec.scope("a", "b/"));
        assert_ne!(a, HandleCodec::new(&[8; KEY_LEN]).scope("a", "/x"));
    }

    /// A scoped handle cannot be turned into an unscoped one or moved to
    /// another scope by editing bytes, and a kernel handle too long to carry
    /// a scope is refused rather than truncated.
    #[test]
    fn scopes_are_authenticated() {
        let codec = HandleCodec::new(&[7; KEY_LEN]);
        let scoped = codec
            .encode_scoped(&raw(), &codec.scope("a", "/x"))
            .expect("fits");
        let mut unscoped = vec![VERSION];
        unscoped.extend_from_slice(&scoped.0[1 + SCOPE_LEN..]);
        assert!(matches!(
            codec.decode(&FileHandle(unscoped)),
            Err(VfsError::BadHandle)
        ));
        let mut moved = scoped.clone();
        moved.0[1..1 + SCOPE_LEN].copy_from_slice(&codec.scope("b", "/x"));
        assert!(matches!(codec.decode(&moved), Err(VfsError::BadHandle)));
        let long = RawHandle::new(1, &[9; F_HANDLE_CAPACITY]).expect("fits");
        assert!(codec.decode(&codec.encode(&long)).is_ok());
        assert!(matches!(
            codec.encode_scoped(&long, &codec.scope("a", "/x")),
            Err(VfsError::NotSupported)
        ));
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
        for len in [0, 1, 8, 9, 12, 13, 65, 200] {
            let junk = FileHandle(vec![1; len]);
            assert!(
                matches!(codec.decode(&junk), Err(VfsError::BadHandle)),
                "len {len}"
            );
        }
    }
}
