//! Vfs types ↔ NFSv3 types: attributes, weak cache consistency data,
//! settable attributes, handles and names.

use bytes::Bytes;
use openefs_nfs_wire::nfs3::Nfs3Error;
use openefs_nfs_wire::nfs3::types::*;
use openefs_nfs_wire::xdr::Opaque;
use openefs_vfs::{
    Attr, FileHandle, FileType, MAX_HANDLE_LEN, SetAttr, SetTime, Timestamp, Vfs, VfsError,
};

use crate::errors::vfs_status3;
use crate::ops::MAX_NAME;

/// The vfs error as an NFSv3 status (short, since every procedure uses it).
pub fn st(e: VfsError) -> Nfs3Error {
    vfs_status3(e)
}

/// `nfstime3` has unsigned 32-bit seconds: times before 1970 read as 1970,
/// times after 2106 as 2106.
pub fn nfstime(t: Timestamp) -> NfsTime3 {
    NfsTime3 {
        seconds: u32::try_from(t.seconds.max(0)).unwrap_or(u32::MAX),
        nseconds: t.nanos,
    }
}

fn ftype(t: FileType) -> Ftype3 {
    match t {
        FileType::Regular => Ftype3::Reg,
        FileType::Directory => Ftype3::Dir,
        FileType::Symlink => Ftype3::Lnk,
        FileType::BlockDevice => Ftype3::Blk,
        FileType::CharDevice => Ftype3::Chr,
        FileType::Fifo => Ftype3::Fifo,
        FileType::Socket => Ftype3::Sock,
    }
}

pub fn fattr3(a: &Attr) -> Fattr3 {
    Fattr3 {
        ftype: ftype(a.file_type),
        mode: a.mode & 0o7777,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        used: a.space_used,
        rdev: SpecData3 {
            specdata1: a.rdev.0,
            specdata2: a.rdev.1,
        },
        fsid: a.fsid,
        fileid: a.fileid,
        atime: nfstime(a.atime),
        mtime: nfstime(a.mtime),
        ctime: nfstime(a.ctime),
    }
}

pub fn wcc_attr(a: &Attr) -> WccAttr {
    WccAttr {
        size: a.size,
        mtime: nfstime(a.mtime),
        ctime: nfstime(a.ctime),
    }
}

/// `post_op_attr` of `fh`: best effort, as RFC 1813 allows.
pub fn post_op(v: &dyn Vfs, fh: &FileHandle) -> PostOpAttr {
    v.getattr(fh).ok().map(|a| fattr3(&a))
}

/// `pre_op_attr` of `fh`, best effort.
pub fn pre_op(v: &dyn Vfs, fh: &FileHandle) -> PreOpAttr {
    v.getattr(fh).ok().map(|a| wcc_attr(&a))
}

/// `wcc_data` of `fh` around a change whose `pre_op_attr` was `before`.
pub fn wcc(v: &dyn Vfs, fh: &FileHandle, before: PreOpAttr) -> WccData {
    WccData {
        before,
        after: post_op(v, fh),
    }
}

pub fn fh3(fh: &FileHandle) -> NfsFh3 {
    Opaque(Bytes::copy_from_slice(&fh.0))
}

/// The client's handle; the vfs tells a forged one (BADHANDLE) from a
/// vanished object (STALE) when it is used.
pub fn handle(fh: &NfsFh3) -> Result<FileHandle, Nfs3Error> {
    if fh.is_empty() || fh.len() > MAX_HANDLE_LEN {
        return Err(Nfs3Error::Badhandle);
    }
    Ok(FileHandle(fh.as_bytes().to_vec()))
}

/// A name to create, remove or rename: one path component. NFSv3 names are
/// bytes (no UTF-8 rule); `.` and `..` cannot be created or removed, which
/// knfsd answers with EXIST and ACCES, and so do we.
pub fn check_name(name: &Filename3) -> Result<Vec<u8>, Nfs3Error> {
    let b = name.as_bytes();
    if b.len() > MAX_NAME {
        return Err(Nfs3Error::Nametoolong);
    }
    if b == b"." || b == b".." {
        return Err(Nfs3Error::Exist);
    }
    if b.is_empty() || b.contains(&b'/') || b.contains(&0) {
        return Err(Nfs3Error::Acces);
    }
    Ok(b.to_vec())
}

fn set_time(t: &SetTime3) -> Option<SetTime> {
    match t {
        SetTime3::DontChange => None,
        SetTime3::ServerTime => Some(SetTime::ServerNow),
        SetTime3::ClientTime(t) => Some(SetTime::Client(Timestamp {
            seconds: i64::from(t.seconds),
            nanos: t.nseconds,
        })),
    }
}

pub fn to_setattr(s: &Sattr3) -> SetAttr {
    SetAttr {
        mode: s.mode.map(|m| m & 0o7777),
        uid: s.uid,
        gid: s.gid,
        size: s.size,
        atime: set_time(&s.atime),
        mtime: set_time(&s.mtime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n = |s: &[u8]| check_name(&Filename3::from(s));
        assert_eq!(n(b"a\xff.txt"), Ok(b"a\xff.txt".to_vec()));
        assert_eq!(n(b""), Err(Nfs3Error::Acces));
        assert_eq!(n(b"a/b"), Err(Nfs3Error::Acces));
        assert_eq!(n(b".."), Err(Nfs3Error::Exist));
        assert_eq!(n(&[b'x'; 256]), Err(Nfs3Error::Nametoolong));
    }

    #[test]
    fn times_outside_nfstime3_are_clamped() {
        let t = |seconds| nfstime(Timestamp { seconds, nanos: 5 });
        assert_eq!(t(-10).seconds, 0);
        assert_eq!(t(1 << 40).seconds, u32::MAX);
        assert_eq!(
            t(981_173_106),
            NfsTime3 {
                seconds: 981_173_106,
                nseconds: 5
            }
        );
    }

    #[test]
    fn sattr3_maps_every_member() {
        let s = Sattr3 {
            mode: Some(0o104755),
            uid: Some(7),
            gid: None,
            size: Some(0),
            atime: SetTime3::ServerTime,
            mtime: SetTime3::ClientTime(NfsTime3 {
                seconds: 3,
                nseconds: 4,
            }),
        };
        let set = to_setattr(&s);
        assert_eq!(set.mode, Some(0o4755));
        assert_eq!((set.uid, set.gid, set.size), (Some(7), None, Some(0)));
        assert_eq!(set.atime, Some(SetTime::ServerNow));
        assert_eq!(
            set.mtime,
            Some(SetTime::Client(Timestamp {
                seconds: 3,
                nanos: 4
            }))
        );
    }
}
